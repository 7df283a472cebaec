"""Several points of a loss surface per forward pass: ``torch.func.vmap`` over stacked
parameter sets, the batched path of :func:`landscape.curvature.surface.loss_surface`.

N points w + a_i d1 + b_i d2 are stacked along a new leading dim and the model runs
once, under ``vmap``, through ``torch.func.functional_call``: every layer sees N weight
sets (a conv becomes one grouped conv), so a launch-bound model on a GPU evaluates N
points for little more than the price of one, at N times the activation memory.

Each point's parameters are made by the very operations of the loop (a d1, then + b d2,
then w + offset), so they are the loop's bit for bit; the losses equal the loop's up
to float rounding, as the batched kernels sum in another order. Train-mode BatchNorm
updates its running statistics in place, which under vmap only works on batched
tensors, so every point gets its own clone of the real buffers (what the loop's
working buffers hold before each point), thrown away afterwards: the model is never
written. Every point of a call sees the same random draw (``randomness="same"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import vmap

from landscape.measure.points import LossFn, functional_loss, stacked_clones
from landscape.state import tie_weights


class BatchedPoints:
    """Losses at N grid points per vmapped forward, for one model, its directions and
    one batch at a time."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        directions: list[list[torch.Tensor]],
        per_forward: int,
    ) -> None:
        """
        Args:
            model: The model, its norm layers already in the surface's mode.
            loss_fn: ``loss_fn(output, targets) -> scalar``; vmappable.
            params: w: the trainable parameters by name, detached.
            buffers: The real buffers by name; each point gets a clone.
            directions: d1 (, d2), aligned with ``params``.
            per_forward: Points per vmapped forward (bounds the memory).
        """
        self.model, self.loss_fn, self.params, self.buffers = model, loss_fn, params, buffers
        self.directions, self.per_forward = directions, per_forward
        self.tied = tie_weights(model)

    def losses(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        points: Sequence[tuple[float, ...]],
        rewind: Callable[[], None],
    ) -> torch.Tensor:
        """L(w + sum_k point[k] d_k) for every point, ``per_forward`` points per forward
        (the caller holds ``torch.no_grad``): a (len(points),) tensor in the loss's dtype."""
        chunks = [
            self._chunk(inputs, targets, points[i : i + self.per_forward], rewind)
            for i in range(0, len(points), self.per_forward)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0)

    def _chunk(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        points: Sequence[tuple[float, ...]],
        rewind: Callable[[], None],
    ) -> torch.Tensor:
        w = list(self.params.values())
        n = len(points)
        stacked = {name: p.new_empty((n, *p.shape)) for name, p in self.params.items()}  # (N, *p)
        for j, point in enumerate(points):  # one point at a time: N + 1 copies of w at most
            torch._foreach_copy_([t[j] for t in stacked.values()], _point(w, self.directions, point))
        loss_at = functional_loss(self.model, self.loss_fn, inputs, targets, self.tied)
        rewind()
        return vmap(loss_at, in_dims=(0, 0), randomness="same")(stacked, stacked_clones(self.buffers, n))


def offset(directions: list[list[torch.Tensor]], point: tuple[float, ...]) -> list[torch.Tensor]:
    """sum_k point[k] d_k, per parameter: the loop (``landscape.curvature.surface._loss_at``) and
    the batched points both take w + this, so their weights agree bit for bit."""
    total = torch._foreach_mul(directions[0], point[0])
    for d, c in zip(directions[1:], point[1:]):
        torch._foreach_add_(total, d, alpha=c)
    return total


def _point(w: list[torch.Tensor], directions: list[list[torch.Tensor]], point: tuple[float, ...]) -> list[torch.Tensor]:
    """w + sum_k point[k] d_k."""
    return torch._foreach_add(w, offset(directions, point))
