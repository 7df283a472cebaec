"""Training hooks: the events the loop exposes, the read-only context it passes,
and schedules that decide at which steps a hook runs.

A hook is any callable ``hook(ctx) -> dict[str, float | list[float]] | None``
with an ``events`` attribute (the :class:`Event` values it wants). It returns
metrics and the loop records them at ``ctx.step``; hooks never print, save or
hold the trainer. Wrap a hook in a schedule with :func:`every`,
:func:`dense_early`, :func:`log_spaced` or :func:`at_steps`.

The measurements' hooks live here too, as thin adapters of the pure functions:
:class:`ProbeHook` (:func:`landscape.probes.probe_gradient`), :class:`ICSHook`
(:func:`landscape.ics.measure_ics`) and :class:`HessianHook`
(:func:`landscape.hessian.hessian_eigs` and :func:`~landscape.hessian.hessian_trace`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from landscape.config import HESSIAN_STARTS, ScheduleConfig
from landscape.hessian import EigResult, TraceResult, hessian_eigs, hessian_trace
from landscape.ics import measure_ics
from landscape.points import Reduce
from landscape.probes import probe_gradient, training_grads

Metrics = Mapping[str, float | Sequence[float]]


class Event(enum.Enum):
    TRAIN_START = "train_start"
    AFTER_BACKWARD = "after_backward"  # .grad holds g = grad L(w_t; B_t); nothing stepped yet
    AFTER_STEP = "after_step"  # the optimizer has produced w_{t+1}
    EPOCH_END = "epoch_end"
    TRAIN_END = "train_end"


@dataclass(frozen=True)
class Context:
    """What a hook may look at. ``step`` is the index t of the training step:
    at AFTER_BACKWARD the model holds w_t and ``batch`` is B_t; at AFTER_STEP it
    holds w_{t+1}. Hooks must leave every object here as they found it."""

    event: Event
    step: int
    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    lr: float
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    loss: torch.Tensor | None = None  # the training loss L(w_t; B_t), a detached 0-d tensor
    epoch: int = 0


class Hook(Protocol):
    events: frozenset[Event]

    def __call__(self, ctx: Context) -> Metrics | None: ...


class Schedule(Protocol):
    def __call__(self, step: int) -> bool: ...


@dataclass(frozen=True)
class EveryN:
    n: int
    offset: int = 0

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("schedule interval must be positive")

    def __call__(self, step: int) -> bool:
        return step >= self.offset and (step - self.offset) % self.n == 0


@dataclass(frozen=True)
class AtSteps:
    steps: frozenset[int]

    def __call__(self, step: int) -> bool:
        return step in self.steps


@dataclass(frozen=True)
class DenseEarly:
    """Every ``dense_every`` steps before ``dense_until``, then every ``every``."""

    every: int
    dense_until: int
    dense_every: int = 1

    @classmethod
    def of(cls, schedule: ScheduleConfig) -> DenseEarly:
        """The schedule a :class:`~landscape.config.ScheduleConfig` describes."""
        return cls(schedule.every, schedule.dense_until, schedule.dense_every)

    def __call__(self, step: int) -> bool:
        if step < self.dense_until:
            return step % self.dense_every == 0
        return step % self.every == 0


def log_spaced_steps(total: int, count: int) -> frozenset[int]:
    """About ``count`` distinct steps in [0, total), log-spaced, step 0 included."""
    if total <= 0 or count <= 0:
        return frozenset()
    exponents = (i / max(count - 1, 1) for i in range(count))
    return frozenset({0} | {int(round(total**e)) - 1 for e in exponents})


@dataclass(frozen=True)
class Scheduled:
    """A hook that runs only at the steps its schedule accepts (TRAIN_START/END always)."""

    schedule: Schedule
    hook: Hook

    @property
    def events(self) -> frozenset[Event]:
        return self.hook.events

    def __call__(self, ctx: Context) -> Metrics | None:
        if ctx.event in (Event.TRAIN_START, Event.TRAIN_END, Event.EPOCH_END) or self.schedule(ctx.step):
            return self.hook(ctx)
        return None


def every(n: int, hook: Hook) -> Scheduled:
    return Scheduled(EveryN(n), hook)


def at_steps(steps: Iterable[int], hook: Hook) -> Scheduled:
    return Scheduled(AtSteps(frozenset(steps)), hook)


def dense_early(every_n: int, dense_until: int, dense_every: int, hook: Hook) -> Scheduled:
    return Scheduled(DenseEarly(every_n, dense_until, dense_every), hook)


def log_spaced(total: int, count: int, hook: Hook) -> Scheduled:
    return Scheduled(AtSteps(log_spaced_steps(total, count)), hook)


@dataclass(frozen=True)
class FunctionHook:
    """Adapts a plain function ``fn(ctx) -> metrics`` into a hook for ``events``."""

    fn: Callable[[Context], Metrics | None]
    events: frozenset[Event]

    def __call__(self, ctx: Context) -> Metrics | None:
        return self.fn(ctx)


def hook(*events: Event) -> Callable[[Callable[[Context], Any]], FunctionHook]:
    """Decorator: ``@hook(Event.AFTER_BACKWARD)`` turns a function into a hook."""

    def wrap(fn: Callable[[Context], Any]) -> FunctionHook:
        return FunctionHook(fn, frozenset(events))

    return wrap


@dataclass(frozen=True)
class ProbeHook:
    """Runs :func:`probe_gradient` at ``AFTER_BACKWARD`` on the training batch, reusing
    the training gradient (``.grad``) and loss, so a probe costs K passes.

    Schedule it with ``landscape.hooks.every(100, ProbeHook(...))`` and friends.
    Random directions come from a generator seeded with ``seed + step``. With
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
        if self.direction != "gradient":
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
        )
        return result.metrics()


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
        result = measure_ics(ctx.model, ctx.loss_fn, inputs, targets, lr=self.lr, optimizer=optimizer,
                             reduce=self.reduce)
        # Keyed by forward position (#1 = first conv/linear), not module name: inserting
        # BN layers renames VGG's modules, and runs with and without BN must line up.
        return {
            f"ics/{key}/#{position}": value
            for position, values in enumerate(result.values(), start=1)
            for key, value in values.items()
        }


