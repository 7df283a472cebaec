"""The paper's claims as statistics of an experiment's runs, each with a verdict
(Santurkar et al. 2018): ``supports``, ``contradicts`` or ``inconclusive``, and the
numbers behind it. Pure numpy on run records, like the rest of the report.

Claims by experiment kind:

* ``probe`` (Fig. 4; Fig. 10 for the deep linear network): without BN against with
  BN, the ratios of the median and of the 90th percentile over the probe steps of
  the loss-band width (max - min over the step sizes of L(w - eta g)), the gradient
  predictiveness (the largest ||grad L(w - eta g) - g||) and beta_eff; BN's median
  beta_eff against the stability limit 2/eta; the test-accuracy gain from BN (the
  seed review's reading). Every other normalization (l_p, noisy BN) is compared
  with BN by the loss-band width (Fig. 5, 6: they should behave like BN).
* ``ics`` (Fig. 3): ICS (the l2 change of a layer's gradient) with BN against
  without, per learning rate: BN's is not smaller.
* ``ics-noise`` (Fig. 2, 7): noisy BN's test accuracy against the standard
  network's, and the drift of its layer-input moments against the standard's.

Verdicts (:data:`RATIO`, :data:`ACCURACY_MARGIN`, :data:`MIN_FRACTION`): a ratio
claim supports when every ratio it names is at least ``RATIO`` in the claimed
direction, contradicts when every one is at least ``RATIO`` the other way, and is
inconclusive otherwise. With several seeds the verdict is taken per seed: the
claim holds its verdict only when every seed gives it, else it is inconclusive
("seeds disagree"). A run shorter than ``MIN_FRACTION`` of the paper's steps makes
every claim inconclusive, whatever its numbers, which are reported all the same.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from landscape.report import data
from landscape.report.data import RunRecord, split_seed  # split_seed: re-exported

RATIO = 1.25  # a ratio counts in a direction when it is at least this (or at most 1/this)
ACCURACY_MARGIN = 0.01  # a test-accuracy difference counts when it is at least one point
MIN_FRACTION = 0.25  # runs shorter than this fraction of the paper's steps are inconclusive
VERDICTS = ("supports", "contradicts", "inconclusive")
LP_VARIANTS = ("l1", "l2", "linf")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, checked on one experiment."""

    figure: str
    claim: str
    statistic: str
    values: dict[str, float]  # per variant (seed means), or the statistic per seed
    verdict: str
    reason: str = ""
    per_seed: dict[str, str] = field(default_factory=dict)  # seed -> its own verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def by_variant(records: Sequence[RunRecord]) -> dict[str, dict[int | None, RunRecord]]:
    """Runs grouped by variant name, then by seed."""
    out: dict[str, dict[int | None, RunRecord]] = {}
    for record in records:
        variant, seed = split_seed(record.label)
        out.setdefault(variant, {})[seed] = record
    return out


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def _quantile(values: np.ndarray, q: float) -> float:
    values = _finite(values)
    return float(np.quantile(values, q)) if values.size else math.nan


