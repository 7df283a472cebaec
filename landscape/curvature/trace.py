"""tr H by Hutchinson's estimator or Hutch++ (Meyer et al. 2021), with an adaptive
sketch, for the operator of :mod:`landscape.curvature.hvp`:

    Hutchinson  tr H = E[z^T H z], z Rademacher
    Hutch++     tr H = tr(Q^T H Q) + tr(P H P), Q an orthonormal basis of H S for a
                Rademacher sketch S, P = I - Q Q^T, the second term by Hutchinson;
                the sketch grows only while the samples' variance says it saves
                products

The error bar. Given Q, the samples x_i = z_i^T P H P z_i are independent with mean
tr(P H P) and variance sigma^2 = 2 (||P H P||_F^2 - sum_j (P H P)_jj^2), so the mean
of m of them is unbiased with standard error sigma / sqrt(m), reported as
``stderr = s / sqrt(m)`` (s the samples' standard deviation). That holds only if m
is chosen without looking at those samples. A rule that stops once its own stderr
<= rtol |trace| stops on draws whose spread came out small; z^T H z is skewed, so
those are draws whose mean came out small too. On 50/(1+i), n = 200, at rtol 0.05,
it was 1.8 % low and 2 stderr held the truth in 86 % of runs, not 95 %.

The rule (Stein's two-stage sampling, 1945, with the pilot kept out of the mean): a
pilot of :data:`PILOT_SAMPLES` samples of the remainder sizes the sample,
m = max(:data:`MIN_SAMPLES`, ceil(:data:`SIZE_MARGIN` s_pilot^2 / (rtol |t_pilot|)^2)),
and m fresh samples give the estimate and its stderr. The pilot (and the sketch's
own pilots: it grows on what they predict) is independent of the fresh samples, so
the estimate is unbiased and (estimate - tr H) / stderr is close to Student's t with
m - 1 >= 29 degrees of freedom: within 2 stderr with probability 0.945 or more for
normal samples. Skewed ones cover a little less (the mean and s still move together
within the fresh samples): 0.935 on 50/(1+i) at 5 %, where z^T H z is dominated by
a few eigenvalues (`bench/trace_coverage_bench.py` measures three rotated spectra).

The cost: :data:`PILOT_SAMPLES` products more for each remainder sampled (one per
sketch size tried) and at least :data:`MIN_SAMPLES` samples after them: 40 products
where a smooth spectrum let the old rule stop at 10. Where the budget leaves no room
for a pilot and :data:`MIN_SAMPLES` samples, the whole budget is sampled fresh (an
estimate of a fixed size is unbiased too). ``converged`` says whether the fresh
samples met ``rtol`` (from at least :data:`MIN_SAMPLES` of them); a pilot that
underestimated the variance leaves it False (15 % of the runs on 50/(1+i) at 5 %,
where the pilot asks for more than :data:`MIN_SAMPLES`), and the stderr is still the
samples' own.
Not covered: a remainder whose samples are heavy-tailed for m (one eigenvalue
dominating P H P that the sketch did not take), where s underestimates sigma more
often than Student's t allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from landscape.curvature.hvp import Batch, Block, HessianOperator, hessian_operator, problem
from landscape.measure.points import LossFn, Reduce

TRACE_METHODS = ("hutch++", "hutchinson")
PILOT_SAMPLES = 10  # samples of a remainder that size its sample (and the sketch); never in the estimate
MIN_SAMPLES = 30  # fresh samples at least: 2 stderr of fewer covers less than 94.5 % (Student's t)
SIZE_MARGIN = 2.0  # the pilot's variance times this: its 87 % upper bound (normal samples, 9 degrees of freedom)
SKETCH_BLOCK = 8  # the adaptive Hutch++ sketch's first block of vectors; later blocks double


@dataclass(frozen=True)
class TraceResult:
    """tr H from :func:`hessian_trace`; ``stderr`` is the Monte-Carlo standard error
    of the fresh samples (for Hutch++, of the Hutchinson remainder: the sketch part
    is exact). NaN both, where a product was not finite."""

    trace: float
    stderr: float
    hvps: int  # all of them: sketch, pilots and fresh samples
    converged: bool  # stderr <= rtol * |trace| from at least MIN_SAMPLES fresh samples, or a sketch of all n
    sketch: int = 0  # Hutch++: the sketch's rank (each vector 2 products); 0 for Hutchinson
    samples: int = 0  # the fresh samples in the estimate (pilots not counted)


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
    A pilot of :data:`PILOT_SAMPLES` samples sizes the sample for a standard error
    of ``rtol * |trace|`` (at least :data:`MIN_SAMPLES`, at most what ``max_hvps``
    leaves), and that many fresh samples give the estimate and its standard error:
    the pilot is never in them (see the module docstring for why, and the cost).

    Hutch++'s sketch is sized adaptively by default (``sketch=None``): sampling
    starts without one; whenever the pilot predicts more samples than growing the
    sketch by a block (of :data:`SKETCH_BLOCK` vectors, doubling each time), a new
    pilot and :data:`MIN_SAMPLES` samples would cost, the sketch grows and a new
    pilot samples the smaller remainder (the old one estimated the old remainder).
    Growth stops for good once a block did not pay for itself. So at a loose
    ``rtol`` or on a flat spectrum it is Hutchinson, and a few dominant eigenvalues
    are taken out exactly where they dominate the variance. ``sketch=r`` gives Meyer
    et al.'s fixed split: r vectors first (``r >= n`` gives the exact trace in 2 n
    products).

    Args:
        model, loss_fn, inputs, targets, bn_mode, block, batches, max_batches: As for
            :func:`landscape.curvature.hessian.hessian_eigs`.
        method: ``"hutch++"`` or ``"hutchinson"``.
        rtol: Target standard error relative to |trace|.
        max_hvps: At most this many Hessian-vector products (at least 2).
        sketch: Hutch++ only: a fixed sketch of this many vectors, or None (adaptive).
        generator: Source of the random vectors; None forks the global RNG.
        reduce: As for :func:`landscape.curvature.hessian.hessian_eigs` (needs ``generator``).

    Returns:
        The :class:`TraceResult`; ``stderr`` is inf with fewer than 2 fresh samples.

    Raises:
        ValueError: Unknown ``method``/``bn_mode``/block, no trainable (selected)
            parameters, ``rtol <= 0``, ``max_hvps < 2``, a ``sketch`` below 1, with
            Hutchinson or beyond the budget, bad batches, or ``reduce`` without
            ``generator``.
    """
    _check_options(method, rtol, max_hvps, sketch)
    spec = problem(model, inputs, targets, bn_mode, block, batches, max_batches, reduce, generator)
    with hessian_operator(model, loss_fn, spec) as op:
        return estimate_trace(op, method=method, rtol=rtol, max_hvps=max_hvps, sketch=sketch, generator=generator)


