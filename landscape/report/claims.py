"""The paper's claims judged on recorded runs: every row of the catalogue
(:mod:`landscape.catalogue`) by one function, :func:`judge`, with an interval.

A row compares variant ``a`` with variant ``b`` (``none`` and ``bn``, ``l1`` and
``bn``, ...) through a *measure* (:data:`MEASURES`) that turns the two runs of one
seed into values paired by training step, as the paper plots them:

* ratios (loss band, gradient change, beta_eff, ICS l2, moment changes, training
  loss): the statistic is the median over the common steps of ``log(a_t / b_t)``,
  shown as the ratio ``exp(median)``;
* accuracies: the mean over the common steps of ``a_t - b_t`` (training accuracy:
  over the whole run for Fig. 1's speed, over the last 10% of the steps for "final";
  noisy BN's is logged in train mode, its noise on), or the difference of the final
  test accuracies;
* cosines (Fig. 3): the difference of the two runs' median cos(G, G'), or for the
  DLN ``max(median |cos_bn| - 0.3, 0.9 - median cos_none)`` (<= 0: both hold).

Intervals (:mod:`landscape.report.intervals`), 95%:

* one seed: a stationary bootstrap over the step index (B = 2000,
  ``numpy.random.default_rng(0)``; the estimate +- t x the bootstrap standard
  deviation, see :func:`landscape.report.intervals.stationary_bootstrap` for why and
  its measured coverage): within the run, seed variance not included; a final test
  accuracy: the binomial interval of the difference on the test images;
* two seeds or more: the mean of the per-seed statistics (for ratios, the mean of
  the logs: a geometric mean) with a Student-t interval over the seeds.

The verdict is read from the interval against the row's threshold (the catalogue's
table). No verdict ("inconclusive", with the reason) when a run is not complete,
when fewer than :data:`~landscape.catalogue.MIN_POINTS` steps pair up, when a ratio
has a zero on either side, or when a layer or series the row reads was not recorded.
Pure numpy on run records, like the rest of the report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from landscape import catalogue
from landscape.catalogue import ACCURACY, CORRELATED, FINAL_FRACTION, MIN_POINTS, RATIO, UNCORRELATED, Row
from landscape.config import DATASET_SIZES
from landscape.report import data, intervals
from landscape.report.data import RunRecord, split_seed  # split_seed: re-exported

VERDICTS = ("supports", "contradicts", "inconclusive")
LOG_CLIP = 50.0  # |log ratio| beyond this (an overflowed probe: inf) counts as this
COMPLETE = ("finished", "diverged")


class NoVerdict(Exception):
    """The row applies but its numbers cannot give a verdict; the message says why."""


class NotApplicable(Exception):
    """The row does not apply to these runs (e.g. a step size they were not probed at)."""


@dataclass(frozen=True)
class Claim:
    """One judged row of the catalogue: what ``claims.json`` holds per entry."""

    id: str
    figure: str
    panel: str
    claim: str
    quote: str
    quote_source: str
    statistic: str
    test: str
    estimate: float | None
    values: dict[str, float]
    interval: list[float] | None
    interval_reason: str
    interval_method: str
    threshold: float
    verdict: str
    reason: str
    scale: dict[str, Any]
    seeds: list[int]
    per_seed: dict[str, dict[str, Any]] = field(default_factory=dict)
    beyond_paper: bool = False
    also: list[str] = field(default_factory=list)
    layers: dict[str, list[int]] = field(default_factory=dict)  # {"paper": [5], "run": [3]}: the mapping used
    schema_version: int = catalogue.SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- per-step series of one run -------------------------------------------------
def _series(record: RunRecord, name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in record.series:
        raise NoVerdict(f"{record.label} has no {name}")
    steps, values = record.series[name]
    return np.asarray(steps, dtype=float).ravel(), np.asarray(values, dtype=float)


def _rows(record: RunRecord, name: str, reduce: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    steps, values = _series(record, name)
    if values.ndim == 1:
        return steps, values
    with warnings.catch_warnings():  # all-NaN rows (a diverged probe) stay NaN and are dropped
        warnings.simplefilter("ignore", RuntimeWarning)
        return steps, reduce(values)


def band_width(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """max - min over the step sizes of L(w - eta g), per probe step (Fig. 4a)."""
    return _rows(record, "probe/loss", lambda v: np.nanmax(v, axis=1) - np.nanmin(v, axis=1))


def predictiveness(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """The largest ||grad L(w - eta g) - g|| over the step sizes, per probe step (Fig. 4b)."""
    return _rows(record, "probe/grad_diff", lambda v: np.nanmax(v, axis=1))


def beta(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """beta_eff per probe step (Fig. 4c)."""
    return _rows(record, "probe/beta", lambda v: np.nanmax(v, axis=1))


def grad_change(record: RunRecord, multiple: float) -> tuple[np.ndarray, np.ndarray]:
    """||grad L(w - eta g) - g|| at the step size ``multiple`` x lr, per probe step (Fig. 11)."""
    steps, values = _series(record, "probe/grad_diff")
    sizes, lr = data.absolute_step_sizes(record.config), record.lr
    if sizes is None or lr is None or values.ndim != 2 or values.shape[1] != len(sizes):
        raise NoVerdict(f"{record.label}: the probe's step sizes are unknown")
    match = np.flatnonzero(np.isclose(sizes / lr, multiple, rtol=1e-6))
    if not match.size:
        raise NotApplicable(f"{record.label} was not probed at {multiple:g} x lr")
    return steps, values[:, match[0]]


def _layer(record: RunRecord, paper_layer: int) -> int:
    model = data._get(record.config, "model", "name", default="") or ""
    depth = data._get(record.config, "model", "depth")
    return catalogue.map_layer(paper_layer, str(model), depth if isinstance(depth, int) else None)


def ics(record: RunRecord, key: str, paper_layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``ics/KEY/#k`` at the run's layer for the paper's ``paper_layer``."""
    return _series(record, f"ics/{key}/#{_layer(record, paper_layer)}")


