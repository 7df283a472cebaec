"""The claims of Santurkar et al. (2018, arXiv 1805.11604 v3) that ``landscape``
checks, as data: one :class:`Row` per claim and figure panel, with the paper's own
words, the statistic that measures it as the paper plots it, the direction and the
threshold. :func:`landscape.paper.claims.judge` judges every row the same way.

Figures are numbered as in v3 (``../shared/PAPER-PROTOCOL.md`` §9). Fig. 7 is the
schematic of the theory's architectures: it has no experiment and no row.

Tests (``Row.test``) on a statistic ``s`` of the two variants ``a`` and ``b`` with
threshold ``T`` (for ratios the statistic and ``T`` are on the log scale, so a ratio
threshold of 1.25 is symmetric: 1.25 and 0.8), read from the 95% interval
``[lo, hi]`` of ``s`` (:mod:`landscape.paper.intervals`):

=============  ======================  ======================
test           supports when           contradicts when
=============  ======================  ======================
``greater``    ``lo > T``              ``hi < -T``
``less``       ``hi < -T``             ``lo > T``
``not-below``  ``lo > -T``             ``hi < -T``
``not-above``  ``hi < T``              ``lo > T``
``within``     ``-T < lo, hi < T``     ``hi < -T or lo > T``
=============  ======================  ======================

and inconclusive otherwise: "effect within threshold" when the interval lies inside
``[-T, T]``, "too noisy" when it reaches across a threshold.

Layers are the paper's numbers (VGG #1..#13, DLN #1..#25). A smaller network maps
paper layer ``i`` of ``N`` to ``round(i * n / N)`` of its ``n`` (:func:`map_layer`):
VGG-11's 8 convolutions take the paper's #5 and #10 as #3 and #6.

Torch-free: the report and ``landscape reproduce --list`` import it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

SCHEMA_VERSION = 1
RATIO = 1.25  # a ratio counts beyond 1.25 (or 1/1.25) in a direction
ACCURACY = 0.02  # an accuracy difference counts beyond 2 points
COSINE = 0.1  # Fig. 3: BN's median cosine at least this below the standard network's
UNCORRELATED = 0.3  # Fig. 3(b): BN's median |cos(G, G')| at most this ...
CORRELATED = 0.9  # ... while the standard network's median cos(G, G') is at least this
MIN_POINTS = 20  # fewer paired measurements than this: "too few measurements"
FINAL_FRACTION = 0.1  # "final" accuracy or loss: the mean over the last 10% of the steps
TESTS = ("greater", "less", "not-below", "not-above", "within")
LP = ("l1", "l2", "linf")

# The paper's networks: VGG with 13 normalized layers (VGG-16), the 25-layer DLN.
PAPER_LAYERS = {"vgg": 13, "dln": 25}
PAPER_MODEL = {"vgg": "vgg16", "dln": "dln"}
# Convolutions (normalized layers) of the registry's VGGs (landscape.models.vgg.LAYOUTS).
VGG_CONVS = {"vgg11": 8, "vgg13": 10, "vgg16": 13, "vgg19": 16, "vgg_tiny": 3, "tiny": 3}


def family(model: str) -> str:
    """``vgg``, ``dln``, ``resnet``, ``gpt`` or ``other`` from a model name (no registry needed)."""
    if model in ("dln", "gpt"):
        return model
    if model in VGG_CONVS:
        return "vgg"
    return "resnet" if model.startswith("resnet") else "other"


def map_layer(layer: int, model: str, depth: int | None = None) -> int:
    """The layer of ``model`` that stands for the paper's ``layer``: the same number
    in the paper's own networks, ``round(layer * n / N)`` (at least 1) in one with
    ``n`` layers where the paper's has ``N``; ``depth``: the DLN's layer count."""
    fam = family(model)
    if fam not in PAPER_LAYERS:
        return layer
    n = depth if fam == "dln" and depth else VGG_CONVS.get(model, PAPER_LAYERS[fam])
    total = PAPER_LAYERS[fam]
    return layer if n == total else max(1, math.floor(layer * n / total + 0.5))


@dataclass(frozen=True)
class Row:
    """One claim of the paper (or, with ``beyond_paper``, an observation of ours).

    ``measure`` names how a run pair becomes paired per-step values
    (:data:`landscape.paper.claims.MEASURES`); the statistic compares variant ``a``
    with ``b`` (``per_lr``: once per learning rate of the runs, for Fig. 3). ``groups`` are
    the check names that figures and commands select rows by; ``also`` names other
    panels that plot the same numbers (the claim is counted once).
    """

    id: str
    groups: tuple[str, ...]
    figure: str
    panel: str
    claim: str
    quote: str
    quote_source: str
    measure: str
    a: str
    b: str
    test: str
    threshold: float
    family: str  # "vgg", "dln", "gpt" or "any"
    layers: tuple[int, ...] = ()  # the paper's layer numbers the measure reads
    step_size: float | None = None  # Fig. 11: the probe step size, a multiple of the lr
    lr: float | None = None  # the learning rate of the paired runs NORM-lrLR (set by :func:`at_lr`)
    per_lr: bool = False  # judged once per learning rate the runs have (Fig. 3)
    beyond_paper: bool = False
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise ValueError(f"{self.id}: unknown test {self.test!r}")

    def at_lr(self, lr: float) -> Row:
        """This per-lr row for the runs at ``lr``."""
        return dataclasses.replace(
            self, id=f"{self.id}-lr{lr:g}", claim=f"{self.claim} at lr {lr:g}", lr=lr, per_lr=False
        )

    @property
    def label(self) -> str:
        return f"{self.figure}({self.panel})" if self.panel else self.figure

    @property
    def log_scale(self) -> bool:
        """The statistic is a ratio, judged on the log scale."""
        return self.measure in LOG_MEASURES


# Measures whose statistic is a ratio (median over the paired steps of log(a_t / b_t)).
LOG_MEASURES = frozenset(
    {
        "band",
        "predictiveness",
        "beta",
        "grad-change",
        "ics-l2",
        "train-loss-final",
        "dist-change-mean",
        "dist-change-var",
        "dist-drift-mean",
        "dist-drift-var",
        "beta-limit",
        "precond-limit",
        "sigma-depth",
    }
)

# fmt: off
# The rows as a table, one Row per claim: kept compact by hand (ruff format would give
# every field its own line and triple the file).
_S21, _S22, _S31, _S33 = "§2.1", "§2.2", "§3.1", "§3.3"
_LANDSCAPE = (
    ("a", "band", "BN narrows the loss band along the gradient (a smoother loss)",
     "[the loss of the vanilla network] has a very wide range of values along the direction of the gradient, "
     "especially in the initial phases of training"),
    ("b", "predictiveness", "with BN the gradient changes less along its own direction (more predictive)",
     "[gradient predictiveness differs by] close to two orders of magnitude, especially early in training"),
    ("c", "beta", "BN lowers the effective beta-smoothness",
     "[there are] consistent differences [in effective beta-smoothness]"),
)
_LP_SMOOTH = "all these techniques result in an improved smoothness of the landscape that is similar to the effect " \
             "of BatchNorm"
_LP_PERFORMANCE = "all the normalization strategies offer comparable performance to BatchNorm"
_NOISY = ("qualitatively less stable distributions than even the standard, non-BatchNorm network")


def _rows() -> list[Row]:
    rows: list[Row] = []
    add = rows.append
    # Fig. 1: VGG with and without BN, lr 0.1 (and 0.5).
    add(Row("fig1a-speed", ("fig1-training",), "Fig. 1", "a",
            "BN trains faster: a higher training accuracy along the run",
            "There is a consistent gain in training speed in models with BatchNorm layers.", "Fig. 1 caption",
            "train-acc-curve", "bn", "none", "greater", ACCURACY, "vgg"))
    add(Row("fig1b-test", ("fig1-training",), "Fig. 1", "b",
            "BN ends with a higher test accuracy (83% against 80%)",
            "test accuracy 83% with BN, 80% without (no data augmentation)", "App. A.1, as digested",
            "test-acc", "bn", "none", "greater", ACCURACY, "vgg"))
    add(Row("fig1a-lr0.5", ("fig1-high-lr",), "Fig. 1", "a",
            "at lr 0.5 BN trains and the standard network does not (final training accuracy)",
            "(as plotted: the standard network at lr 0.5 stays at chance for all 15k steps)",
            "Fig. 1(a), read off the plot", "train-acc-final", "bn", "none", "greater", ACCURACY, "vgg"))
    for moment in ("mean", "var"):
        add(Row(f"fig1c-{moment}", ("fig1-distributions",), "Fig. 1", "c",
                f"BN and the standard network's layer inputs are about as stable (|change of the {moment}| between "
                "measurements, layers #3 and #11): a marginal difference",
                "the difference in distributional stability seems to be marginal; much less pronounced than the "
                "gap in performance", "§2.1; Fig. 1 caption", f"dist-change-{moment}", "bn", "none", "within",
                RATIO, "vgg", layers=(3, 11)))
    # Fig. 2 and 8: noisy BN (Algorithm 1), judged with its noise on (training accuracy).
    add(Row("fig2-noisy-like-bn", ("noisy",), "Fig. 2", "",
            "noisy BN trains as well as BN (training accuracy with the noise on, last 10% of the steps)",
            "the performance difference between models with BatchNorm layers, and \"noisy\" BatchNorm layers is "
            "almost non-existent", _S21, "train-acc-final", "noisy_bn", "bn", "within", ACCURACY, "vgg"))
    add(Row("fig2-noisy-beats-none", ("noisy",), "Fig. 2", "",
            "noisy BN trains better than the standard network (training accuracy with the noise on, last 10%)",
            "yet it still performs better in terms of training", "Fig. 2 caption",
            "train-acc-final", "noisy_bn", "none", "greater", ACCURACY, "vgg"))
    for panel, kind in (("a", "change"), ("b", "drift")):
        for moment in ("mean", "var"):
            what = "between successive measurements" if kind == "change" else "from the first measurement"
            add(Row(f"fig8{panel}-{moment}", ("noisy", "moments") if (panel, moment) == ("a", "mean") else
                    ("moments",), "Fig. 8", panel,
                    f"noisy BN's layer inputs are less stable than the standard network's (|{kind} of the "
                    f"{moment}| {what}, layers #2, #9, #13)", _NOISY, "§2.1; App. B (Fig. 8)",
                    f"dist-{kind}-{moment}", "noisy_bn", "none", "greater", RATIO, "vgg", layers=(2, 9, 13),
                    also=("Fig. 2",) if (panel, moment) == ("a", "mean") else ()))
    # Fig. 3: ICS (Definition 2.1) as l2 difference and cosine, per layer and, when judged, per lr
    # (the paper's: VGG 0.1 and 0.01, DLN 1e-6 and 1e-7; runs named NORM-lrLR).
    for fam, fig, layers in (("vgg", "a", (5, 10)), ("dln", "b", (9, 17))):
        for layer in layers:
            add(Row(f"fig3{fig}-l2-{layer}", ("ics",), "Fig. 3", fig,
                    f"ICS with BN is not smaller than without (||G - G'||, layer #{layer})",
                    "networks with BatchNorm often exhibit an increase in ICS", _S22, "ics-l2", "bn", "none",
                    "not-below", RATIO, fam, layers=(layer,), per_lr=True))
            if fam == "vgg":
                add(Row(f"fig3a-cos-{layer}", ("ics",), "Fig. 3", fig,
                        f"with BN, G and G' agree less: BN's median cos(G, G') at least {COSINE} below the standard "
                        f"network's (layer #{layer})",
                        "networks with BatchNorm often exhibit an increase in ICS", _S22, "ics-cos-gap", "none", "bn",
                        "greater", COSINE, fam, layers=(layer,), per_lr=True))
            else:
                add(Row(f"fig3b-cos-{layer}", ("ics",), "Fig. 3", fig,
                        f"the standard DLN has almost no ICS (median cos >= {CORRELATED}) while with BN G and G' are "
                        f"almost uncorrelated (median |cos| <= {UNCORRELATED}) (layer #{layer})",
                        "the standard network experiences almost no ICS for the entirety of training, whereas for "
                        "BatchNorm it appears that G and G' are almost uncorrelated", _S22, "ics-uncorrelated", "bn",
                        "none", "not-above", 0.0, fam, layers=(layer,), per_lr=True))
    # Fig. 4 (VGG) and Fig. 10 (DLN): the landscape along the gradient.
    for fam, fig in (("vgg", "Fig. 4"), ("dln", "Fig. 10")):
        n = fig.split()[-1]
        for panel, measure, claim, quote in _LANDSCAPE:
            add(Row(f"fig{n}{panel}-{measure}", ("landscape",), fig, panel, claim, quote,
                    _S31 if fam == "vgg" else "§3.1 (the DLN: Fig. 10, App. B)", measure, "none", "bn", "greater",
                    RATIO, fam))
        add(Row(f"fig{n}-beyond-limit", ("stability",), fig, "c",
                "with BN, beta_eff stays below the stability limit 2/eta (median of beta_eff / the run's "
                "full-batch limit over the probes: beta_eff x eta / 2 for the paper's plain SGD)",
                "", "beyond the paper: the edge of stability (Cohen et al. 2021)", "beta-limit", "bn", "bn", "less",
                RATIO, fam, beyond_paper=True))
    # Fig. 11: the gradient change against the step size.
    for fam, panel, sizes in (("vgg", "a", (0.5, 1.0, 2.0, 4.0)), ("dln", "b", (0.01, 0.1, 1.0, 10.0, 30.0))):
        for size in sizes:
            add(Row(f"fig11{panel}-{size:g}lr", ("step-size",), "Fig. 11", panel,
                    f"at step size {size:g} x lr the gradient changes less with BN",
                    "This explains why networks with BatchNorm are largely robust to a broad range of learning "
                    "rates.", "§3.1 (Fig. 11)", "grad-change", "none", "bn", "greater", RATIO, fam, step_size=size))
    # Fig. 5: l_p normalizations train as well as BN (VGG: training accuracy; DLN: training loss).
    for lp in LP:
        add(Row(f"fig5a-{lp}", ("lp-accuracy",), "Fig. 5", "a",
                f"{lp} trains as well as BN or better (training accuracy, last 10% of the steps)", _LP_PERFORMANCE,
                _S33, "train-acc-final", lp, "bn", "not-below", ACCURACY, "vgg"))
        add(Row(f"fig5b-{lp}", ("lp-loss",), "Fig. 5", "b",
                f"{lp} trains the DLN as well as BN or better (training loss, last 10% of the steps)", _LP_PERFORMANCE,
                _S33, "train-loss-final", lp, "bn", "not-above", RATIO, "dln", also=("Fig. 13(a)",)))
    add(Row("fig5b-l1-beats-bn", ("lp-loss",), "Fig. 5", "b",
            "on the DLN, l1 trains even better than BN (lower training loss, last 10% of the steps)",
            "for deep linear networks, l1-normalization performs even better than BatchNorm", _S33,
            "train-loss-final", "bn", "l1", "greater", RATIO, "dln", also=("Fig. 13(a)",)))
    # Fig. 6: the l_p normalizations' layer inputs shift more than the unnormalized network's.
    for lp in LP:
        for moment in ("mean", "var"):
            add(Row(f"fig6-{lp}-{moment}", ("lp-shift",), "Fig. 6", "",
                    f"{lp}'s layer inputs shift more than the standard network's (|drift of the {moment}| from the "
                    "first measurement, layer #11)",
                    "larger distributional covariate shift compared to normal networks", "Fig. 6 caption; §3.3",
                    f"dist-drift-{moment}", lp, "none", "greater", RATIO, "vgg", layers=(11,)))
    # Fig. 9: the DLN's layer-input scale (our reading; the paper says sigma is "large and uncontrolled").
    add(Row("fig9-beyond-depth", ("depth",), "Fig. 9", "",
            "in the standard DLN the layer inputs' scale (sigma) grows with depth (#24 against #1)",
            "sigma_j tends to be large and highly uncontrolled in practice",
            "beyond the paper: §4 says sigma is large and uncontrolled; growth with depth is our reading",
            "sigma-depth", "none", "none", "greater", RATIO, "dln", layers=(1, 24), beyond_paper=True))
    # Fig. 12 (VGG) and Fig. 13 (DLN): l_p normalizations and the landscape.
    for fam, fig in (("vgg", "Fig. 12"), ("dln", "Fig. 13")):
        n = fig.split()[-1]
        if fam == "vgg":
            for lp in LP:
                add(Row(f"fig12a-{lp}", ("lp-training-probe",), fig, "a",
                        f"{lp} trains as well as BN or better (training accuracy, last 10% of the steps)",
                        _LP_PERFORMANCE, _S33, "train-acc-final", lp, "bn", "not-below", ACCURACY, fam))
        for panel, measure, what in (("b", "band", "loss band"), ("c", "predictiveness", "gradient change"),
                                     ("d", "beta", "beta_eff")):
            for lp in LP:
                add(Row(f"fig{n}{panel}-{lp}-vs-none", ("lp-landscape",), fig, panel,
                        f"{lp} smooths the landscape against the standard network ({what}, none / {lp})", _LP_SMOOTH,
                        _S33, measure, "none", lp, "greater", RATIO, fam))
                add(Row(f"fig{n}{panel}-{lp}-like-bn", ("lp-landscape",), fig, panel,
                        f"{lp} smooths the landscape as BN does or more ({what}, {lp} / bn at most {RATIO})",
                        "a similar (and, sometime, even stronger) effect", "§1; §3.3", measure, lp, "bn",
                        "not-above", RATIO, fam))
    # Beyond the paper (issue #24): the GPT on Shakespeare under AdamW, pre-LN, post-LN and no
    # norm, probed along the update; pre-LN under plain SGD for contrast.
    _TN = "beyond the paper: the transformer-norms study"
    for measure, what in (("band", "narrows the loss band along the update"),
                          ("predictiveness", "makes the gradient more predictive along the update")):
        add(Row(f"tn-{measure}", ("transformer-norms",), "transformer-norms", "", f"pre-LN {what} (none / pre-LN)",
                "", _TN, measure, "none", "pre-ln", "greater", RATIO, "gpt", beyond_paper=True))
    for variant in ("pre-ln", "post-ln", "none"):
        add(Row(f"tn-precond-{variant}", ("transformer-norms",), "transformer-norms", "",
                f"{variant}: AdamW's preconditioned sharpness sits at its full-batch limit 38/eta (median of "
                "lambda_max(P^-1 H) / (2+2 beta1)/((1-beta1) eta); Cohen et al. 2022's adaptive edge of stability, "
                "shown for full batches: at batch 32 it may stay below)", "", _TN, "precond-limit", variant,
                variant, "within", RATIO, "gpt", beyond_paper=True))
    for measure, what in (("band", "a wider loss band"), ("predictiveness", "a less predictive gradient")):
        add(Row(f"tn-post-{measure}", ("transformer-norms",), "transformer-norms", "",
                f"post-LN has {what} along the update than pre-LN (post-LN / pre-LN; Xiong et al. 2020: "
                "post-LN's gradients near the output are larger at initialization)", "", _TN, measure, "post-ln",
                "pre-ln", "greater", RATIO, "gpt", beyond_paper=True))
    add(Row("tn-sgd-limit", ("transformer-norms",), "transformer-norms", "",
            "pre-LN under plain SGD: beta_eff stays below 2/eta (median of beta_eff / 2/eta)", "", _TN,
            "beta-limit", "pre-ln-sgd", "pre-ln-sgd", "less", RATIO, "gpt", beyond_paper=True))
    # The seed review's runs (VGG-11 50 epochs, ResNet-50 20 epochs at lr 0.01): not the paper's experiments.
    add(Row("seed-review-test", ("seed-review",), "seed review", "",
            "BN raises the test accuracy (final test accuracy, bn - none)", "",
            "beyond the paper: the seed review's runs, not the paper's protocol", "test-acc", "bn", "none", "greater",
            ACCURACY, "any", beyond_paper=True))
    return rows
# fmt: on


CATALOGUE: tuple[Row, ...] = tuple(_rows())
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(g for r in CATALOGUE for g in r.groups))
# What each experiment command checks (the groups whose variants it has are judged).
KIND_GROUPS: dict[str, tuple[str, ...]] = {
    "probe": ("landscape", "stability", "step-size", "lp-landscape", "lp-training-probe", "lp-loss"),
    "ics": ("ics",),
    "ics-noise": ("fig1-training", "fig1-distributions", "noisy", "moments", "lp-accuracy", "lp-shift", "depth"),
    "train": ("seed-review",),
}


def rows(group: str) -> tuple[Row, ...]:
    """The catalogue's rows of ``group``.

    Raises:
        ValueError: an unknown group.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown claim group {group!r}; choose from {', '.join(GROUPS)}")
    return tuple(r for r in CATALOGUE if group in r.groups)


def paper_layers(groups: tuple[str, ...], fam: str) -> tuple[int, ...]:
    """The paper's layers that ``groups``' rows of family ``fam`` read (sorted)."""
    return tuple(sorted({layer for g in groups for r in rows(g) if r.family in (fam, "any") for layer in r.layers}))


__all__ = [
    "ACCURACY",
    "CATALOGUE",
    "COSINE",
    "GROUPS",
    "KIND_GROUPS",
    "MIN_POINTS",
    "RATIO",
    "Row",
    "SCHEMA_VERSION",
    "family",
    "map_layer",
    "paper_layers",
    "rows",
]