def estimate_trace(
    op: HessianOperator,
    *,
    method: str = "hutch++",
    rtol: float = 0.05,
    max_hvps: int = 200,
    sketch: int | None = None,
    generator: torch.Generator | None = None,
) -> TraceResult:
    """tr of a symmetric operator, by the rule of :func:`hessian_trace`.

    Args:
        op: v -> H v on flat vectors with the attributes of
            :class:`landscape.curvature.hvp.HessianOperator` (``n``, ``dtype``, ``device``, the
            ``hvps`` counter, ``random``); the result counts the products of this call.
        method, rtol, max_hvps, sketch, generator: As for :func:`hessian_trace`.

    Returns:
        The :class:`TraceResult`.

    Raises:
        ValueError: As for :func:`hessian_trace`'s options.
    """
    _check_options(method, rtol, max_hvps, sketch)
    if sketch is not None:
        # A sketch short of n leaves a remainder to sample: room for MIN_SAMPLES of it.
        needed = 2 * min(sketch, op.n) + (MIN_SAMPLES if sketch < op.n else 0)
        if needed > max_hvps:
            raise ValueError(
                f"a sketch of {min(sketch, op.n)} vectors and the samples of its remainder take "
                f"{needed} products, more than max_hvps ({max_hvps})"
            )
    estimator = _TraceEstimator(op, generator)
    budget = op.hvps + max_hvps
    if sketch is not None:
        estimator.grow(sketch)
    growing, block_size = method == "hutch++" and sketch is None, SKETCH_BLOCK
    before, paid = math.inf, 0  # samples needed before the last block, and what the block and its pilot cost
    size = math.inf  # the fresh samples to draw: the budget's, without a pilot
    while estimator.rank < op.n and estimator.finite:
        pilot = min(PILOT_SAMPLES, budget - op.hvps - MIN_SAMPLES)
        if pilot < 2:  # no room to size the sample: the budget's samples, all fresh
            break
        drawn = estimator.draw(pilot)
        if not estimator.finite:
            break
        size = estimator.samples_needed(drawn, rtol)
        if not growing or paid + size >= before:  # (the last block did not pay for itself)
            break
        cost = 2 * min(block_size, op.n - estimator.rank) + PILOT_SAMPLES
        if size <= cost + MIN_SAMPLES or op.hvps + cost + MIN_SAMPLES > budget:
            break
        estimator.grow(block_size)
        before, paid, block_size = size, cost, 2 * block_size
    if estimator.rank < op.n and estimator.finite:
        estimator.estimate(int(min(size, budget - op.hvps)))
    return estimator.result(rtol)


