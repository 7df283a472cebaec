"""The paper's claims judged on recorded runs: every row of the catalogue
(:mod:`landscape.paper.catalogue`) by one function, :func:`judge`, with an interval.

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

Intervals (:mod:`landscape.paper.intervals`), 95%:

* one seed: a stationary bootstrap over the step index (B = 2000,
  ``numpy.random.default_rng(0)``; the estimate +- t x the bootstrap standard
  deviation, see :func:`landscape.paper.intervals.stationary_bootstrap` for why and
  its measured coverage): within the run, seed variance not included; a final test
  accuracy: the binomial interval of the difference on the test images;
* two seeds or more: the mean of the per-seed statistics (for ratios, the mean of
  the logs: a geometric mean) with a Student-t interval over the seeds.

The verdict is read from the interval against the row's threshold (the catalogue's
table). No verdict ("inconclusive", with the reason) when a run is not complete,
when fewer than :data:`~landscape.paper.catalogue.MIN_POINTS` steps pair up, when a ratio
has a zero on either side, or when a layer or series the row reads was not recorded.
Pure numpy on run records, like the rest of the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from landscape.paper import catalogue, intervals
from landscape.paper.catalogue import ACCURACY, RATIO, Row
from landscape.paper.measures import (
    MEASURES,
    STATISTICS,
    NotApplicable,
    NoVerdict,
    _layer,
    optimizer_text,
    statistic_text,
    test_images,
    train_images,
)
from landscape.report import data, verdicts
from landscape.report.data import RunRecord, split_seed  # split_seed: re-exported
from landscape.report.verdicts import scale_label

VERDICTS = ("supports", "contradicts", "inconclusive")
COMPLETE = ("finished", "diverged")


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
    ratio: bool = False  # the statistic is a ratio (judged on the log scale)
    schema_version: int = catalogue.SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- verdicts ---------------------------------------------------------------------
def verdict(test: str, lo: float, hi: float, threshold: float) -> tuple[str, str]:
    """The verdict of an interval ``[lo, hi]`` of a statistic (on the log scale for
    ratios) against ``threshold`` (see :mod:`landscape.paper.catalogue`), and why it is
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
    return next(
        (
            v
            for v in groups
            if v.rpartition("-lr")[0] == name and (x := _lr_of(v)) is not None and math.isclose(x, lr, rel_tol=1e-9)
        ),
        None,
    )


def _scale(record: RunRecord, paper: Mapping[str, Any] | None) -> dict[str, Any]:
    config = record.config
    model = str(data.nested_get(config, "model", "name", default="") or "")
    fam = catalogue.family(model)
    steps = config.get("total_steps", data.nested_get(config, "train", "steps"))
    paper_steps = (paper or {}).get("steps")
    paper_model = (paper or {}).get("model", catalogue.PAPER_MODEL.get(fam, model))
    width = data.nested_get(config, "model", "width_mult", default=1.0)
    scale = {
        "model": model,
        "width_mult": width,
        "steps": steps,
        "paper_steps": paper_steps,
        "train_images": train_images(config),
        "test_images": test_images(config),
    }
    if fam == "gpt":  # its own protocol (landscape.paper.defaults), on blocks of text
        scale["protocol_name"] = "GPT protocol"
        scale["test_unit"] = "blocks"
    full_test = test_images({**config, "train": {**(config.get("train") or {}), "eval_samples": None}})
    optimizer = optimizer_text(config.get("train") or {})
    protocol_optimizer = (paper or {}).get("optimizer", "")  # "" : the paper's plain SGD
    if optimizer != protocol_optimizer:
        scale["optimizer"] = optimizer or "plain sgd"
        if protocol_optimizer:
            scale["protocol_optimizer"] = protocol_optimizer
    protocol_test = (paper or {}).get("test_images", full_test)
    scale["protocol"] = bool(
        optimizer == protocol_optimizer
        and model == paper_model
        and width == 1
        and paper_steps
        and steps == paper_steps
        and not data.nested_get(config, "data", "subset")
        and scale["test_images"] == protocol_test
    )
    return scale


