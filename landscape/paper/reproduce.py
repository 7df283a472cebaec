"""Every figure of Santurkar et al. 2018 as one command: ``landscape reproduce FIGURE``.

A :class:`Figure` names the experiments it draws on (:data:`EXPERIMENTS`, each a
set of runs of one kind: train, probe, ics or ics-noise) and the claim groups of
the catalogue (:mod:`landscape.paper.catalogue`) judged on them
(:func:`landscape.paper.claims.group_claims`). Experiments are shared between
figures (Fig. 1, 2 and 8 read the same noisy-BN runs) and run once. Fig. 7 (v3) is
the theory's schematic: there is nothing to run for it. Fig. 3, 5 and 11 show the
VGG and the DLN side by side; :meth:`Figure.only` keeps one network's panels (the
DLN's take minutes on a CPU where the VGG's take an hour), written to
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
from dataclasses import dataclass, field

from landscape.config import RunConfig, ScheduleConfig
from landscape.data import total_steps
from landscape.paper import catalogue
from landscape.paper.defaults import paper_config, with_measurements
from landscape.runner.experiments import estimate_passes, lr_variants, variants, with_seeds

SCALES = ("paper", "cpu")


@dataclass(frozen=True)
class Experiment:
    """One experiment: runs of one kind, one per normalization (and lr for ICS)."""

    kind: str  # "train", "probe", "ics" or "ics-noise"
    model: str
    norms: tuple[str, ...]
    lrs: tuple[float, ...] = ()  # ics: a run per lr and norm; else one lr in place of the protocol's
    layers: tuple[int, ...] = ()  # ics-noise: the paper's layers whose inputs to record (mapped per model)
    epochs: int | None = None  # the paper's length in epochs (the seed review's runs)
    lr: float | None = None  # in place of the protocol's (the seed review: 0.01)


@dataclass(frozen=True)
class Check:
    """A claim group of the catalogue (:data:`landscape.paper.catalogue.GROUPS`) judged on
    some experiments' runs."""

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
    network: str | None = None  # set when only this network's panels are kept (see only())

    @property
    def all_experiments(self) -> tuple[str, ...]:
        keys = [k for c in self.checks for k in c.experiments] + list(self.experiments)
        return tuple(dict.fromkeys(keys))

    @property
    def folder(self) -> str:
        """The figure's output folder: ``fig3``, or ``fig3-dln`` for its DLN panels alone."""
        return self.name + (f"-{self.network}" if self.network else "")

    @property
    def networks(self) -> tuple[str, ...]:
        """The networks of the figure's experiments (:func:`network_of`), in order."""
        return tuple(dict.fromkeys(network_of(EXPERIMENTS[k].model) for k in self.all_experiments))

    def only(self, network: str) -> Figure | None:
        """The figure restricted to ``network``'s panels (Fig. 3, 5 and 11 show the VGG
        and the DLN side by side): itself when all its panels are that network's, None
        when none is."""

        def mine(keys: tuple[str, ...]) -> bool:
            return all(network_of(EXPERIMENTS[k].model) == network for k in keys)

        checks = tuple(c for c in self.checks if mine(c.experiments))
        if len(checks) == len(self.checks) and mine(self.experiments):
            return self
        if not checks:
            return None
        return dataclasses.replace(
            self,
            label=f"{self.label}, {network.upper()}",
            checks=checks,
            experiments=tuple(k for k in self.experiments if mine((k,))),
            network=network,
        )


NETWORKS = ("vgg", "dln", "resnet")


def network_of(model: str) -> str:
    """The network family of a model name: ``vgg16``/``vgg11`` -> vgg, ``resnet50`` -> resnet, ``dln``."""
    return next((n for n in NETWORKS if model.startswith(n)), model)


LP = catalogue.LP
_NOISE_LAYERS = catalogue.paper_layers(("fig1-distributions", "noisy", "moments"), "vgg")  # 2, 3, 9, 11, 13
EXPERIMENTS: dict[str, Experiment] = {
    "vgg-noise": Experiment("ics-noise", "vgg16", ("none", "bn", "noisy_bn"), layers=_NOISE_LAYERS),
    "vgg-lr0.5": Experiment("ics-noise", "vgg16", ("none", "bn"), lr=0.5, layers=(3, 11)),
    "vgg-ics": Experiment("ics", "vgg16", ("none", "bn"), lrs=(0.1, 0.01)),
    "dln-ics": Experiment("ics", "dln", ("none", "bn"), lrs=(1e-6, 1e-7)),
    "vgg-probe": Experiment("probe", "vgg16", ("none", "bn")),
    "vgg-lp": Experiment("ics-noise", "vgg16", LP, layers=(2, 9, 11, 13)),
    "vgg-lp-probe": Experiment("probe", "vgg16", LP),
    "dln-depth": Experiment("ics-noise", "dln", ("none", "bn"), layers=(1, 11, 24)),  # Fig. 9's layers
    "dln-probe": Experiment("probe", "dln", ("none", "bn")),
    "dln-lp-probe": Experiment("probe", "dln", LP),
    "vgg11-50ep": Experiment("train", "vgg11", ("none", "bn"), epochs=50, lr=0.01),
    "resnet50-20ep": Experiment("train", "resnet50", ("none", "bn"), epochs=20, lr=0.01),
}

