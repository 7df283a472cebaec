"""Every figure of Santurkar et al. 2018 as one command: ``landscape reproduce FIGURE``.

A :class:`Figure` names the experiments it draws on (:data:`EXPERIMENTS`, each a
set of runs of one kind: train, probe, ics or ics-noise) and the claims checked on
them (:func:`landscape.report.claims.checked_claims`). Experiments are shared
between figures (Fig. 2, 7 and 8 read the same noisy-BN runs) and run once.

Two scales:

* ``paper``: the paper's protocol (:mod:`landscape.paper`): VGG-16 on CIFAR-10 for
  15k steps at batch 128, the DLN for 10k full-batch steps, the seed review's
  VGG-11 (50 epochs) and ResNet-50 (20 epochs) at lr 0.01. GPU work.
* ``cpu``: a documented reduction for a 2-core CPU (:data:`CPU_SCALE`): VGG-11 at
  an eighth of its width (every conv's channels x 0.125) instead of VGG-16, on all
  of CIFAR-10's training images, for a quarter of the paper's steps (the shortest
  run that :data:`landscape.report.claims.MIN_FRACTION` still gives verdicts for),
  test accuracy on 2,000 test images; the DLN unchanged for a quarter of its
  steps; ICS measured 50 times per run. ResNet-50 cannot reach a quarter of its
  paper steps on a CPU (one step of batch 128 takes 20-45 s here): its CPU scale is a 2-epoch run on 512 images (8 steps) whose
  verdicts are inconclusive by the short-run rule, a smoke test of the pipeline.

Layout of the output directory (default ``runs/reproduce/<scale>``)::

    <out>/<experiment>/        one experiment (experiment.json, a run per variant)
    <out>/<figure>/claims.json the figure's claims, verdicts and numbers
    <out>/<figure>/report.html the figure's panels, claims first
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from landscape.config import RunConfig, ScheduleConfig
from landscape.experiments import estimate_passes, lr_variants, variants, with_seeds
from landscape.paper import paper_config, total_steps, with_measurements

SCALES = ("paper", "cpu")


@dataclass(frozen=True)
class Experiment:
    """One experiment: runs of one kind, one per normalization (and lr for ICS)."""

    kind: str  # "train", "probe", "ics" or "ics-noise"
    model: str
    norms: tuple[str, ...]
    lrs: tuple[float, ...] = ()  # ics: a run per lr and norm; else one lr in place of the protocol's
    layers: tuple[str, ...] = ()  # ics-noise: layer inputs to record (default: the paper's)
    epochs: int | None = None  # the paper's length in epochs (the seed review's runs)
    lr: float | None = None  # in place of the protocol's (the seed review: 0.01)


@dataclass(frozen=True)
class Check:
    """Claims (a :data:`landscape.report.claims.CHECKS` name) on some experiments' runs."""

    name: str
    experiments: tuple[str, ...]


@dataclass(frozen=True)
class Figure:
    """One figure of the paper: what it shows, its experiments and its claims."""

    name: str  # "fig4"
    label: str  # "Fig. 4"
    title: str
    reading: str  # what the paper reports
    checks: tuple[Check, ...]
    sections: tuple[str, ...]  # report sections, in the figure's panel order
    experiments: tuple[str, ...] = field(default=())  # beside those of the checks (shown only)

    @property
    def all_experiments(self) -> tuple[str, ...]:
        keys = [k for c in self.checks for k in c.experiments] + list(self.experiments)
        return tuple(dict.fromkeys(keys))


LP = ("l1", "l2", "linf")
EXPERIMENTS: dict[str, Experiment] = {
    "vgg-noise": Experiment("ics-noise", "vgg16", ("none", "bn", "noisy_bn")),
    "vgg-lr0.5": Experiment("ics-noise", "vgg16", ("none", "bn"), lr=0.5),
    "vgg-ics": Experiment("ics", "vgg16", ("none", "bn"), lrs=(0.1, 0.01)),
    "dln-ics": Experiment("ics", "dln", ("none", "bn"), lrs=(1e-6, 1e-7)),
    "vgg-probe": Experiment("probe", "vgg16", ("none", "bn")),
    "vgg-lp": Experiment("ics-noise", "vgg16", LP),
    "vgg-lp-probe": Experiment("probe", "vgg16", LP),
    "dln-depth": Experiment("ics-noise", "dln", ("none", "bn"), layers=("2", "6", "12", "18", "24")),
    "dln-probe": Experiment("probe", "dln", ("none", "bn")),
    "dln-lp-probe": Experiment("probe", "dln", LP),
    "vgg11-50ep": Experiment("train", "vgg11", ("none", "bn"), epochs=50, lr=0.01),
    "resnet50-20ep": Experiment("train", "resnet50", ("none", "bn"), epochs=20, lr=0.01),
}

