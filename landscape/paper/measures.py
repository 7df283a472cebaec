"""How a pair of recorded runs becomes the paired per-step values a claim of the
catalogue (:mod:`landscape.paper.catalogue`) is judged on, as the paper plots them
(Santurkar et al. 2018): the loss band, the gradient change and beta_eff per probe
step (Fig. 4, 10, 11), ICS per layer (Fig. 3), the layer inputs' moments (Fig. 1, 2,
6, 8, 9) and the training curves (Fig. 1, 2, 5, 12, 13), paired by training step.

:data:`MEASURES` maps a row's ``measure`` to a function ``(run a, run b, row) ->``
:class:`Paired`; :data:`STATISTICS` are the vectorized statistics of those values
that :mod:`landscape.paper.claims` puts intervals on. A measure raises
:class:`NoVerdict` (with the reason) when its numbers cannot give a verdict and
:class:`NotApplicable` when the row does not concern these runs. Pure numpy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from landscape.config import DATASET_SIZES, is_text
from landscape.paper import catalogue
from landscape.paper.catalogue import CORRELATED, FINAL_FRACTION, MIN_POINTS, UNCORRELATED, Row
from landscape.report import data, limits
from landscape.report.data import RunRecord

LOG_CLIP = 50.0  # |log ratio| beyond this (an overflowed probe: inf) counts as this


class NoVerdict(Exception):
    """The row applies but its numbers cannot give a verdict; the message says why."""


class NotApplicable(Exception):
    """The row does not apply to these runs (e.g. a step size they were not probed at)."""


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
    model = data.nested_get(record.config, "model", "name", default="") or ""
    depth = data.nested_get(record.config, "model", "depth")
    return catalogue.map_layer(paper_layer, str(model), depth if isinstance(depth, int) else None)


def _at_layer(record: RunRecord, family: str, paper_layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``FAMILY/#k`` at the run's layer k for the paper's ``paper_layer``."""
    k = _layer(record, paper_layer)
    name = f"{family}/#{k}"
    if name not in record.series:
        raise NoVerdict(f"{record.label}: layer #{k} (the paper's #{paper_layer}) was not recorded ({name})")
    return _series(record, name)


