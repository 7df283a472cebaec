"""The diagonal preconditioner of Adam and AdamW, read from the optimizer's state.

Adam's step (as torch takes it) is w <- w - eta P_t^{-1} m_t with

    P_t = (1 - beta1^t) diag(sqrt(v_hat_t) + eps),   v_hat_t = v_t / (1 - beta2^t),

m_t and v_t the first and second moments of the gradient (``exp_avg``, ``exp_avg_sq``),
t the parameter's step count. The first moment's bias correction 1 - beta1^t is
folded into P, as Cohen et al. (2022, "Adaptive Gradient Methods at the Edge of
Stability") do, so that the step is eta P^{-1} times the *uncorrected* m_t: their
preconditioned sharpness lambda_max(P^{-1} H) then equilibrates at
(2 + 2 beta1) / ((1 - beta1) eta), 38 / eta at beta1 = 0.9. With ``amsgrad=True``
torch divides by the running maximum of v (``max_exp_avg_sq``), bias-corrected
alike, and so does P here. AdamW's decoupled weight decay does not enter P.

The state is used as it stands: P is the preconditioner of the last step taken
(v_t was updated before that step divided by it). Nothing in the optimizer or the
model is written.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["adam_diagonal", "adam_preconditioner", "check_preconditioner", "unwrap"]

ADAMS = (torch.optim.Adam, torch.optim.AdamW)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` or ``DataParallel`` wrapper (else
    ``model``): parameter names are then the user's, without the ``module.`` prefix."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    if not isinstance(optimizer, ADAMS):
        raise ValueError(
            f"the preconditioner is defined for torch.optim.Adam and AdamW only, not {type(optimizer).__name__}"
        )


def adam_diagonal(
    optimizer: torch.optim.Optimizer, params: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor] | None:
    """The diagonal of P (module docstring) for the given parameters, matched to the
    optimizer's by identity.

    Args:
        optimizer: A ``torch.optim.Adam`` or ``AdamW`` (each parameter group's betas
            and eps, each parameter's own step count and moments).
        params: The parameters wanted, by name (the real ones the optimizer holds,
            not copies).

    Returns:
        diag(P) by name, each of its parameter's shape, in the second moment's dtype
        (float32 at least): a new tensor, computed in float64. A parameter the
        optimizer does not hold, or holds no state for (never stepped: its gradient
        was None at every step so far), is left out. None when the optimizer holds
        no state at all (before its first step).

    Raises:
        ValueError: Another optimizer class, or a complex parameter.
    """
    _check_optimizer(optimizer)
    if not any(optimizer.state.get(p) for group in optimizer.param_groups for p in group["params"]):
        return None
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    diagonal: dict[str, torch.Tensor] = {}
    for name, p in params.items():
        state = optimizer.state.get(p) if id(p) in groups else None
        if not state or "exp_avg_sq" not in state or float(state["step"]) < 1:
            continue
        if p.is_complex():
            raise ValueError(f"the Adam preconditioner of complex parameters is not supported ({name!r})")
        group = groups[id(p)]
        beta1, beta2 = (float(b) for b in group["betas"])
        t = float(state["step"])
        v = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
        v_hat = v.detach().to(torch.float64) / (1 - beta2**t)
        dtype = torch.promote_types(v.dtype, torch.float32)
        diagonal[name] = ((1 - beta1**t) * (v_hat.sqrt() + float(group["eps"]))).to(dtype).view_as(p)
    return diagonal


def adam_preconditioner(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor] | None:
    """diag(P) of an Adam or AdamW optimizer for the model's trainable parameters.

    P = (1 - beta1^t) diag(sqrt(v_t / (1 - beta2^t)) + eps), per parameter group's
    betas and eps and each parameter's step count t (a tensor or a number), v the
    ``max_exp_avg_sq`` under ``amsgrad`` (module docstring). The optimizer's state is
    read as it stands: the preconditioner of the last step taken.

    Args:
        model: The model; a ``DistributedDataParallel`` (or ``DataParallel``) wrapper
            is looked through, so the names are the wrapped module's.
        optimizer: ``torch.optim.Adam`` or ``torch.optim.AdamW`` over (some of) the
            model's parameters.

    Returns:
        diag(P) by parameter name, as ``model.named_parameters()`` names them, for
        every trainable parameter the optimizer holds state for; a trainable
        parameter it does not hold, or holds no state for, is left out (P is not
        defined there: :func:`check_preconditioner` names it where it is needed).
        None before the optimizer's first step (no state at all).

    Raises:
        ValueError: Another optimizer class (one line), or a complex parameter.
    """
    _check_optimizer(optimizer)
    params = {name: p for name, p in unwrap(model).named_parameters() if p.requires_grad}
    return adam_diagonal(optimizer, params)


def check_preconditioner(preconditioner: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> None:
    """Check a diagonal preconditioner given by parameter name.

    Args:
        preconditioner: diag(P) by name; names that are not in ``params`` are ignored.
        params: The parameters P must cover, by name (only their shapes are read).

    Raises:
        ValueError: (one line) a parameter of ``params`` without an entry, an entry
            that is not a real tensor of its parameter's shape, or one with a value
            that is not positive and finite.
    """
    for name, p in params.items():
        if name not in preconditioner:
            raise ValueError(f"the preconditioner has no entry for parameter {name!r}")
        d = preconditioner[name]
        if not isinstance(d, torch.Tensor) or d.is_complex() or d.dtype == torch.bool:
            raise ValueError(f"the preconditioner's entry for {name!r} is not a real tensor")
        if d.shape != p.shape:
            raise ValueError(
                f"the preconditioner's entry for {name!r} has shape {tuple(d.shape)}, the parameter {tuple(p.shape)}"
            )
        if d.numel() and not bool(torch.isfinite(d).all()):
            raise ValueError(f"the preconditioner's entry for {name!r} is not finite everywhere")
        if d.numel() and not bool((d > 0).all()):
            raise ValueError(f"the preconditioner's entry for {name!r} is not positive everywhere")
