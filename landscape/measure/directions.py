"""The directions a probe steps along (:func:`landscape.measure.probes.probe_gradient`):
the gradient g, a Gaussian scaled to ||g|| ("random"), Li et al.'s filter-normalized
Gaussian ("filter"), or the optimizer's update ("update")

    u = (w_t - w_{t+1}) / lr,

w_{t+1} from a dry run of the optimizer's step on copies of its state
(:func:`landscape.measure.ics.dry_step`), so that w - lr u is the step training takes:
g itself for plain SGD, the momentum buffer's step for heavy-ball and Nesterov, and
Adam's P^{-1} m (with its decoupled weight decay for AdamW).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from landscape.measure.ics import dry_step
from landscape.measure.preconditioner import check_preconditioner
from landscape.state import flatten, has_filters


def norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def gaussian_draw(params: dict[str, torch.Tensor], generator: torch.Generator | None) -> list[torch.Tensor]:
    def draw(p: torch.Tensor) -> torch.Tensor:
        device = p.device if generator is None else generator.device
        return torch.randn(p.shape, generator=generator, device=device, dtype=p.dtype).to(p.device)

    return [draw(p) for p in params.values()]


def make_direction(
    kind: str, params: dict[str, torch.Tensor], g: list[torch.Tensor], draw: list[torch.Tensor] | None
) -> list[torch.Tensor]:
    """d from g and a Gaussian ``draw`` (one tensor per parameter)."""
    if kind == "gradient" or draw is None:
        return g
    if kind == "random":
        scale = norm(g) / norm(draw)  # same length as g, so a step size means the same as along g
        return torch._foreach_mul(draw, scale)
    # "filter" (Li et al. 2018): each filter (slice along dim 0) of d gets the norm of the
    # matching filter of w; 1-D parameters (biases, BN affine) are zeroed, as Li et al. do
    # by default. Not rescaled to ||g||: direction_norm reports its length.
    out = []
    for w, z in zip(params.values(), draw):
        if not has_filters(w):
            out.append(torch.zeros_like(w))
            continue
        dims = tuple(range(1, w.dim()))
        w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
        z_norm = torch.linalg.vector_norm(z, dim=dims, keepdim=True)
        out.append(z * (w_norm / z_norm.clamp_min(torch.finfo(z.dtype).tiny)))
    return out


def update_direction(
    named: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    grads: Mapping[str, torch.Tensor],
    names: list[str],
) -> list[torch.Tensor]:
    """u = (w - w') / lr for the parameters ``names``, w' from a dry run of ``optimizer``'s
    step with ``.grad`` = ``grads`` (by name), lr its first parameter group's: w - lr u is
    the step taken (to rounding; each group's own lr enters through w' alone).

    Args:
        named: every parameter of the model by name: the very tensors ``optimizer`` holds.
        optimizer: the real optimizer; it and its state are untouched.
        grads: the step's gradient by name.
        names: the parameters to return u for, in order.
    """
    lr = float(optimizer.param_groups[0]["lr"])
    if not lr > 0:
        raise ValueError(f"the update direction needs a positive lr, the optimizer has {lr}")
    stepped = dry_step(named, optimizer, grads)
    return [(named[n].detach() - stepped[n]).div_(lr) for n in names]


def inverse_sqrt(preconditioner: Mapping[str, torch.Tensor], params: dict[str, torch.Tensor]) -> torch.Tensor:
    """P^{-1/2} flat over ``params`` from the diagonal of P by name, checked by
    :func:`landscape.measure.preconditioner.check_preconditioner` (one line per defect)."""
    check_preconditioner(preconditioner, params)
    return flatten([preconditioner[n].detach().to(device=p.device, dtype=p.dtype) for n, p in params.items()]).rsqrt()