def moments(record: RunRecord, kind: str, paper_layers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per measurement: the mean over the layers and sampled channels of ``|dist/KIND|``
    (KIND: mean_change, var_change, mean_drift, var_drift) at the steps every layer has."""
    per_layer = [_series(record, f"dist/{kind}/#{_layer(record, layer)}") for layer in paper_layers]
    common = per_layer[0][0]
    for steps, _ in per_layer[1:]:
        common = np.intersect1d(common, steps)
    columns = []
    for steps, values in per_layer:
        values = np.abs(values.reshape(len(steps), -1))
        columns.append(values[np.searchsorted(steps, common)])
    return common, np.concatenate(columns, axis=1).mean(axis=1)


def sigma(record: RunRecord, paper_layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Per measurement: the mean over the sampled channels of the layer input's standard deviation."""
    steps, var = _series(record, f"dist/var/#{_layer(record, paper_layer)}")
    return steps, np.sqrt(np.abs(var.reshape(len(steps), -1))).mean(axis=1)


def _padded(record: RunRecord, steps: np.ndarray, values: np.ndarray, until: np.ndarray,
            fill: float) -> tuple[np.ndarray, np.ndarray]:
    """A diverged run's training series continued with ``fill`` (accuracy 0, loss inf)
    at the other run's later steps: it stopped training, it did not stop counting."""
    if record.status != "diverged" or not steps.size:
        return steps, values
    later = until[until > steps[-1]]
    return np.concatenate([steps, later]), np.concatenate([values, np.full(later.size, fill)])


# -- pairing ---------------------------------------------------------------------
@dataclass(frozen=True)
class Paired:
    """One seed's paired values: ``data`` rows are steps (``(n,)`` or ``(n, 2)``)."""

    data: np.ndarray
    statistic: str  # a key of STATISTICS
    values: dict[str, float]


def _pair(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    (sa, xa), (sb, xb) = a, b
    common, ia, ib = np.intersect1d(sa, sb, return_indices=True)
    x = np.stack([xa[ia], xb[ib]], axis=1) if common.size else np.empty((0, 2))
    return common, x


def _final(steps: np.ndarray) -> np.ndarray:
    """The last FINAL_FRACTION of the steps (a mask)."""
    return steps >= (1 - FINAL_FRACTION) * steps.max() if steps.size else np.zeros(0, dtype=bool)


def _enough(n: int, what: str) -> None:
    if n < MIN_POINTS:
        raise NoVerdict(f"too few measurements: {n} paired {what} (at least {MIN_POINTS})")


def _log_ratio(x: np.ndarray, names: tuple[str, str], what: str) -> Paired:
    """Paired positive values -> their log ratios (NaN steps dropped, zeros refused)."""
    keep = ~np.isnan(x).any(axis=1)
    x = x[keep]
    _enough(len(x), what)
    zero_a, zero_b = int((x[:, 0] == 0).sum()), int((x[:, 1] == 0).sum())
    if zero_a or zero_b:
        raise NoVerdict(f"zero denominator: {what} is 0 for {names[1]} at {zero_b} and for {names[0]} at {zero_a} "
                        f"of {len(x)} steps, so their ratio is undefined")
    if (x < 0).any():
        raise NoVerdict(f"negative {what}: no ratio")
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        logs = np.clip(np.log(x[:, 0]) - np.log(x[:, 1]), -LOG_CLIP, LOG_CLIP)
    logs = np.nan_to_num(logs, nan=0.0)  # inf / inf: both overflowed, no difference to measure
    return Paired(logs, "median", {f"{names[0]}: median": float(np.median(x[:, 0])),
                                   f"{names[1]}: median": float(np.median(x[:, 1])), "points": float(len(x))})


def _difference(x: np.ndarray, names: tuple[str, str], what: str) -> Paired:
    x = x[~np.isnan(x).any(axis=1)]
    _enough(len(x), what)
    return Paired(x[:, 0] - x[:, 1], "mean", {f"{names[0]}: mean": float(x[:, 0].mean()),
                                              f"{names[1]}: mean": float(x[:, 1].mean()), "points": float(len(x))})


def _two_runs(series: Callable[[RunRecord], tuple[np.ndarray, np.ndarray]], what: str, kind: str = "log"):
    def measure(a: RunRecord, b: RunRecord, row: Row) -> Paired:
        _, x = _pair(series(a), series(b))
        names = (row.a, row.b)
        return _log_ratio(x, names, what) if kind == "log" else _difference(x, names, what)
    return measure


def _training(name: str, fill: float, final: bool, kind: str, what: str):
    """Training accuracy or loss paired by step (a diverged run continues at ``fill``)."""
    def measure(a: RunRecord, b: RunRecord, row: Row) -> Paired:
        sa, xa = _series(a, name)
        sb, xb = _series(b, name)
        sa, xa = _padded(a, sa, xa, sb, fill)
        sb, xb = _padded(b, sb, xb, sa, fill)
        steps, x = _pair((sa, xa), (sb, xb))
        if final:
            x = x[_final(steps)]
        names = (row.a, row.b)
        return _log_ratio(x, names, what) if kind == "log" else _difference(x, names, what)
    return measure


def _grad_change(a: RunRecord, b: RunRecord, row: Row) -> Paired:
    _, x = _pair(grad_change(a, row.step_size), grad_change(b, row.step_size))
    return _log_ratio(x, (row.a, row.b), f"gradient changes at {row.step_size:g} x lr")


def _ics_l2(a: RunRecord, b: RunRecord, row: Row) -> Paired:
    _, x = _pair(ics(a, "l2", row.layers[0]), ics(b, "l2", row.layers[0]))
    return _log_ratio(x, (row.a, row.b), f"ICS l2 values at layer #{_layer(a, row.layers[0])}")


def _ics_cosines(a: RunRecord, b: RunRecord, row: Row, statistic: str) -> Paired:
    _, x = _pair(ics(a, "cosine", row.layers[0]), ics(b, "cosine", row.layers[0]))
    x = x[~np.isnan(x).any(axis=1)]
    _enough(len(x), f"ICS cosines at layer #{_layer(a, row.layers[0])}")
    return Paired(x, statistic, {f"{row.a}: median cos": float(np.median(x[:, 0])),
                                 f"{row.b}: median cos": float(np.median(x[:, 1])),
                                 f"{row.a}: median |cos|": float(np.median(np.abs(x[:, 0]))), "points": float(len(x))})


def _moments(kind: str):
    def measure(a: RunRecord, b: RunRecord, row: Row) -> Paired:
        _, x = _pair(moments(a, kind, row.layers), moments(b, kind, row.layers))
        return _log_ratio(x, (row.a, row.b), f"|{kind}| values")
    return measure


def _beta_limit(a: RunRecord, b: RunRecord, row: Row) -> Paired:
    steps, values = beta(a)
    if a.lr is None:
        raise NoVerdict(f"{a.label}: no learning rate")
    x = np.stack([values * a.lr / 2, np.ones_like(values)], axis=1)
    return _log_ratio(x, (f"{row.a} beta_eff x eta/2", "1"), "beta_eff values")


def _sigma_depth(a: RunRecord, b: RunRecord, row: Row) -> Paired:
    deep, shallow = row.layers[-1], row.layers[0]
    _, x = _pair(sigma(a, deep), sigma(a, shallow))
    return _log_ratio(x, (f"sigma #{_layer(a, deep)}", f"sigma #{_layer(a, shallow)}"), "sigma values")


def test_images(config: Mapping[str, Any]) -> int | None:
    """How many test examples a run's test accuracy rests on (None: no test set)."""
    name = data._get(config, "data", "name")
    full = DATASET_SIZES[name][1] if name in DATASET_SIZES else data._get(config, "data", "synthetic_test")
    if name == "gaussian-linear" or not isinstance(full, int):
        return None
    n = data._get(config, "train", "eval_samples")
    return min(n, full) if isinstance(n, int) else full


def train_images(config: Mapping[str, Any]) -> int | None:
    name = data._get(config, "data", "name")
    full = DATASET_SIZES[name][0] if name in DATASET_SIZES else data._get(config, "data", "synthetic_train")
    subset = data._get(config, "data", "subset")
    return min(subset, full) if isinstance(subset, int) and isinstance(full, int) else full


def final_test_accuracy(record: RunRecord) -> float:
    steps, values = _series(record, "test/acc")
    if not values.size:
        raise NoVerdict(f"{record.label} has no test accuracy")
    return float(values.ravel()[-1])


def _test_accuracy(a: RunRecord, b: RunRecord, row: Row) -> Paired:
    na, nb = test_images(a.config), test_images(b.config)
    if not na or not nb:
        raise NoVerdict("no test set of known size")
    pa, pb = final_test_accuracy(a), final_test_accuracy(b)
    return Paired(np.array([[pa, na], [pb, nb]]), "binomial",
                  {f"{row.a}: test accuracy": pa, f"{row.b}: test accuracy": pb, "test images": float(na)})


MEASURES: dict[str, Callable[[RunRecord, RunRecord, Row], Paired]] = {
    "band": _two_runs(band_width, "loss-band widths"),
    "predictiveness": _two_runs(predictiveness, "gradient changes"),
    "beta": _two_runs(beta, "beta_eff values"),
    "grad-change": _grad_change,
    "ics-l2": _ics_l2,
    "ics-cos-gap": lambda a, b, row: _ics_cosines(a, b, row, "median-gap"),
    "ics-uncorrelated": lambda a, b, row: _ics_cosines(a, b, row, "uncorrelated"),
    "train-acc-curve": _training("train/acc", 0.0, False, "difference", "training accuracies"),
    "train-acc-final": _training("train/acc", 0.0, True, "difference", "training accuracies (last 10%)"),
    "train-loss-final": _training("train/loss", math.inf, True, "log", "training losses (last 10%)"),
    "test-acc": _test_accuracy,
    "dist-change-mean": _moments("mean_change"),
    "dist-change-var": _moments("var_change"),
    "dist-drift-mean": _moments("mean_drift"),
    "dist-drift-var": _moments("var_drift"),
    "beta-limit": _beta_limit,
    "sigma-depth": _sigma_depth,
}

# Vectorized statistics: (B, n[, 2]) -> (B,).
STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median": lambda x: np.median(x, axis=1),
    "mean": lambda x: np.mean(x, axis=1),
    "median-gap": lambda x: np.median(x[..., 0], axis=1) - np.median(x[..., 1], axis=1),
    "uncorrelated": lambda x: np.maximum(np.median(np.abs(x[..., 0]), axis=1) - UNCORRELATED,
                                         CORRELATED - np.median(x[..., 1], axis=1)),
}

STATISTIC_TEXT = {
    "band": "loss-band width (max - min over eta of L(w - eta g))",
    "predictiveness": "largest ||grad L(w - eta g) - g|| over eta",
    "beta": "beta_eff",
    "grad-change": "||grad L(w - eta g) - g|| at one eta",
    "ics-l2": "ICS ||G - G'||",
    "ics-cos-gap": "median cos(G, G'), a minus b",
    "ics-uncorrelated": f"max(median |cos_bn| - {UNCORRELATED}, {CORRELATED} - median cos_none)",
    "train-acc-curve": "training accuracy (train mode) at every logged step, a minus b, mean",
    "train-acc-final": "training accuracy (train mode, noise on) over the last 10% of the steps, a minus b, mean",
    "train-loss-final": "training loss over the last 10% of the steps",
    "test-acc": "final test accuracy, a minus b",
    "dist-change-mean": "|change of a layer input's per-channel mean| between successive measurements",
    "dist-change-var": "|change of a layer input's per-channel variance| between successive measurements",
    "dist-drift-mean": "|per-channel mean - its first measurement|",
    "dist-drift-var": "|per-channel variance - its first measurement|",
    "beta-limit": "beta_eff x eta / 2 (1: at the stability limit 2/eta)",
    "sigma-depth": "the layer input's standard deviation, deepest / shallowest layer",
}


def statistic_text(row: Row) -> str:
    """What the row's statistic is, in words."""
    base = STATISTIC_TEXT[row.measure]
    if row.log_scale:
        return f"median over the paired steps of {row.a}/{row.b} of: {base}"
    return base.replace("a minus b", f"{row.a} minus {row.b}")


# -- verdicts ---------------------------------------------------------------------
def verdict(test: str, lo: float, hi: float, threshold: float) -> tuple[str, str]:
    """The verdict of an interval ``[lo, hi]`` of a statistic (on the log scale for
    ratios) against ``threshold`` (see :mod:`landscape.catalogue`), and why it is
    inconclusive when it is."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive", "no finite interval"
    t = threshold
    rules = {
        "greater": (lo > t, hi < -t),
        "less": (hi < -t, lo > t),
        "not-below": (lo > -t, hi < -t),
        "not-above": (hi < t, lo > t),
        "within": (-t < lo and hi < t, hi < -t or lo > t),
    }
    supports, contradicts = rules[test]
    if supports:
        return "supports", ""
    if contradicts:
        return "contradicts", ""
    if test in ("greater", "less") and -t <= lo and hi <= t:
        return "inconclusive", "effect within threshold: the interval lies between the thresholds"
    return "inconclusive", "too noisy: the interval reaches across a threshold"


@dataclass(frozen=True)
class _Seed:
    """One seed's statistic and its within-run interval (on the statistic's scale)."""

    estimate: float
    interval: intervals.Interval
    values: dict[str, float]


def _one_seed(row: Row, a: RunRecord, b: RunRecord) -> _Seed:
    paired = MEASURES[row.measure](a, b, row)
    if paired.statistic == "binomial":
        (pa, na), (pb, nb) = paired.data
        interval = intervals.binomial_difference(pa, int(na), pb, int(nb))
    else:
        interval = intervals.stationary_bootstrap(paired.data, STATISTICS[paired.statistic])
    return _Seed(interval.estimate, interval, paired.values)


def _variant(groups: Mapping[str, Mapping[int | None, RunRecord]], name: str, lr: float | None) -> str | None:
    """The variant of ``groups`` that stands for ``name`` (at ``lr``: ``NAME-lrLR``)."""
    if lr is None:
        return name if name in groups else None
    return next((v for v in groups if v.rpartition("-lr")[0] == name and (x := _lr_of(v)) is not None
                 and math.isclose(x, lr, rel_tol=1e-9)), None)


def _scale(record: RunRecord, paper: Mapping[str, Any] | None) -> dict[str, Any]:
    config = record.config
    model = str(data._get(config, "model", "name", default="") or "")
    fam = catalogue.family(model)
    steps = config.get("total_steps", data._get(config, "train", "steps"))
    paper_steps = (paper or {}).get("steps")
    paper_model = (paper or {}).get("model", catalogue.PAPER_MODEL.get(fam, model))
    width = data._get(config, "model", "width_mult", default=1.0)
    scale = {"model": model, "width_mult": width, "steps": steps, "paper_steps": paper_steps,
             "train_images": train_images(config), "test_images": test_images(config)}
    full_test = test_images({**config, "train": {**(config.get("train") or {}), "eval_samples": None}})
    scale["protocol"] = bool(model == paper_model and width == 1 and paper_steps and steps == paper_steps
                             and not data._get(config, "data", "subset") and scale["test_images"] == full_test)
    return scale


def scale_label(scale: Mapping[str, Any] | None) -> str:
    """``paper protocol: dln, 10,000 steps`` or ``reduced: vgg11 x1/8, 3,750 of 15,000
    steps, 10,000 test images``."""
    if not scale:
        return "scale unknown"
    parts = [str(scale.get("model"))]
    width = scale.get("width_mult")
    if isinstance(width, (int, float)) and width != 1:
        parts[0] += f" x1/{1 / width:g}" if 1 / width == round(1 / width) else f" x{width:g}"
    steps, paper_steps = scale.get("steps"), scale.get("paper_steps")
    if isinstance(steps, (int, float)):
        of = f" of {paper_steps:,}" if isinstance(paper_steps, (int, float)) and paper_steps != steps else ""
        parts.append(f"{steps:,}{of} steps")
    if isinstance(scale.get("train_images"), int) and scale.get("protocol") is False:
        parts.append(f"{scale['train_images']:,} training images")
    if isinstance(scale.get("test_images"), int):
        parts.append(f"{scale['test_images']:,} test images")
    return ("paper protocol: " if scale.get("protocol") else "reduced: ") + ", ".join(parts)


def judge(row: Row, groups: Mapping[str, Mapping[int | None, RunRecord]],
          paper: Mapping[str, Any] | None = None) -> Claim | None:
    """The claim of ``row`` on the runs ``groups`` (variant -> seed -> run); None when
    the row does not apply (a variant missing, another model family, a step size
    not probed). ``paper``: ``{"model", "steps"}`` of the paper's protocol for these
    runs (for the scale)."""
    if row.per_lr:
        raise ValueError(f"{row.id}: a per-lr row is judged at one lr (Row.at_lr)")
    va, vb = _variant(groups, row.a, row.lr), _variant(groups, row.b, row.lr)
    if va is None or vb is None:
        return None
    seeds = [s for s in groups[va] if s in groups[vb]]
    if not seeds:
        return None
    first = groups[va][seeds[0]]
    model = str(data._get(first.config, "model", "name", default="") or "")
    if row.family != "any" and catalogue.family(model) != row.family:
        return None
    per_seed: dict[str, dict[str, Any]] = {}
    good: dict[str, _Seed] = {}
    reasons: list[str] = []
    for seed in seeds:
        key = "0" if seed is None else str(seed)
        try:
            result = _one_seed(row, groups[va][seed], groups[vb][seed])
        except NotApplicable:
            return None
        except NoVerdict as e:
            per_seed[key] = {"estimate": None, "interval": None, "verdict": "inconclusive", "reason": str(e)}
            reasons.append(str(e))
            continue
        good[key] = result
        lo, hi = result.interval.lo, result.interval.hi
        v, why = verdict(row.test, lo, hi, _threshold(row))
        per_seed[key] = {"estimate": _shown(row, result.estimate), "interval": [_shown(row, lo), _shown(row, hi)],
                         "verdict": v, "reason": why}
    incomplete = sorted({r.label for s in seeds for r in (groups[va][s], groups[vb][s]) if r.status not in COMPLETE})
    base = dict(id=row.id, figure=row.figure, panel=row.panel, claim=row.claim, quote=row.quote,
                quote_source=row.quote_source, statistic=statistic_text(row), test=row.test,
                threshold=row.threshold, scale=_scale(first, paper),
                seeds=[0 if s is None else s for s in seeds], per_seed=per_seed if len(seeds) > 1 else {},
                beyond_paper=row.beyond_paper, also=list(row.also),
                layers={"paper": list(row.layers), "run": [_layer(first, i) for i in row.layers]} if row.layers else {})
    if not good:
        return Claim(**base, estimate=None, values={}, interval=None, interval_reason=reasons[0],
                     interval_method="", verdict="inconclusive", reason=reasons[0])
    if len(good) == 1:
        (result,) = good.values()
        interval = result.interval
        values = result.values
    else:
        interval = intervals.t_interval([s.estimate for s in good.values()],
                                        note="over seeds" if not row.log_scale else "over seeds, of the logs")
        values = {k: float(np.mean([s.values[k] for s in good.values() if k in s.values]))
                  for k in next(iter(good.values())).values}
    v, why = verdict(row.test, interval.lo, interval.hi, _threshold(row))
    if reasons:
        why = "; ".join(filter(None, [why, f"{len(reasons)} of {len(seeds)} seeds gave no number: {reasons[0]}"]))
    if incomplete:
        v, why = "inconclusive", f"runs not complete: {', '.join(incomplete)}"
    return Claim(**base, estimate=_shown(row, interval.estimate), values=values,
                 interval=[_shown(row, interval.lo), _shown(row, interval.hi)], interval_reason="",
                 interval_method=interval.method, verdict=v, reason=why)


def _threshold(row: Row) -> float:
    return math.log(row.threshold) if row.log_scale else row.threshold


def _shown(row: Row, value: float) -> float:
    """A statistic in the units it is shown in (ratios: exp of the log)."""
    return float(math.exp(value)) if row.log_scale and math.isfinite(value) else float(value)


def by_variant(records: Sequence[RunRecord]) -> dict[str, dict[int | None, RunRecord]]:
    """Runs grouped by variant name, then by seed."""
    out: dict[str, dict[int | None, RunRecord]] = {}
    for record in records:
        variant, seed = split_seed(record.label)
        out.setdefault(variant, {})[seed] = record
    return out


def group_claims(groups_: Sequence[str], records: Sequence[RunRecord],
                 paper: Mapping[str, Any] | None = None) -> list[Claim]:
    """The claims of the catalogue's ``groups_`` that ``records`` allow, in catalogue order.

    Raises:
        ValueError: an unknown group.
    """
    rows = [r for g in groups_ for r in catalogue.rows(g)]
    rows = list(dict.fromkeys(rows))  # a row in two of the groups is judged once
    runs = by_variant(records)
    lrs = sorted({float(lr) for v in runs if (lr := _lr_of(v)) is not None}, reverse=True)
    rows = [r.at_lr(lr) if r.per_lr else r for r in rows for lr in (lrs if r.per_lr else [None])]
    return [c for row in rows if (c := judge(row, runs, paper)) is not None]


def _lr_of(variant: str) -> float | None:
    """The learning rate of a run named ``NORM-lrLR`` (None for other names)."""
    base, sep, value = variant.rpartition("-lr")
    try:
        return float(value) if sep and base else None
    except ValueError:
        return None


def experiment_claims(records: Sequence[RunRecord], kind: str, paper: Mapping[str, Any] | None = None) -> list[Claim]:
    """The paper's claims on one experiment's runs (``landscape probe``, ``ics``,
    ``ics-noise``; ``train``: the seed review's): every catalogue row of the kind's
    groups (:data:`landscape.catalogue.KIND_GROUPS`) whose variants are present."""
    return group_claims(catalogue.KIND_GROUPS[kind], records, paper)


def half_width_text(claim: Mapping[str, Any]) -> str:
    """The interval's half-width as the verdict prints it: ``x/ 1.19`` for a ratio
    (a factor either way), ``+- 0.011`` otherwise."""
    interval = claim.get("interval")
    if not interval or not all(isinstance(v, (int, float)) for v in interval):
        return ""
    lo, hi = interval
    if claim.get("test") and _is_ratio(claim):
        if lo > 0 and hi > 0 and math.isfinite(hi):
            return f"x/ {math.sqrt(hi / lo):.3g}"
        return ""
    return f"+- {(hi - lo) / 2:.3g}"


def _is_ratio(claim: Mapping[str, Any]) -> bool:
    row = next((r for r in catalogue.CATALOGUE if r.id == claim.get("id")), None)
    return bool(row and row.log_scale)


def estimate_text(claim: Mapping[str, Any]) -> str:
    """``1.81 [1.52, 2.1] (x/ 1.18)``, or ``no interval (REASON)``."""
    est, interval = claim.get("estimate"), claim.get("interval")
    if "interval" not in claim:
        return "no interval (made before intervals)"
    if est is None or not interval:
        return "no interval"  # the verdict's reason says why
    return f"{est:.3g} [{interval[0]:.3g}, {interval[1]:.3g}] ({half_width_text(claim)})"


def table(claims: Sequence[Claim | Mapping[str, Any]]) -> str:
    """The claims as a plain-text table (what the commands print): the paper's claims,
    then, apart and not counted, the observations beyond the paper."""
    dicts = [c.to_dict() if isinstance(c, Claim) else dict(c) for c in claims]
    if not dicts:
        return "claims: none apply to these variants"
    out = []
    for beyond in (False, True):
        part = [c for c in dicts if bool(c.get("beyond_paper")) == beyond]
        if not part:
            continue
        if beyond:
            out.append("beyond the paper (our observations, not counted among the paper's claims):")
        rows = [("figure", "verdict", "claim", "statistic [95% interval] (half-width)")]
        for c in part:
            label = f"{c.get('figure')}({c['panel']})" if c.get("panel") else str(c.get("figure"))
            note = f" [{c['reason']}]" if c.get("reason") else ""
            rows.append((label, str(c.get("verdict")), str(c.get("claim")), estimate_text(c) + note))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        out += [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
    scales = sorted({scale_label(c.get("scale")) for c in dicts})
    out.append("scale: " + "; ".join(scales))
    return "\n".join(out)


__all__ = ["ACCURACY", "Claim", "MEASURES", "NoVerdict", "RATIO", "VERDICTS", "by_variant", "estimate_text",
           "experiment_claims", "group_claims", "judge", "scale_label", "split_seed", "table", "verdict"]
