"""``train(config)``: one run from its :class:`~landscape.config.RunConfig` into a
run directory: the model, data, optimizer and measurement hooks the config asks for
(:mod:`landscape.runner.assembly`), the loop (:mod:`landscape.training.loop`), the
store (mirrored to TensorBoard when asked), and resume from the last checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape import distributed
from landscape.config import RunConfig
from landscape.data import load_data
from landscape.integrations.tensorboard import TensorBoardMirror, summary_writer_class
from landscape.runner.assembly import (
    build_optimizer,
    build_run_model,
    config_hooks,
    default_run_dir,
    environment,
    fit_vocabulary,
)
from landscape.runs import RunStore
from landscape.training import processes
from landscape.training.checkpoint import load_checkpoint
from landscape.training.hooks import Hook
from landscape.training.loop import Loop, Progress, TrainResult
from landscape.training.syncbn import convert_sync_batchnorm

log = logging.getLogger(__name__)


def train(
    config: RunConfig | None = None,
    *,
    run_dir: str | Path | None = None,
    hooks: Sequence[Hook] = (),
    resume: bool = False,
    progress: Progress | None = None,
    init: Callable[[nn.Module], None] | None = None,
    extra_config: dict[str, Any] | None = None,
    tensorboard: str | Path | None = None,
) -> TrainResult:
    """Train one run into ``run_dir`` (a new directory, or an existing run with ``resume``).

    Args:
        config: the run; with ``resume`` it is read from ``run_dir/config.json``.
        run_dir: the run directory (default ``runs/<model>-<norm>-<time>``).
        hooks: called at their events, after those the config asks for
            (:func:`config_hooks`); their metrics are recorded.
        resume: continue the run in ``run_dir`` from its last checkpoint.
        progress: ``progress(step, total, postfix)`` after every step.
        init: called on the freshly built model before training (e.g. to copy
            initial weights from another variant); not called on resume.
        extra_config: more keys for config.json (e.g. the experiment's name).
        tensorboard: also write every record to TensorBoard event files in this
            directory as it is recorded (rank 0; :class:`landscape.integrations.tensorboard.TensorBoardMirror`).

    Returns:
        The outcome; a diverged run is a result (status ``diverged``), not an error.

    Raises:
        StoreError, DataError, ValueError, ConfigError: bad input, one-line messages.
    """
    ddp = distributed.world_size() > 1
    main = distributed.is_main()
    if tensorboard is not None and main:
        summary_writer_class()  # a missing tensorboard fails before anything is written
    if resume:
        if run_dir is None:
            raise ValueError("resume needs a run directory")
        with RunStore(run_dir, readonly=not main) as store:
            saved = store.config
        config = RunConfig.from_dict(saved)
    assert config is not None
    device = distributed.resolve_device(config.train.device)
    config = fit_vocabulary(config)  # a text set's vocabulary, as config.json keeps it
    model = build_run_model(config, device)
    if init is not None and not resume:
        init(model)
    if ddp and config.train.sync_bn:
        model = convert_sync_batchnorm(model)
    data = load_data(config.data, device).to(getattr(torch, config.train.dtype))
    for warning in data.warnings:
        if main:
            log.warning(warning)
    optimizer = build_optimizer(model, config)
    loop = Loop(
        config, model, optimizer, data, device, [*config_hooks(config, model), *hooks], progress if main else None
    )
    if resume:
        checkpoint = load_checkpoint(run_dir, map_location=device)  # before anything is written
        store = _open_store(run_dir, main, tensorboard)
        try:
            loop.restore(checkpoint, store)
        except BaseException:
            store.close()
            raise
    else:

        def create() -> Path:
            path = Path(run_dir) if run_dir is not None else default_run_dir(config)
            meta = dict(config.to_dict(), **environment(device), **(extra_config or {}))
            meta["total_steps"] = loop.total
            if ddp:
                meta["distributed"] = {
                    "world_size": distributed.world_size(),
                    "backend": processes.backend_of(device),
                    "sync_bn": config.train.sync_bn,
                }
            RunStore.create(path, meta).close()
            return path

        run_dir = distributed.on_main(create)
        store = _open_store(run_dir, main, tensorboard)
    try:
        return loop.run(store)
    finally:
        store.close()


def _open_store(run_dir: str | Path, main: bool, tensorboard: str | Path | None) -> RunStore:
    """Rank 0's store (mirrored to TensorBoard when asked); the other ranks write nothing."""
    if not main:
        return _NoStore(run_dir)
    store = RunStore(run_dir)
    if tensorboard is None:
        return store
    return TensorBoardMirror(store, tensorboard)


class _NoStore:
    """What ranks other than 0 write to: nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log(self, step: int, metrics: Any) -> None:
        pass

    def log_many(self, records: Any) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass

    def set_status(self, status: str, **info: Any) -> None:
        pass

    def final(self, name: str) -> float | None:
        return None

    def close(self) -> None:
        pass


__all__ = ["TrainResult", "train"]
