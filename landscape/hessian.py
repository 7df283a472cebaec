"""Spectrum of the loss Hessian: extreme eigenvalues, trace and eigenvalue density.

H = nabla^2_w L(w; B) for the trainable parameters w (or a block of them) and a
mini-batch B; over several batches, the mean of the per-batch Hessians. In
``bn_mode="train"`` the norm layers use batch statistics (the objective SGD
optimises, whose smoothness Santurkar et al. 2018 study), in ``"eval"`` their
running statistics. H is never formed: it is applied by double
backward (Pearlmutter 1994), H v = grad_w (grad_w L . v), on a gradient graph
built once per batch.

Over several processes, each holding one equal shard B_r of a global batch B (and a
mean loss, or one scaled by :func:`landscape.data.objective`'s ``shards``), the
Hessian of the global batch's loss is the mean of the ranks' Hessians,
H v = (1/N) sum_r H_r v, so a ``reduce`` callable (e.g.
:func:`landscape.distributed.all_reduce_mean`) averages every product over the
ranks. Every rank then holds the same products and takes the same Lanczos steps,
provided all draw the same random vectors: ``reduce`` needs a ``generator`` seeded
alike on every rank.

    extreme eigenvalues  Lanczos with full reorthogonalization (:mod:`landscape.lanczos`);
                         a Ritz pair (theta, y = Q s) of m steps has residual
                         r = ||H y - theta y|| = |beta_m s_m|, some eigenvalue of H lies
                         within r of theta, and within r^2 / gap where the Ritz values
                         show it isolated by gap (Kato-Temple)
    trace                Hutchinson: tr H = E[z^T H z], z Rademacher; Hutch++ (Meyer et
                         al. 2021): tr H = tr(Q^T H Q) + tr(P H P), Q an orthonormal
                         basis of H S for a Rademacher sketch S, P = I - Q Q^T, the
                         second term by Hutchinson; the sketch grows only while the
                         samples' variance says it saves products (adaptive)
    density              stochastic Lanczos quadrature (Lin et al. 2016; Ghorbani et al.
                         2019): phi(t) = 1/n sum_i delta(t - lambda_i), estimated by the
                         mean over runs of sum_j w_j N(t; theta_j, sigma^2), theta_j the
                         Ritz values of m steps from a unit start v, w_j = (e_1^T s_j)^2

The model is evaluated as the gradient-direction probe evaluates it
(:mod:`landscape.probes`): on a :class:`landscape.state.Workspace` of working
parameters and cloned buffers, with the norm layers in ``bn_mode``, inside
:func:`landscape.state.fork_rng`. Parameters, buffers, ``.grad`` fields,
``requires_grad`` and training flags and every RNG are bit-identical afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from landscape.config import BN_MODES
from landscape.lanczos import BOUNDS, lanczos, ritz
from landscape.points import LossFn, Reduce
from landscape.probes import norm_layers_mode
from landscape.state import Workspace, flatten, fork_rng, rng_sources, trainable_params

Block = str | Callable[[str, nn.Parameter], bool]
Batch = tuple[torch.Tensor, torch.Tensor]

WHICH = ("largest", "magnitude")
TRACE_METHODS = ("hutch++", "hutchinson")
STARTS = ("gradient", "random")  # or a vector
MIN_SAMPLES = 10  # fewer samples give too rough a standard error to stop on
SKETCH_BLOCK = 8  # the adaptive Hutch++ sketch's first block of vectors; later blocks double


@dataclass(frozen=True)
class EigResult:
    """Extreme eigenvalues of H from :func:`hessian_eigs`.

    Each eigenvalue lies within its residual of an eigenvalue of H (a certificate),
    and within its error bound when the Ritz values' gap estimate holds
    (:mod:`landscape.lanczos`); ``converged`` says whether every error bound met
    ``tol`` (relative), never more.
    """

    eigenvalues: torch.Tensor  # (k,) float64, largest first (algebraically or in magnitude)
    residuals: torch.Tensor  # (k,) ||H y - theta y|| of the unit Ritz vectors y
    hvps: int  # products with H (each one backward per batch)
    converged: bool
    error_bound: float  # the largest of the k error bounds (min(r, r^2 / gap), or r)
    eigenvectors: list[dict[str, torch.Tensor]] | None  # unit Ritz vectors by parameter name


@dataclass(frozen=True)
class TraceResult:
    """tr H from :func:`hessian_trace`; ``stderr`` is the Monte-Carlo standard error
    (for Hutch++, of the Hutchinson remainder: the sketch part is exact)."""

    trace: float
    stderr: float
    hvps: int
    converged: bool  # stderr <= rtol * |trace| after at least MIN_SAMPLES samples
    sketch: int = 0  # Hutch++: the sketch's rank (each vector 2 products); 0 for Hutchinson


@dataclass(frozen=True)
class DensityResult:
    """Eigenvalue density of H from :func:`hessian_density`."""

    grid: torch.Tensor  # (G,) float64
    density: torch.Tensor  # (G,) integrates to 1 over grid (trapezoid)
    nodes: list[torch.Tensor]  # per run: Ritz values (quadrature nodes)
    weights: list[torch.Tensor]  # per run: quadrature weights, summing to 1
    hvps: int

    @property
    def mean(self) -> float:
        """Mean of the quadrature measures over the runs: an estimate of tr H / n."""
        return sum(float(t @ w) for t, w in zip(self.nodes, self.weights)) / len(self.nodes)


class _HessianOperator:
    """v -> H v for flat vectors over the selected parameters (mean over the batches),
    each product one backward through every batch's gradient graph, then averaged
    over the ranks by ``reduce``."""

    def __init__(
        self,
        names: list[str],
        leaves: list[nn.Parameter],
        grads: list[list[torch.Tensor] | None],
        reduce: Reduce | None = None,
    ) -> None:
        self.names, self.leaves, self.grads, self.reduce = names, leaves, grads, reduce
        self.sizes = [p.numel() for p in leaves]
        self.n = sum(self.sizes)
        self.dtype = functools.reduce(torch.promote_types, [p.dtype for p in leaves])
        self.device = leaves[0].device
        self.hvps = 0

    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        return [c.view_as(p).to(p.dtype) for c, p in zip(v.split(self.sizes), self.leaves)]

    def named(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.split(v)))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.hvps += 1
        pieces = self.split(v)
        total = torch.zeros_like(v)
        for grads in self.grads:
            if grads is None:  # the gradient does not depend on w: H = 0
                continue
            dot = torch.stack([torch.vdot(g.reshape(-1), u.reshape(-1)) for g, u in zip(grads, pieces)]).sum()
            hv = torch.autograd.grad(dot, self.leaves, retain_graph=True, allow_unused=True)
            hv = [torch.zeros_like(p) if h is None else h for p, h in zip(self.leaves, hv)]
            total += flatten([h.to(self.dtype) for h in hv])
        total /= len(self.grads)
        # Every rank reduces, H = 0 on its shard or not: the collectives must match.
        return total if self.reduce is None else self.reduce([total])[0]

    def gradient(self) -> torch.Tensor:
        """The gradient of the (global batch's) loss, flat: the mean over the batches."""
        total = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for grads in self.grads:
            if grads is not None:
                total += flatten([g.detach().to(self.dtype) for g in grads])
        total /= len(self.grads)
        return total if self.reduce is None else self.reduce([total])[0]

    def random(self, kind: str, generator: torch.Generator | None) -> torch.Tensor:
        """A Rademacher or Gaussian vector, drawn on the generator's device."""
        device = self.device if generator is None else generator.device
        if kind == "rademacher":
            z = torch.randint(0, 2, (self.n,), generator=generator, device=device).to(self.dtype).mul_(2).sub_(1)
        else:
            z = torch.randn(self.n, generator=generator, device=device, dtype=self.dtype)
        return z.to(self.device)


@dataclass(frozen=True)
class _Problem:
    """What H is: the parameters (all trainable ones, and the names of those whose
    block is used), the batches whose Hessians are averaged, and the BN mode."""

    modules: list[nn.Module]  # each once
    params: dict[str, nn.Parameter]
    names: list[str]
    batches: list[Batch]
    bn_mode: str
    reduce: Reduce | None = None

    @property
    def n(self) -> int:
        return sum(self.params[name].numel() for name in self.names)


def _problem(
    model: nn.Module,
    inputs: torch.Tensor | None,
    targets: torch.Tensor | None,
    bn_mode: str,
    block: Block | None,
    batches: Iterable[Batch] | None,
    max_batches: int | None,
    reduce: Reduce | None = None,
    generator: torch.Generator | None = None,
) -> _Problem:
    """The checked arguments every function shares (see :func:`hessian_eigs`)."""
    if reduce is not None and generator is None:
        raise ValueError("reduce needs a generator seeded alike on every rank (the ranks must draw the same vectors)")
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose from {', '.join(BN_MODES)}")
    modules, params = trainable_params(model)
    if not params:
        raise ValueError("the model has no trainable parameters")
    if block is None:
        names = list(params)
    elif callable(block):
        names = [name for name, p in params.items() if block(name, p)]
    elif block not in dict(model.named_modules()):
        raise ValueError(f"unknown block {block!r}: the model has no module of that name")
    else:
        names = [name for name in params if not block or name.startswith(f"{block}.")]
    if not names:
        raise ValueError(f"block {block!r} selects no trainable parameters")
    if batches is None:
        if inputs is None or targets is None:
            raise ValueError("pass inputs and targets, or batches")
        return _Problem(modules, params, names, [(inputs, targets)], bn_mode, reduce)
    if inputs is not None or targets is not None:
        raise ValueError("pass inputs and targets, or batches, not both")
    if max_batches is not None and max_batches < 1:
        raise ValueError("max_batches must be at least 1")
    chosen = [(x, y) for x, y in itertools.islice(batches, max_batches)]
    if not chosen:
        raise ValueError("batches is empty")
    return _Problem(modules, params, names, chosen, bn_mode, reduce)


@contextlib.contextmanager
def _hessian(model: nn.Module, loss_fn: LossFn, problem: _Problem) -> Iterator[_HessianOperator]:
    """The Hessian operator, valid inside the block (random draws there are forked off
    the global RNG too)."""
    workspace = Workspace(problem.modules, list(problem.params.values()))
    working = dict(zip(problem.params, workspace.leaves))
    leaves = [working[name] for name in problem.names]
    devices = {t.device for t in [*workspace.params, *workspace.buffers]}
    sources = rng_sources(model, problem.modules, devices=devices)
    with (
        fork_rng(sources),
        norm_layers_mode(model, problem.bn_mode, problem.modules),
        workspace.installed(),
        torch.enable_grad(),
    ):
        workspace.move_to([], None, 0.0)  # working parameters := w, working buffers := the real ones
        graphs: list[list[torch.Tensor] | None] = []
        for x, y in problem.batches:
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads)]
            graphs.append(grads if any(g.requires_grad for g in grads) else None)
        yield _HessianOperator(problem.names, leaves, graphs, problem.reduce)