def judge(
    row: Row, groups: Mapping[str, Mapping[int | None, RunRecord]], paper: Mapping[str, Any] | None = None
) -> Claim | None:
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
    model = str(data.nested_get(first.config, "model", "name", default="") or "")
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
        per_seed[key] = {
            "estimate": _shown(row, result.estimate),
            "interval": [_shown(row, lo), _shown(row, hi)],
            "verdict": v,
            "reason": why,
        }
    incomplete = sorted({r.label for s in seeds for r in (groups[va][s], groups[vb][s]) if r.status not in COMPLETE})
    base = dict(
        id=row.id,
        figure=row.figure,
        panel=row.panel,
        claim=row.claim,
        quote=row.quote,
        quote_source=row.quote_source,
        statistic=statistic_text(row),
        test=row.test,
        threshold=row.threshold,
        scale=_scale(first, paper),
        seeds=[0 if s is None else s for s in seeds],
        per_seed=per_seed if len(seeds) > 1 else {},
        beyond_paper=row.beyond_paper,
        also=list(row.also),
        ratio=row.log_scale,
        layers={"paper": list(row.layers), "run": [_layer(first, i) for i in row.layers]} if row.layers else {},
    )
    if not good:
        return Claim(
            **base,
            estimate=None,
            values={},
            interval=None,
            interval_reason=reasons[0],
            interval_method="",
            verdict="inconclusive",
            reason=reasons[0],
        )
    if len(good) == 1:
        (result,) = good.values()
        interval = result.interval
        values = result.values
    else:
        interval = intervals.t_interval(
            [s.estimate for s in good.values()], note="over seeds" if not row.log_scale else "over seeds, of the logs"
        )
        values = {
            k: float(np.mean([s.values[k] for s in good.values() if k in s.values]))
            for k in next(iter(good.values())).values
        }
    v, why = verdict(row.test, interval.lo, interval.hi, _threshold(row))
    if reasons:
        why = "; ".join(filter(None, [why, f"{len(reasons)} of {len(seeds)} seeds gave no number: {reasons[0]}"]))
    if incomplete:
        v, why = "inconclusive", f"runs not complete: {', '.join(incomplete)}"
    return Claim(
        **base,
        estimate=_shown(row, interval.estimate),
        values=values,
        interval=[_shown(row, interval.lo), _shown(row, interval.hi)],
        interval_reason="",
        interval_method=interval.method,
        verdict=v,
        reason=why,
    )


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


def group_claims(
    groups_: Sequence[str], records: Sequence[RunRecord], paper: Mapping[str, Any] | None = None
) -> list[Claim]:
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
    groups (:data:`landscape.paper.catalogue.KIND_GROUPS`) whose variants are present."""
    return group_claims(catalogue.KIND_GROUPS[kind], records, paper)


def with_ratio(claim: Mapping[str, Any]) -> dict[str, Any]:
    """The claim with its ``ratio`` field; claims written before that field get it
    from their catalogue row (a per-lr id ``ROW-lrLR`` included)."""
    claim = dict(claim)
    if "ratio" not in claim:
        cid = str(claim.get("id", ""))
        row = next((r for r in catalogue.CATALOGUE if cid == r.id or cid.startswith(f"{r.id}-lr")), None)
        claim["ratio"] = bool(row and row.log_scale)
    return claim


def estimate_text(claim: Mapping[str, Any]) -> str:
    """:func:`landscape.report.verdicts.estimate_text` of the claim, old claims included
    (:func:`with_ratio`)."""
    return verdicts.estimate_text(with_ratio(claim))


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


__all__ = [
    "ACCURACY",
    "Claim",
    "MEASURES",
    "NoVerdict",
    "RATIO",
    "VERDICTS",
    "by_variant",
    "estimate_text",
    "experiment_claims",
    "group_claims",
    "judge",
    "scale_label",
    "split_seed",
    "table",
    "verdict",
]
