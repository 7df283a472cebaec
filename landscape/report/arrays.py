"""Series helpers for the figures: colours, bands over step sizes and seeds, decimation,
step selection, metric families and histogram grids (numpy only)."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from landscape.report import limits
from landscape.report.data import NORM_COLORS, RunRecord, nested_get

UNKNOWN_COLOR = "#7f7f7f"


# Families of dist/<family>/<layer> that are not statistics over steps (histogram, its
# edges, the indices of the sampled channels).
HISTOGRAM_FAMILIES = ("hist", "edges", "channels")


# colours -------------------------------------------------------------------
def _mix(color: str, target: str, amount: float) -> str:
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    tgt = [int(target[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (t - c) * amount):02x}" for c, t in zip(rgb, tgt))


def run_colors(norms: Sequence[str]) -> list[str]:
    """One colour per run: the norm's fixed colour, darker/lighter shades for repeated norms."""
    shades = (0.0, -0.35, 0.4, -0.6, 0.65)
    seen: dict[str, int] = {}
    colors = []
    for norm in norms:
        k = seen.get(norm, 0)
        seen[norm] = k + 1
        base = NORM_COLORS.get(norm, UNKNOWN_COLOR)
        shade = shades[k % len(shades)]
        colors.append(base if shade == 0 else _mix(base, "#000000" if shade < 0 else "#ffffff", abs(shade)))
    return colors


def rgba(color: str, alpha: float) -> str:
    """'#rrggbb' -> 'rgba(r,g,b,alpha)' (band fills)."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def band(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min-max band over the columns of ``values`` (one column per probe step size).

    Args:
        steps: (N,) training steps.
        values: (N, K) or (N,) values; NaN entries are ignored.

    Returns:
        (steps, lo, hi) for the rows whose extremes are finite; a row with an
        infinite or undefined extreme (a diverging probe) is dropped, not clipped.
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if len(steps) == 0 or values.size == 0:
        return steps[:0].astype(np.int64), np.empty(0), np.empty(0)
    with warnings.catch_warnings():  # all-NaN rows are expected (diverged probes)
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanmin(values, axis=1)
        hi = np.nanmax(values, axis=1)
    keep = np.isfinite(lo) & np.isfinite(hi)
    return steps[keep].astype(np.int64), lo[keep], hi[keep]


def _buckets(n: int, count: int) -> np.ndarray:
    """Start indices of ``count`` contiguous, near-equal buckets over range(n)."""
    return np.unique(np.linspace(0, n, count, endpoint=False).astype(np.int64))


def downsample(steps: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Min-max decimation of a line to at most ``max_points`` points.

    Each of ``max_points // 2`` buckets keeps its smallest and largest finite value at
    their own steps, in step order, so spikes (a divergence) survive. A bucket with
    no finite value keeps one NaN point: the gap stays a gap.

    Returns:
        (steps, values), unchanged when already short enough.
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=float)
    if len(steps) <= max_points:
        return steps, values
    starts = _buckets(len(steps), max(max_points // 2, 1))
    ends = np.append(starts[1:], len(steps))
    keep: list[int] = []
    for start, end in zip(starts, ends):
        chunk = values[start:end]
        finite = np.isfinite(chunk)
        if not finite.any():
            keep.append(int(start))
            continue
        masked_lo = np.where(finite, chunk, np.inf)
        masked_hi = np.where(finite, chunk, -np.inf)
        keep.extend(sorted({int(start + np.argmin(masked_lo)), int(start + np.argmax(masked_hi))}))
    idx = np.array(keep, dtype=np.int64)
    return steps[idx], values[idx]


def downsample_band(
    steps: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decimate a band to at most ``max_points`` buckets, keeping its extremes.

    Each bucket is drawn at its first step with the minimum of ``lo`` and the
    maximum of ``hi`` over the bucket, so the decimated band contains the original.
    """
    steps = np.asarray(steps)
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    if len(steps) <= max_points:
        return steps, lo, hi
    starts = _buckets(len(steps), max_points)
    return steps[starts], np.fmin.reduceat(lo, starts), np.fmax.reduceat(hi, starts)


