"""A recorded run's network rebuilt at one of its checkpoints, with its loss and its
first training batches: what the after-training measurements (``landscape hessian``,
``landscape surface``) evaluate.

The network is built as :func:`landscape.runner.train.train` builds it on resume
(:func:`landscape.runner.assembly.build_run_model`), then given the checkpoint's weights,
buffers and noise generators. The batches are the global batches of the run's steps
0, 1, ... (:func:`landscape.training.loop.first_batches`: epoch 0's order from the run's seed,
no augmentation), the same at every checkpoint, so measurements along a run compare.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape import distributed
from landscape.config import ConfigError, RunConfig
from landscape.curvature.hvp import Batch
from landscape.data import load_data, objective
from landscape.measure.points import LossFn
from landscape.runner.assembly import build_run_model
from landscape.runs import RunStore, StoreError
from landscape.state import module_generators
from landscape.training.checkpoint import LAST, load_weights
from landscape.training.loop import first_batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunModel:
    """A run's network at one checkpoint, with its loss and its first training batches."""

    config: RunConfig
    model: nn.Module
    loss_fn: LossFn
    batches: list[Batch]
    step: int  # the checkpoint's step: completed training steps


def load_run_model(
    run_dir: str | Path,
    checkpoint: str | int = "last",
    batches: int = 4,
    device: str | torch.device | None = None,
) -> RunModel:
    """Rebuild a run's network at a checkpoint, with the run's first ``batches`` batches.

    Args:
        run_dir: The run directory.
        checkpoint: ``"last"`` (``checkpoints/last.pt``) or the step of a kept checkpoint.
        batches: How many of the run's first training batches.
        device: Where to build it; None: the run's own device.

    Returns:
        The :class:`RunModel`, in the run's dtype.

    Raises:
        StoreError: Not a run, no such checkpoint, or an unreadable or unfitting one
            (one-line messages).
        DataError, ValueError: The data cannot be loaded, or ``batches`` exceeds an epoch.
    """
    config = load_run_config(run_dir)
    device = distributed.resolve_device(config.train.device) if device is None else torch.device(device)
    weights = load_checkpoint_weights(run_dir, checkpoint, device)  # before the data: a run without one fails fast
    model = build_run_model(config, device)
    install_weights(model, weights)
    data = load_data(config.data, device).to(getattr(torch, config.train.dtype))
    for warning in data.warnings:
        log.warning(warning)
    loss_fn = objective(data, config.train.loss_reduction)
    return RunModel(config, model, loss_fn, first_batches(config, data, batches), weights["step"])


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The :class:`RunConfig` saved in ``run_dir/config.json``.

    Raises:
        StoreError: Not a run directory, or a config.json that describes no run.
    """
    with RunStore(run_dir, readonly=True) as store:
        saved = store.config
    try:
        return RunConfig.from_dict(saved)
    except (TypeError, KeyError, ConfigError, AttributeError) as e:
        raise StoreError(f"{run_dir}: config.json does not describe a run ({e})") from None


def load_checkpoint_weights(run_dir: str | Path, checkpoint: str | int, device: torch.device) -> dict[str, Any]:
    """The ``step``, ``model`` state and ``generators`` of checkpoint ``"last"`` or of the
    kept checkpoint at a step (:func:`landscape.training.checkpoint.load_weights`).

    Raises:
        StoreError: No such checkpoint, or it cannot be read.
    """
    if checkpoint == "last":
        if not (Path(run_dir) / LAST).is_file():
            raise StoreError(f"{run_dir}: no checkpoint ({LAST}); the run has not saved one")
        return load_weights(run_dir, map_location=device)
    return load_weights(run_dir, int(checkpoint), map_location=device)


def install_weights(model: nn.Module, weights: dict[str, Any]) -> None:
    """Give ``model`` a checkpoint's weights, buffers and noise generators (``weights``
    as :func:`landscape.training.checkpoint.load_weights` returns them).

    Raises:
        StoreError: The weights do not fit the model.
    """
    try:
        model.load_state_dict(weights["model"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StoreError(f"the checkpoint at step {weights['step']} does not fit the run's model ({first})") from None
    for generator, saved in zip(module_generators(model), weights["generators"]):
        generator.set_state(saved)
