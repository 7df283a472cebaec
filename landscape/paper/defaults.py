"""The paper's protocol (Santurkar et al. 2018, Sec. 2, 3 and App. A): the one home
of every per-model default, read by the library and the command line alike.

:func:`paper_config` returns the :class:`~landscape.config.RunConfig` that
``landscape KIND --model MODEL`` runs, so a Python user gets the paper's protocol
without copying the CLI's logic::

    config = landscape.paper_config("dln")            # what `landscape probe --model dln` runs
    config = landscape.paper_config("vgg16", "ics-noise", norm="noisy_bn")

Per family (VGG, ResNet, the deep linear network, anything else):

* VGG: CIFAR-10, lr 0.1, 15k steps; probe step sizes {0.5, 1, 2, 4} x lr (Fig. 4);
  ICS at lr 0.1 and 0.01 (Fig. 3a).
* ResNet: CIFAR-10, lr 0.01, 20 epochs (the seed review's runs).
* DLN: y = Ax, full batch, lr 1e-6, 10k steps, the squared error summed over the
  samples, float64; step sizes {0.01, 0.1, 1, 10, 30} x lr (Fig. 10); ICS at 1e-6
  and 1e-7 with layers #9 and #17 shown first (Fig. 3b).
* GPT (not the paper's; issue #24): character-level Shakespeare, 2 layers, 2 heads,
  width 64, context 64, batch 32, AdamW lr 1e-3, betas (0.9, 0.95), weight decay 0.1,
  2,000 steps, evaluated every 200 steps on 20 batches.

Measurement schedules (probes, ICS, distributions) are the paper's every 100
steps, every 10 over the first 1,000 of 15,000, shrunk in proportion to shorter runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from landscape.config import (
    DataConfig,
    DistributionConfig,
    ICSConfig,
    ModelConfig,
    NoiseConfig,
    ProbeConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
)
from landscape.data import total_steps, train_size  # re-exported: landscape.paper.total_steps
from landscape.models import model_family
from landscape.training.hooks import count_steps  # re-exported

PAPER_STEPS = 15_000  # the paper's VGG run; the measurement schedules are given for it
KINDS = ("train", "probe", "ics", "ics-noise")
ICS_NOISE_EVALUATIONS = 5  # accuracy curves need evaluations along the run


@dataclass(frozen=True)
class Protocol:
    """One model family's defaults."""

    lr: float
    dataset: str = "cifar10"
    steps: int | None = None
    epochs: int | None = None
    full_batch: bool = False
    loss_reduction: str = "mean"
    dtype: str = "float32"
    step_sizes: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # probe, multiples of lr
    ics_lrs: tuple[float, ...] = ()  # ICS runs at these lrs (empty: the family's lr)
    ics_highlight: tuple[int, ...] = ()  # 1-based layers the ICS report shows first
    notes: tuple[str, ...] = field(default=(), compare=False)
    # More ModelConfig and TrainConfig fields of the family (the GPT's size, optimizer,
    # batch and evaluation); the command line's options replace them.
    model: tuple[tuple[str, object], ...] = ()
    train: tuple[tuple[str, object], ...] = ()
    norm: str = "bn"  # the normalization of a single run (paper_config's default)


PROTOCOLS: dict[str, Protocol] = {
    "vgg": Protocol(lr=0.1, steps=PAPER_STEPS, ics_lrs=(0.1, 0.01)),
    "resnet": Protocol(lr=0.01, epochs=20),
    # The DLN's objective is the squared error summed over the samples (its plotted
    # losses, 1e3-1e4, and its lr 1e-6 belong to that scale), in float64: at the
    # probe's smallest step (1e-8) the gradient change is float32 rounding.
    "dln": Protocol(
        lr=1e-6,
        dataset="gaussian-linear",
        steps=10_000,
        full_batch=True,
        loss_reduction="sample-sum",
        dtype="float64",
        step_sizes=(0.01, 0.1, 1.0, 10.0, 30.0),
        ics_lrs=(1e-6, 1e-7),
        ics_highlight=(9, 17),
    ),
    # Not the paper's: a transformer on Shakespeare's text (issue #24), its own protocol:
    # nanoGPT's small-model settings at CPU size, evaluated every 200 steps on 20 batches.
    "gpt": Protocol(
        lr=1e-3,
        dataset="shakespeare",
        steps=2000,
        norm="layer",
        model=(("width", 64), ("layers", 2), ("heads", 2), ("block_size", 64), ("init", "torch")),
        train=(
            ("optimizer", "adamw"),
            ("betas", (0.9, 0.95)),
            ("weight_decay", 0.1),
            ("batch_size", 32),
            ("eval_every", 200),
            ("eval_samples", 20 * 32),
        ),
    ),
    "other": Protocol(lr=0.1, steps=PAPER_STEPS),
}