def hessian_eigs(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    *,
    k: int = 1,
    which: str = "largest",
    bn_mode: str = "train",
    tol: float = 1e-3,
    max_hvps: int = 100,
    bound: str = "residual",
    start: str | torch.Tensor | dict[str, torch.Tensor] = "gradient",
    return_eigenvectors: bool = False,
    block: Block | None = None,
    batches: Iterable[Batch] | None = None,
    max_batches: int | None = None,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> EigResult:
    """The k extreme eigenvalues of H by Lanczos with full reorthogonalization.

    Cost: one forward and one graph-keeping backward per batch, then one Hessian-vector
    product (one backward through the gradient graph, per batch) per Lanczos step; the
    gradient graphs stay in memory throughout. It stops once every wanted Ritz value
    theta has a residual r = ||H y - theta y|| <= tol * |theta| (or r at rounding
    level), or after ``max_hvps`` products (or n, where the Krylov space is
    everything): r certifies that an eigenvalue of H lies within r of theta. With
    ``bound="gap"`` it stops on min(r, r^2 / gap) instead, the gap estimated from
    the other Ritz values (:mod:`landscape.lanczos`). By default Lanczos starts from
    the gradient (plus noise), which lies mostly in the top eigenspace: at the
    benchmark's trained VGG-11 point 6 products instead of 8-10 from a random start
    (reports/benchmarks.md).
    A breakdown (an invariant subspace, e.g. repeated eigenvalues) before k values
    have converged goes on from a fresh random vector. Like every single-vector
    Krylov method it may report a repeated eigenvalue fewer times than its
    multiplicity: each value is within its residual of some eigenvalue of H.

    Args:
        model: Any ``nn.Module``; its trainable parameters are w.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``.
        inputs: The mini-batch inputs B (or use ``batches``).
        targets: The mini-batch targets.
        k: How many eigenvalues.
        which: ``"largest"`` (algebraically) or ``"magnitude"`` (largest |lambda|).
        bn_mode: ``"train"`` (batch statistics, the paper's) or ``"eval"`` (running statistics).
        tol: Relative tolerance on the Ritz residuals.
        max_hvps: At most this many Hessian-vector products.
        bound: ``"residual"`` (stop on r, the certificate) or ``"gap"`` (stop on
            min(r, r^2 / gap): a few products fewer, but the gap estimate can be
            fooled; measured on small BN networks it claimed convergence beyond
            ``tol`` in 8 of 480 runs, once at the second eigenvalue, where
            ``"residual"`` never did: tests/test_hessian.py).
        start: ``"gradient"`` (the batch's unit gradient plus a unit Gaussian; the
            gradient lies mostly in the top eigenspace), ``"random"`` (Gaussian), or
            a vector (flat or by parameter name, e.g. the eigenvector of a nearby
            point) plus a 1e-3 Gaussian.
        return_eigenvectors: Also return the unit Ritz vectors.
        block: Restrict H to the parameters of the module of this name (e.g.
            ``"features.0"``), or to those for which ``block(name, param)`` is True.
        batches: Instead of ``inputs``/``targets``: (inputs, targets) pairs; H is the
            mean of their Hessians (one gradient graph each).
        max_batches: Use at most this many of ``batches``.
        generator: Source of the start vector; None draws from the global RNG inside
            a fork, so its stream is untouched either way.
        reduce: For one shard of a global batch per process: averages a list of
            tensors over the ranks (:func:`landscape.distributed.all_reduce_mean`),
            applied to every Hessian-vector product, so H is the global batch's.
            Needs ``generator``, seeded alike on every rank.

    Returns:
        The :class:`EigResult`.

    Raises:
        ValueError: Unknown ``which``/``bound``/``bn_mode``/block, no trainable (selected)
            parameters, k outside [1, n), ``max_hvps < k``, ``tol <= 0``, bad batches,
            or ``reduce`` without ``generator``.
    """
    if which not in WHICH:
        raise ValueError(f"unknown which {which!r}; choose from {', '.join(WHICH)}")
    if isinstance(start, str) and start not in STARTS:
        raise ValueError(f"unknown start {start!r}; choose from {', '.join(STARTS)}, or pass a vector")
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; choose from {', '.join(BOUNDS)}")
    if not tol > 0:
        raise ValueError("tol must be positive")
    problem = _problem(model, inputs, targets, bn_mode, block, batches, max_batches, reduce, generator)
    if not 1 <= k < problem.n:
        raise ValueError(f"k must be at least 1 and smaller than the number of parameters ({problem.n}), got {k}")
    if max_hvps < k:
        raise ValueError(f"max_hvps ({max_hvps}) must be at least k ({k})")

    def stop(krylov) -> bool:
        return len(krylov.alphas) >= k and ritz(krylov, k, which, tol, bound).converged

    with _hessian(model, loss_fn, problem) as op:
        krylov = lanczos(op, _start_vector(op, start, generator), min(max_hvps, op.n), stop,
                         restart=lambda: op.random("gaussian", generator))
        pairs = ritz(krylov, k, which, tol, bound)
        vectors = None
        if return_eigenvectors:
            ritz_vectors = krylov.basis.T @ pairs.coefficients.to(krylov.basis)  # (n, k)
            vectors = [op.named(y.detach().clone()) for y in ritz_vectors.T]
        hvps = op.hvps
    return EigResult(
        eigenvalues=pairs.values,
        residuals=pairs.residuals,
        hvps=hvps,
        converged=pairs.converged,
        error_bound=float(pairs.error_bounds.max()),
        eigenvectors=vectors,
    )


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
            :func:`hessian_eigs`.
        method: ``"hutch++"`` or ``"hutchinson"``.
        rtol: Target standard error relative to |trace|.
        max_hvps: At most this many Hessian-vector products (at least 2).
        sketch: Hutch++ only: a fixed sketch of this many vectors, or None (adaptive).
        generator: Source of the random vectors; None forks the global RNG.
        reduce: As for :func:`hessian_eigs` (needs ``generator``).

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
    problem = _problem(model, inputs, targets, bn_mode, block, batches, max_batches, reduce, generator)
    with _hessian(model, loss_fn, problem) as op:
        estimator = _TraceEstimator(op, generator)
        if sketch is not None:
            if 2 * min(sketch, op.n) > max_hvps:
                raise ValueError(f"a sketch of {min(sketch, op.n)} vectors takes {2 * min(sketch, op.n)} products, "
                                 f"more than max_hvps ({max_hvps})")
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


def _start_vector(op: _HessianOperator, start, generator: torch.Generator | None) -> torch.Tensor:
    """Lanczos's start: Gaussian ("random"), the unit gradient plus a unit Gaussian
    ("gradient": the gradient lies mostly in the top eigenspace, Gur-Ari et al. 2018;
    the Gaussian keeps every eigenvector's component nonzero), or the given vector
    (flat, or by parameter name, e.g. an eigenvector of a nearby point) plus a unit
    Gaussian scaled by 1e-3 (so no eigenvector is missed for good)."""
    z = op.random("gaussian", generator)
    if start == "random":
        return z
    if start == "gradient":
        guide, weight = op.gradient(), 1.0
    else:
        if isinstance(start, dict) and (missing := [name for name in op.names if name not in start]):
            raise ValueError(f"start has no values for {missing[0]!r}")
        guide = flatten([start[name] for name in op.names]) if isinstance(start, dict) else start.reshape(-1)
        if guide.numel() != op.n:
            raise ValueError(f"start has {guide.numel()} values, the Hessian's size is {op.n}")
        guide, weight = guide.to(device=op.device, dtype=op.dtype), 1e-3
    norm = torch.linalg.vector_norm(guide)
    if not norm > 0:
        return z
    return guide / norm + weight * z / torch.linalg.vector_norm(z)


class _TraceEstimator:
    """tr(Q^T H Q), exact, plus samples of tr(P H P) for a growing orthonormal sketch Q."""

    def __init__(self, op: _HessianOperator, generator: torch.Generator | None) -> None:
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


def hessian_density(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    *,
    runs: int = 5,
    steps: int = 80,
    grid_size: int = 1000,
    sigma: float | None = None,
    bn_mode: str = "train",
    block: Block | None = None,
    batches: Iterable[Batch] | None = None,
    max_batches: int | None = None,
    generator: torch.Generator | None = None,
) -> DensityResult:
    """Eigenvalue density of H by stochastic Lanczos quadrature.

    Each run takes min(steps, n) Lanczos steps (fewer where the start vector's
    Krylov space is invariant: its quadrature is then exact) from a normalized
    Rademacher vector v; its nodes and weights form a quadrature of the measure
    sum_i (u_i^T v)^2 delta(t - lambda_i), whose mean is v^T H v, so the runs' mean
    estimates tr H / n. Cost: ``runs * min(steps, n)`` Hessian-vector products.

    Args:
        model, loss_fn, inputs, targets, bn_mode, block, batches, max_batches: As for
            :func:`hessian_eigs`.
        runs: Number of start vectors.
        steps: Lanczos steps per run.
        grid_size: Points of the grid, which spans the nodes plus 6 sigma on each side.
        sigma: Width of the Gaussian put on each node; None: 1% of the nodes'
            range (or of their largest magnitude, or 1 when all are 0). The grid
            resolves sigma only when it is not much below range / grid_size.
        generator: Source of the start vectors; None forks the global RNG.

    Returns:
        The :class:`DensityResult`.

    Raises:
        ValueError: Unknown ``bn_mode``/block, no trainable (selected) parameters,
            ``runs``/``steps`` < 1, ``grid_size`` < 2, ``sigma <= 0`` or bad batches.
    """
    if runs < 1 or steps < 1:
        raise ValueError("runs and steps must be at least 1")
    if grid_size < 2:
        raise ValueError("grid_size must be at least 2")
    if sigma is not None and not sigma > 0:
        raise ValueError("sigma must be positive")
    problem = _problem(model, inputs, targets, bn_mode, block, batches, max_batches)
    nodes, weights = [], []
    with _hessian(model, loss_fn, problem) as op:
        for _ in range(runs):
            theta, s = lanczos(op, op.random("rademacher", generator), min(steps, op.n)).ritz()
            nodes.append(theta)
            weights.append(s[0] ** 2)
        hvps = op.hvps
    every = torch.cat(nodes)
    low, high = float(every.min()), float(every.max())
    if sigma is None:
        scale = max(high - low, abs(low), abs(high))
        sigma = 0.01 * scale if scale > 0 else 1.0
    grid = torch.linspace(low - 6 * sigma, high + 6 * sigma, grid_size, dtype=torch.float64)
    gauss = torch.exp(-0.5 * ((grid[:, None] - every[None, :]) / sigma) ** 2)  # (G, runs * m)
    density = gauss @ torch.cat(weights)
    density = density / torch.trapezoid(density, grid)
    return DensityResult(grid=grid, density=density, nodes=nodes, weights=weights, hvps=hvps)
