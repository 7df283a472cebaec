"""tr H by Hutchinson's estimator or Hutch++ (Meyer et al. 2021), with an adaptive
sketch, for the operator of :mod:`landscape.hvp`:

    Hutchinson  tr H = E[z^T H z], z Rademacher
    Hutch++     tr H = tr(Q^T H Q) + tr(P H P), Q an orthonormal basis of H S for a
                Rademacher sketch S, P = I - Q Q^T, the second term by Hutchinson;
                the sketch grows only while the samples' variance says it saves
                products
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from landscape.hvp import Batch, Block, HessianOperator, hessian_operator, problem
from landscape.points import LossFn, Reduce

TRACE_METHODS = ("hutch++", "hutchinson")
MIN_SAMPLES = 10  # fewer samples give too rough a standard error to stop on
SKETCH_BLOCK = 8  # the adaptive Hutch++ sketch's first block of vectors; later blocks double


@dataclass(frozen=True)
class TraceResult:
    """tr H from :func:`hessian_trace`; ``stderr`` is the Monte-Carlo standard error
    (for Hutch++, of the Hutchinson remainder: the sketch part is exact)."""

    trace: float
    stderr: float
    hvps: int
    converged: bool  # stderr <= rtol * |trace| after at least MIN_SAMPLES samples, or a sketch of all n
    sketch: int = 0  # Hutch++: the sketch's rank (each vector 2 products); 0 for Hutchinson


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    *,
    method: str = "hutch++",
    bn_mode: str = "train",
    rtol: float = 0.05,
    max_hvps: int = 200,
    sketch: int | None = None,
    block: Block | None = None,
    batches: Iterable[Batch] | None = None,
    max_batches: int | None = None,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> TraceResult:
    """tr H by Hutchinson's estimator or Hutch++.

    Both sample tr(P H P) with Rademacher vectors, P = I - Q Q^T the projector off a
    sketch Q (none for ``"hutchinson"``: P = I), and add tr(Q^T H Q), computed
    exactly (each sketch vector costs 2 products: one for H S, one for q^T H q).
    Sampling stops once at least :data:`MIN_SAMPLES` samples give a standard error
    <= ``rtol * |trace|``, or at ``max_hvps``.

    Hutch++'s sketch is sized adaptively by default (``sketch=None``): sampling
    starts without one; whenever the samples' variance predicts that reaching
    ``rtol`` would take more products than growing the sketch by a block (of
    :data:`SKETCH_BLOCK` vectors, doubling each time) and :data:`MIN_SAMPLES` new
    samples, the sketch grows and sampling restarts on the smaller remainder (the
    old samples estimated the old one). Growth stops for good once a block did not
    pay for itself. So at a loose ``rtol`` or on a flat spectrum it is Hutchinson,
    and a few dominant eigenvalues are taken out exactly where they dominate the
    variance. ``sketch=r`` gives Meyer et al.'s fixed split: r vectors first (``r
    >= n`` gives the exact trace in 2 n products).

    Args:
        model, loss_fn, inputs, targets, bn_mode, block, batches, max_batches: As for
            :func:`landscape.hessian.hessian_eigs`.
        method: ``"hutch++"`` or ``"hutchinson"``.
        rtol: Target standard error relative to |trace|.
        max_hvps: At most this many Hessian-vector products (at least 2).
        sketch: Hutch++ only: a fixed sketch of this many vectors, or None (adaptive).
        generator: Source of the random vectors; None forks the global RNG.
        reduce: As for :func:`landscape.hessian.hessian_eigs` (needs ``generator``).

    Returns:
        The :class:`TraceResult`; ``stderr`` is inf with fewer than 2 samples.

    Raises:
        ValueError: Unknown ``method``/``bn_mode``/block, no trainable (selected)
            parameters, ``rtol <= 0``, ``max_hvps < 2``, a ``sketch`` below 1, with
            Hutchinson or beyond the budget, bad batches, or ``reduce`` without
            ``generator``.
    """
    if method not in TRACE_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(TRACE_METHODS)}")
    if not rtol > 0:
        raise ValueError("rtol must be positive")
    if max_hvps < 2:
        raise ValueError("max_hvps must be at least 2")
    if sketch is not None and (method != "hutch++" or sketch < 1):
        raise ValueError("sketch is a number of vectors (at least 1) for method 'hutch++'")
    spec = problem(model, inputs, targets, bn_mode, block, batches, max_batches, reduce, generator)
    if sketch is not None:
        # A sketch short of n leaves a remainder to sample: room for MIN_SAMPLES of it.
        needed = 2 * min(sketch, spec.n) + (MIN_SAMPLES if sketch < spec.n else 0)
        if needed > max_hvps:
            raise ValueError(f"a sketch of {min(sketch, spec.n)} vectors and the samples of its remainder take "
                             f"{needed} products, more than max_hvps ({max_hvps})")
    with hessian_operator(model, loss_fn, spec) as op:
        estimator = _TraceEstimator(op, generator)
        if sketch is not None:
            estimator.grow(sketch)
        growing, block_size = method == "hutch++" and sketch is None, SKETCH_BLOCK
        before, paid = math.inf, 0  # samples still needed before the last block, and what it cost
        while op.hvps < max_hvps and not estimator.converged(rtol):
            if estimator.rank == op.n:  # the sketch is everything: tr(P H P) = 0
                break
            estimator.sample()
            if not growing or len(estimator.samples) < MIN_SAMPLES or estimator.converged(rtol):
                continue
            need = estimator.samples_needed(rtol)
            cost = 2 * min(block_size, op.n - estimator.rank) + MIN_SAMPLES
            if paid + need >= before:  # the last block did not pay for itself: sample on
                growing = False
            elif need > cost and op.hvps + cost <= max_hvps:
                estimator.grow(block_size)
                before, paid, block_size = need, cost, 2 * block_size
        result = estimator.result(rtol)
    return result


class _TraceEstimator:
    """tr(Q^T H Q), exact, plus samples of tr(P H P) for a growing orthonormal sketch Q."""

    def __init__(self, op: HessianOperator, generator: torch.Generator | None) -> None:
        self.op, self.generator = op, generator
        self.q = torch.zeros(op.n, 0, dtype=op.dtype, device=op.device)
        self.exact = 0.0
        self.samples: list[float] = []

    @property
    def rank(self) -> int:
        return self.q.shape[1]

    def grow(self, size: int) -> None:
        """Add up to ``size`` vectors: H S for fresh Rademacher S, orthonormalized
        against Q by a Householder QR of [Q, H S] (its first columns span Q), and
        start sampling afresh: the remainder has changed."""
        size = min(size, self.op.n - self.rank)
        images = torch.stack([self.op(self.op.random("rademacher", self.generator)) for _ in range(size)], dim=1)
        new = torch.linalg.qr(torch.cat([self.q, images], dim=1)).Q[:, self.rank:]  # orthonormal even if rank-deficient
        self.exact += sum(float(torch.dot(q, self.op(q))) for q in new.T)
        self.q = torch.cat([self.q, new], dim=1)
        self.samples = []

    def sample(self) -> None:
        z = self.op.random("rademacher", self.generator)
        z -= self.q @ (self.q.T @ z)
        self.samples.append(float(torch.dot(z, self.op(z))))

    @property
    def trace(self) -> float:
        return self.exact + (sum(self.samples) / len(self.samples) if self.samples else 0.0)

    @property
    def stderr(self) -> float:
        if self.rank == self.op.n:
            return 0.0
        if len(self.samples) < 2:
            return math.inf
        return float(torch.tensor(self.samples, dtype=torch.float64).std() / math.sqrt(len(self.samples)))

    def converged(self, rtol: float) -> bool:
        enough = self.rank == self.op.n or len(self.samples) >= MIN_SAMPLES
        return enough and self.stderr <= rtol * abs(self.trace)

    def samples_needed(self, rtol: float) -> float:
        """How many more samples the variance so far predicts for ``rtol`` (inf at a zero trace)."""
        target = rtol * abs(self.trace)
        if target == 0.0:
            return math.inf
        variance = float(torch.tensor(self.samples, dtype=torch.float64).var())
        return variance / target**2 - len(self.samples)

    def result(self, rtol: float) -> TraceResult:
        return TraceResult(trace=self.trace, stderr=self.stderr, hvps=self.op.hvps,
                           converged=self.converged(rtol), sketch=self.rank)
