"""Loss and gradient at points w - eta d of the parameter space, evaluated in the model
itself: the machinery of the gradient-direction probe (:mod:`landscape.measure.probes`),
for any measurement that evaluates the model away from its weights.

The points are written into one working set of parameters and buffers installed in
the modules (:class:`landscape.state.Workspace`), so a point costs one forward and
backward and the real tensors are never written; every point starts from the real
buffers and from the same random draw (``rewind``). Over several processes a
``reduce`` callable averages [loss, *grads] over the ranks after every evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from landscape.state import Workspace, cloned_buffers, tie_weights

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Reduce = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def functional_loss(
    model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor, tied: bool
) -> Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], torch.Tensor]:
    """(params, buffers) -> loss_fn(model(inputs), targets) with those tensors swapped in
    (``torch.func.functional_call``): the function ``vmap`` maps over stacked points."""

    def loss_at(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_fn(functional_call(model, (params, buffers), (inputs,), tie_weights=tied), targets)

    return loss_at


def stacked_clones(buffers: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """k clones of every buffer stacked on a new dim 0: train-mode BN updates its running
    statistics in place, which under vmap only works on batched tensors, so every
    point writes into a throwaway copy of its own."""
    return {name: b.unsqueeze(0).expand(k, *b.shape).clone() for name, b in buffers.items()}


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.vdot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b)]).sum()


class PointEvaluator:
    """Loss and gradient at points w - eta d of the parameter space, evaluated in the
    model itself with its working tensors (see :class:`Workspace`); every point starts
    from the real buffers and from the same random draw."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        workspace: Workspace,
        names: list[str],
        rewind: Callable[[], None],
        reduce: Reduce | None = None,
    ) -> None:
        self.model, self.loss_fn, self.inputs, self.targets = model, loss_fn, inputs, targets
        self.space, self.names, self.rewind, self.reduce = workspace, names, rewind, reduce
        self.leaves = workspace.leaves
        self.d: list[torch.Tensor] = []
        self.d_flat: torch.Tensor | None = None

    def set_direction(self, d: list[torch.Tensor], d_flat: torch.Tensor | None) -> None:
        self.d, self.d_flat = d, d_flat

    def loss_at(self, step_size: float) -> torch.Tensor:
        """L(w - eta d), forward only (the caller holds ``torch.no_grad``); at eta = 0
        the working parameters are a copy of w, so this is L(w) exactly."""
        return self._forward(step_size)

    def _forward(self, step_size: float) -> torch.Tensor:
        self.space.move_to(self.d, self.d_flat, step_size)
        self.rewind()
        return self.loss_fn(self.model(self.inputs), self.targets)

    def _zeros(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        return [torch.zeros_like(t) if gr is None else gr for t, gr in zip(self.leaves, grads)]

    def _reduced(self, loss: torch.Tensor, grads: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.reduce is None:
            return loss, grads
        loss, *grads = self.reduce([loss, *grads])
        return loss, grads

    def loss(self) -> torch.Tensor:
        """L(w)."""
        with torch.no_grad():
            loss = self._forward(0.0).detach()
        return loss if self.reduce is None else self.reduce([loss])[0]

    def loss_and_grad(self, step_size: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """L(w - eta d) and its gradient."""
        with torch.enable_grad():
            loss = self._forward(step_size)
            grads = torch.autograd.grad(loss, self.leaves, allow_unused=True)
        return self._reduced(loss.detach(), self._zeros(grads))

    def with_curvature(self, g: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """L(w), its gradient and g^T H g / ||g||^2 by double backward (g: the given
        gradient, or this one when None; with ``reduce`` g must be given: g^T H_r g is
        averaged over the ranks, which is g^T H g for the global g)."""
        with torch.enable_grad():
            loss = self._forward(0.0)
            grads = self._zeros(torch.autograd.grad(loss, self.leaves, allow_unused=True, create_graph=True))
            g = [gr.detach() for gr in grads] if g is None else g
            gdot = _dot(grads, g)
            if gdot.requires_grad:
                hg = self._zeros(torch.autograd.grad(gdot, self.leaves, allow_unused=True))
                ghg = _dot(hg, g).detach()
            else:  # the gradient does not depend on w: H = 0
                ghg = None
        loss, grads = loss.detach(), [gr.detach() for gr in grads]
        if self.reduce is not None:  # H = 0 on one shard means H = 0 on all: same model
            loss, *rest = self.reduce([loss, *([] if ghg is None else [ghg.reshape(1)]), *grads])
            ghg, grads = (None, rest) if ghg is None else (rest[0].reshape(()), rest[1:])
        curvature = torch.zeros_like(gdot.detach()) if ghg is None else ghg / _dot(g, g)
        return loss, grads, curvature

    def points_by_loop(self, step_sizes: Sequence[float]) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        for step_size in step_sizes:
            yield self.loss_and_grad(step_size)

    def points_by_vmap(
        self, step_sizes: Sequence[float], chunk_size: int
    ) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        # Train-mode BN updates its running stats in place; under vmap that only works on
        # batched buffers, so every evaluation point gets its own stacked clone (of the
        # real buffers: the working ones are reset to them first).
        self.space.move_to(self.d, self.d_flat, 0.0)
        buffers = cloned_buffers(self.model)
        loss_at = functional_loss(self.model, self.loss_fn, self.inputs, self.targets, tie_weights(self.model))
        compute = vmap(grad_and_value(loss_at), in_dims=(0, 0), randomness="same")
        params = self.space.params
        for start in range(0, len(step_sizes), chunk_size):
            chunk = step_sizes[start : start + chunk_size]
            k = len(chunk)
            points = {}
            for name, p, di in zip(self.names, params, self.d):
                etas = torch.tensor(chunk, dtype=p.dtype, device=p.device).view(-1, *[1] * p.dim())
                points[name] = p.unsqueeze(0) - etas * di.unsqueeze(0)  # (k, *p.shape)
            self.rewind()
            with torch.enable_grad():
                grads, losses = compute(points, stacked_clones(buffers, k))
            for i in range(k):
                yield self._reduced(losses[i].detach(), [grads[n][i].detach() for n in self.names])