_TRAINING = ("training",)
FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("fig1", "Fig. 1", "BN trains faster and at learning rates where the standard VGG fails",
           "BN reaches a given training accuracy in fewer steps; at lr 0.5 the standard network does not train "
           "while the BN network does; layer-input distributions are more stable with BN.",
           (Check("speed", ("vgg-noise",)), Check("high-lr", ("vgg-lr0.5",)), Check("accuracy", ("vgg-noise",))),
           ("training", "distributions")),
    Figure("fig2", "Fig. 2", "Noisy BN: unstable layer inputs, yet BN's training",
           "Injecting time-varying noise after every BN layer makes the layer inputs unstable, yet the network "
           "trains almost as well as with BN and better than the standard one.",
           (Check("noise", ("vgg-noise",)), Check("noisy-like-bn", ("vgg-noise",))), ("training", "distributions")),
    Figure("fig3", "Fig. 3", "Internal covariate shift measured by gradients, VGG and DLN",
           "ICS (the change of a layer's gradient when the earlier layers update) is not smaller with BN, often "
           "larger, for VGG at lr 0.1 and 0.01 and for the DLN at 1e-6 and 1e-7.",
           (Check("ics", ("vgg-ics",)), Check("ics", ("dln-ics",))), ("training", "ics")),
    Figure("fig4", "Fig. 4", "The optimization landscape of VGG with and without BN",
           "With BN the loss varies less along the gradient (a), the gradient is more predictive (b) and the "
           "effective beta-smoothness is lower and steadier (c).",
           (Check("smoothness", ("vgg-probe",)), Check("stability", ("vgg-probe",))),
           ("landscape", "predictiveness", "smoothness", "training")),
    Figure("fig5", "Fig. 5", "l_p normalizations train as well as BN",
           "Normalizing by the l1, l2 or l_inf norm instead of the standard deviation gives BN's performance.",
           (Check("lp-accuracy", ("vgg-lp", "vgg-noise")),), ("training",)),
    Figure("fig6", "Fig. 6", "l_p normalizations: more distributional shift than BN",
           "The l_p normalizations' layer inputs shift more than BN's, yet they train as well: stability of the "
           "layer inputs is not what helps.",
           (Check("lp-drift", ("vgg-lp", "vgg-noise")),), ("distributions", "training")),
    Figure("fig7", "Fig. 7", "Noisy BN: the layer-input moments drift",
           "With noise injected after BN the mean and variance of the layer inputs drift far more than in the "
           "standard network.",
           (Check("noise", ("vgg-noise",)),), ("distributions", "training")),
    Figure("fig8", "Fig. 8", "Noisy BN: moments change between successive steps",
           "The change of the layer inputs' mean and variance between successive measurements is larger with "
           "noisy BN than without BN.",
           (Check("moment-change", ("vgg-noise",)),), ("distributions",)),
    Figure("fig9", "Fig. 9", "Deep linear network: layer-input scale against depth",
           "In the deep linear network without BN the scale (sigma) of the layer inputs grows with depth.",
           (Check("depth", ("dln-depth",)),), ("distributions", "training")),
    Figure("fig10", "Fig. 10", "The optimization landscape of the deep linear network",
           "As for VGG: with BN a narrower loss band, a more predictive gradient and a lower beta_eff.",
           (Check("smoothness", ("dln-probe",)), Check("stability", ("dln-probe",))),
           ("landscape", "predictiveness", "smoothness", "training")),
    Figure("fig11", "Fig. 11", "Gradient change against step size",
           "At every step size along the gradient, the gradient changes less with BN.",
           (Check("step-size", ("vgg-probe",)),), ("step-size", "predictiveness")),
    Figure("fig12", "Fig. 12", "The landscape of VGG with l_p normalizations",
           "The l_p normalizations smooth the landscape as BN does.",
           (Check("lp-smoothness", ("vgg-lp-probe", "vgg-probe")), Check("like-bn", ("vgg-lp-probe", "vgg-probe"))),
           ("landscape", "predictiveness", "smoothness", "training")),
    Figure("fig13", "Fig. 13", "The landscape of the deep linear network with l_p normalizations",
           "The l_p normalizations smooth the DLN's landscape as BN does.",
           (Check("lp-smoothness", ("dln-lp-probe", "dln-probe")), Check("like-bn", ("dln-lp-probe", "dln-probe"))),
           ("landscape", "predictiveness", "smoothness", "training")),
    Figure("seed-vgg11", "seed review", "VGG-11, 50 epochs, SGD lr 0.01: BN against none",
           "BN raises the test accuracy.", (Check("accuracy", ("vgg11-50ep",)),), _TRAINING),
    Figure("seed-resnet50", "seed review", "ResNet-50, 20 epochs, SGD lr 0.01: BN against none",
           "BN raises the test accuracy.", (Check("accuracy", ("resnet50-20ep",)),), _TRAINING),
)}


