"""Every figure of Santurkar et al. 2018 as one command: ``landscape reproduce FIGURE``.

The figures and their experiments are data (:mod:`landscape.paper.figures`,
re-exported here); this module gives each experiment's runs at a scale. Fig. 3, 5
and 11 show the VGG and the DLN side by side; ``--network dln`` keeps the DLN's
panels (minutes on a CPU where the VGG's take an hour), written to
``<out>/fig3-dln``.

Two scales:

* ``paper``: the paper's protocol (:mod:`landscape.paper.defaults`): VGG-16 on CIFAR-10 for
  15k steps at batch 128, the DLN for 10k full-batch steps, the seed review's
  VGG-11 (50 epochs) and ResNet-50 (20 epochs) at lr 0.01. GPU work.
* ``cpu``: a documented reduction for a 2-core CPU (:data:`CPU_SCALE`): VGG-11 at
  an eighth of its width (every conv's channels x 0.125) instead of VGG-16, on all
  of CIFAR-10's training images, for a quarter of the paper's steps, test accuracy
  on all 10,000 test images, ICS measured 50 times per run, the paper's layers
  mapped onto VGG-11's 8 (:func:`landscape.paper.catalogue.map_layer`). The DLN is cheap:
  its CPU scale is the paper's protocol. ResNet-50 cannot run its paper steps on a
  CPU (one step of batch 128 takes 20-45 s here): its CPU scale is a 2-epoch run on
  512 images (8 steps), a smoke test of the pipeline whose verdicts say "too few
  measurements". Every verdict carries the scale of its runs.

Layout of the output directory (default ``runs/reproduce/<scale>``)::

    <out>/<experiment>/        one experiment (experiment.json, a run per variant)
    <out>/<figure>/claims.json the figure's claims, verdicts, intervals and numbers
    <out>/<figure>/report.html the figure's panels, claims first
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from landscape.config import ADAM_OPTIMIZERS, HessianConfig, RunConfig, ScheduleConfig
from landscape.data import total_steps
from landscape.paper import catalogue
from landscape.paper.defaults import paper_config, probe_config, with_measurements
from landscape.paper.figures import (  # re-exported: the figures a scale runs
    EXPERIMENTS,
    FIGURES,
    GPT_VARIANTS,
    NETWORKS,
    SCHEMATIC,
    Check,
    Experiment,
    Figure,
    figure,
    figures,
)
from landscape.paper.measures import optimizer_text, test_images
from landscape.runner.experiments import estimate_passes, lr_variants, variants, with_seeds

SCALES = ("paper", "cpu")


@dataclass(frozen=True)
class Reduction:
    """What the CPU scale changes for one model family."""

    model: str | None = None  # replaces the model (None: keep)
    width_mult: float = 1.0
    fraction: float = 0.25  # of the paper's steps
    subset: int | None = None
    epochs: int | None = None  # replaces the paper's epochs (then fraction is ignored)
    eval_samples: int | None = None  # None: every test image
    ics_measurements: int | None = 50  # ICS measurements per run (None: the paper's schedule)


CPU_SCALE: dict[str, Reduction] = {
    "vgg16": Reduction(model="vgg11", width_mult=0.125),
    "vgg11": Reduction(width_mult=0.125),
    "dln": Reduction(fraction=1.0, ics_measurements=None),  # the paper's protocol: a 10k-step pair takes ~100 s
    "resnet50": Reduction(subset=512, epochs=2, eval_samples=500),
    # The GPT's own protocol (2,000 steps of batch 32): 4 runs of the study in about 9 minutes here.
    "gpt": Reduction(fraction=1.0, eval_samples=640, ics_measurements=None),
}

# Seconds per forward+backward pass for --list's estimate. CPU: this 2-core machine
# with the CPU to itself (the VGG-11/8 probe runs, the DLN probe runs, ResNet-50's
# smoke steps); with other work on the machine the runs took 2-4x longer (the times
# in reports/REPRODUCTION.md). Paper: an H200, from reports/benchmarks.md's VGG-16
# training rate; not yet measured for these figures.
SECONDS_PER_PASS = {
    ("cpu", "vgg16"): 0.035,
    ("cpu", "vgg11"): 0.035,
    ("cpu", "dln"): 0.006,
    ("cpu", "resnet50"): 20.0,
    ("cpu", "gpt"): 0.026,  # the study took 6 min 29 s here (4 runs, probes and Hessians included)
    ("paper", "vgg16"): 0.005,
    ("paper", "vgg11"): 0.004,
    ("paper", "dln"): 0.0015,
    ("paper", "resnet50"): 0.03,
    ("paper", "gpt"): 0.004,
}


def _paper_base(exp: Experiment, kind: str) -> RunConfig:
    """The protocol's run for ``exp`` (its family's norm: every variant sets its own)."""
    config = paper_config(exp.model, kind)
    train = config.train
    if exp.epochs is not None:
        train = dataclasses.replace(train, epochs=exp.epochs, steps=None)
    if exp.lr is not None:
        train = dataclasses.replace(train, lr=exp.lr)
    return dataclasses.replace(config, train=train)


def paper_steps(key: str) -> int:
    """The paper's optimizer steps for experiment ``key`` (the scale of its verdicts)."""
    exp = EXPERIMENTS[key]
    return total_steps(_paper_base(exp, "train"))


