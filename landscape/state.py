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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


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


def detached_params(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters by name, detached (share storage, no autograd history)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def cloned_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Buffers by name, cloned, so a functional train-mode forward cannot touch the real ones."""
    return {n: b.clone() for n, b in model.named_buffers()}


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