@dataclass(frozen=True)
class Reduction:
    """What the CPU scale changes for one model family."""

    model: str | None = None  # replaces the model (None: keep)
    width_mult: float = 1.0
    fraction: float = 0.25  # of the paper's steps
    subset: int | None = None
    epochs: int | None = None  # replaces the paper's epochs (then fraction is ignored)
    eval_samples: int | None = None
    ics_measurements: int = 50  # ICS measurements per run


CPU_SCALE: dict[str, Reduction] = {
    "vgg16": Reduction(model="vgg11", width_mult=0.125, eval_samples=2000),
    "vgg11": Reduction(width_mult=0.125, eval_samples=2000),
    "dln": Reduction(),
    "resnet50": Reduction(subset=512, epochs=2, eval_samples=500),
}

# Seconds per forward+backward pass for --list's estimate. CPU: this 2-core machine
# with the CPU to itself (the VGG-11/8 probe runs, the DLN probe runs, ResNet-50's
# smoke steps); with other work on the machine the runs took 2-4x longer (the times
# in reports/REPRODUCTION.md). Paper: an H200, from reports/benchmarks.md's VGG-16
# training rate; not yet measured for these figures.
SECONDS_PER_PASS = {
    ("cpu", "vgg16"): 0.035, ("cpu", "vgg11"): 0.035, ("cpu", "dln"): 0.006, ("cpu", "resnet50"): 20.0,
    ("paper", "vgg16"): 0.005, ("paper", "vgg11"): 0.004, ("paper", "dln"): 0.0015, ("paper", "resnet50"): 0.03,
}


def figure(name: str) -> Figure:
    """Raises ValueError for an unknown figure name."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose from {', '.join(FIGURES)} or all")
    return FIGURES[name]


def _paper_base(exp: Experiment, norm: str, kind: str) -> RunConfig:
    config = paper_config(exp.model, kind, norm=norm)
    train = config.train
    if exp.epochs is not None:
        train = dataclasses.replace(train, epochs=exp.epochs, steps=None)
    if exp.lr is not None:
        train = dataclasses.replace(train, lr=exp.lr)
    return dataclasses.replace(config, train=train)


def paper_steps(key: str) -> int:
    """The paper's optimizer steps for experiment ``key`` (for the short-run rule)."""
    exp = EXPERIMENTS[key]
    return total_steps(_paper_base(exp, exp.norms[0], "train"))


def experiment_configs(key: str, scale: str, *, data_dir: str | None = None, device: str = "auto",
                       seeds: Sequence[int] | None = None, subset: int | None = None) -> list[RunConfig]:
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
    config = _paper_base(exp, exp.norms[0], "train")
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
    if kind == "ics" and scale == "cpu":
        n = CPU_SCALE[exp.model].ics_measurements
        schedule = ScheduleConfig(every=max(1, steps * 5 // (4 * n)), dense_until=steps // 15,
                                  dense_every=max(1, steps // (3 * n)))
        config = dataclasses.replace(config, ics=dataclasses.replace(config.ics, schedule=schedule))
    if kind == "ics-noise" and exp.layers:
        config = dataclasses.replace(config, distributions=dataclasses.replace(config.distributions,
                                                                               layers=exp.layers))
    configs = lr_variants(config, exp.norms, exp.lrs) if kind == "ics" else variants(config, exp.norms)
    return with_seeds(configs, seeds) if seeds else configs


def estimate_seconds(key: str, scale: str, seeds: int = 1) -> float:
    """A rough time for experiment ``key`` from its passes and :data:`SECONDS_PER_PASS`
    (no data read: ``--list`` works offline)."""
    configs = experiment_configs(key, scale)
    per_pass = SECONDS_PER_PASS.get((scale, EXPERIMENTS[key].model), 0.01)
    return seeds * per_pass * sum(estimate_passes(c, total_steps(c))["total"] for c in configs)


def figure_seconds(name: str, scale: str, seeds: int = 1, done: set[str] | None = None) -> float:
    """Time of ``name``'s experiments, leaving out those in ``done`` (run for an earlier figure)."""
    return sum(estimate_seconds(k, scale, seeds) for k in figure(name).all_experiments if k not in (done or set()))


__all__ = ["CPU_SCALE", "EXPERIMENTS", "FIGURES", "SCALES", "Check", "Experiment", "Figure", "experiment_configs",
           "figure", "paper_steps"]
