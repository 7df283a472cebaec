"""The adapters that put the measurements into a training run: hooks (see
:mod:`landscape.training.hooks`) around the pure functions of :mod:`landscape.measure`
and :mod:`landscape.curvature`.

* :class:`ProbeHook`: :func:`landscape.measure.probes.probe_gradient` on the training
  batch, reusing the training gradient;
* :class:`ICSHook`: :func:`landscape.measure.ics.measure_ics`;
* :class:`HessianHook`: :func:`landscape.curvature.hessian.hessian_eigs` and
  :func:`~landscape.curvature.hessian.hessian_trace`, set by a
  :class:`~landscape.config.HessianConfig`;
* :class:`LayerInputDistributions`: :class:`landscape.measure.distributions.DistributionRecorder`,
  pooled over the processes under DDP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from landscape import distributed
from landscape.config import HessianConfig
from landscape.curvature.hessian import EigResult, TraceResult, hessian_eigs, hessian_trace
from landscape.measure.distributions import PAPER_LAYERS, DistributionRecorder
from landscape.measure.ics import measure_ics
from landscape.measure.points import Reduce
from landscape.measure.preconditioner import ADAMS, adam_preconditioner, unwrap
from landscape.measure.probes import probe_gradient, training_grads
from landscape.training.hooks import Context, Event, Metrics


@dataclass(frozen=True)
class ProbeHook:
    """Runs :func:`probe_gradient` at ``AFTER_BACKWARD`` on the training batch, reusing
    the training gradient (``.grad``) and loss, so a probe costs K passes. Along
    Adam's or AdamW's update it also records ``probe/beta_precond`` (beta in the
    geometry of the optimizer's P, from its state as it stands; from the second step on).

    Schedule it with ``landscape.training.hooks.every(100, ProbeHook(...))`` and friends.
    Random directions come from a generator seeded with ``seed + step``;
    ``direction="update"`` probes along the step the optimizer is about to take (a dry
    run of ``ctx.optimizer`` on copies of its state, from the training gradient). With
    ``bn_mode="eval"`` (on a model with norm layers) or active dropout/noisy layers
    the training gradient is not g of the probe, so the probe recomputes it (K+1 passes).
    ``reuse_grad=False`` makes it recompute g and L(w) always: for training steps
    under autocast, whose gradient is not that of the full-precision loss the probe
    evaluates.
    """

    step_sizes_abs: tuple[float, ...]
    direction: str = "gradient"
    bn_mode: str = "train"
    seed: int = 0
    curvature: bool = True
    method: str = "loop"
    chunk_size: int | None = None  # vmap: evaluation points per call
    reduce: Reduce | None = None  # set under DDP: averages over the ranks' shards
    reuse_grad: bool = True  # False under bf16 autocast

    events: ClassVar[frozenset[Event]] = frozenset({Event.AFTER_BACKWARD})

    def __call__(self, ctx: Context) -> dict[str, float | list[float]] | None:
        if ctx.event is not Event.AFTER_BACKWARD or ctx.batch is None:
            return None
        inputs, targets = ctx.batch
        generator = None
        if self.direction in ("random", "filter"):
            device = next(ctx.model.parameters()).device
            generator = torch.Generator(device=device).manual_seed(self.seed + ctx.step)
        result = probe_gradient(
            ctx.model,
            ctx.loss_fn,
            inputs,
            targets,
            self.step_sizes_abs,
            grad=training_grads(ctx.model) if self.reuse_grad else None,
            base_loss=ctx.loss if self.reuse_grad else None,
            direction=self.direction,
            bn_mode=self.bn_mode,
            generator=generator,
            method=self.method,
            chunk_size=self.chunk_size,
            curvature=self.curvature,
            reduce=self.reduce,
            optimizer=ctx.optimizer if self.direction == "update" else None,
            preconditioner=adam_diagonal_of(ctx) if self.direction == "update" else None,
        )
        return result.metrics()


def adam_diagonal_of(ctx: Context, adam_only: bool = False) -> dict[str, torch.Tensor] | None:
    """diag(P) of the run's Adam or AdamW over every trainable parameter, from its state
    as it stands; None before P covers them all (the first step), and for other
    optimizers (with ``adam_only``: a ValueError for them)."""
    if not adam_only and not isinstance(ctx.optimizer, ADAMS):
        return None
    diagonal = adam_preconditioner(ctx.model, ctx.optimizer)  # refuses other optimizers
    trainable = [n for n, p in unwrap(ctx.model).named_parameters() if p.requires_grad]
    return diagonal if diagonal is not None and all(n in diagonal for n in trainable) else None


@dataclass(frozen=True)
class ICSHook:
    """Training hook measuring ICS at ``AFTER_BACKWARD`` (model at W^t, batch B_t).

    Args:
        lr: None (default) dry-runs ``ctx.optimizer``, so momentum and weight
            decay shape W^{t+1} as in training; a number uses a plain SGD step of
            that size instead.
        reduce: under DDP, averages the gradients over the ranks (see :func:`measure_ics`).

    Returns metrics ``ics/l2/#k``, ``ics/rel_l2/#k``, ``ics/cosine/#k`` and
    ``ics/grad_norm/#k`` for the k-th conv/linear layer in forward order (the
    paper's layer numbering, the same with and without BN).
    """

    lr: float | None = None
    reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None  # set under DDP
    events: ClassVar[frozenset[Event]] = frozenset({Event.AFTER_BACKWARD})

    def __call__(self, ctx: Context) -> Metrics | None:
        if ctx.batch is None:
            return None
        inputs, targets = ctx.batch
        optimizer = ctx.optimizer if self.lr is None else None
        result = measure_ics(
            ctx.model, ctx.loss_fn, inputs, targets, lr=self.lr, optimizer=optimizer, reduce=self.reduce
        )
        # Keyed by forward position (#1 = first conv/linear), not module name: inserting
        # BN layers renames VGG's modules, and runs with and without BN must line up.
        return {
            f"ics/{key}/#{position}": value
            for position, values in enumerate(result.values(), start=1)
            for key, value in values.items()
        }


class HessianHook:
    """Top Hessian eigenvalues (and optionally tr H) of the training batch's loss at
    ``AFTER_BACKWARD`` (model at w_t, batch B_t), by :func:`hessian_eigs` and
    :func:`hessian_trace`: exact Hessian-vector products on working copies, so the
    training run is bit-identical with and without it. Random vectors come from a
    generator seeded with ``seed + step`` (the same on every rank).

    Args:
        config: What to measure (:class:`~landscape.config.HessianConfig`: ``k``,
            ``trace``, ``bn_mode``, ``tol``, ``max_hvps``, ``start``; its schedule is
            the caller's, e.g. ``every(100, HessianHook(config))``). ``start="warm"``
            starts from the previous measurement's top eigenvector (the gradient the
            first time); a vector start is mixed half and half with a Gaussian,
            (v/|v| + z/|z|)/sqrt(2) (:func:`landscape.curvature.hessian.hessian_eigs`), so that a
            swap of the top eigenvalues between measurements cannot pin it to the second.
        seed: Base seed of the random vectors.
        reduce: Under DDP, averages every product over the ranks: H of the global batch.
        **fields: Instead of ``config``: its fields (``HessianHook(k=3, trace=True)``).

    Returns metrics ``hessian/lambda_max``, ``hessian/residual`` (the largest Ritz
    residual: an error bound), ``hessian/hvps``, ``hessian/converged`` (0 or 1),
    ``hessian/eigs`` (the k values, largest first, when k > 1), with ``trace``
    ``hessian/trace`` and ``hessian/trace_stderr``, and with ``preconditioned`` (an
    Adam or AdamW run) Adam's preconditioned sharpness ``hessian/lambda_max_precond``
    (lambda_max(P^-1 H), Cohen et al. 2022; with its ``residual_precond``,
    ``hvps_precond`` and ``converged_precond``), or ``hessian/precond_skipped`` = 1
    before the optimizer's first step, when it has no P. ``hessian/lambda_max`` keeps
    its meaning: the largest eigenvalue of H itself.

    A Hessian-vector product that is not finite (a diverging run: weights or a loss
    that overflow) records NaN values and ``hessian/converged`` 0, skips the trace,
    keeps the warm start of the last finite measurement, and leaves the run to end
    as it would without the hook. Under DDP the products are all-reduced before
    Lanczos reads them, so every rank sees the same numbers and takes this decision
    alike: no rank skips a collective another waits in.
    """

    events: ClassVar[frozenset[Event]] = frozenset({Event.AFTER_BACKWARD})

    def __init__(
        self, config: HessianConfig | None = None, *, seed: int = 0, reduce: Reduce | None = None, **fields: Any
    ) -> None:
        if config is not None and fields:
            raise TypeError("give HessianHook a HessianConfig or its fields, not both")
        self.config = config if config is not None else HessianConfig(**fields)
        self.seed = seed
        self.reduce = reduce
        self._previous: dict[str, Any] = {}  # "warm": the last eigenvector

    def __repr__(self) -> str:
        return f"HessianHook({self.config!r}, seed={self.seed})"

    def __call__(self, ctx: Context) -> Metrics | None:
        if ctx.event is not Event.AFTER_BACKWARD or ctx.batch is None:
            return None
        c = self.config
        inputs, targets = ctx.batch
        device = next(ctx.model.parameters()).device
        common = dict(
            bn_mode=c.bn_mode,
            reduce=self.reduce,
            generator=torch.Generator(device=device).manual_seed(self.seed + ctx.step),
        )
        warm = c.start == "warm"
        start = self._previous.get("vector", "gradient") if warm else c.start
        try:
            eigs = hessian_eigs(
                ctx.model,
                ctx.loss_fn,
                inputs,
                targets,
                k=c.k,
                tol=c.tol,
                max_hvps=c.max_hvps,
                start=start,
                return_eigenvectors=warm,
                **common,
            )
        except torch.linalg.LinAlgError:  # eigh of a tridiagonal T holding NaN, where the library raises
            return nonfinite_hessian_metrics(c.k, c.trace)
        if not eigs.finite:
            return nonfinite_hessian_metrics(c.k, c.trace, eigs.hvps)
        if warm:
            self._previous["vector"] = eigs.eigenvectors[0]
        trace = (
            hessian_trace(ctx.model, ctx.loss_fn, inputs, targets, max_hvps=c.max_hvps, **common) if c.trace else None
        )
        metrics = hessian_metrics(eigs, trace)
        if c.preconditioned:
            metrics.update(self._preconditioned(ctx, common))
        return metrics

    def _preconditioned(self, ctx: Context, common: dict[str, Any]) -> Metrics:
        """lambda_max(P^-1 H), P from Adam's state as it stands, from the gradient start
        (P^{-1/2} g); before the optimizer's first step (no state: no P) the measurement
        is skipped and ``hessian/precond_skipped`` = 1 records why."""
        c = self.config
        diagonal = adam_diagonal_of(ctx, adam_only=True)
        if diagonal is None:
            return {"hessian/precond_skipped": 1.0}
        try:
            eigs = hessian_eigs(
                ctx.model, ctx.loss_fn, *ctx.batch, k=1, tol=c.tol, max_hvps=c.max_hvps, preconditioner=diagonal,
                **common,
            )  # fmt: skip
        except torch.linalg.LinAlgError:
            return {"hessian/lambda_max_precond": math.nan, "hessian/converged_precond": 0.0}
        return {
            "hessian/lambda_max_precond": float(eigs.eigenvalues[0]),
            "hessian/residual_precond": eigs.error_bound,
            "hessian/hvps_precond": float(eigs.hvps),
            "hessian/converged_precond": float(eigs.converged),
        }


def nonfinite_hessian_metrics(k: int, trace: bool, hvps: int = 0) -> dict[str, float | list[float]]:
    """The ``hessian/*`` metrics of :class:`HessianHook` where a product was not finite:
    NaN values, ``hessian/converged`` 0."""
    metrics: dict[str, float | list[float]] = {
        "hessian/lambda_max": math.nan,
        "hessian/residual": math.nan,
        "hessian/hvps": float(hvps),
        "hessian/converged": 0.0,
    }
    if k > 1:
        metrics["hessian/eigs"] = [math.nan] * k
    if trace:
        metrics.update({"hessian/trace": math.nan, "hessian/trace_stderr": math.nan})
    return metrics


def hessian_metrics(eigs: EigResult, trace: TraceResult | None = None) -> dict[str, float | list[float]]:
    """The ``hessian/*`` metrics of :class:`HessianHook` from the results."""
    values = eigs.eigenvalues.tolist()
    metrics: dict[str, float | list[float]] = {
        "hessian/lambda_max": values[0],
        "hessian/residual": eigs.error_bound,
        "hessian/hvps": float(eigs.hvps),
        "hessian/converged": float(eigs.converged),
    }
    if len(values) > 1:
        metrics["hessian/eigs"] = values
    if trace is not None:
        metrics.update({"hessian/trace": trace.trace, "hessian/trace_stderr": trace.stderr})
    return metrics


class LayerInputDistributions(DistributionRecorder):
    """Hook recording layer-input distributions and moments (Fig. 2, 5, 7, 8) at
    ``AFTER_BACKWARD`` on the training batch: a
    :class:`~landscape.measure.distributions.DistributionRecorder` (its arguments but
    the reductions) with

    Args:
        global_batch: under DDP, pool every rank's shard of the batch (histogram
            counts summed, moments over the whole batch, first bin edges from the
            global range): two all-reduces per layer and measurement, the same on
            every rank. Without a process group it changes nothing.
    """

    events = frozenset({Event.AFTER_BACKWARD})

    def __init__(
        self,
        layers: Sequence[int | str] = PAPER_LAYERS,
        channels: int = 5,
        bins: int = 60,
        value_range: tuple[float, float] | None = None,
        margin: float = 0.25,
        seed: int = 0,
        global_batch: bool = False,
    ) -> None:
        super().__init__(
            layers,
            channels,
            bins,
            value_range,
            margin,
            seed,
            sum_all=distributed.all_reduce_sum if global_batch else None,
            max_all=distributed.all_reduce_max if global_batch else None,
        )
        self.global_batch = global_batch

    def __call__(self, ctx: Context) -> Metrics | None:
        if ctx.batch is None:
            return None
        return self.measure(ctx.model, ctx.batch[0])
