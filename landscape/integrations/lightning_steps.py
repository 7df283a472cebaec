"""What a Lightning training step holds, read for
:class:`landscape.integrations.lightning.LandscapeCallback`: the batch's (inputs,
targets), the precision and its gradient scaler, whether the optimizer step will run,
and the hooks' metrics under the logger's names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:  # first: without the optional extra, fail before importing anything heavy
    import lightning.pytorch as pl
except ImportError as e:
    raise ImportError(
        "landscape.integrations.lightning needs Lightning: pip install 'torch-landscape[lightning]'"
    ) from e
import torch
from torch import nn

from landscape.models.noise import NORM_LAYER_TYPES

Batch = Any


# trainer.precision values whose training gradient is that of the full-precision loss
FULL_PRECISION = ("32-true", "64-true", "32", "64")


def split_pair(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The default ``split_batch``: a batch ``(inputs, targets)`` (a tuple or list of two)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(
        "LandscapeCallback: the batch is not (inputs, targets); pass split_batch=fn(batch) -> (inputs, targets)"
    )


def logger_metrics(metrics: Mapping[str, float | Sequence[float]], step_sizes: Sequence[float]) -> dict[str, float]:
    """The hooks' metrics under the logger's names: ``landscape/`` + the name without
    ``probe/``; a per-step-size list gets one key per absolute step size eta
    (``probe/loss`` -> ``landscape/probe_loss_<eta>``, ``probe/grad_diff`` ->
    ``landscape/grad_diff_<eta>``), any other list one key per index (``_<i>``)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        short = name.removeprefix("probe/")
        if isinstance(value, (int, float)):
            out[f"landscape/{short}"] = float(value)
            continue
        values = list(value)
        per_size = name.startswith("probe/") and len(values) == len(step_sizes)
        labels = [f"{s:g}" for s in step_sizes] if per_size else [str(i) for i in range(len(values))]
        base = "probe_loss" if name == "probe/loss" else short
        out.update({f"landscape/{base}_{label}": float(v) for label, v in zip(labels, values)})
    return out


def model_norm(model: nn.Module) -> str:
    """``"bn"`` for a model with a norm layer, else ``"none"``: the report's colour."""
    return "bn" if any(isinstance(m, NORM_LAYER_TYPES) for m in model.modules()) else "none"


def grad_scaler(trainer: pl.Trainer) -> torch.amp.GradScaler | None:
    """The trainer's GradScaler (``16-mixed``), or None when there is none or it is disabled."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def unscales_in_step(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` unscales its gradients inside ``step()`` (fused Adam and
    friends): then the GradScaler leaves ``.grad`` scaled until the step."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


def finite_grads(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every ``.grad`` of ``optimizer`` is finite: after ``unscale_``, the
    GradScaler's test for taking the step."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return not grads or bool(torch.stack([g.isfinite().all() for g in grads]).all())