@dataclass(frozen=True)
class HessianHook:
    """Top Hessian eigenvalues (and optionally tr H) of the training batch's loss at
    ``AFTER_BACKWARD`` (model at w_t, batch B_t), by :func:`hessian_eigs` and
    :func:`hessian_trace`: exact Hessian-vector products on working copies, so the
    training run is bit-identical with and without it. Random vectors come from a
    generator seeded with ``seed + step`` (the same on every rank).

    Args:
        k: How many of the largest eigenvalues.
        trace: Also estimate tr H (Hutch++).
        bn_mode: ``"train"`` (batch statistics) or ``"eval"`` (running statistics).
        tol: Relative tolerance on the Lanczos residuals.
        max_hvps: At most this many Hessian-vector products for the eigenvalues (and
            as many for the trace).
        start: Lanczos's start: ``"gradient"`` (the batch's gradient), ``"random"``, or
            ``"warm"``: the previous measurement's top eigenvector (the gradient the
            first time); a vector start is mixed half and half with a Gaussian,
            (v/|v| + z/|z|)/sqrt(2) (:func:`landscape.hessian.hessian_eigs`), so that a
            swap of the top eigenvalues between measurements cannot pin it to the second.
        seed: Base seed of the random vectors.
        reduce: Under DDP, averages every product over the ranks: H of the global batch.

    Returns metrics ``hessian/lambda_max``, ``hessian/residual`` (the largest Ritz
    residual: an error bound), ``hessian/hvps``, ``hessian/converged`` (0 or 1),
    ``hessian/eigs`` (the k values, largest first, when k > 1), and with ``trace``
    ``hessian/trace`` and ``hessian/trace_stderr``.

    A Hessian-vector product that is not finite (a diverging run: weights or a loss
    that overflow) records NaN values and ``hessian/converged`` 0, skips the trace,
    keeps the warm start of the last finite measurement, and leaves the run to end
    as it would without the hook. Under DDP the products are all-reduced before
    Lanczos reads them, so every rank sees the same numbers and takes this decision
    alike: no rank skips a collective another waits in.
    """

    k: int = 1
    trace: bool = False
    bn_mode: str = "train"
    tol: float = 1e-3
    max_hvps: int = 20
    start: str = "gradient"
    seed: int = 0
    reduce: Reduce | None = None  # set under DDP
    events: ClassVar[frozenset[Event]] = frozenset({Event.AFTER_BACKWARD})
    _previous: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # "warm": the last eigenvector

    def __post_init__(self) -> None:
        if self.start not in HESSIAN_STARTS:
            raise ValueError(f"unknown start {self.start!r}; choose from {', '.join(HESSIAN_STARTS)}")

    def __call__(self, ctx: Context) -> Metrics | None:
        if ctx.event is not Event.AFTER_BACKWARD or ctx.batch is None:
            return None
        inputs, targets = ctx.batch
        device = next(ctx.model.parameters()).device
        common = dict(bn_mode=self.bn_mode, reduce=self.reduce,
                      generator=torch.Generator(device=device).manual_seed(self.seed + ctx.step))
        warm = self.start == "warm"
        start = self._previous.get("vector", "gradient") if warm else self.start
        try:
            eigs = hessian_eigs(ctx.model, ctx.loss_fn, inputs, targets, k=self.k, tol=self.tol,
                                max_hvps=self.max_hvps, start=start, return_eigenvectors=warm, **common)
        except torch.linalg.LinAlgError:  # eigh of a tridiagonal T holding NaN, where the library raises
            return nonfinite_hessian_metrics(self.k, self.trace)
        if not eigs.finite:
            return nonfinite_hessian_metrics(self.k, self.trace, eigs.hvps)
        if warm:
            self._previous["vector"] = eigs.eigenvectors[0]
        trace = hessian_trace(ctx.model, ctx.loss_fn, inputs, targets, max_hvps=self.max_hvps,
                              **common) if self.trace else None
        return hessian_metrics(eigs, trace)


def nonfinite_hessian_metrics(k: int, trace: bool, hvps: int = 0) -> dict[str, float | list[float]]:
    """The ``hessian/*`` metrics of :class:`HessianHook` where a product was not finite:
    NaN values, ``hessian/converged`` 0."""
    metrics: dict[str, float | list[float]] = {
        "hessian/lambda_max": math.nan, "hessian/residual": math.nan,
        "hessian/hvps": float(hvps), "hessian/converged": 0.0,
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
        "hessian/lambda_max": values[0], "hessian/residual": eigs.error_bound,
        "hessian/hvps": float(eigs.hvps), "hessian/converged": float(eigs.converged),
    }
    if len(values) > 1:
        metrics["hessian/eigs"] = values
    if trace is not None:
        metrics.update({"hessian/trace": trace.trace, "hessian/trace_stderr": trace.stderr})
    return metrics