def _check_options(method: str, rtol: float, max_hvps: int, sketch: int | None) -> None:
    if method not in TRACE_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(TRACE_METHODS)}")
    if not rtol > 0:
        raise ValueError("rtol must be positive")
    if max_hvps < 2:
        raise ValueError("max_hvps must be at least 2")
    if sketch is not None and (method != "hutch++" or sketch < 1):
        raise ValueError("sketch is a number of vectors (at least 1) for method 'hutch++'")


class _TraceEstimator:
    """tr(Q^T H Q), exact, plus fresh samples of tr(P H P) for a growing orthonormal
    sketch Q; pilots are drawn apart and only read for their size."""

    def __init__(self, op: HessianOperator, generator: torch.Generator | None) -> None:
        self.op, self.generator = op, generator
        self.start = op.hvps
        self.q = torch.zeros(op.n, 0, dtype=op.dtype, device=op.device)
        self.exact = 0.0
        self.samples: list[float] = []
        self.finite = True  # every product so far finite

    @property
    def rank(self) -> int:
        return self.q.shape[1]

    def grow(self, size: int) -> None:
        """Add up to ``size`` vectors: H S for fresh Rademacher S, orthonormalized
        against Q by a Householder QR of [Q, H S] (its first columns span Q)."""
        size = min(size, self.op.n - self.rank)
        images = torch.stack([self.op(self.op.random("rademacher", self.generator)) for _ in range(size)], dim=1)
        if not bool(torch.isfinite(images).all()):  # nothing after a non-finite product means anything
            self.finite = False
            return
        new = torch.linalg.qr(torch.cat([self.q, images], dim=1)).Q[
            :, self.rank :
        ]  # orthonormal even if rank-deficient
        self.exact += sum(float(torch.dot(q, self.op(q))) for q in new.T)
        self.q = torch.cat([self.q, new], dim=1)
        self.finite = math.isfinite(self.exact)

    def draw(self, count: int) -> list[float]:
        """``count`` samples of z^T P H P z."""
        drawn = []
        for _ in range(count):
            z = self.op.random("rademacher", self.generator)
            z -= self.q @ (self.q.T @ z)
            drawn.append(float(torch.dot(z, self.op(z))))
        self.finite = self.finite and all(math.isfinite(x) for x in drawn)
        return drawn

    def samples_needed(self, pilot: list[float], rtol: float) -> float:
        """The samples that give a standard error of ``rtol * |trace|`` by the
        pilot's trace and its variance times :data:`SIZE_MARGIN` (10 samples
        estimate a variance only to within a factor of about 2), at least
        :data:`MIN_SAMPLES`; inf at a zero trace."""
        values = torch.tensor(pilot, dtype=torch.float64)
        target = rtol * abs(self.exact + float(values.mean()))
        if not target > 0:
            return math.inf
        return max(MIN_SAMPLES, math.ceil(SIZE_MARGIN * float(values.var()) / target**2))

    def estimate(self, count: int) -> None:
        """The estimate's samples: ``count`` fresh ones."""
        self.samples = self.draw(count)

    @property
    def trace(self) -> float:
        if not self.finite:
            return math.nan
        return self.exact + (sum(self.samples) / len(self.samples) if self.samples else 0.0)

    @property
    def stderr(self) -> float:
        if not self.finite:
            return math.nan
        if self.rank == self.op.n:
            return 0.0
        if len(self.samples) < 2:
            return math.inf
        return float(torch.tensor(self.samples, dtype=torch.float64).std() / math.sqrt(len(self.samples)))

    def result(self, rtol: float) -> TraceResult:
        enough = self.rank == self.op.n or len(self.samples) >= MIN_SAMPLES
        converged = self.finite and enough and self.stderr <= rtol * abs(self.trace)
        return TraceResult(
            trace=self.trace,
            stderr=self.stderr,
            hvps=self.op.hvps - self.start,
            converged=converged,
            sketch=self.rank,
            samples=len(self.samples),
        )
