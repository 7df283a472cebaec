"""Snapshots of everything a measurement must leave untouched, and the helpers
that let measurements run without touching it.

A measurement runs the model on working copies of its parameters and *cloned*
buffers (the probe puts them in the modules for its duration; ICS and the
layer-input distributions pass them to ``torch.func.functional_call``), so
train-mode BatchNorm updates the clones, not the real running statistics; random
draws happen inside :func:`fork_rng`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def module_generators(model: nn.Module, modules: list[nn.Module] | None = None) -> list[torch.Generator]:
    """Every ``torch.Generator`` held as an attribute of a submodule (noisy BN's),
    each once even when layers share it. ``modules``: ``list(model.modules())`` when
    the caller has it already."""
    found: list[torch.Generator] = []
    for module in model.modules() if modules is None else modules:
        if type(module).__module__.startswith("torch.nn."):
            continue  # torch's own layers hold no generator; skipping them halves the cost
        for value in vars(module).values():
            # An exact type check: isinstance against torch.Generator goes through a slow
            # metaclass hook, and this runs a few times per probe over every attribute.
            if type(value) is torch.Generator and not any(value is g for g in found):
                found.append(value)
    return found


@dataclass(frozen=True)
class RngSources:
    """What a forward pass of a model may draw from besides the global CPU RNG: its
    modules' own generators and the CUDA devices its tensors live on."""

    generators: list[torch.Generator]
    cuda_devices: list[torch.device]


def rng_sources(
    model: nn.Module, modules: list[nn.Module] | None = None, devices: set[torch.device] | None = None
) -> RngSources:
    """``modules`` and ``devices`` (of every parameter and buffer): when the caller has them."""
    modules = list(model.modules()) if modules is None else modules
    if devices is None:
        devices = {t.device for m in modules for t in [*m._parameters.values(), *m._buffers.values()] if t is not None}
    return RngSources(module_generators(model, modules), [d for d in devices if d.type == "cuda"])


def _sources(model: nn.Module | RngSources) -> RngSources:
    return model if isinstance(model, RngSources) else rng_sources(model)


@contextlib.contextmanager
def fork_rng(model: nn.Module | RngSources) -> Iterator[None]:
    """Restore the global CPU/CUDA RNG and the model's own generators on exit."""
    sources = _sources(model)
    saved = [g.get_state() for g in sources.generators]
    with torch.random.fork_rng(devices=sources.cuda_devices, enabled=True):
        try:
            yield
        finally:
            for g, s in zip(sources.generators, saved):
                g.set_state(s)


@contextlib.contextmanager
def replay_rng(model: nn.Module | RngSources) -> Iterator[Any]:
    """Inside :func:`fork_rng`: yields ``rewind()``, which resets every RNG to its
    state at entry, so each evaluation point sees the same random draw."""
    sources = _sources(model)
    saved_gen = [g.get_state() for g in sources.generators]
    cpu = torch.get_rng_state()
    cuda = [torch.cuda.get_rng_state(d) for d in sources.cuda_devices]

    def rewind() -> None:
        torch.set_rng_state(cpu)
        for d, s in zip(sources.cuda_devices, cuda):
            torch.cuda.set_rng_state(s, d)
        for g, s in zip(sources.generators, saved_gen):
            g.set_state(s)

    yield rewind


def tie_weights(model: nn.Module) -> bool:
    """The ``tie_weights`` argument ``torch.func.functional_call`` needs for ``model``:
    True when a parameter or buffer is held by two distinct modules. A module used
    twice needs no tying, and tying it would break it (torch's restore leaves a plain
    tensor in place of the Parameter), so the two kinds of sharing together are refused.

    Raises:
        ValueError: the model has both kinds of sharing.
    """
    modules = list(model.modules())  # each module once
    held = [id(t) for m in modules for t in [*m._parameters.values(), *m._buffers.values()] if t is not None]
    tied = len(held) != len(set(held))
    if tied and len(list(model.modules(remove_duplicate=False))) != len(modules):
        raise ValueError("models that reuse a module and also share a tensor between modules are not supported")
    return tied


def detached_params(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters by name, detached (share storage, no autograd history)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def cloned_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Buffers by name, cloned, so a functional train-mode forward cannot touch the real ones."""
    return {n: b.clone() for n, b in model.named_buffers()}


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One contiguous 1-D copy of ``tensors`` in order."""
    # torch's C++ flatten (what DDP's and apex's bucketing use): about half the cost of
    # cat over Python-made views, which shows per point on models with many small tensors.
    return _flatten_dense_tensors(list(tensors))


def _set_tensor(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Replace a registered parameter or buffer. A plain dict write is what
    ``nn.Module.__setattr__`` comes down to for a registered name, at a fraction of its
    cost; modules that override ``__setattr__`` (RNNs cache their weights) get it."""
    if type(module).__setattr__ is not nn.Module.__setattr__:
        setattr(module, name, tensor)
    elif name in module._parameters:
        module._parameters[name] = tensor
    else:
        module._buffers[name] = tensor


def has_filters(p: torch.Tensor) -> bool:
    """Whether ``p`` is made of filters (Li et al. 2018): a weight of 2 or more dims
    (conv, linear), each slice along dim 0 one filter. A 1-D or 0-D parameter (a bias,
    a norm layer's scale or shift, a scalar) is not, and filter-normalized directions
    leave it out by default."""
    return p.dim() > 1


def trainable_count(model: nn.Module) -> int:
    """How many numbers the trainable parameters hold (each tensor once): H's size."""
    _, params = trainable_params(model)
    return sum(p.numel() for p in params.values())


def trainable_params(model: nn.Module) -> tuple[list[nn.Module], dict[str, nn.Parameter]]:
    """Every module once, and the trainable parameters by name, as ``named_parameters``
    gives them (each tensor once), from a single walk over the modules."""
    named_modules = list(model.named_modules())
    seen: set[int] = set()
    params: dict[str, nn.Parameter] = {}
    for prefix, module in named_modules:
        for name, p in module._parameters.items():
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            if p.requires_grad:
                params[f"{prefix}.{name}" if prefix else name] = p
    return [m for _, m in named_modules], params


class Workspace:
    """One working set of the trainable parameters (whatever K) and of the buffers,
    put in the model's modules in place of the real tensors for the probe's duration.

    The real tensors are never written: a train-mode forward updates the working
    buffers, the evaluation points are written into the working parameters, and on
    exit every module gets back the very objects it held (same ``.grad``, same
    optimizer-state keys). A tensor shared between modules gets one working copy, so
    tied weights stay tied. The working parameters are views of one flat vector when
    all have one dtype and device: a point w - eta d is then one kernel.
    """

    def __init__(self, modules: list[nn.Module], originals: list[nn.Parameter]) -> None:
        self.params = [p.detach() for p in originals]
        same = len({(p.dtype, p.device) for p in self.params}) == 1
        self.flat_w = flatten(self.params) if same else None
        if self.flat_w is not None:
            self.flat = torch.empty_like(self.flat_w)
            views = list(_unflatten_dense_tensors(self.flat, self.params))
        else:
            views = [torch.empty_like(p) for p in self.params]
        self.leaves = [nn.Parameter(v) for v in views]
        working = {id(p): leaf for p, leaf in zip(originals, self.leaves)}
        self.buffers: list[torch.Tensor] = []  # the real ones, read before every point
        self.work_buffers: list[torch.Tensor] = []
        self.swaps: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
        for module in modules:  # each module once, even when used twice
            for name, t in module._parameters.items():
                if t is not None and id(t) in working:
                    self.swaps.append((module, name, t, working[id(t)]))
            for name, b in module._buffers.items():
                if b is not None:
                    if id(b) not in working:
                        working[id(b)] = b.clone()
                        self.buffers.append(b)
                        self.work_buffers.append(working[id(b)])
                    self.swaps.append((module, name, b, working[id(b)]))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        done = []
        try:
            for module, name, real, work in self.swaps:
                _set_tensor(module, name, work)
                done.append((module, name, real))
            yield
        finally:
            for module, name, real in reversed(done):
                _set_tensor(module, name, real)

    def move_to(self, d: list[torch.Tensor], d_flat: torch.Tensor | None, step_size: float) -> None:
        """Working parameters := w - eta d, working buffers := the real ones."""
        with torch.no_grad():
            if self.flat_w is not None:
                if step_size == 0:
                    self.flat.copy_(self.flat_w)
                else:
                    torch.add(self.flat_w, d_flat, alpha=-step_size, out=self.flat)
            else:
                torch._foreach_copy_(self.leaves, self.params)
                if step_size != 0:
                    torch._foreach_add_(self.leaves, d, alpha=-step_size)
            if self.buffers:
                torch._foreach_copy_(self.work_buffers, self.buffers)


@dataclass
class Snapshot:
    """A bit-exact copy of the state a measurement must not change."""

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    training: dict[str, bool]
    optimizer: dict[str, Any] | None
    cpu_rng: torch.Tensor
    cuda_rng: list[torch.Tensor]
    generators: list[torch.Tensor]


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Snapshot:
    """Copy parameters, buffers, ``.grad`` fields, training flags, optimizer state and RNGs."""
    devices = rng_sources(model).cuda_devices
    return Snapshot(
        params={n: p.detach().clone() for n, p in model.named_parameters()},
        buffers={n: b.clone() for n, b in model.named_buffers()},
        grads={n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        training={n: m.training for n, m in model.named_modules()},
        optimizer=None if optimizer is None else copy.deepcopy(optimizer.state_dict()),
        cpu_rng=torch.get_rng_state(),
        cuda_rng=[torch.cuda.get_rng_state(d) for d in devices],
        generators=[g.get_state() for g in module_generators(model)],
    )


def _same(a: Any, b: Any) -> bool:
    """Bit-exact equality of nested tensors/containers (NaN equals NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
            return False
        if a.is_floating_point() or a.is_complex():
            a, b = a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)  # bits, not values
        return bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """Names of the snapshot fields that differ bit-wise; empty when identical."""
    return [
        f.name
        for f in before.__dataclass_fields__.values()
        if not _same(getattr(before, f.name), getattr(after, f.name))
    ]