def ics(record: RunRecord, key: str, paper_layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``ics/KEY/#k`` at the run's layer for the paper's ``paper_layer``."""
    return _at_layer(record, f"ics/{key}", paper_layer)


def moments(record: RunRecord, kind: str, paper_layers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per measurement: the mean over the layers and sampled channels of ``|dist/KIND|``
    (KIND: mean_change, var_change, mean_drift, var_drift) at the steps every layer has
    (a drift from the first measurement leaves out that first one, where it is 0)."""
    per_layer = [_at_layer(record, f"dist/{kind}", layer) for layer in paper_layers]
    common = per_layer[0][0]
    for steps, _ in per_layer[1:]:
        common = np.intersect1d(common, steps)
    if kind.endswith("_drift"):  # drift from the first measurement: 0 there by definition, not a measurement
        common = common[1:]
    columns = []
    for steps, values in per_layer:
        values = np.abs(values.reshape(len(steps), -1))
        columns.append(values[np.searchsorted(steps, common)])
    if not common.size:
        return common, np.empty(0)
    return common, np.concatenate(columns, axis=1).mean(axis=1)


def sigma(record: RunRecord, paper_layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Per measurement: the mean over the sampled channels of the layer input's standard deviation."""
    steps, var = _at_layer(record, "dist/var", paper_layer)
    return steps, np.sqrt(np.abs(var.reshape(len(steps), -1))).mean(axis=1)


def _padded(
    record: RunRecord, steps: np.ndarray, values: np.ndarray, until: np.ndarray, fill: float
) -> tuple[np.ndarray, np.ndarray]:
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
        raise NoVerdict(
            f"zero denominator: {what} is 0 for {names[1]} at {zero_b} and for {names[0]} at {zero_a} "
            f"of {len(x)} steps, so their ratio is undefined"
        )
    if (x < 0).any():
        raise NoVerdict(f"negative {what}: no ratio")
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        logs = np.clip(np.log(x[:, 0]) - np.log(x[:, 1]), -LOG_CLIP, LOG_CLIP)
    logs = np.nan_to_num(logs, nan=0.0)  # inf / inf: both overflowed, no difference to measure
    return Paired(
        logs,
        "median",
        {
            f"{names[0]}: median": float(np.median(x[:, 0])),
            f"{names[1]}: median": float(np.median(x[:, 1])),
            "points": float(len(x)),
        },
    )


def _difference(x: np.ndarray, names: tuple[str, str], what: str) -> Paired:
    x = x[~np.isnan(x).any(axis=1)]
    _enough(len(x), what)
    return Paired(
        x[:, 0] - x[:, 1],
        "mean",
        {
            f"{names[0]}: mean": float(x[:, 0].mean()),
            f"{names[1]}: mean": float(x[:, 1].mean()),
            "points": float(len(x)),
        },
    )


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
    return Paired(
        x,
        statistic,
        {
            f"{row.a}: median cos": float(np.median(x[:, 0])),
            f"{row.b}: median cos": float(np.median(x[:, 1])),
            f"{row.a}: median |cos|": float(np.median(np.abs(x[:, 0]))),
            "points": float(len(x)),
        },
    )


def _moments(kind: str):
    def measure(a: RunRecord, b: RunRecord, row: Row) -> Paired:
        _, x = _pair(moments(a, kind, row.layers), moments(b, kind, row.layers))
        return _log_ratio(x, (row.a, row.b), f"|{kind}| values")

    return measure


def beta_over_limit(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """beta_eff over the run's full-batch stability limit at each probe step
    (:func:`limits.stability_limit`: 2/eta for plain SGD, 2(1+beta)/eta with momentum,
    ...; an Adam run's beta_eff^P over (2+2 beta1)/((1-beta1) eta)), at the lr of that
    step where ``train/lr`` varies. 1: at the limit."""
    try:
        limit = limits.stability_limit(data.nested_get(record.config, "train"))
    except ValueError as e:
        raise NoVerdict(f"{record.label}: {e}") from None
    if limit is None:
        raise NoVerdict(f"{record.label}: no full-batch stability limit (an lr and SGD, Adam or AdamW)")
    metric = "probe/beta_precond" if "probe/beta_precond" in limit.series else "probe/beta"
    steps, values = _rows(record, metric, lambda v: np.nanmax(v, axis=1))
    bound = limits.limit_at_steps(limit, record.series, steps)
    if np.any(bound <= 0):
        raise NoVerdict(f"{record.label}: its limit {limit.formula} is not positive (weight decay above 2/eta)")
    return steps, values / bound


def _beta_limit(a: RunRecord, b: RunRecord, row: Row) -> Paired:
    _, values = beta_over_limit(a)
    x = np.stack([values, np.ones_like(values)], axis=1)
    return _log_ratio(x, (f"{row.a} beta_eff / full-batch limit", "1"), "beta_eff values")


def precond_over_limit(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """Adam's preconditioned sharpness lambda_max(P^-1 H) over its full-batch limit
    (2 + 2 beta1) / ((1 - beta1) eta) (38/eta at beta1 0.9) at each Hessian measurement.
    1: at the limit (Cohen et al. 2022's adaptive edge of stability)."""
    train = data.nested_get(record.config, "train")
    try:
        limit = limits.stability_limit(train)
    except ValueError as e:
        raise NoVerdict(f"{record.label}: {e}") from None
    if limit is None or "hessian/lambda_max_precond" not in limit.series:
        raise NoVerdict(f"{record.label}: not an Adam or AdamW run: no preconditioned sharpness")
    steps, values = _series(record, "hessian/lambda_max_precond")
    return steps, values / limits.limit_at_steps(limit, record.series, steps)


def _precond_limit(a: RunRecord, b: RunRecord, row: Row) -> Paired:
    _, values = precond_over_limit(a)
    x = np.stack([values, np.ones_like(values)], axis=1)
    return _log_ratio(x, (f"{row.a} lambda_max(P^-1 H) / full-batch limit", "1"), "preconditioned sharpnesses")


def _sigma_depth(a: RunRecord, b: RunRecord, row: Row) -> Paired:
    deep, shallow = row.layers[-1], row.layers[0]
    _, x = _pair(sigma(a, deep), sigma(a, shallow))
    return _log_ratio(x, (f"sigma #{_layer(a, deep)}", f"sigma #{_layer(a, shallow)}"), "sigma values")


def optimizer_text(train: Mapping[str, Any]) -> str:
    """The empty string for the paper's plain SGD, else the optimizer as the scale names it
    (``adamw``, ``sgd, momentum 0.9``, ``sgd, weight decay 0.0005``)."""
    optimizer = str(train.get("optimizer") or "sgd").lower()
    parts = [optimizer]
    if train.get("momentum"):
        parts.append(f"{'nesterov ' if train.get('nesterov') else ''}momentum {train['momentum']:g}")
    if train.get("weight_decay"):
        parts.append(f"weight decay {train['weight_decay']:g}")
    return "" if parts == ["sgd"] else ", ".join(parts)


def test_images(config: Mapping[str, Any]) -> int | None:
    """How many test examples a run's test accuracy rests on (None: no test set)."""
    name = data.nested_get(config, "data", "name")
    if isinstance(name, str) and is_text(name):  # blocks of text: those evaluated, where the config says
        n = data.nested_get(config, "train", "eval_samples")
        return n if isinstance(n, int) else None
    full = DATASET_SIZES[name][1] if name in DATASET_SIZES else data.nested_get(config, "data", "synthetic_test")
    if name == "gaussian-linear" or not isinstance(full, int):
        return None
    n = data.nested_get(config, "train", "eval_samples")
    return min(n, full) if isinstance(n, int) else full


def train_images(config: Mapping[str, Any]) -> int | None:
    name = data.nested_get(config, "data", "name")
    if isinstance(name, str) and is_text(name):
        return None  # the file's, unknown without reading it
    full = DATASET_SIZES[name][0] if name in DATASET_SIZES else data.nested_get(config, "data", "synthetic_train")
    subset = data.nested_get(config, "data", "subset")
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
    return Paired(
        np.array([[pa, na], [pb, nb]]),
        "binomial",
        {f"{row.a}: test accuracy": pa, f"{row.b}: test accuracy": pb, "test images": float(na)},
    )


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
    "precond-limit": _precond_limit,
    "sigma-depth": _sigma_depth,
}

# Vectorized statistics: (B, n[, 2]) -> (B,).
STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median": lambda x: np.median(x, axis=1),
    "mean": lambda x: np.mean(x, axis=1),
    "median-gap": lambda x: np.median(x[..., 0], axis=1) - np.median(x[..., 1], axis=1),
    "uncorrelated": lambda x: np.maximum(
        np.median(np.abs(x[..., 0]), axis=1) - UNCORRELATED, CORRELATED - np.median(x[..., 1], axis=1)
    ),
}

STATISTIC_TEXT = {
    "band": "loss-band width (max - min over eta of L(w - eta d), d the probe's direction: g, or the update u)",
    "predictiveness": "largest ||grad L(w - eta d) - g|| over eta (d: g, or the update u)",
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
    "beta-limit": "beta_eff / the run's full-batch stability limit (2/eta for plain SGD; 1: at the limit)",
    "sigma-depth": "the layer input's standard deviation, deepest / shallowest layer",
    "precond-limit": "Adam's lambda_max(P^-1 H) / its full-batch limit (2+2 beta1)/((1-beta1) eta) (1: at the limit)",
}


def statistic_text(row: Row) -> str:
    """What the row's statistic is, in words."""
    base = STATISTIC_TEXT[row.measure]
    if row.log_scale:
        return f"median over the paired steps of {row.a}/{row.b} of: {base}"
    return base.replace("a minus b", f"{row.a} minus {row.b}")


__all__ = [
    "MEASURES",
    "NoVerdict",
    "NotApplicable",
    "Paired",
    "STATISTICS",
    "band_width",
    "beta",
    "beta_over_limit",
    "grad_change",
    "ics",
    "moments",
    "predictiveness",
    "sigma",
    "statistic_text",
    "test_images",
    "train_images",
]