def protocol(model: str) -> Protocol:
    """The defaults of ``model``'s family.

    Raises:
        ValueError: an unknown model name.
    """
    return PROTOCOLS[model_family(model)]


def paper_schedule(total_steps: int, every: int = 100) -> ScheduleConfig:
    """``every`` steps and every 10 over the first 1,000 at the paper's 15,000 steps,
    shrunk in proportion to ``total_steps``."""
    scale = total_steps / PAPER_STEPS
    return ScheduleConfig(
        every=max(1, round(every * scale)), dense_until=round(1000 * scale), dense_every=max(1, round(10 * scale))
    )


def scaled_probe_schedule(total_steps: int, passes_per_probe: int = 4) -> ScheduleConfig:
    """The paper-scale schedule (:func:`paper_schedule`); for short runs both intervals
    are then doubled until probing costs at most half the training passes, so a
    CPU-sized run stays CPU-sized. At paper scale probing costs well under that."""
    s = paper_schedule(total_steps)
    while count_steps(s, total_steps) * passes_per_probe > total_steps / 2 and s.every < total_steps:
        s = dataclasses.replace(s, every=s.every * 2, dense_every=s.dense_every * 2)
    return s


def probe_config(config: RunConfig, **changes: object) -> ProbeConfig:
    """The paper's probe for the run ``config`` (its family's step sizes, the scaled
    schedule for its length); ``changes`` replace ProbeConfig fields (a ``schedule``
    given here is kept as is)."""
    sizes = changes.pop("step_sizes", None) or protocol(config.model.name).step_sizes
    curvature = bool(changes.get("curvature", True))
    passes = len(sizes) + (2 if curvature else 0)
    schedule = changes.pop("schedule", None) or scaled_probe_schedule(total_steps(config), passes)
    return ProbeConfig(step_sizes=tuple(sizes), schedule=schedule, **changes)


def paper_config(
    model: str = "vgg16", kind: str = "probe", *, norm: str | None = None, **model_fields: object
) -> RunConfig:
    """The RunConfig that ``landscape KIND --model MODEL`` runs for its ``norm`` variant.

    Args:
        model: a registry name, ``torchvision:NAME`` or ``pkg.module:factory``.
        kind: ``train`` (no measurement), ``probe`` (Fig. 4, 10), ``ics`` (Fig. 3:
            at the family's first ICS lr) or ``ics-noise`` (Fig. 1, 2, 8: layer-input
            distributions, 5 evaluations along the run).
        norm: the normalization of this variant [default: the family's, ``bn``;
            ``layer`` for the GPT].
        **model_fields: more :class:`ModelConfig` fields (``depth``, ``width``, ...).

    Returns:
        The run's config, named after ``norm``; change it with :func:`dataclasses.replace`.

    Raises:
        ValueError: an unknown model or kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    p = protocol(model)
    norm = norm or p.norm
    model_cfg = ModelConfig(name=model, norm=norm, **{**dict(p.model), **model_fields})
    data = DataConfig(name=p.dataset, dim=model_cfg.width, block_size=model_cfg.block_size)
    lr = p.ics_lrs[0] if kind == "ics" and p.ics_lrs else p.lr
    train = TrainConfig(
        steps=p.steps,
        epochs=p.epochs,
        lr=lr,
        full_batch=p.full_batch,
        loss_reduction=p.loss_reduction,
        dtype=p.dtype,
        **dict(p.train),
    )
    config = RunConfig(model=model_cfg, data=data, train=train, noise=NoiseConfig(), name=norm)
    return with_measurements(config, kind)


def with_measurements(config: RunConfig, kind: str) -> RunConfig:
    """``config`` with the measurements (and evaluation schedule) of an experiment
    ``kind``, scaled to its length: what the commands add to a run's config."""
    steps = total_steps(config)
    if kind == "probe":
        return dataclasses.replace(config, probe=probe_config(config))
    if kind == "ics":
        return dataclasses.replace(
            config, ics=ICSConfig(schedule=paper_schedule(steps), highlight=protocol(config.model.name).ics_highlight)
        )
    if kind == "ics-noise":
        train = dataclasses.replace(config.train, eval_every=max(1, steps // ICS_NOISE_EVALUATIONS))
        return dataclasses.replace(
            config, train=train, distributions=DistributionConfig(schedule=paper_schedule(steps))
        )
    return config


__all__ = [
    "PROTOCOLS",
    "Protocol",
    "count_steps",
    "paper_config",
    "paper_schedule",
    "protocol",
    "scaled_probe_schedule",
    "total_steps",
    "train_size",
    "with_measurements",
]
