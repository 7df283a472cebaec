"""The paper's figures as data: each :class:`Figure` names the experiments it draws on
(:data:`EXPERIMENTS`, each a set of runs of one kind: train, probe, ics or ics-noise)
and the claim groups of the catalogue (:mod:`landscape.paper.catalogue`) judged on them
(:func:`landscape.paper.claims.group_claims`). Experiments are shared between figures
(Fig. 1, 2 and 8 read the same noisy-BN runs) and run once. Fig. 7 (v3) is the theory's
schematic: there is nothing to run for it. Fig. 3, 5 and 11 show the VGG and the DLN
side by side; :meth:`Figure.only` keeps one network's panels.
:mod:`landscape.paper.reproduce` runs them at a scale."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from landscape.paper import catalogue


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
    hessian_every: int | None = None  # also track lambda_max (and Adam's lambda_max(P^-1 H)) every N steps


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
        """The networks of the figure's experiments (:func:`landscape.paper.catalogue.family`), in order."""
        return tuple(dict.fromkeys(catalogue.family(EXPERIMENTS[k].model) for k in self.all_experiments))

    def only(self, network: str) -> Figure | None:
        """The figure restricted to ``network``'s panels (Fig. 3, 5 and 11 show the VGG
        and the DLN side by side): itself when all its panels are that network's, None
        when none is."""

        def mine(keys: tuple[str, ...]) -> bool:
            return all(catalogue.family(EXPERIMENTS[k].model) == network for k in keys)

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


NETWORKS = ("vgg", "dln", "resnet", "gpt")  # the model families (catalogue.family) of the experiments

# The transformer-norms study's variants (issue #24): the GPT's fields and its training's,
# in place of its protocol's (AdamW, lr 1e-3). Plain SGD, for contrast, at lr 0.1 without
# weight decay (AdamW's lr 1e-3 would barely move SGD), fixed before any run was made.
GPT_VARIANTS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "pre-ln": ({"norm": "layer", "norm_placement": "pre"}, {}),
    "post-ln": ({"norm": "layer", "norm_placement": "post"}, {}),
    "none": ({"norm": "none"}, {}),
    "pre-ln-sgd": (
        {"norm": "layer", "norm_placement": "pre"},
        {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0, "betas": (0.9, 0.999)},
    ),
}


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
    "gpt-norms": Experiment("probe", "gpt", tuple(GPT_VARIANTS), hessian_every=80),
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
        Figure(
            "transformer-norms",
            "transformer-norms",
            "Beyond the paper: the paper's question asked of a transformer's LayerNorm",
            "Not the paper's experiment (issue #24): a GPT on Shakespeare under AdamW with pre-LN, post-LN and no "
            "normalization, and pre-LN under plain SGD, probed along the optimizer's update, with lambda_max and "
            "Adam's preconditioned sharpness tracked.",
            (Check("transformer-norms", ("gpt-norms",)),),
            ("training", "landscape", "predictiveness", "smoothness"),
        ),
    )
}


SCHEMATIC = {"fig7": "Fig. 7 is the theory's schematic (v3): nothing to run"}


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


def figures(network: str | None = None) -> list[Figure]:
    """Every figure in the paper's order; with ``network``, each restricted to that
    network's panels (:meth:`Figure.only`), the figures without one left out."""
    if network is None:
        return list(FIGURES.values())
    return [f for f in (whole.only(network) for whole in FIGURES.values()) if f is not None]
