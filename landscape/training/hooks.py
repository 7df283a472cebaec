"""Training hooks: the events the loop exposes, the read-only context it passes,
and schedules that decide at which steps a hook runs.

A hook is any callable ``hook(ctx) -> dict[str, float | list[float]] | None``
with an ``events`` attribute (the :class:`Event` values it wants). It returns
metrics and the loop records them at ``ctx.step``; hooks never print, save or
hold the trainer. Wrap a hook in a schedule with :func:`every`,
:func:`dense_early`, :func:`log_spaced` or :func:`at_steps`.

The measurements' hooks (:class:`~landscape.runner.adapters.ProbeHook`,
:class:`~landscape.runner.adapters.ICSHook`, :class:`~landscape.runner.adapters.HessianHook`,
:class:`~landscape.runner.adapters.LayerInputDistributions`) are in
:mod:`landscape.runner.adapters`: the loop knows no measurement by name.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from landscape.config import ScheduleConfig

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


def count_steps(schedule: ScheduleConfig, total_steps: int) -> int:
    """How many of ``total_steps`` steps ``schedule`` accepts."""
    accepts = DenseEarly.of(schedule)
    return sum(1 for s in range(total_steps) if accepts(s))


def unscheduled(hook: Hook) -> Hook:
    """The hook a schedule wraps (the hook itself when it is not scheduled)."""
    return hook.hook if isinstance(hook, Scheduled) else hook
