"""The Hessian of a model's loss as an operator on flat vectors, shared by
:mod:`landscape.curvature.hessian` and :mod:`landscape.curvature.trace`.

H = nabla^2_w L(w; B) for the trainable parameters w (or a block of them) and a
mini-batch B; over several batches, the mean of the per-batch Hessians. In
``bn_mode="train"`` the norm layers use batch statistics (the objective SGD
optimises, whose smoothness Santurkar et al. 2018 study), in ``"eval"`` their
running statistics (the layer, group and RMS norms keep none: the same H in both).
H is never formed: it is applied by double backward (Pearlmutter 1994),
H v = grad_w (grad_w L . v), on a gradient graph built once per batch.

Over several processes, each holding one equal shard B_r of a global batch B (and a
mean loss, or one scaled by :func:`landscape.data.objective`'s ``shards``), the
Hessian of the global batch's loss is the mean of the ranks' Hessians,
H v = (1/N) sum_r H_r v, so a ``reduce`` callable (e.g.
:func:`landscape.distributed.all_reduce_mean`) averages every product over the
ranks. Every rank then holds the same products and takes the same steps, provided
all draw the same random vectors: ``reduce`` needs a ``generator`` seeded alike on
every rank.

The model is evaluated as the gradient-direction probe evaluates it
(:mod:`landscape.measure.probes`): on a :class:`landscape.state.Workspace` of working
parameters and cloned buffers, with the norm layers in ``bn_mode``, inside
:func:`landscape.state.fork_rng`. Parameters, buffers, ``.grad`` fields,
``requires_grad`` and training flags and every RNG are bit-identical afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from landscape.config import BN_MODES
from landscape.measure.points import LossFn, Reduce
from landscape.measure.probes import norm_layers_mode
from landscape.state import Workspace, flatten, fork_rng, rng_sources, trainable_params

Block = str | Callable[[str, nn.Parameter], bool]
Batch = tuple[torch.Tensor, torch.Tensor]


class HessianOperator:
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
class Problem:
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


def problem(
    model: nn.Module,
    inputs: torch.Tensor | None,
    targets: torch.Tensor | None,
    bn_mode: str,
    block: Block | None,
    batches: Iterable[Batch] | None,
    max_batches: int | None,
    reduce: Reduce | None = None,
    generator: torch.Generator | None = None,
) -> Problem:
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
        return Problem(modules, params, names, [(inputs, targets)], bn_mode, reduce)
    if inputs is not None or targets is not None:
        raise ValueError("pass inputs and targets, or batches, not both")
    if max_batches is not None and max_batches < 1:
        raise ValueError("max_batches must be at least 1")
    chosen = [(x, y) for x, y in itertools.islice(batches, max_batches)]
    if not chosen:
        raise ValueError("batches is empty")
    return Problem(modules, params, names, chosen, bn_mode, reduce)


@contextlib.contextmanager
def hessian_operator(model: nn.Module, loss_fn: LossFn, problem: Problem) -> Iterator[HessianOperator]:
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
        yield HessianOperator(problem.names, leaves, graphs, problem.reduce)
