"""The training loop: the only code in landscape that steps an optimizer. It takes
hooks and a store; :func:`landscape.runner.train.train` builds both from a config.

Paper protocol (Santurkar et al. 2018, Sec. 2): plain SGD, constant step size,
batch 128. Hooks run at the events of :class:`landscape.training.hooks.Event` and their
metrics go to the run store at the step they describe:

* ``train/loss``, ``train/acc`` at key t: the mini-batch loss at w_t (every step,
  written every ``log_every`` steps, when it is also checked for divergence);
* ``test/loss``, ``test/acc`` at key C: after C completed steps;
* an AFTER_BACKWARD hook at step t records at key t (it sees w_t and B_t).

A checkpoint after C steps holds everything needed to replay step C onwards bit
for bit on the CPU: weights, optimizer state, every RNG (global, data order,
augmentation, the model's own generators) and the loop position.

Under torchrun (several processes, :mod:`landscape.distributed`) the model is
wrapped in DistributedDataParallel and ``batch_size`` is the GLOBAL batch. Every
rank draws the same global permutation from the same seed and takes its
contiguous, equal slice of each global batch. The issue asked for a
``DistributedSampler`` seeded and ``set_epoch``-ed each epoch: that is a
seeded permutation per epoch split across ranks, which is what this does with
the whole data set held in memory, and it keeps the data order of a
single-process run, so the two can be compared exactly. DDP averages the
ranks' gradients, which is the global-batch gradient for a mean loss over equal
slices. Logged train loss and accuracy are all-reduced once per log window and
divergence is decided on them, so every rank stops at the same step. Only rank
0 writes the store, checkpoints and evaluations; every rank resumes from the
checkpoint rank 0 wrote. Ctrl-C is not caught under DDP (torchrun ends every
rank); resume continues from the last periodic checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape import distributed
from landscape.config import RunConfig
from landscape.data import Dataset, Objective, augment_batch, batches, objective
from landscape.models.noise import rank_noise
from landscape.runs import RunStore, StoreError
from landscape.state import module_generators
from landscape.training.checkpoint import save_checkpoint, save_weights
from landscape.training.hooks import Context, Event, Hook, unscheduled

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float] | None], None]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    status: str  # finished, diverged or interrupted
    steps: int  # completed optimizer steps
    total_steps: int
    diverged_step: int | None = None
    final: dict[str, float] = dataclasses.field(default_factory=dict)


@torch.no_grad()
def evaluate(
    model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500
) -> dict[str, float]:
    """Loss (and accuracy for class targets) over all of ``x`` in eval mode; training
    flags restored. An :class:`~landscape.data.Objective` gives the loss in its own
    reduction (a sum over the whole set for the summed ones); any other ``loss_fn``
    is taken to be a mean over its batch."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        total_loss, correct = 0.0, 0.0
        for i in range(0, len(x), batch_size):
            out = model(x[i : i + batch_size])
            yb = y[i : i + batch_size]
            if isinstance(loss_fn, Objective):
                total_loss += float(loss_fn.per_example(out, yb).sum())
            else:
                total_loss += float(loss_fn(out, yb)) * len(yb)
            if not yb.is_floating_point():  # per character for text: (B, T) targets, (B, T, V) scores
                correct += float((out.argmax(-1) == yb).float().reshape(len(yb), -1).mean(1).sum())
    finally:
        for m, mode in modes.items():
            m.training = mode
    loss = loss_fn.whole(total_loss, len(x)) if isinstance(loss_fn, Objective) else total_loss / len(x)
    result = {"loss": loss}
    if not y.is_floating_point():
        result["acc"] = correct / len(x)
    return result


def global_batch_size(config: RunConfig, data: Dataset) -> int:
    """Examples per optimizer step (over every process)."""
    n = len(data.train_x)
    return n if config.train.full_batch else min(config.train.batch_size, n)


