"""Spectrum of the loss Hessian: extreme eigenvalues, trace and eigenvalue density.

H = nabla^2_w L(w; B) of the trainable parameters (or a block of them) on a batch or
the mean over several, in ``bn_mode="train"`` (batch statistics, the objective SGD
optimises) or ``"eval"``, applied by double backward on working copies that leave
the model bit-identical, and averaged over processes by ``reduce``: see
:mod:`landscape.curvature.hvp`.

    extreme eigenvalues  Lanczos with full reorthogonalization (:mod:`landscape.curvature.lanczos`);
                         a Ritz pair (theta, y = Q s) of m steps has residual
                         r = ||H y - theta y|| = |beta_m s_m|, some eigenvalue of H lies
                         within r of theta, and within r^2 / gap where the Ritz values
                         show it isolated by gap (Kato-Temple)
    trace                Hutchinson or Hutch++ with an adaptive sketch (:mod:`landscape.curvature.trace`)
    density              stochastic Lanczos quadrature (Lin et al. 2016; Ghorbani et al.
                         2019): phi(t) = 1/n sum_i delta(t - lambda_i), estimated by the
                         mean over runs of sum_j w_j N(t; theta_j, sigma^2), theta_j the
                         Ritz values of m steps from a unit start v, w_j = (e_1^T s_j)^2
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from landscape.config import LANCZOS_STARTS, DensityConfig
from landscape.curvature.hvp import Batch, Block, HessianOperator, hessian_operator, problem
from landscape.curvature.lanczos import BLOCK, BOUNDS, basis_bytes, lanczos, ritz
from landscape.curvature.preconditioned import PreconditionedOperator, Preconditioner, inverse_sqrt
from landscape.curvature.trace import TRACE_METHODS, TraceResult, hessian_trace
from landscape.measure.points import LossFn, Reduce
from landscape.state import flatten

__all__ = [
    "BOUNDS",
    "STARTS",
    "TRACE_METHODS",
    "WHICH",
    "DensityResult",
    "EigResult",
    "TraceResult",
    "available_memory",
    "check_lanczos_memory",
    "hessian_density",
    "hessian_eigs",
    "hessian_trace",
    "products_that_fit",
]

WHICH = ("largest", "magnitude")
STARTS = LANCZOS_STARTS  # or a vector


@dataclass(frozen=True)
class EigResult:
    """Extreme eigenvalues of H from :func:`hessian_eigs`.

    Each eigenvalue lies within its residual of an eigenvalue of H (a certificate),
    and within its error bound when the Ritz values' gap estimate holds
    (:mod:`landscape.curvature.lanczos`); ``converged`` says whether every error bound met
    ``tol`` (relative) after at least ``MIN_PRODUCTS`` products, never more. A
    non-finite Hessian-vector product (a NaN weight, an overflow) gives NaN values,
    residuals and bound, and ``converged`` False.
    """

    eigenvalues: torch.Tensor  # (k,) float64, largest first (algebraically or in magnitude)
    residuals: torch.Tensor  # (k,) ||H y - theta y|| of the unit Ritz vectors y
    hvps: int  # products with H (each one backward per batch)
    converged: bool
    error_bound: float  # the largest of the k error bounds (min(r, r^2 / gap), or r)
    eigenvectors: list[dict[str, torch.Tensor]] | None  # unit Ritz vectors by parameter name

    @property
    def finite(self) -> bool:
        """False where a Hessian-vector product was not finite: then the values are NaN."""
        return bool(torch.isfinite(self.eigenvalues).all()) and math.isfinite(self.error_bound)


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

    @property
    def finite(self) -> bool:
        """False where a Hessian-vector product was not finite: then everything is NaN."""
        return bool(torch.isfinite(self.density).all())


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
    preconditioner: Preconditioner | None = None,
) -> EigResult:
    """The k extreme eigenvalues of H by Lanczos with full reorthogonalization.

    Cost: one forward and one graph-keeping backward per batch, then one Hessian-vector
    product (one backward through the gradient graph, per batch) per Lanczos step; the
    gradient graphs stay in memory throughout, and the Lanczos basis grows by blocks
    of 16 n-vectors as the products are taken (:func:`check_lanczos_memory`). It
    stops once every wanted Ritz value theta has a residual r = ||H y - theta y|| <=
    tol * |theta| (or r at rounding level), after at least ``MIN_PRODUCTS`` = 10
    products (or n), or after ``max_hvps`` products (or n, where the Krylov space is
    everything): r certifies that *an* eigenvalue of H lies within r of theta. With
    ``bound="gap"`` it stops on min(r, r^2 / gap) instead, the gap estimated from
    the other Ritz values (:mod:`landscape.curvature.lanczos`).

    That the largest value is lambda_max, and not an eigenvalue below it, is a
    probability over the start vector, never a certificate: every start is a
    Gaussian from ``generator`` or one mixed with such a Gaussian, and after m
    products (Kuczynski-Wozniakowski, for H - lambda_min I; :mod:`landscape.curvature.lanczos`)
    P[lambda_max - theta > eps (lambda_max - lambda_min)] <= 3.3 sqrt(n)
    exp(-sqrt(eps) (2m - 1)). At a failure probability of 1 % that is eps = 0.43 after
    10 products on 579,098 weights, 0.044 after 30, 0.0039 after 100
    (:func:`landscape.curvature.lanczos.random_start_epsilon`): the few-product regime carries
    no such guarantee. The 10-product minimum keeps a start that already is an
    eigenvector (a warm start after the top two eigenvalues swapped) from certifying
    it after one product, nothing more. By default Lanczos starts from the gradient
    mixed with a Gaussian; the gradient lies mostly in the top eigenspace
    (reports/benchmarks.md has the products each start takes).
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
            fooled; on a small BN network, over 40 seeds, both BN modes, both
            starts and tol 1e-2 to 1e-5, 0 of 480 claims with k = 1 and 12 of 480
            with k = 3 were beyond ``tol`` under the 10-product minimum (8 and 13
            before it), where ``"residual"`` made none: reports/benchmarks.md).
            The error bound is never reported below the rounding floor.
        start: ``"gradient"`` (the batch's gradient; it lies mostly in the top
            eigenspace), ``"random"`` (Gaussian), or a vector (flat or by parameter
            name, e.g. the eigenvector of a nearby point). A vector v (the gradient
            too) starts as (v/||v|| + z/||z||)/sqrt(2), z Gaussian: even a start
            that is an eigenvector of H keeps every eigenvector's component.
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
        preconditioner: A diagonal P: the eigenvalues are then those of P^{-1} H, by
            Lanczos on the symmetric P^{-1/2} H P^{-1/2} (same eigenvalues, one product
            with H each; :mod:`landscape.curvature.preconditioned`). The gradient start
            becomes P^{-1/2} g; the eigenvectors returned (and a vector start) are the
            symmetric operator's, u, P^{-1/2} u being one of P^{-1} H; the residuals
            and ``tol`` are its too. A ``torch.optim.Adam``/``AdamW`` is read as its state stands
            (never changed): P = (1 - beta1^t) diag(sqrt(v_t / (1 - beta2^t)) + eps), the
            preconditioner of its last step (Cohen et al. 2022's, who show lambda_max(P^{-1} H)
            equilibrates at (2 + 2 beta1) / ((1 - beta1) eta)); or diag(P) by parameter name.

    Returns:
        The :class:`EigResult`: NaN values and ``converged`` False where a
        Hessian-vector product was not finite.

    Raises:
        ValueError: Unknown ``which``/``bound``/``bn_mode``/block, no trainable (selected)
            parameters, k outside [1, n), ``max_hvps < k``, ``tol <= 0``, bad batches,
            or ``reduce`` without ``generator``; a preconditioner that is not an
            Adam/AdamW or a dict, an optimizer with no state yet (before its first
            step) or none for a parameter, or an entry missing, misshapen, not
            positive or not finite.
    """
    if which not in WHICH:
        raise ValueError(f"unknown which {which!r}; choose from {', '.join(WHICH)}")
    if isinstance(start, str) and start not in STARTS:
        raise ValueError(f"unknown start {start!r}; choose from {', '.join(STARTS)}, or pass a vector")
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; choose from {', '.join(BOUNDS)}")
    if not tol > 0:
        raise ValueError("tol must be positive")
    spec = problem(model, inputs, targets, bn_mode, block, batches, max_batches, reduce, generator)
    scales = None if preconditioner is None else inverse_sqrt(preconditioner, spec)
    if not 1 <= k < spec.n:
        raise ValueError(f"k must be at least 1 and smaller than the number of parameters ({spec.n}), got {k}")
    if max_hvps < k:
        raise ValueError(f"max_hvps ({max_hvps}) must be at least k ({k})")

    def stop(krylov) -> bool:
        return len(krylov.alphas) >= k and ritz(krylov, k, which, tol, bound).converged

    with hessian_operator(model, loss_fn, spec) as op:
        op = op if scales is None else PreconditionedOperator(op, scales)
        krylov = lanczos(
            op,
            _start_vector(op, start, generator),
            min(max_hvps, op.n),
            stop,
            restart=lambda: op.random("gaussian", generator),
        )
        pairs = ritz(krylov, k, which, tol, bound)
        vectors = None
        if return_eigenvectors:
            coefficients = pairs.coefficients.to(krylov.basis.dtype)  # (m, k)
            vectors = [op.named(krylov.basis.combine(c).detach()) for c in coefficients.T]
        hvps = op.hvps
    return EigResult(
        eigenvalues=pairs.values,
        residuals=pairs.residuals,
        hvps=hvps,
        converged=pairs.converged,
        error_bound=float(pairs.error_bounds.max()),
        eigenvectors=vectors,
    )


def _start_vector(op: HessianOperator, start, generator: torch.Generator | None) -> torch.Tensor:
    """Lanczos's start: a Gaussian z ("random"), or a vector v mixed with it,
    (v/||v|| + z/||z||)/sqrt(2): the gradient ("gradient": it lies mostly in the top
    eigenspace, Gur-Ari et al. 2018) or the given vector (flat, or by parameter name,
    e.g. an eigenvector of a nearby point). The mix keeps the Kuczynski-Wozniakowski
    bound of a random start with its constant doubled (:mod:`landscape.curvature.lanczos`):
    no eigenvector is missed because v was orthogonal to it. A v that is zero or not
    finite leaves z alone."""
    z = op.random("gaussian", generator)
    if start == "random":
        return z
    if start == "gradient":
        guide = op.gradient()
    else:
        if isinstance(start, dict) and (missing := [name for name in op.names if name not in start]):
            raise ValueError(f"start has no values for {missing[0]!r}")
        guide = flatten([start[name] for name in op.names]) if isinstance(start, dict) else start.reshape(-1)
        if guide.numel() != op.n:
            raise ValueError(f"start has {guide.numel()} values, the Hessian's size is {op.n}")
        guide = guide.to(device=op.device, dtype=op.dtype)
    norm = torch.linalg.vector_norm(guide)
    if not (norm > 0 and torch.isfinite(norm)):
        return z
    return (guide / norm + z / torch.linalg.vector_norm(z)) / math.sqrt(2)


def available_memory(device: torch.device | str) -> int | None:
    """Bytes a new allocation on ``device`` can take: CUDA's free memory
    (``torch.cuda.mem_get_info``); on the CPU the smaller of MemAvailable in
    /proc/meminfo (else the free pages of ``os.sysconf``) and the room left under a
    cgroup v2 memory limit. None where unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            limit = f.read().strip()
            if limit != "max":
                found.append(max(int(limit) - int(g.read()), 0))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def products_that_fit(n: int, dtype: torch.dtype, free: int) -> int:
    """The most Lanczos products whose basis (whole blocks of n-vectors) fits ``free`` bytes."""
    return free // (n * torch.empty((), dtype=dtype).element_size()) // BLOCK * BLOCK


