"""Snapshots of everything a measurement must leave untouched, and the helpers
that let measurements run without touching it.

A probe or ICS measurement runs the model through
``torch.func.functional_call(model, (params, buffers), x)`` with detached
parameters and *cloned* buffers, so train-mode BatchNorm updates the clones, not
the real running statistics; random draws happen inside :func:`fork_rng`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def module_generators(model: nn.Module) -> list[torch.Generator]:
    """Every ``torch.Generator`` held as an attribute of a submodule (noisy BN's),
    each once even when layers share it."""
    found: list[torch.Generator] = []
    for module in model.modules():
        for value in vars(module).values():
            # An exact type check: isinstance against torch.Generator goes through a slow
            # metaclass hook, and this runs a few times per probe over every attribute.
            if type(value) is torch.Generator and not any(value is g for g in found):
                found.append(value)
    return found


def _rng_devices(model: nn.Module) -> list[torch.device]:
    devices = {t.device for t in model.parameters()} | {t.device for t in model.buffers()}
    return [d for d in devices if d.type == "cuda"]


@contextlib.contextmanager
def fork_rng(model: nn.Module) -> Iterator[None]:
    """Restore the global CPU/CUDA RNG and the model's own generators on exit."""
    generators = module_generators(model)
    saved = [g.get_state() for g in generators]
    devices = _rng_devices(model)
    with torch.random.fork_rng(devices=devices, enabled=True):
        try:
            yield
        finally:
            for g, s in zip(generators, saved):
                g.set_state(s)


@contextlib.contextmanager
def replay_rng(model: nn.Module) -> Iterator[Any]:
    """Inside :func:`fork_rng`: yields ``rewind()``, which resets every RNG to its
    state at entry, so each evaluation point sees the same random draw."""
    generators = module_generators(model)
    saved_gen = [g.get_state() for g in generators]
    devices = _rng_devices(model)
    cpu = torch.get_rng_state()
    cuda = [torch.cuda.get_rng_state(d) for d in devices]

    def rewind() -> None:
        torch.set_rng_state(cpu)
        for d, s in zip(devices, cuda):
            torch.cuda.set_rng_state(s, d)
        for g, s in zip(generators, saved_gen):
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
    devices = _rng_devices(model)
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