def first_batches(config: RunConfig, data: Dataset, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The global batches of the run's first ``count`` steps, as the loop draws them
    (epoch 0's order from the run's seed), without augmentation.

    Raises:
        ValueError: ``count`` exceeds the batches of one epoch.
    """
    size = global_batch_size(config, data)
    per_epoch = max(len(data.train_x) // size, 1)
    if count > per_epoch:
        raise ValueError(f"--batches {count} exceeds the {per_epoch} batches of one epoch")
    order = torch.Generator().manual_seed(config.train.seed)  # the loop's order_gen at step 0
    return list(itertools.islice(batches(data, size, order), count))


class _Interrupt:
    """SIGINT sets a flag so the loop stops between steps with a clean checkpoint;
    a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C raises as usual
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


class Loop:
    """One run's training loop: its position, its data order and augmentation
    generators, and the hooks by event. ``progress`` is None on ranks other than 0."""

    def __init__(
        self,
        config: RunConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: Dataset,
        device: torch.device,
        hooks: Sequence[Hook],
        progress: Progress | None,
    ) -> None:
        self.config, self.model, self.optimizer, self.data = config, model, optimizer, data
        self.device, self.hooks, self.progress = device, hooks, progress
        t = config.train
        n = len(data.train_x)
        self.batch_size = global_batch_size(config, data)
        self.world, self.rank, self.main = distributed.world_size(), distributed.rank(), distributed.is_main()
        if self.batch_size % self.world:
            raise ValueError(f"the global batch of {self.batch_size} does not split evenly over {self.world} processes")
        shard = self.batch_size // self.world
        self.shard = slice(self.rank * shard, (self.rank + 1) * shard)  # this rank's part of each global batch
        self.steps_per_epoch = max(n // self.batch_size, 1)
        self.total = t.steps if t.epochs is None else t.epochs * self.steps_per_epoch
        self.loss_fn = objective(data, t.loss_reduction, shards=self.world)
        self.classification = not data.train_y.is_floating_point()
        self.order_gen = torch.Generator().manual_seed(t.seed)
        self.augment_gen = torch.Generator().manual_seed(t.seed + 1)
        self.step = 0
        self.epoch_start_state = self.order_gen.get_state()
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor | None, float]] = []
        self.logged_lr: float | None = None  # train/lr is written where it changes (and once after a resume)
        self.by_event = {e: [h for h in hooks if e in h.events] for e in Event}

    # -- checkpoint ---------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The checkpoint. Under DDP every rank calls it: each rank's own generators
        (its noise) are gathered, since the ranks draw independent noise."""
        generators = [g.get_state() for g in module_generators(self.model)]
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.empty(0)
        hook_states = [unscheduled(h).state_dict() if hasattr(unscheduled(h), "state_dict") else {} for h in self.hooks]
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch_start_state": self.epoch_start_state,
            "augment_state": self.augment_gen.get_state(),
            "cpu_rng": torch.get_rng_state(),
            "cuda_rng": cuda,
            "generators": generators,
            "generators_by_rank": distributed.all_gather_object(generators) if self.world > 1 and generators else None,
            "hooks": hook_states,
        }

    def checkpoint(self, store: RunStore) -> None:
        state = self.state()  # on every rank: it may gather
        if self.main:
            save_checkpoint(store.path, state)
            if self.config.train.keep_checkpoints:
                save_weights(store.path, state)

    def restore(self, ckpt: dict[str, Any], store: RunStore) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:  # e.g. a DLN checkpoint from before its bias-free layers
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise StoreError(
                f"{store.path}: the checkpoint does not fit the model this version builds "
                f"(written by an older landscape?): {first}"
            ) from None
        self.step = int(ckpt["step"])
        if self.step > 0:  # train/lr was written up to here; its steps go on from the restored lr
            self.logged_lr = float(self.optimizer.param_groups[0]["lr"])
        self.epoch_start_state = ckpt["epoch_start_state"]
        self.augment_gen.set_state(ckpt["augment_state"])
        torch.set_rng_state(ckpt["cpu_rng"])
        if self.device.type == "cuda" and ckpt["cuda_rng"].numel():
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        own = module_generators(self.model)
        by_rank = ckpt.get("generators_by_rank") or [ckpt["generators"]]
        if self.rank < len(by_rank):
            generators = by_rank[self.rank]
        else:  # a checkpoint of fewer processes: this rank continues with noise of its own
            seed = rank_noise(self.config.noise, self.rank).seed + self.step
            generators = [torch.Generator().manual_seed(seed).get_state() for _ in own]
        for g, s in zip(own, generators):
            g.set_state(s)
        for h, s in zip(self.hooks, ckpt.get("hooks", [])):
            if s and hasattr(unscheduled(h), "load_state_dict"):
                unscheduled(h).load_state_dict(s)
        # Whatever was recorded after the checkpoint is replayed (identically) from it.
        store.truncate_after(self.step)

    # -- the loop -----------------------------------------------------------
    def context(self, event: Event, batch=None, loss=None, epoch: int = 0) -> Context:
        return Context(
            event,
            self.step,
            self.model,
            self.loss_fn,
            self.optimizer,
            self.optimizer.param_groups[0]["lr"],
            batch,
            loss,
            epoch,
        )

    def call_hooks(self, store: RunStore, event: Event, **ctx: Any) -> None:
        hooks = self.by_event[event]
        if not hooks:
            return
        context = self.context(event, **ctx)
        for hook in hooks:
            metrics = hook(context)
            if metrics:
                store.log(self.step, metrics)

    def flush(self, store: RunStore) -> int | None:
        """Write pending per-step losses; returns the first diverged step, if any."""
        if not self.pending:
            return None
        steps = [p[0] for p in self.pending]
        losses_t = torch.stack([p[1] for p in self.pending]).float()
        accs_t = torch.stack([p[2] for p in self.pending]) if self.classification else None
        if self.world > 1:  # the global batch's values, in one collective per log window
            losses_t, *rest = distributed.all_reduce_mean([losses_t] + ([accs_t] if accs_t is not None else []))
            accs_t = rest[0] if rest else None
        losses = losses_t.tolist()
        accs = accs_t.tolist() if accs_t is not None else None
        bad = next((s for s, v in zip(steps, losses) if not math.isfinite(v)), None)
        records = []
        for i, s in enumerate(steps):
            if bad is not None and s > bad:
                break
            row = {"train/loss": losses[i]} if accs is None else {"train/loss": losses[i], "train/acc": accs[i]}
            lr = self.pending[i][3]
            if lr != self.logged_lr:  # the lr of every step: a step function, written where it changes
                row["train/lr"] = self.logged_lr = lr
            records.append((s, row))
        self.pending.clear()
        store.log_many(records)
        self.last_loss = losses[-1] if bad is None else float("nan")
        return bad

    def run(self, store: RunStore) -> TrainResult:
        t = self.config.train
        store.set_status("running")
        model, optimizer, data = self.model, self.optimizer, self.data
        model.train()
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Built after a restore, so that every rank starts from the checkpoint's weights.
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.bf16)
        interrupt = _Interrupt()
        self.last_loss = float("nan")
        if self.step == 0:
            # A run is resumable from its first moment: killed before its first
            # periodic checkpoint, it still continues instead of starting over.
            self.checkpoint(store)
            self.call_hooks(store, Event.TRAIN_START)
        diverged = None
        with interrupt.installed() if self.world == 1 else contextlib.nullcontext():
            while self.step < self.total and diverged is None and not interrupt.requested:
                epoch, skip = divmod(self.step, self.steps_per_epoch)
                self.order_gen.set_state(self.epoch_start_state)
                for x, y in itertools.islice(batches(data, self.batch_size, self.order_gen), skip, None):
                    if self.config.data.augment:
                        x = augment_batch(x, self.augment_gen)
                    if self.world > 1:
                        x, y = x[self.shard], y[self.shard]
                    optimizer.zero_grad(set_to_none=True)
                    with autocast:
                        out = model(x)
                        loss = self.loss_fn(out, y)
                    loss.backward()
                    loss = loss.detach()
                    acc = (out.argmax(-1) == y).float().mean().detach() if self.classification else None
                    self.pending.append((self.step, loss, acc, float(optimizer.param_groups[0]["lr"])))
                    self.call_hooks(store, Event.AFTER_BACKWARD, batch=(x, y), loss=loss, epoch=epoch)
                    optimizer.step()
                    self.step += 1
                    self.call_hooks(store, Event.AFTER_STEP, batch=(x, y), loss=loss, epoch=epoch)
                    diverged = self.after_step(store, interrupt)
                    if diverged is not None or interrupt.requested or self.step >= self.total:
                        break
                if diverged is None and self.step % self.steps_per_epoch == 0:
                    self.call_hooks(store, Event.EPOCH_END, epoch=epoch)
                    self.epoch_start_state = self.order_gen.get_state()
        return self.finish(store, diverged, interrupt.requested)

    def after_step(self, store: RunStore, interrupt: _Interrupt) -> int | None:
        t = self.config.train
        step, end = self.step, self.step >= self.total
        evaluate_now = step % t.eval_every == 0 or end
        checkpoint_now = step % t.checkpoint_every == 0 or end or interrupt.requested
        if step % t.log_every == 0 or evaluate_now or checkpoint_now:
            bad = self.flush(store)
            if bad is not None:
                return bad
        if evaluate_now:
            self.evaluate(store)
        if checkpoint_now:
            if step % self.steps_per_epoch == 0:
                # The next epoch draws its order from here: keep that state for resume.
                self.epoch_start_state = self.order_gen.get_state()
            self.checkpoint(store)
        if self.progress is not None:
            self.progress(step, self.total, {"loss": self.last_loss} if step % t.log_every == 0 else None)
        return None

    def evaluate(self, store: RunStore) -> None:
        if not self.main:  # only rank 0 records it; no collectives in eval mode
            return
        x, y = self.data.test_x, self.data.test_y
        n = self.config.train.eval_samples
        if n is not None:
            x, y = x[:n], y[:n]
        if len(x) == 0:
            return
        result = evaluate(self.model, self.loss_fn, x, y)
        store.log(self.step, {f"test/{k}": v for k, v in result.items()})

    def finish(self, store: RunStore, diverged: int | None, interrupted: bool) -> TrainResult:
        if diverged is not None:
            store.truncate_after(diverged)
            store.set_status(
                "diverged", diverged_step=diverged, steps=diverged, message=f"loss became non-finite at step {diverged}"
            )
            status = "diverged"
        else:
            self.flush(store)
            self.call_hooks(store, Event.TRAIN_END)
            status = "finished" if self.step >= self.total else "interrupted"
            store.set_status(status, steps=self.step)
        final = {}
        for name in ("test/loss", "test/acc", "train/loss"):
            value = store.final(name)
            if value is not None:
                final[name] = value
        return TrainResult(store.path, status, self.step, self.total, diverged, final)