def check_lanczos_memory(
    n: int, max_hvps: int, dtype: torch.dtype, device: torch.device | str, option: str = "--max-hvps"
) -> int:
    """The most memory a Lanczos basis of ``max_hvps`` steps over n parameters takes
    (:func:`landscape.curvature.lanczos.basis_bytes`), checked against :func:`available_memory`.

    Returns:
        The basis's worst case in bytes.

    Raises:
        ValueError: It cannot fit the device (one line, naming ``option`` as the way out).
    """
    need = basis_bytes(n, max_hvps, dtype)
    free = available_memory(device)
    if free is not None and need > free:
        fit, name = products_that_fit(n, dtype, free), str(dtype).removeprefix("torch.")
        raise ValueError(
            f"the Lanczos basis of {max_hvps} products on {n:,} parameters ({name}) needs up to "
            f"{need / 2**30:.3g} GiB and {torch.device(device)} has {free / 2**30:.3g} GiB "
            f"available: lower {option} (at most {fit} fit)"
        )
    return need


def hessian_density(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    *,
    runs: int = DensityConfig.runs,
    steps: int = DensityConfig.steps,
    grid_size: int = DensityConfig.grid_size,
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
    estimates tr H / n. Cost: ``runs * min(steps, n)`` Hessian-vector products. A
    non-finite product ends the runs: the grid, density, mean and that run's nodes
    and weights are then NaN (``finite`` False).

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
    spec = problem(model, inputs, targets, bn_mode, block, batches, max_batches)
    nodes, weights = [], []
    with hessian_operator(model, loss_fn, spec) as op:
        for _ in range(runs):
            krylov = lanczos(op, op.random("rademacher", generator), min(steps, op.n))
            theta, s = krylov.ritz()
            nodes.append(theta)
            weights.append(s[0] ** 2)  # (e_1^T s_j)^2: the start vector's weight on each Ritz vector
            if not krylov.finite:
                break
        hvps = op.hvps
    if not krylov.finite:
        nan = torch.full((grid_size,), math.nan, dtype=torch.float64)
        return DensityResult(grid=nan, density=nan.clone(), nodes=nodes, weights=weights, hvps=hvps)
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
