"""Lightning callback: the gradient-direction probe (Santurkar et al. 2018, Sec. 3.1),
ICS (Definition 2.1) and Hessian eigenvalues on a LightningModule's own training steps.

At training step t (``trainer.global_step``: optimizer steps done so far) Lightning
calls ``on_before_optimizer_step`` after the backward (and, under a GradScaler, after
``unscale_``) and before gradient clipping and the step, when ``.grad`` holds
g = grad L(w_t; B_t). There the callback runs the hooks that ``landscape train`` runs
at ``Event.AFTER_BACKWARD`` (:class:`~landscape.runner.adapters.ProbeHook`,
:class:`~landscape.runner.adapters.ICSHook`, :class:`~landscape.runner.adapters.HessianHook`) on the
training batch B_t (taken at ``on_train_batch_start``). With ``reuse_grad`` it reuses
g and the training loss (``on_before_backward``'s, divided by the GradScaler's scale
in force at that step), so a probe costs K passes. It leaves the weights, buffers,
``.grad``, optimizer state and every RNG bit-identical: the run is the same with and
without the callback.

Values go to the trainer's loggers at step t (``landscape/probe_loss_<eta>``,
``landscape/grad_diff_<eta>``, ``landscape/beta``, ... with eta the absolute step
size), every probe whatever ``log_every_n_steps`` says; with ``run_dir`` also into a
landscape run store that ``landscape report RUN_DIR`` renders (``train/loss`` every
step: the loss ``training_step`` returned, from ``on_train_batch_end``, never the
scaled one; the ``probe/*``, ``ics/*`` and ``hessian/*`` metrics at their steps).

Mixed precision. Under ``bf16-mixed``/``16-mixed`` the probe recomputes g in full
precision unless ``reuse_grad=True``. A step that the GradScaler skips (a non-finite
gradient after unscaling) is recorded as ``train/skipped`` = 1 (logger:
``landscape/train/skipped``) with its ``train/loss``, and nothing is measured at it
(with the training gradient the probe would run along a non-finite g; and the
optimizer did not step, so ICS's W^{t+1} would not be the next weights); the
measurements due there run at the next step that is not skipped, and are recorded
at that step. Steps never skipped have no ``train/skipped`` entry.

Under DDP every value is the global batch's: the probe's losses and gradients are
all-reduced over the ranks (:func:`landscape.distributed.all_reduce_mean`) and rank 0
alone writes (the gradients are all-reduced before the hook, so every rank decides
a skip alike).

Refused, with a one-line error (at ``fit``, or at the first step where it holds):
- manual optimization: the callback cannot know which gradient a step uses; call
  :func:`landscape.probe_gradient` in your ``training_step`` after ``manual_backward``.
- ``accumulate_grad_batches`` other than 1, checked at every step (a
  ``GradientAccumulationScheduler`` changes it between epochs): the accumulated
  gradient is that of several micro-batches, and with BN each micro-batch is
  normalized by its own statistics, so no single batch's loss is the objective
  that step optimizes.
- under a GradScaler, an optimizer that unscales inside ``step()`` (e.g.
  ``Adam(fused=True)``): its ``.grad`` is still multiplied by the scale when the hook
  runs.
- ICS under gradient clipping (``gradient_clip_val``, or an overridden
  ``configure_gradient_clipping``): clipping runs after the hook, so ICS's dry run of
  the optimizer would take a step that training does not. The probe and the Hessian
  are unaffected: they measure along the gradient g itself, before clipping.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

try:  # first: without the optional extra, fail before importing anything heavy
    import lightning
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.model_helpers import is_overridden
except ImportError as e:
    raise ImportError(
        "landscape.integrations.lightning needs Lightning: pip install 'torch-landscape[lightning]'"
    ) from e
import torch

from landscape import distributed
from landscape.config import BN_MODES
from landscape.integrations.lightning_steps import (
    FULL_PRECISION,
    Batch,
    finite_grads,
    grad_scaler,
    logger_metrics,
    model_norm,
    split_pair,
    unscales_in_step,
)
from landscape.runner.adapters import HessianHook, ICSHook, ProbeHook
from landscape.runner.assembly import environment
from landscape.runs import RunStore, is_run
from landscape.training.hooks import Context, Event, EveryN

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FLUSH_EVERY = 50  # train/loss is written to the store in batches of this many steps


def _positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise ValueError(f"LandscapeCallback: {name} must be a positive integer or None, got {value!r}")


class LandscapeCallback(pl.Callback):
    """Probe the loss landscape along the gradient during ``Trainer.fit``.

    Args:
        run_dir: Also write a landscape run store here (rank 0), for ``landscape report``;
            a new directory, or the existing one when the trainer resumes from a checkpoint.
        probe_every: Probe every N optimizer steps (step 0 included); None: no probe.
        step_sizes: The probe's step sizes eta: multiples of the optimizer's current lr
            (``param_groups[0]["lr"]``), or absolute with ``relative=False``. config.json
            records the lr at the start, so under an lr schedule the report labels
            relative step sizes by that lr: use absolute ones there.
        relative: Whether ``step_sizes`` are multiples of the lr.
        ics_every: Measure ICS every N steps (the optimizer's update dry-run); None: never.
        hessian_every: Top Hessian eigenvalues every N steps; None: never.
        hessian_k: How many eigenvalues.
        bn_mode: ``"train"`` (batch statistics, what SGD optimises) or ``"eval"``.
        curvature: Also record g^T H g / ||g||^2 (one Hessian-vector product).
        loss_fn: ``loss_fn(pl_module(inputs), targets) -> scalar``, the loss your
            ``training_step`` returns; default: the module's ``loss_fn`` attribute.
        split_batch: ``fn(batch) -> (inputs, targets)``; default: a batch of two.
        reuse_grad: Reuse the training gradient and loss (K passes per probe); default:
            yes in full precision. Under mixed precision True reuses the autocast
            gradient and loss (the loss divided by the GradScaler's scale). Set False
            when ``training_step`` returns more than ``loss_fn`` (a regulariser), so the
            probe recomputes g of ``loss_fn``.
        name: The run's name in the report; default: the module's class name.
        norm: The run's normalization in the report (its colour); default ``"bn"``
            when the model has a norm layer, else ``"none"``.
        seed: Base seed of the Hessian's random vectors.

    Raises:
        ValueError: A bad argument; at ``fit``, manual optimization, no loss function, an
            optimizer that unscales inside ``step()`` under a GradScaler, or ICS under
            gradient clipping; at any step, ``accumulate_grad_batches`` other than 1
            (see the module's docstring for why).
    """

    def __init__(
        self,
        run_dir: str | Path | None = None,
        probe_every: int | None = 100,
        step_sizes: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
        *,
        relative: bool = True,
        ics_every: int | None = None,
        hessian_every: int | None = None,
        hessian_k: int = 1,
        bn_mode: str = "train",
        curvature: bool = True,
        loss_fn: LossFn | None = None,
        split_batch: Callable[[Batch], tuple[torch.Tensor, torch.Tensor]] | None = None,
        reuse_grad: bool | None = None,
        name: str | None = None,
        norm: str | None = None,
        seed: int = 0,
    ) -> None:
        for option, value in (
            ("probe_every", probe_every),
            ("ics_every", ics_every),
            ("hessian_every", hessian_every),
            ("hessian_k", hessian_k),
        ):
            _positive(option, value)
        step_sizes = tuple(float(s) for s in step_sizes)
        if not step_sizes or not all(math.isfinite(s) and s > 0 for s in step_sizes):
            raise ValueError("LandscapeCallback: step_sizes must be positive finite numbers")
        if bn_mode not in BN_MODES:
            raise ValueError(f"LandscapeCallback: unknown bn_mode {bn_mode!r}; choose from {', '.join(BN_MODES)}")
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.probe_every, self.ics_every, self.hessian_every = probe_every, ics_every, hessian_every
        self.step_sizes, self.relative, self.hessian_k = step_sizes, relative, hessian_k
        self.bn_mode, self.curvature, self.seed = bn_mode, curvature, seed
        self.loss_fn, self.split_batch, self.reuse_grad = loss_fn, split_batch or split_pair, reuse_grad
        self.name, self.norm = name, norm
        self._batch: Batch = None
        self._loss: torch.Tensor | None = None  # on_before_backward's: multiplied by a GradScaler's scale
        self._step: int | None = None  # the step whose optimizer step is under way
        self._owed: set[str] = set()  # measurements due at a skipped step, run at the next one
        self._scaler: torch.amp.GradScaler | None = None
        self._pending: list[tuple[int, torch.Tensor, float]] = []  # (step, training loss, lr) not yet written
        self._step_lr = math.nan  # the lr in force at this step (read before the optimizer steps)
        self._logged_lr: float | None = None  # train/lr is written where it changes
        self._store: RunStore | None = None
        self._reduce: Callable | None = None
        self._reuse = True
        self._lr0 = math.nan

    # -- set-up ---------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise ValueError(
                "LandscapeCallback: manual optimization is not supported (which gradient a step uses "
                "is up to your training_step): call landscape.probe_gradient there after manual_backward"
            )
        self.check_step(trainer)
        if len(trainer.optimizers) != 1:
            raise ValueError(f"LandscapeCallback: needs exactly one optimizer, got {len(trainer.optimizers)}")
        self._scaler = grad_scaler(trainer)
        optimizer = trainer.optimizers[0]
        if self._scaler is not None and unscales_in_step(optimizer):
            raise ValueError(
                f"LandscapeCallback: {type(optimizer).__name__} unscales its gradients inside step() "
                "(fused), so under the GradScaler .grad is still scaled when the probe runs: use an "
                "optimizer that does not (e.g. fused=False)"
            )
        if self.ics_every is not None and is_overridden("configure_gradient_clipping", pl_module):
            raise ValueError(
                "LandscapeCallback: ICS under gradient clipping is not supported (the module overrides "
                "configure_gradient_clipping): clipping runs after the hook, so ICS's dry run of the "
                "optimizer would take a step that training does not; drop ics_every or the clipping"
            )
        if self.loss_fn is None and not callable(getattr(pl_module, "loss_fn", None)):
            raise ValueError(
                "LandscapeCallback: pass loss_fn=... (or give the LightningModule a loss_fn "
                "attribute): the probe evaluates loss_fn(pl_module(inputs), targets)"
            )
        self._reduce = distributed.all_reduce_mean if distributed.world_size() > 1 else None
        precise = str(trainer.precision) in FULL_PRECISION
        self._reuse = precise if self.reuse_grad is None else self.reuse_grad
        self._lr0 = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Here, not at fit start: a resumed trainer has restored global_step by now.
        if self.run_dir is None:
            return
        path, step = self.run_dir, trainer.global_step
        config = self.run_config(trainer, pl_module)

        def open_store() -> None:
            if trainer.ckpt_path is not None and is_run(path):
                with RunStore(path) as store:
                    store.truncate_after(step - 1)  # the steps from here on are recorded again
            else:
                RunStore.create(path, config).close()

        distributed.on_main(open_store)  # rank 0 decides; its error is raised on every rank
        if distributed.is_main():
            self._store = RunStore(path)
            self._store.set_status("running")

    def run_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """config.json: what ``landscape report`` reads (name, model name and norm, the
        lr for 2/eta, the probe's step sizes) and the environment."""
        device = next(pl_module.parameters()).device
        optimizer = trainer.optimizers[0]
        group = optimizer.param_groups[0]
        train: dict[str, Any] = {
            "lr": self._lr0,
            # sgd, adam, adamw as in landscape's own runs (the report draws their stability limits)
            "optimizer": type(optimizer).__name__.lower(),
            **{
                k: group[k] for k in ("momentum", "dampening", "nesterov", "betas", "eps", "weight_decay") if k in group
            },
        }
        if trainer.max_steps and trainer.max_steps > 0:
            train["steps"] = trainer.max_steps
        else:
            train["epochs"] = trainer.max_epochs
        if "PL_GLOBAL_SEED" in os.environ:
            train["seed"] = int(os.environ["PL_GLOBAL_SEED"])
        config: dict[str, Any] = {
            "name": self.name or type(pl_module).__name__,
            "kind": "lightning",
            "model": {"name": type(pl_module).__name__, "norm": self.norm or model_norm(pl_module)},
            "train": train,
            **environment(device),
        }
        config["versions"]["lightning"] = lightning.__version__
        if self.probe_every is not None:
            config["probe"] = {
                "step_sizes": list(self.step_sizes),
                "relative": self.relative,
                "direction": "gradient",
                "bn_mode": self.bn_mode,
                "curvature": self.curvature,
                "schedule": {"every": self.probe_every},
            }
        if self.ics_every is not None:
            config["ics"] = {"schedule": {"every": self.ics_every}}
        if self.hessian_every is not None:
            config["hessian"] = {"k": self.hessian_k, "schedule": {"every": self.hessian_every}}
        if distributed.world_size() > 1:
            config["distributed"] = {"world_size": distributed.world_size()}
        if trainer.max_steps and trainer.max_steps > 0:
            config["total_steps"] = trainer.max_steps
        return config

    # -- every step -------------------------------------------------------------
    def check_step(self, trainer: pl.Trainer) -> None:
        """Refuse what would make this step's values wrong: accumulation (a
        ``GradientAccumulationScheduler`` changes it between epochs) and ICS under
        ``gradient_clip_val``."""
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                f"LandscapeCallback: accumulate_grad_batches={trainer.accumulate_grad_batches} is not "
                f"supported (step {trainer.global_step}, epoch {trainer.current_epoch}): the "
                "accumulated gradient is that of several micro-batches, each normalized by its own "
                "batch statistics under BN, not that of the one batch the probe evaluates"
            )
        if self.ics_every is not None and trainer.gradient_clip_val:
            raise ValueError(
                f"LandscapeCallback: ICS under gradient clipping (gradient_clip_val="
                f"{trainer.gradient_clip_val}) is not supported: clipping runs after the hook, so ICS's "
                "dry run of the optimizer would take a step that training does not; drop ics_every or "
                "the clipping"
            )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        self.check_step(trainer)
        self._batch = batch  # already on the module's device

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._loss = loss.detach()  # L(w_t; B_t), times the GradScaler's scale under 16-mixed

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step = self._step = trainer.global_step
        self._step_lr = float(optimizer.param_groups[0]["lr"])
        # The GradScaler has unscaled .grad by now and skips the step iff a gradient is not finite.
        skipped = self._scaler is not None and not finite_grads(optimizer)
        with torch.enable_grad():
            metrics, sizes = self.measure(step, pl_module, optimizer, skipped=skipped)
        if metrics:
            values = logger_metrics(metrics, sizes)
            for logger in trainer.loggers:  # rank 0 only: log_metrics is rank_zero_only
                logger.log_metrics(values, step=step)
            if self._store is not None:
                self._store.log(step, metrics)
        self._loss = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Batch, batch_idx: int
    ) -> None:
        # The loss training_step returned (divided by accumulate_grad_batches, which is 1):
        # on_before_backward's is multiplied by the GradScaler's scale.
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        step, self._step = self._step, None
        if step is None:
            return
        if isinstance(loss, torch.Tensor):
            self._pending.append((step, loss.detach(), self._step_lr))
        if step % FLUSH_EVERY == 0:
            self.flush()

    def measure(
        self, step: int, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer, skipped: bool = False
    ) -> tuple[dict[str, float | list[float]], tuple[float, ...]]:
        """The metrics of the hooks due at ``step`` (or owed since a skipped step) and the
        probe's absolute step sizes; at a step the GradScaler skips, ``train/skipped``
        alone, and what was due is owed to the next step."""
        lr = float(optimizer.param_groups[0]["lr"])
        sizes = tuple(s * lr for s in self.step_sizes) if self.relative else self.step_sizes
        schedules = {"probe": self.probe_every, "ics": self.ics_every, "hessian": self.hessian_every}
        due = self._owed | {name for name, every in schedules.items() if every is not None and EveryN(every)(step)}
        if skipped:
            self._owed = due
            return {"train/skipped": 1.0}, sizes
        self._owed = set()
        if not due:
            return {}, sizes
        makers = {
            "probe": lambda: ProbeHook(
                sizes, bn_mode=self.bn_mode, curvature=self.curvature, reduce=self._reduce, reuse_grad=self._reuse
            ),
            "ics": lambda: ICSHook(reduce=self._reduce),
            "hessian": lambda: HessianHook(k=self.hessian_k, bn_mode=self.bn_mode, seed=self.seed, reduce=self._reduce),
        }
        loss = self._loss if self._reuse else None
        if loss is not None and self._scaler is not None:
            loss = loss / self._scaler.get_scale()  # the scale in force at this step: update() comes after it
        loss_fn = self.loss_fn or pl_module.loss_fn
        ctx = Context(
            Event.AFTER_BACKWARD, step, pl_module, loss_fn, optimizer, lr, self.split_batch(self._batch), loss
        )
        metrics: dict[str, float | list[float]] = {}
        for name in schedules:  # a fixed order, whatever the set's
            if name in due:
                metrics.update(makers[name]()(ctx) or {})
        return metrics, sizes

    def flush(self, reduce: bool = True) -> None:
        """Write the pending training losses (the global batch's under DDP: one
        collective, on every rank at the same steps)."""
        if not self._pending:
            return
        steps = [s for s, _, _ in self._pending]
        lrs = [lr for _, _, lr in self._pending]
        losses = torch.stack([loss.float().reshape(()) for _, loss, _ in self._pending])
        if reduce and self._reduce is not None:
            losses = self._reduce([losses])[0]
        self._pending.clear()
        if self._store is not None:
            rows = []
            for s, v, lr in zip(steps, losses.tolist(), lrs):
                row = {"train/loss": v}
                if lr != self._logged_lr and math.isfinite(lr):  # the lr of every step, where it changes
                    row["train/lr"] = self._logged_lr = lr
                rows.append((s, row))
            self._store.log_many(rows)

    # -- the end ------------------------------------------------------------------
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush()
        if self._store is not None:
            self._store.set_status("finished", steps=trainer.global_step)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.flush(reduce=False)  # the other ranks may not get here: no collective
        if self._store is not None:
            status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
            self._store.set_status(
                status,
                steps=trainer.global_step,
                message=f"{type(exception).__name__}: "
                f"{str(exception).strip().splitlines()[0] if str(exception).strip() else ''}",
            )
        self.teardown(trainer, pl_module, "fit")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