def paper_protocol(key: str) -> dict[str, object]:
    """``{"model", "steps", "optimizer", "test_images"}`` of the paper's protocol for
    experiment ``key`` (what a verdict's scale is measured against; the GPT's: its own)."""
    exp = EXPERIMENTS[key]
    base = _paper_base(exp, "train")
    return {
        "model": exp.model,
        "steps": paper_steps(key),
        "optimizer": optimizer_text(dataclasses.asdict(base.train)),
        "test_images": test_images(base.to_dict()),
    }


def experiment_configs(
    key: str,
    scale: str,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    seeds: Sequence[int] | None = None,
    subset: int | None = None,
) -> list[RunConfig]:
    """The runs of experiment ``key`` at ``scale`` (named as the commands name them);
    ``subset``: keep the first N training images (a machine that holds part of
    CIFAR-10 only; the steps stay the scale's).

    Raises:
        ValueError: an unknown experiment or scale.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    if key not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {key!r}")
    exp = EXPERIMENTS[key]
    config = _paper_base(exp, "train")
    model, data, train = config.model, config.data, config.train
    if scale == "cpu":
        r = CPU_SCALE[exp.model]
        model = dataclasses.replace(model, name=r.model or model.name, width_mult=r.width_mult)
        data = dataclasses.replace(data, subset=r.subset)
        if r.epochs is not None:
            train = dataclasses.replace(train, epochs=r.epochs, steps=None)
        else:
            steps = math.ceil(r.fraction * total_steps(config))
            train = dataclasses.replace(train, steps=steps, epochs=None)
        train = dataclasses.replace(train, eval_samples=r.eval_samples)
    data = dataclasses.replace(data, data_dir=data_dir)
    if subset is not None and data.name == "cifar10":
        if train.epochs is not None:  # keep the scale's steps, not its epochs of fewer images
            steps = total_steps(dataclasses.replace(config, data=data, train=train))
            train = dataclasses.replace(train, steps=steps, epochs=None)
        data = dataclasses.replace(data, subset=min(subset, data.subset or subset))
    train = dataclasses.replace(train, device=device)
    config = dataclasses.replace(config, model=model, data=data, train=train)
    kind = exp.kind
    config = with_measurements(config, kind)
    steps = total_steps(config)
    n = CPU_SCALE[exp.model].ics_measurements if scale == "cpu" else None
    if kind == "ics" and n is not None:
        schedule = ScheduleConfig(
            every=max(1, steps * 5 // (4 * n)), dense_until=steps // 15, dense_every=max(1, steps // (3 * n))
        )
        config = dataclasses.replace(config, ics=dataclasses.replace(config.ics, schedule=schedule))
    if kind == "ics-noise" and exp.layers:
        layers = sorted({catalogue.map_layer(i, model.name, model.depth) for i in exp.layers})
        config = dataclasses.replace(
            config, distributions=dataclasses.replace(config.distributions, layers=tuple(str(i) for i in layers))
        )
    if exp.model == "gpt":
        configs = [_gpt_variant(config, name, exp.hessian_every) for name in exp.norms]
    else:
        configs = lr_variants(config, exp.norms, exp.lrs) if kind == "ics" else variants(config, exp.norms)
    return with_seeds(configs, seeds) if seeds else configs


def _gpt_variant(config: RunConfig, name: str, hessian_every: int | None) -> RunConfig:
    """A transformer-norms run (:data:`GPT_VARIANTS`): probed along the update, with
    lambda_max (and, under AdamW, lambda_max(P^-1 H)) every ``hessian_every`` steps."""
    model_fields, train_fields = GPT_VARIANTS[name]
    train = dataclasses.replace(config.train, **train_fields)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, **model_fields), train=train, name=name
    )
    probe = dataclasses.replace(probe_config(config), direction="update")
    hessian = None
    if hessian_every:
        schedule = ScheduleConfig(every=hessian_every, dense_until=0)
        hessian = HessianConfig(schedule=schedule, preconditioned=train.optimizer in ADAM_OPTIMIZERS)
    return dataclasses.replace(config, probe=probe, hessian=hessian)


def estimate_seconds(key: str, scale: str, seeds: int = 1) -> float:
    """A rough time for experiment ``key`` from its passes and :data:`SECONDS_PER_PASS`
    (no data read: ``--list`` works offline)."""
    configs = experiment_configs(key, scale)
    per_pass = SECONDS_PER_PASS.get((scale, EXPERIMENTS[key].model), 0.01)
    return seeds * per_pass * sum(estimate_passes(c, total_steps(c))["total"] for c in configs)


def figure_seconds(fig: Figure, scale: str, seeds: int = 1, done: set[str] | None = None) -> float:
    """Time of the figure's experiments, leaving out those in ``done`` (run for an
    earlier figure)."""
    return sum(estimate_seconds(k, scale, seeds) for k in fig.all_experiments if k not in (done or set()))


__all__ = [
    "CPU_SCALE",
    "EXPERIMENTS",
    "FIGURES",
    "NETWORKS",
    "SCALES",
    "SCHEMATIC",
    "Check",
    "Experiment",
    "Figure",
    "experiment_configs",
    "figure",
    "figures",
    "paper_protocol",
    "paper_steps",
]