def band_of(
    record: RunRecord, array_name: str, min_name: str, max_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The band of an array metric (e.g. probe/loss); falls back to its recorded
    min/max scalars when only those were logged. Empty arrays when neither exists."""
    if array_name in record.series:
        return band(*record.series[array_name])
    if min_name in record.series and max_name in record.series:
        s_lo, v_lo = record.series[min_name]
        s_hi, v_hi = record.series[max_name]
        steps, i, j = np.intersect1d(s_lo, s_hi, return_indices=True)
        return band(steps, np.column_stack([np.ravel(v_lo)[i], np.ravel(v_hi)[j]]))
    return band(np.empty(0, dtype=np.int64), np.empty((0, 0)))


def spans_decades(arrays: Iterable[np.ndarray], decades: float = 2.0) -> bool:
    """Whether the positive finite values of ``arrays`` together span at least
    ``decades`` orders of magnitude, so that a log axis shows them (the deep linear
    network's gradient changes run over the probe's 3.5 decades of step sizes)."""
    values = [a[np.isfinite(a) & (a > 0)] for a in (np.asarray(x, dtype=float).ravel() for x in arrays)]
    values = [v for v in values if v.size]
    if not values:
        return False
    low, high = min(v.min() for v in values), max(v.max() for v in values)
    return bool(np.log10(high / low) >= decades)


def beta_reference(lr: float) -> float:
    """2/eta: gradient descent with step size eta is stable on a beta-smooth loss iff beta < 2/eta
    (plain SGD's full-batch limit; other optimizers': :func:`limits.stability_limit`).

    Raises:
        ValueError: ``lr`` is not a positive finite number.
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"step size must be positive and finite, got {lr}")
    limit = limits.stability_limit({"optimizer": "sgd", "lr": lr})
    assert limit is not None
    return limit.value


def select_steps(count_available: int, count: int = 8) -> np.ndarray:
    """Indices of ``count`` evenly spread rows out of ``count_available`` (first and last included)."""
    if count_available <= 0:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, count_available - 1, count)).astype(np.int64))


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders 'features.3' before 'features.10'."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def metric_families(names: Iterable[str], prefix: str) -> dict[str, list[str]]:
    """Group '<prefix>/<family>/<layer>' names: family -> layers (natural order).

    A new family (e.g. a new ``dist/...`` statistic) appears here without code changes.
    """
    families: dict[str, set[str]] = {}
    for name in names:
        if not name.startswith(prefix + "/"):
            continue
        family, _, layer = name[len(prefix) + 1 :].partition("/")
        if family and layer:
            families.setdefault(family, set()).add(layer)
    return {f: sorted(layers, key=natural_key) for f, layers in sorted(families.items())}


def order_families(families: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """``preferred`` families first (in that order), then the rest alphabetically."""
    families = list(families)
    return [f for f in preferred if f in families] + sorted(f for f in families if f not in preferred)


def ics_default_layers(records: Sequence[RunRecord], layers: Sequence[str]) -> list[str]:
    """The ICS layers to show first: config["ics"]["highlight"] (1-based positions in
    ``layers``, e.g. the paper's #9 and #17), else the first layer with a positive
    l2 (the first weight layer's ICS is 0 by definition, invisible on a log axis)."""
    picked: list[str] = []
    for record in records:
        for index in nested_get(record.config, "ics", "highlight", default=()) or ():
            if isinstance(index, int) and 1 <= index <= len(layers) and layers[index - 1] not in picked:
                picked.append(layers[index - 1])
    if picked:
        return sorted(picked, key=layers.index)
    for layer in layers:
        for record in records:
            values = record.series.get(f"ics/l2/{layer}", (None, np.empty(0)))[1]
            if np.any(np.isfinite(values) & (np.asarray(values) > 0)):
                return [layer]
    return list(layers[:1])


def histogram_grid(record: RunRecord, layer: str, max_rows: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Histograms of one layer's inputs over steps, for a heatmap.

    Args:
        record: the run.
        layer: layer name in ``dist/hist/<layer>``.
        max_rows: more recorded steps than this are thinned to evenly spread steps
            (exact histograms at real steps, not averages).

    Returns:
        (steps (S,), edges (B+1,) or None, counts (S, B)). ``edges`` is None when
        the recorded edges are missing, do not match the bin count, or change over
        steps (then bins are only comparable by index).
    """
    steps, counts = record.series.get(f"dist/hist/{layer}", (np.empty(0, np.int64), np.empty((0, 0))))
    counts = np.asarray(counts, dtype=float)
    if counts.ndim == 1:
        counts = counts[:, None]
    if len(steps) > max_rows:
        idx = select_steps(len(steps), max_rows)
        steps, counts = steps[idx], counts[idx]
    edges = None
    if f"dist/edges/{layer}" in record.series:
        edge_rows = np.asarray(record.series[f"dist/edges/{layer}"][1], dtype=float)
        if edge_rows.ndim == 2 and len(edge_rows) and edge_rows.shape[1] == counts.shape[1] + 1:
            first = edge_rows[0]
            if np.all(np.isfinite(first)) and np.allclose(edge_rows, first, equal_nan=False):
                edges = first
    return np.asarray(steps), edges, counts
