"""Experiments: several runs that differ in one setting (the normalization),
trained from the same seed and the same data order, into one experiment
directory. Each variant starts exactly as :func:`landscape.models.build_model`
builds it from the seed; the paper's init draws every conv/linear weight from
one seed in module order, so variants share their initial weights wherever
their own init gives the same tensors (and not, e.g., the residual convs that a
ResNet without BN zero-initializes).

```
EXPERIMENT_DIR/
  experiment.json    kind, the runs in order
  none/  bn/  ...    one run directory each (see landscape.runs)
```

Santurkar et al. 2018 compare each network with and without BatchNorm; an
experiment is that comparison. Interrupted experiments resume run by run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from landscape import distributed
from landscape.config import ProbeConfig, RunConfig, is_text
from landscape.data import CIFAR_TEST, LINEAR_TEST, example_batch, train_size
from landscape.models import build_model
from landscape.models.init import is_weight_layer
from landscape.runner.train import train
from landscape.runs import EXPERIMENT, RunStore, StoreError, is_run, write_json_atomic
from landscape.training.hooks import Hook, count_steps
from landscape.training.loop import TrainResult
from landscape.training.syncbn import convert_sync_batchnorm

log = logging.getLogger(__name__)


def variants(base: RunConfig, norms: Sequence[str]) -> list[RunConfig]:
    """One config per normalization, named by it."""
    return [dataclasses.replace(base, model=dataclasses.replace(base.model, norm=n), name=n) for n in norms]


def lr_variants(base: RunConfig, norms: Sequence[str], lrs: Sequence[float]) -> list[RunConfig]:
    """One config per learning rate and normalization, named ``NORM-lrLR`` (the ICS
    experiment's runs, Fig. 3)."""
    return [
        dataclasses.replace(
            base,
            model=dataclasses.replace(base.model, norm=n),
            train=dataclasses.replace(base.train, lr=lr),
            name=f"{n}-lr{lr:g}",
        )
        for lr in lrs
        for n in norms
    ]


def with_seeds(configs: Sequence[RunConfig], seeds: Sequence[int]) -> list[RunConfig]:
    """Every variant once per seed, named ``VARIANT/seedS`` (a run directory per seed
    inside the variant's): the seed of the weights, the data order and the noise; the
    data set itself stays the same."""
    return [
        dataclasses.replace(
            c,
            name=f"{c.name}/seed{seed}",
            train=dataclasses.replace(c.train, seed=seed),
            noise=dataclasses.replace(c.noise, seed=seed),
        )
        for seed in seeds
        for c in configs
    ]


def check_configs(configs: Sequence[RunConfig]) -> None:
    """Fail before anything is written: build each variant's model and hooks
    (an unknown model, a model that does not fit the data, or a layer the model
    does not have, raises ValueError)."""
    from landscape.runner.assembly import build_run_model, config_hooks

    for config in configs:
        with torch.random.fork_rng():
            model = build_run_model(config)  # as train() builds it, checked against the data
            config_hooks(config, model)
            if config.train.sync_bn and distributed.world_size() > 1:
                convert_sync_batchnorm(model)  # refuses noisy BN before the first run starts


def test_size(config: RunConfig) -> int:
    d = config.data
    if is_text(d.name):  # an estimate: the test split holds about a ninth of the training blocks
        return config.train.eval_samples or max(train_size(d) // 9, 1)
    return {"cifar10": CIFAR_TEST, "synthetic": d.synthetic_test, "gaussian-linear": LINEAR_TEST}[d.name]


def passes_per_probe(p: ProbeConfig) -> int:
    """K forward+backward passes, +2 for the curvature's Hessian-vector product."""
    return len(p.step_sizes) + (2 if p.curvature else 0)


def estimate_passes(config: RunConfig, total_steps: int) -> dict[str, int]:
    """Forward+backward passes of one run: training steps, probes (K per probe,
    +2 for the curvature Hessian-vector product), ICS measurements (one per
    weighted layer, +1), layer-input distributions (one forward, ~1/3 pass), Hessian
    eigenvalues (at most: a gradient graph, ~1 pass, then ``max_hvps`` products of
    ~2 passes; as many again for the trace) and test evaluations (forward passes
    over the test set, ~1/3 pass per batch)."""
    p = config.probe
    probes = 0 if p is None else count_steps(p.schedule, total_steps)
    extra = 0 if p is None else probes * passes_per_probe(p)
    if config.ics is not None:
        model = build_model(config.model, noise=config.noise)
        layers = sum(1 for m in model.modules() if is_weight_layer(m))
        extra += count_steps(config.ics.schedule, total_steps) * (layers + 1)
    if config.distributions is not None:
        extra += count_steps(config.distributions.schedule, total_steps) // 3
    h = config.hessian
    if h is not None:
        extra += count_steps(h.schedule, total_steps) * (1 + 2 * h.max_hvps) * (2 if h.trace else 1)
    t = config.train
    evaluations = total_steps // t.eval_every + (total_steps % t.eval_every != 0)
    test = min(test_size(config), t.eval_samples or 10**9)
    eval_passes = round(evaluations * math.ceil(test / t.batch_size) / 3)
    return {
        "train": total_steps,
        "probes": probes,
        "probe_passes": extra,
        "eval_passes": eval_passes,
        "total": total_steps + extra + eval_passes,
    }


def time_one_pass(config: RunConfig, repeats: int = 3) -> float:
    """Seconds for one forward+backward of the model at the run's batch shape, on
    its device (median of ``repeats`` after a warm-up). The global RNG is untouched."""
    device = distributed.resolve_device(config.train.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = build_model(config.model, noise=config.noise).to(device, getattr(torch, config.train.dtype))
        x, y, loss_fn = example_batch(config, device)
        times = []
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            loss_fn(model(x), y).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:  # the first pass warms up allocators and kernels
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _state(run_dir: Path) -> str:
    if not is_run(run_dir):
        return "missing"
    with RunStore(run_dir, readonly=True) as store:
        return store.status


LAYOUTS = ("auto", "ddp", "spread")


def choose_layout(layout: str, runs: int, world: int) -> str:
    """How several processes share an experiment's runs.

    ``ddp``: every run in turn uses all processes (DDP over the global batch).
    ``spread``: run i goes to process i mod N, which trains it alone (no DDP, no
    collectives; the results are exactly a single-process run's). ``auto``: spread
    when the runs divide evenly over the processes (then no process idles, and with
    no per-step communication spreading is the faster one: see reports/benchmarks.md),
    else ddp. One process: always ddp, which is then plain single-process training.

    Raises:
        ValueError: an unknown layout.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if world <= 1:
        return "ddp"
    if layout == "auto":
        return "spread" if runs % world == 0 else "ddp"
    return layout


def run_experiment(
    configs: Sequence[RunConfig],
    exp_dir: str | Path,
    *,
    kind: str,
    hooks_for: Callable[[RunConfig], list[Hook]] | None = None,
    progress_for: Callable[[RunConfig], Any] | None = None,
    extra: dict[str, Any] | None = None,
    layout: str = "ddp",
    tensorboard: str | Path | None = None,
) -> list[TrainResult | None]:
    """Train every variant into ``exp_dir/<name>``; a directory that already holds
    the experiment is resumed: finished or diverged runs are kept, interrupted ones
    continue from their checkpoints, missing ones start.

    Args:
        configs: the variants (distinct ``name``s).
        exp_dir: the experiment directory.
        kind: what the experiment is (``probe``, ``ics-noise``, ``ics``).
        hooks_for: extra hooks for each run, besides those its config asks for.
        progress_for: a context manager factory ``(config) -> progress callback``.
        extra: more keys for ``experiment.json``.
        layout: under torchrun, ``ddp`` (the variants one after another with all
            ranks together) or ``spread`` (variant i on rank i mod N, alone); see
            :func:`choose_layout`. Ignored in a single process.
        tensorboard: also write each run's records to TensorBoard event files in
            ``tensorboard/<name>`` as they are recorded (TensorBoard shows one run per folder).

    Returns:
        One result per variant in order (None for a run that was already complete),
        on every rank; shorter than ``configs`` when interrupted.

    Rank 0 alone creates the directory; under ``ddp`` it alone writes the runs, under
    ``spread`` each rank writes the runs it trains.
    """
    exp_dir = Path(exp_dir)
    names = [c.name for c in configs]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError("experiment variants need distinct, non-empty names")
    if layout not in ("ddp", "spread"):
        raise ValueError(f"layout must be ddp or spread here, not {layout!r} (see choose_layout)")
    distributed.on_main(lambda: _prepare_directory(exp_dir, dict(extra or {}, kind=kind, runs=names)))
    world, me = distributed.world_size(), distributed.rank()
    spread = layout == "spread" and world > 1
    placement = {"placement": {"layout": "spread", "rank": me, "world_size": world}} if spread else {}
    done: dict[int, TrainResult | None] = {}
    for i, config in enumerate(configs):
        if spread and i % world != me:
            continue
        with distributed.alone() if spread else contextlib.nullcontext():
            done[i] = _run_variant(
                config,
                exp_dir / config.name,
                hooks_for,
                progress_for,
                {"experiment": str(exp_dir), "kind": kind, **placement},
                None if tensorboard is None else Path(tensorboard) / config.name,
            )
        if done[i] is not None and done[i].status == "interrupted":
            break
    if spread:  # every rank learns every run's outcome (this also waits for all of them)
        for part in distributed.all_gather_object(done):
            done.update(part)
    return list(itertools.takewhile(lambda r: r is not _MISSING, (done.get(i, _MISSING) for i in range(len(configs)))))


_MISSING = object()  # a variant not reached (the experiment was interrupted before it)


def _prepare_directory(exp_dir: Path, manifest: dict[str, Any]) -> None:
    """Create the experiment directory (or find it again) and write experiment.json."""
    path = exp_dir / EXPERIMENT
    if exp_dir.exists() and any(exp_dir.iterdir()) and not path.is_file():
        raise StoreError(f"{exp_dir}: exists and is not an experiment directory (choose another --run-dir)")
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, manifest)


def _run_variant(
    config: RunConfig,
    run_dir: Path,
    hooks_for: Callable[[RunConfig], list[Hook]] | None,
    progress_for: Callable[[RunConfig], Any] | None,
    extra_config: dict[str, Any],
    tensorboard: Path | None = None,
) -> TrainResult | None:
    """Start, resume or skip (None: already complete) one variant's run."""
    resume = distributed.on_main(lambda: _start_or_resume(run_dir))
    if resume is None:
        return None
    hooks = hooks_for(config) if hooks_for else []
    with progress_for(config) if progress_for else contextlib.nullcontext() as progress:
        return train(
            None if resume else config,
            run_dir=run_dir,
            resume=resume,
            hooks=hooks,
            progress=progress,
            extra_config=extra_config,
            tensorboard=tensorboard,
        )


def _start_or_resume(run_dir: Path) -> bool | None:
    """None: the run is complete; True: resume it; False: start it (after clearing
    a run killed before its first checkpoint)."""
    state = _state(run_dir)
    if state in ("finished", "diverged"):
        return None
    resume = state != "missing"
    if resume and not (run_dir / "checkpoints" / "last.pt").is_file():
        # Killed while setting up, before its step-0 checkpoint: start again, but keep
        # whatever it wrote under .incomplete/ rather than deleting it.
        aside = run_dir.parent / ".incomplete" / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.parent.mkdir(exist_ok=True)
        run_dir.rename(aside)
        log.warning("%s had no checkpoint; moved it to %s and started it again", run_dir, aside)
        resume = False
    return resume