def _per_step(record: RunRecord, name: str, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """One number per recorded step of an array metric (``reduce`` over its columns)."""
    if name not in record.series:
        return np.empty(0)
    values = np.asarray(record.series[name][1], dtype=float)
    if values.ndim == 1:
        return values
    with warnings.catch_warnings():  # all-NaN rows (a diverged probe) stay NaN, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(values)


def band_width(record: RunRecord) -> np.ndarray:
    """max - min over the step sizes of L(w - eta g), per probe step (Fig. 4a)."""
    return _per_step(record, "probe/loss", lambda v: np.nanmax(v, axis=1) - np.nanmin(v, axis=1))


def predictiveness(record: RunRecord) -> np.ndarray:
    """The largest ||grad L(w - eta g) - g|| over the step sizes, per probe step (Fig. 4b)."""
    return _per_step(record, "probe/grad_diff", lambda v: np.nanmax(v, axis=1))


def beta(record: RunRecord) -> np.ndarray:
    return _per_step(record, "probe/beta", lambda v: v)


def final(record: RunRecord, name: str) -> float:
    if name not in record.series or not len(record.series[name][1]):
        return math.nan
    return float(np.asarray(record.series[name][1], dtype=float).ravel()[-1])


def _ratio_verdict(ratios: Sequence[float]) -> str:
    """``supports`` when every ratio is >= RATIO, ``contradicts`` when every one is
    <= 1/RATIO, else ``inconclusive`` (NaN counts as neither)."""
    if ratios and all(r >= RATIO for r in ratios):
        return "supports"
    if ratios and all(r <= 1 / RATIO for r in ratios):
        return "contradicts"
    return "inconclusive"


def _ratio_judge(keys: Sequence[str], pair: str) -> Callable[[dict[str, float], dict[str, float]],
                                                               tuple[dict[str, float], str]]:
    """A judge comparing two runs' ``keys`` by ratio (``"KEY ratio PAIR"``), supporting
    when every ratio is at least RATIO."""
    def judge(a: dict[str, float], b: dict[str, float]) -> tuple[dict[str, float], str]:
        ratios = {f"{k} ratio {pair}": a[k] / b[k] for k in keys}
        return ratios, _ratio_verdict(list(ratios.values()))

    return judge


def _difference_verdict(difference: float) -> str:
    if difference >= ACCURACY_MARGIN:
        return "supports"
    if difference <= -ACCURACY_MARGIN:
        return "contradicts"
    return "inconclusive"


def _combine(per_seed: dict[str, str], too_short: str) -> tuple[str, str]:
    """One verdict from the seeds' verdicts, and the reason when it is inconclusive."""
    verdicts = set(per_seed.values())
    if too_short:
        return "inconclusive", too_short
    if not verdicts:
        return "inconclusive", "no paired runs with data"
    if len(verdicts) > 1:
        return "inconclusive", "seeds disagree: " + ", ".join(f"seed {s} {v}" for s, v in per_seed.items())
    (verdict,) = verdicts
    return verdict, "" if verdict != "inconclusive" else "the numbers are not all beyond the thresholds in one direction"


def _paired_claims(
    groups: Mapping[str, Mapping[int | None, RunRecord]],
    first: str,
    second: str,
    *,
    figure: str,
    claim: str,
    statistic: str,
    measure: Callable[[RunRecord], dict[str, float]],
    judge: Callable[[dict[str, float], dict[str, float]], tuple[dict[str, float], str]],
    too_short: str,
) -> list[Claim]:
    """A claim comparing variant ``first`` with ``second`` seed by seed (``measure`` gives
    a run's numbers, ``judge`` the compared numbers and one seed's verdict): one claim,
    or none when the two variants have no seed in common."""
    if first not in groups or second not in groups:
        return []
    seeds = [s for s in groups[first] if s in groups[second]]
    if not seeds:
        return []
    values: dict[str, list[float]] = {}
    per_seed: dict[str, str] = {}
    for seed in seeds:
        a, b = measure(groups[first][seed]), measure(groups[second][seed])
        compared, verdict = judge(a, b)
        per_seed["0" if seed is None else str(seed)] = verdict
        for key, value in {**{f"{first}: {k}": v for k, v in a.items()},
                           **{f"{second}: {k}": v for k, v in b.items()}, **compared}.items():
            values.setdefault(key, []).append(value)
    verdict, reason = _combine(per_seed, too_short)
    means = {k: float(np.mean(v)) if not any(math.isnan(x) for x in v) else math.nan for k, v in values.items()}
    return [Claim(figure, claim, statistic, means, verdict, reason, per_seed if len(seeds) > 1 else {})]


def _smoothness_claims(groups, figure: str, too_short: str) -> list[Claim]:
    claims = []
    for name, series, what in (
        ("loss-band width", band_width, "BN narrows the loss along the gradient (a smoother loss landscape)"),
        ("gradient predictiveness", predictiveness, "with BN the gradient changes less along its own direction"),
        ("beta_eff", beta, "BN lowers the effective beta-smoothness"),
    ):
        def measure(record: RunRecord, series=series) -> dict[str, float]:
            values = series(record)
            return {"median": _quantile(values, 0.5), "p90": _quantile(values, 0.9)}

        def judge(a: dict[str, float], b: dict[str, float]) -> tuple[dict[str, float], str]:
            ratios = {"median ratio none/bn": a["median"] / b["median"], "p90 ratio none/bn": a["p90"] / b["p90"]}
            return ratios, _ratio_verdict(list(ratios.values()))

        claims += _paired_claims(groups, "none", "bn", figure=figure, claim=what,
                                 statistic=f"{name}: median and p90 over the probe steps, without / with BN",
                                 measure=measure, judge=judge, too_short=too_short)
    return claims


def _stability_claims(groups, figure: str, too_short: str) -> list[Claim]:
    """BN's median beta_eff against 2/eta, seed by seed (none without a BN variant)."""
    if "bn" not in groups:
        return []
    per_seed, values = {}, {}
    for seed, record in groups["bn"].items():
        lr = record.lr
        median = _quantile(beta(record), 0.5)
        if lr is None or math.isnan(median):
            continue
        ratio = median * lr / 2
        key = "0" if seed is None else str(seed)
        values[f"seed {key}: median beta_eff / (2/eta)"] = ratio
        per_seed[key] = "supports" if ratio <= 1 / RATIO else "contradicts" if ratio >= RATIO else "inconclusive"
    if not per_seed:
        return []
    verdict, reason = _combine(per_seed, too_short)
    if verdict == "inconclusive" and not too_short and not reason.startswith("seeds"):
        reason = "BN's median beta_eff is within a factor 1.25 of 2/eta: at the edge of stability"
    return [Claim(figure, "with BN, beta_eff stays below the stability limit 2/eta of the training step size",
                  "BN's median beta_eff over the probe steps divided by 2/eta", values, verdict, reason,
                  per_seed if len(per_seed) > 1 else {})]


def _accuracy_claims(groups, first: str, second: str, figure: str, what: str, too_short: str) -> list[Claim]:
    """The final test accuracy of ``first`` against ``second`` (none where a run has no
    test accuracy, as the regression of the DLN)."""
    def measure(record: RunRecord) -> dict[str, float]:
        return {"final test accuracy": final(record, "test/acc")}

    def judge(a: dict[str, float], b: dict[str, float]) -> tuple[dict[str, float], str]:
        difference = a["final test accuracy"] - b["final test accuracy"]
        verdict = "inconclusive" if math.isnan(difference) else _difference_verdict(difference)
        return {f"{first} - {second}": difference}, verdict

    found = _paired_claims(groups, first, second, figure=figure, claim=what,
                           statistic=f"final test accuracy, {first} minus {second}", measure=measure, judge=judge,
                           too_short=too_short)
    return [c for c in found if not math.isnan(c.values[f"{first}: final test accuracy"])]


def _like_bn_claims(groups, too_short: str, figure: str = "Fig. 5, 6") -> list[Claim]:
    """Fig. 5, 6: l_p (and noisy) normalizations behave like BN (loss-band width within RATIO)."""
    claims = []
    for other in (*LP_VARIANTS, "noisy_bn"):
        def measure(record: RunRecord) -> dict[str, float]:
            return {"median loss-band width": _quantile(band_width(record), 0.5)}

        def judge(a: dict[str, float], b: dict[str, float], other=other) -> tuple[dict[str, float], str]:
            ratio = a["median loss-band width"] / b["median loss-band width"]
            if math.isnan(ratio):
                verdict = "inconclusive"
            else:
                verdict = "supports" if 1 / RATIO < ratio < RATIO else "contradicts"
            return {f"ratio {other}/bn": ratio}, verdict

        claims += _paired_claims(groups, other, "bn", figure=figure,
                                 claim=f"{other} smooths the landscape as BN does",
                                 statistic=f"median loss-band width, {other} / bn (within a factor {RATIO})",
                                 measure=measure, judge=judge, too_short=too_short)
    return claims


def _ics_claims(records: Sequence[RunRecord], too_short: str) -> list[Claim]:
    """Fig. 3: per learning rate, ICS with BN is not smaller than without."""
    def layers_median(record: RunRecord) -> dict[str, float]:
        values = [np.asarray(v, dtype=float) for name, (_, v) in record.series.items()
                  if name.startswith("ics/l2/#") and name != "ics/l2/#1"]  # layer 1's ICS is 0 by definition
        cosines = [np.asarray(v, dtype=float) for name, (_, v) in record.series.items()
                   if name.startswith("ics/cosine/#") and name != "ics/cosine/#1"]
        return {"median l2": _quantile(np.concatenate(values), 0.5) if values else math.nan,
                "median cosine": _quantile(np.concatenate(cosines), 0.5) if cosines else math.nan}

    def judge(a: dict[str, float], b: dict[str, float]) -> tuple[dict[str, float], str]:
        ratio = a["median l2"] / b["median l2"]
        verdict = "inconclusive" if math.isnan(ratio) else "supports" if ratio > 1 / RATIO else "contradicts"
        return {"l2 ratio bn/none": ratio}, verdict

    groups = by_variant(records)
    lrs = sorted({v.rpartition("-lr")[2] for v in groups if "-lr" in v})
    claims = []
    for lr in lrs:
        claims += _paired_claims(groups, f"bn-lr{lr}", f"none-lr{lr}", figure="Fig. 3",
                                 claim=f"ICS with BN is not smaller than without (lr {lr})",
                                 statistic=f"median over layers #2.. and steps of ||G - G'||, bn / none (> 1/{RATIO})",
                                 measure=layers_median, judge=judge, too_short=too_short)
    return claims


def _moment_means(record: RunRecord, kinds: Sequence[str]) -> dict[str, float]:
    """Per ``kind`` (a ``dist/KIND/`` family): the mean over layers, channels and steps
    of its absolute values."""
    out = {}
    for kind in kinds:
        values = [_finite(np.abs(np.asarray(v, dtype=float))) for name, (_, v) in record.series.items()
                  if name.startswith(f"dist/{kind}/")]
        out[kind] = float(np.mean(np.concatenate(values))) if values else math.nan
    return out


def _drift(record: RunRecord) -> dict[str, float]:
    """|mean drift| and |variance drift| of the layer inputs from the first measurement."""
    return _moment_means(record, ("mean_drift", "var_drift"))


def _noise_claims(groups, too_short: str) -> list[Claim]:
    claims = _accuracy_claims(groups, "noisy_bn", "none", "Fig. 2, 7",
                              "noisy BN still trains better than the standard network", too_short)
    judge = _ratio_judge(("mean_drift", "var_drift"), "noisy_bn/none")

    claims += _paired_claims(groups, "noisy_bn", "none", figure="Fig. 2, 7",
                             claim="noisy BN's layer inputs drift more than the standard network's (more 'ICS')",
                             statistic="mean |drift| of the layer inputs' per-channel mean and variance, noisy_bn / none",
                             measure=_drift, judge=judge, too_short=too_short)
    return claims


TRAIN_TARGET = 0.5  # Fig. 1's speed: steps until the training accuracy first reaches this
FAILED_ACCURACY = 0.2  # Fig. 1 at lr 0.5: a run whose final training accuracy stays below this failed
_SMOOTHING = 5  # logged training accuracies averaged before reading a threshold off them


def train_accuracy(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """Logged steps and the batch training accuracy, averaged over ``_SMOOTHING`` logs."""
    if "train/acc" not in record.series:
        return np.empty(0), np.empty(0)
    steps, values = (np.asarray(a, dtype=float).ravel() for a in record.series["train/acc"])
    if values.size >= _SMOOTHING:
        values = np.convolve(values, np.ones(_SMOOTHING) / _SMOOTHING, mode="valid")
        steps = steps[_SMOOTHING - 1:]
    return steps, values


def final_train_accuracy(record: RunRecord) -> float:
    """Mean training accuracy over the last tenth of the logged steps (0 for a
    diverged run: it stopped training)."""
    if record.status == "diverged":
        return 0.0
    _, values = train_accuracy(record)
    values = _finite(values)
    return float(values[-max(1, values.size // 10):].mean()) if values.size else math.nan


def steps_to(record: RunRecord, target: float = TRAIN_TARGET) -> float:
    """The first logged step whose smoothed training accuracy reaches ``target``
    (inf when it never does)."""
    steps, values = train_accuracy(record)
    reached = np.flatnonzero(np.nan_to_num(values) >= target)
    return float(steps[reached[0]]) if reached.size else math.inf


def _speed_claims(groups, figure: str, too_short: str) -> list[Claim]:
    """Fig. 1: BN reaches the training-accuracy target in fewer steps."""
    def measure(record: RunRecord) -> dict[str, float]:
        return {f"steps to {TRAIN_TARGET:.0%} train accuracy": steps_to(record)}

    def judge(a: dict[str, float], b: dict[str, float]) -> tuple[dict[str, float], str]:
        (none,), (bn,) = a.values(), b.values()
        if math.isinf(bn):
            return {"steps ratio none/bn": math.nan}, "contradicts" if not math.isinf(none) else "inconclusive"
        ratio = none / max(bn, 1.0)
        return {"steps ratio none/bn": ratio}, _ratio_verdict([ratio])

    return _paired_claims(groups, "none", "bn", figure=figure, claim="BN trains faster",
                          statistic=f"steps until the training accuracy (mean of {_SMOOTHING} logs) first reaches "
                                    f"{TRAIN_TARGET:.0%}, without / with BN (inf: never)",
                          measure=measure, judge=judge, too_short=too_short)


def _high_lr_claims(groups, figure: str, too_short: str) -> list[Claim]:
    """Fig. 1 at a large lr: the standard network fails to train and BN does not."""
    def measure(record: RunRecord) -> dict[str, float]:
        return {"final train accuracy": final_train_accuracy(record)}

    def judge(a: dict[str, float], b: dict[str, float]) -> tuple[dict[str, float], str]:
        none_failed, bn_failed = (x["final train accuracy"] < FAILED_ACCURACY for x in (a, b))
        verdict = "contradicts" if not none_failed else "inconclusive" if bn_failed else "supports"
        return {"final train accuracy none - bn": a["final train accuracy"] - b["final train accuracy"]}, verdict

    found = _paired_claims(groups, "none", "bn", figure=figure,
                           claim="at the large learning rate the standard network fails to train and BN does not",
                           statistic=f"final training accuracy (last tenth of the run; diverged: 0); failed: "
                                     f"below {FAILED_ACCURACY:.0%}", measure=measure, judge=judge,
                           too_short=too_short)
    return found


def _as_good_as_bn(groups, other: str, figure: str, claim: str, too_short: str) -> list[Claim]:
    """``other`` trains about as well as BN: its final test accuracy no more than
    ACCURACY_MARGIN below BN's."""
    def measure(record: RunRecord) -> dict[str, float]:
        return {"final test accuracy": final(record, "test/acc")}

    def judge(a: dict[str, float], b: dict[str, float]) -> tuple[dict[str, float], str]:
        difference = a["final test accuracy"] - b["final test accuracy"]
        verdict = ("inconclusive" if math.isnan(difference)
                   else "supports" if difference >= -ACCURACY_MARGIN else "contradicts")
        return {f"{other} - bn": difference}, verdict

    return _paired_claims(groups, other, "bn", figure=figure, claim=claim,
                          statistic=f"final test accuracy, {other} minus bn (at least -{ACCURACY_MARGIN})",
                          measure=measure, judge=judge, too_short=too_short)


def _lp_accuracy_claims(groups, too_short: str) -> list[Claim]:
    """Fig. 5: every l_p normalization trains about as well as BN."""
    return [c for other in LP_VARIANTS
            for c in _as_good_as_bn(groups, other, "Fig. 5", f"{other} trains as well as BN", too_short)]


def _lp_drift_claims(groups, too_short: str) -> list[Claim]:
    """Fig. 6: the l_p normalizations' layer inputs drift more than BN's."""
    claims = []
    for other in LP_VARIANTS:
        judge = _ratio_judge(("mean_drift", "var_drift"), f"{other}/bn")

        claims += _paired_claims(groups, other, "bn", figure="Fig. 6",
                                 claim=f"{other}'s layer inputs drift more than BN's (more distributional shift)",
                                 statistic=f"mean |drift| of the layer inputs' per-channel mean and variance, "
                                           f"{other} / bn", measure=_drift, judge=judge, too_short=too_short)
    return claims


def _change(record: RunRecord) -> dict[str, float]:
    """The moments' change between successive measurements."""
    return _moment_means(record, ("mean_change", "var_change"))


def _moment_change_claims(groups, too_short: str) -> list[Claim]:
    """Fig. 8: noisy BN's moments change more between successive steps than the standard's."""
    judge = _ratio_judge(("mean_change", "var_change"), "noisy_bn/none")

    return _paired_claims(groups, "noisy_bn", "none", figure="Fig. 8",
                          claim="noisy BN's layer-input moments change more between measurements than the "
                                "standard network's",
                          statistic="mean |change| of the per-channel mean and variance between successive "
                                    "measurements, noisy_bn / none", measure=_change, judge=judge,
                          too_short=too_short)


def _noisy_like_bn_claims(groups, too_short: str) -> list[Claim]:
    """Fig. 2: noisy BN trains about as well as BN."""
    return _as_good_as_bn(groups, "noisy_bn", "Fig. 2",
                          "noisy BN trains about as well as BN, despite its unstable layer inputs", too_short)


_LAYER = re.compile(r"#(\d+)")


def layer_sigma(record: RunRecord) -> dict[int, float]:
    """Per recorded layer (1-based site): the median over steps of the channels' mean
    standard deviation of the layer input."""
    out = {}
    for name, (_, values) in record.series.items():
        match = _LAYER.search(name) if name.startswith("dist/var/") else None
        if match:
            sigma = np.sqrt(np.abs(np.asarray(values, dtype=float)))
            out[int(match[1])] = _quantile(sigma.mean(axis=-1) if sigma.ndim > 1 else sigma, 0.5)
    return dict(sorted(out.items()))


def _depth_claims(groups, too_short: str) -> list[Claim]:
    """Fig. 9: in the standard deep linear network the layer inputs' scale grows with
    depth (the deepest recorded layer's sigma against the shallowest's)."""
    if "none" not in groups:
        return []
    per_seed, values = {}, {}
    for seed, record in groups["none"].items():
        sigma = layer_sigma(record)
        if len(sigma) < 2:
            continue
        (first, s_first), (last, s_last) = next(iter(sigma.items())), list(sigma.items())[-1]
        ratio = s_last / s_first
        key = "0" if seed is None else str(seed)
        values[f"seed {key}: sigma #{last} / sigma #{first}"] = ratio
        per_seed[key] = _ratio_verdict([ratio])
    if not per_seed:
        return []
    verdict, reason = _combine(per_seed, too_short)
    return [Claim("Fig. 9", "in the standard DLN the scale (sigma) of the layer inputs grows with depth",
                  "median over steps of the layer input's standard deviation (channel mean), deepest / shallowest "
                  "recorded layer, without BN", values, verdict, reason, per_seed if len(per_seed) > 1 else {})]


def _step_size_claims(groups, figure: str, too_short: str) -> list[Claim]:
    """Fig. 11: at every probe step size the gradient changes less with BN."""
    def measure(record: RunRecord) -> dict[str, float]:
        if "probe/grad_diff" not in record.series:
            return {}
        values = np.asarray(record.series["probe/grad_diff"][1], dtype=float)
        sizes = data.absolute_step_sizes(record.config)
        labels = [f"{s:.3g}" for s in sizes] if sizes is not None and len(sizes) == values.shape[1] else \
            [str(i) for i in range(values.shape[1])]
        return {f"median grad change at step {k}": _quantile(values[:, i], 0.5) for i, k in enumerate(labels)}

    def judge(a: dict[str, float], b: dict[str, float]) -> tuple[dict[str, float], str]:
        ratios = {k.replace("median grad change at step", "ratio none/bn at step"): a[k] / b[k] for k in a if k in b}
        return ratios, _ratio_verdict(list(ratios.values()))

    return _paired_claims(groups, "none", "bn", figure=figure,
                          claim="at every step size the gradient changes less with BN",
                          statistic="median over the probe steps of ||grad L(w - eta g) - g|| per step size eta, "
                                    "without / with BN", measure=measure, judge=judge, too_short=too_short)


def _lp_smoothness_claims(groups, figure: str, too_short: str) -> list[Claim]:
    """Fig. 12, 13: the l_p normalizations smooth the landscape against the standard network."""
    claims = []
    for other in LP_VARIANTS:
        def measure(record: RunRecord) -> dict[str, float]:
            values = band_width(record)
            return {"median": _quantile(values, 0.5), "p90": _quantile(values, 0.9)}

        def judge(a: dict[str, float], b: dict[str, float], other=other) -> tuple[dict[str, float], str]:
            ratios = {f"median ratio none/{other}": a["median"] / b["median"],
                      f"p90 ratio none/{other}": a["p90"] / b["p90"]}
            return ratios, _ratio_verdict(list(ratios.values()))

        claims += _paired_claims(groups, "none", other, figure=figure,
                                 claim=f"{other} narrows the loss along the gradient, as BN does",
                                 statistic=f"loss-band width: median and p90 over the probe steps, none / {other}",
                                 measure=measure, judge=judge, too_short=too_short)
    return claims


CHECKS = ("smoothness", "stability", "accuracy", "like-bn", "ics", "noise", "speed", "high-lr", "lp-accuracy",
          "lp-drift", "moment-change", "noisy-like-bn", "depth", "step-size", "lp-smoothness")


def checked_claims(checks: Sequence[str], records: Sequence[RunRecord], figure: str,
                   paper_steps: int | None = None) -> list[Claim]:
    """The claims named by ``checks`` (:data:`CHECKS`) on ``records``, for the figure
    ``figure`` (the label of the claims whose figure depends on where they are drawn).

    Raises:
        ValueError: an unknown check.
    """
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown claim check {unknown[0]!r}; choose from {', '.join(CHECKS)}")
    too_short = _gate(records, paper_steps)
    groups = by_variant(records)
    out: list[Claim] = []
    for check in checks:
        out += {
            "smoothness": lambda: _smoothness_claims(groups, figure, too_short),
            "stability": lambda: _stability_claims(groups, figure, too_short),
            "accuracy": lambda: _accuracy_claims(groups, "bn", "none", figure, "BN raises the test accuracy",
                                                 too_short),
            "like-bn": lambda: _like_bn_claims(groups, too_short, figure),
            "ics": lambda: _ics_claims(records, too_short),
            "noise": lambda: _noise_claims(groups, too_short),
            "speed": lambda: _speed_claims(groups, figure, too_short),
            "high-lr": lambda: _high_lr_claims(groups, figure, too_short),
            "lp-accuracy": lambda: _lp_accuracy_claims(groups, too_short),
            "lp-drift": lambda: _lp_drift_claims(groups, too_short),
            "moment-change": lambda: _moment_change_claims(groups, too_short),
            "noisy-like-bn": lambda: _noisy_like_bn_claims(groups, too_short),
            "depth": lambda: _depth_claims(groups, too_short),
            "step-size": lambda: _step_size_claims(groups, figure, too_short),
            "lp-smoothness": lambda: _lp_smoothness_claims(groups, figure, too_short),
        }[check]()
    return out


def _gate(records: Sequence[RunRecord], paper_steps: int | None) -> str:
    """Why no verdict can be given whatever the numbers: runs not complete, or too
    short against the paper's; empty when verdicts may be given."""
    unfinished = [r.label for r in records if r.status not in ("finished", "diverged")]
    if unfinished:
        return f"runs not complete: {', '.join(unfinished)}"
    if not paper_steps:
        return ""
    steps = [r.config.get("total_steps") for r in records]
    shortest = min((s for s in steps if isinstance(s, (int, float))), default=None)
    if shortest is None or shortest >= MIN_FRACTION * paper_steps:
        return ""
    return (f"runs of {shortest:g} steps are {100 * shortest / paper_steps:.1f}% of the paper's {paper_steps}; "
            f"verdicts need at least {100 * MIN_FRACTION:.0f}%")


def experiment_claims(records: Sequence[RunRecord], kind: str, paper_steps: int | None = None) -> list[Claim]:
    """The paper's claims on one experiment's runs.

    Args:
        records: the runs (names as the commands give them: ``bn``, ``bn/seed1``,
            ``none-lr0.1``, ...).
        kind: ``probe``, ``ics``, ``ics-noise`` or ``train`` (the test-accuracy gain alone).
        paper_steps: the paper's optimizer steps for this model (for the
            short-run rule); None: no such rule. Runs that are not complete
            (running, interrupted) make every verdict inconclusive.

    Returns:
        The claims that the variants present allow, in the paper's figure order.
    """
    too_short = _gate(records, paper_steps)
    if kind == "train":
        return _accuracy_claims(by_variant(records), "bn", "none", "seed review", "BN raises the test accuracy",
                                too_short)
    if kind == "ics":
        return _ics_claims(records, too_short)
    groups = by_variant(records)
    if kind == "ics-noise":
        return _noise_claims(groups, too_short)
    family = next((r.config.get("model", {}).get("name", "") for r in records), "")
    figure = "Fig. 10" if family == "dln" else "Fig. 4"
    claims = _smoothness_claims(groups, figure, too_short)
    claims += _stability_claims(groups, figure, too_short)
    claims += _accuracy_claims(groups, "bn", "none", "seed review", "BN raises the test accuracy", too_short)
    return claims + _like_bn_claims(groups, too_short)


def table(claims: Sequence[Claim]) -> str:
    """The claims as a short plain-text table (what the commands print)."""
    if not claims:
        return "claims: none apply to these variants"
    rows = [("figure", "verdict", "claim", "numbers")]
    for c in claims:
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in c.values.items() if "ratio" in k or " - " in k or "/" in k)
        rows.append((c.figure, c.verdict, c.claim, numbers + (f" [{c.reason}]" if c.reason else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows)