_TRAINING = ("training",)
_LANDSCAPE = ("landscape", "predictiveness", "smoothness", "training")
FIGURES: dict[str, Figure] = {
    f.name: f
    for f in (
        Figure(
            "fig1",
            "Fig. 1",
            "BN trains faster; the layer-input distributions differ marginally",
            '"a consistent gain in training speed in models with BatchNorm layers"; the difference in the '
            'evolution of the layer-input distributions "seems to be much less pronounced" (marginal). As '
            "plotted: the standard network does not train at lr 0.5.",
            (
                Check("fig1-training", ("vgg-noise",)),
                Check("fig1-high-lr", ("vgg-lr0.5",)),
                Check("fig1-distributions", ("vgg-noise",)),
            ),
            ("training", "distributions"),
        ),
        Figure(
            "fig2",
            "Fig. 2",
            "Noisy BN: unstable layer inputs, yet BN's training",
            'With time-varying noise after every BN layer the network has "qualitatively less stable '
            'distributions than even the standard, non-BatchNorm network", yet "the performance difference '
            "between models with BatchNorm layers, and 'noisy' BatchNorm layers is almost non-existent\" "
            "(training accuracy, the noise on).",
            (Check("noisy", ("vgg-noise",)),),
            ("training", "distributions"),
        ),
        Figure(
            "fig3",
            "Fig. 3",
            "Internal covariate shift measured by gradients, VGG and DLN",
            '"networks with BatchNorm often exhibit an increase in ICS" (l2 difference and cosine of G and G\' at '
            'VGG layers #5, #10 and DLN layers #9, #17); in the DLN "the standard network experiences almost no '
            "ICS ... whereas for BatchNorm it appears that G and G' are almost uncorrelated\".",
            (Check("ics", ("vgg-ics",)), Check("ics", ("dln-ics",))),
            ("training", "ics"),
        ),
        Figure(
            "fig4",
            "Fig. 4",
            "The optimization landscape of VGG with and without BN",
            "With BN the loss varies less along the gradient (a), the gradient is more predictive (b) and the "
            "effective beta-smoothness is lower (c).",
            (Check("landscape", ("vgg-probe",)), Check("stability", ("vgg-probe",))),
            _LANDSCAPE,
        ),
        Figure(
            "fig5",
            "Fig. 5",
            "l_p normalizations train as well as BN",
            '"all the normalization strategies offer comparable performance to BatchNorm. In fact, for deep linear '
            'networks, l1-normalization performs even better than BatchNorm" (VGG: training accuracy; DLN: '
            "training loss).",
            (Check("lp-accuracy", ("vgg-lp", "vgg-noise")), Check("lp-loss", ("dln-lp-probe", "dln-probe"))),
            ("training",),
        ),
        Figure(
            "fig6",
            "Fig. 6",
            "l_p normalizations: more distributional shift than the standard network",
            'The l_p normalizations give "larger distributional covariate shift compared to normal networks" '
            "(layer #11), yet they train as well as BN.",
            (Check("lp-shift", ("vgg-lp", "vgg-noise")),),
            ("distributions", "training"),
        ),
        Figure(
            "fig8",
            "Fig. 8",
            "Noisy BN: the layer-input moments move",
            "The mean and variance of noisy BN's layer inputs (layers #2, #9, #13) change between steps and drift "
            "from their start far more than the standard network's.",
            (Check("moments", ("vgg-noise",)),),
            ("distributions",),
        ),
        Figure(
            "fig9",
            "Fig. 9",
            "Deep linear network: layer-input distributions at depth",
            "The DLN's layer inputs (layers 1, 11, 24) without BN; the paper says sigma is \"large and highly "
            'uncontrolled in practice" (§4). Growth with depth is our reading, checked apart.',
            (Check("depth", ("dln-depth",)),),
            ("distributions", "training"),
        ),
        Figure(
            "fig10",
            "Fig. 10",
            "The optimization landscape of the deep linear network",
            "As for VGG: with BN a narrower loss band, a more predictive gradient and a lower beta_eff.",
            (Check("landscape", ("dln-probe",)), Check("stability", ("dln-probe",))),
            _LANDSCAPE,
        ),
        Figure(
            "fig11",
            "Fig. 11",
            "Gradient change against step size",
            'The gradient changes less along the gradient with BN at the step sizes probed (VGG and DLN): "This '
            'explains why networks with BatchNorm are largely robust to a broad range of learning rates."',
            (Check("step-size", ("vgg-probe",)), Check("step-size", ("dln-probe",))),
            ("step-size", "predictiveness"),
        ),
        Figure(
            "fig12",
            "Fig. 12",
            "The landscape of VGG with l_p normalizations",
            '"all these techniques result in an improved smoothness of the landscape that is similar to the effect '
            'of BatchNorm" ("a similar (and, sometime, even stronger) effect"), and comparable training.',
            (
                Check("lp-training-probe", ("vgg-lp-probe", "vgg-probe")),
                Check("lp-landscape", ("vgg-lp-probe", "vgg-probe")),
            ),
            _LANDSCAPE,
        ),
        Figure(
            "fig13",
            "Fig. 13",
            "The landscape of the deep linear network with l_p normalizations",
            "As Fig. 12, for the DLN; its panel (a) is Fig. 5(b).",
            (Check("lp-loss", ("dln-lp-probe", "dln-probe")), Check("lp-landscape", ("dln-lp-probe", "dln-probe"))),
            _LANDSCAPE,
        ),
        Figure(
            "seed-vgg11",
            "seed review",
            "VGG-11, 50 epochs, SGD lr 0.01: BN against none",
            "Not the paper's experiment (the seed review's): BN raises the test accuracy.",
            (Check("seed-review", ("vgg11-50ep",)),),
            _TRAINING,
        ),
        Figure(
            "seed-resnet50",
            "seed review",
            "ResNet-50, 20 epochs, SGD lr 0.01: BN against none",
            "Not the paper's experiment (the seed review's): BN raises the test accuracy.",
            (Check("seed-review", ("resnet50-20ep",)),),
            _TRAINING,
        ),
    )
}
SCHEMATIC = {"fig7": "Fig. 7 is the theory's schematic (v3): nothing to run"}


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
    ("paper", "vgg16"): 0.005,
    ("paper", "vgg11"): 0.004,
    ("paper", "dln"): 0.0015,
    ("paper", "resnet50"): 0.03,
}


def figure(name: str, network: str | None = None) -> Figure:
    """The figure, restricted to ``network``'s panels when given (:meth:`Figure.only`).

    Raises:
        ValueError: an unknown figure name (or Fig. 7, which has no experiment), an
            unknown network, or a figure with no panel of that network.
    """
    if name in SCHEMATIC:
        raise ValueError(SCHEMATIC[name])
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose from {', '.join(FIGURES)} or all")
    fig = FIGURES[name]
    if network is None:
        return fig
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose from {', '.join(NETWORKS)}")
    kept = fig.only(network)
    if kept is None:
        raise ValueError(f"{name} has no {network} panel (its networks: {', '.join(fig.networks)})")
    return kept


def _paper_base(exp: Experiment, norm: str, kind: str) -> RunConfig:
    config = paper_config(exp.model, kind, norm=norm)
    train = config.train
    if exp.epochs is not None:
        train = dataclasses.replace(train, epochs=exp.epochs, steps=None)
    if exp.lr is not None:
        train = dataclasses.replace(train, lr=exp.lr)
    return dataclasses.replace(config, train=train)


def paper_steps(key: str) -> int:
    """The paper's optimizer steps for experiment ``key`` (the scale of its verdicts)."""
    exp = EXPERIMENTS[key]
    return total_steps(_paper_base(exp, exp.norms[0], "train"))


def paper_protocol(key: str) -> dict[str, object]:
    """``{"model", "steps"}`` of the paper's protocol for experiment ``key`` (what a
    verdict's scale is measured against)."""
    return {"model": EXPERIMENTS[key].model, "steps": paper_steps(key)}


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
    configs = lr_variants(config, exp.norms, exp.lrs) if kind == "ics" else variants(config, exp.norms)
    return with_seeds(configs, seeds) if seeds else configs


def estimate_seconds(key: str, scale: str, seeds: int = 1) -> float:
    """A rough time for experiment ``key`` from its passes and :data:`SECONDS_PER_PASS`
    (no data read: ``--list`` works offline)."""
    configs = experiment_configs(key, scale)
    per_pass = SECONDS_PER_PASS.get((scale, EXPERIMENTS[key].model), 0.01)
    return seeds * per_pass * sum(estimate_passes(c, total_steps(c))["total"] for c in configs)


def figure_seconds(
    name: str, scale: str, seeds: int = 1, done: set[str] | None = None, network: str | None = None
) -> float:
    """Time of ``name``'s experiments (``network``'s alone when given), leaving out
    those in ``done`` (run for an earlier figure)."""
    return sum(
        estimate_seconds(k, scale, seeds) for k in figure(name, network).all_experiments if k not in (done or set())
    )


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
    "network_of",
    "paper_protocol",
    "paper_steps",
]
