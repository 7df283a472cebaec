"""Run records -> plain numpy arrays for the report: pure functions, no torch, no plotting.

The quantities are those of Santurkar et al. (2018), Sec. 3.1 and App. D:

- the *loss landscape* band at step t is [min_eta L(w_t - eta g_t), max_eta L(w_t - eta g_t)]
  over the probe step sizes eta (Fig. 4a);
- *gradient predictiveness* is the band of ||g(w_t) - g(w_t - eta g_t)|| over eta (Fig. 4b);
- *effective beta-smoothness* is max_eta ||g(w_t) - g(w_t - eta g_t)|| / ||eta g_t|| (Fig. 4c),
  drawn against the stability limit 2/eta of gradient descent on a beta-smooth function
  (:func:`beta_reference`).

Display arrays are decimated (:func:`downsample`, :func:`downsample_band`) so a page
stays small; the run store keeps every record.

Runs of one variant that differ only by seed (labels ``VARIANT/seedS``) are drawn as one
:class:`SeedGroup`: the mean over seeds and the min-max band over seeds
(:func:`seed_stats`), taken at the steps every seed recorded.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from landscape.runs import CLAIMS, RunStore, StoreError, find_runs

log = logging.getLogger(__name__)

# Fixed colours by config["model"]["norm"], so a norm looks the same in every report.
NORM_COLORS: dict[str, str] = {
    "none": "#1f77b4",
    "bn": "#d62728",
    "noisy_bn": "#9467bd",
    "l1": "#2ca02c",
    "l2": "#ff7f0e",
    "linf": "#8c564b",
    "noise": "#e377c2",
}
UNKNOWN_COLOR = "#7f7f7f"
NORM_LABELS: dict[str, str] = {
    "none": "standard",
    "bn": "bn",
    "noisy_bn": "noisy bn",
    "l1": "l1",
    "l2": "l2",
    "linf": "linf",
    "noise": "noise",
}
# Families of dist/<family>/<layer> that are not statistics over steps (histogram, its
# edges, the indices of the sampled channels).
HISTOGRAM_FAMILIES = ("hist", "edges", "channels")
_SEED = re.compile(r"^(?P<variant>.+)/seed(?P<seed>-?\d+)$")


@dataclass(frozen=True)
class RunRecord:
    """Everything the report needs from one run, read once from its store."""

    path: Path
    label: str
    config: Mapping[str, Any]
    status: str
    meta: Mapping[str, Any]
    series: Mapping[str, tuple[np.ndarray, np.ndarray]]

    @property
    def norm(self) -> str:
        return str(_get(self.config, "model", "norm", default="") or "")

    @property
    def lr(self) -> float | None:
        lr = _get(self.config, "train", "lr")
        return float(lr) if isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0 else None

    @property
    def diverged_step(self) -> int | None:
        step = self.meta.get("diverged_step")
        return int(step) if self.status == "diverged" and isinstance(step, (int, float)) else None


def _get(mapping: Mapping[str, Any] | None, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping


def run_label(config: Mapping[str, Any]) -> str:
    """config["name"] if set, else "<model> · <norm>" (e.g. "vgg16 · bn")."""
    name = config.get("name")
    if isinstance(name, str) and name.strip():
        return name
    model = _get(config, "model", "name", default="run")
    norm = _get(config, "model", "norm", default="")
    return f"{model} · {NORM_LABELS.get(norm, norm)}" if norm else str(model)


def unique_labels(labels: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """Make equal labels distinct (legends toggle by name) by appending the run directory."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    out = [f"{label} ({path.name})" if counts[label] > 1 else label for label, path in zip(labels, paths)]
    seen: dict[str, int] = {}
    for i, label in enumerate(out):  # same label *and* same directory name: number them
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            out[i] = f"{label} #{seen[label]}"
    return out


def load_run(path: str | Path) -> RunRecord:
    """Read one run directory read-only (safe while the run is still training: WAL readers).

    Raises:
        StoreError: not a run, or the store cannot be read.
    """
    path = Path(path)
    try:
        with RunStore(path, readonly=True) as store:
            series = {name: store.series(name) for name in store.names()}
            return RunRecord(
                path=path,
                label=run_label(store.config),
                config=store.config,
                status=store.status,
                meta=store.meta,
                series=series,
            )
    except (sqlite3.DatabaseError, ValueError) as e:
        raise StoreError(f"{path}: corrupt run store ({e})") from None


def load_claims(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The claims.json of every given experiment directory that has one (an unreadable
    one is left out: the runs are still reported)."""
    claims: list[dict[str, Any]] = []
    for path in paths:
        file = Path(path) / CLAIMS
        if file.is_file():
            try:
                loaded = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            claims.extend(c for c in loaded if isinstance(c, dict)) if isinstance(loaded, list) else None
    return claims


def load_checked_json(path: Path, check: Callable[[Any], None], kind: str) -> Any | None:
    """The JSON at ``path`` once ``check`` accepts it (it raises ValueError otherwise),
    or None when there is no file; an unreadable or malformed one is logged as an
    unreadable ``kind`` and left out, so the rest of the report still shows."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        check(record)
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable %s (%s)", path, kind, e)
        return None
    return record


def load_runs(paths: Iterable[str | Path]) -> list[RunRecord]:
    """Expand run/experiment directories and load each run, with distinct labels.

    Raises:
        StoreError: a path is missing, holds no run, or a store cannot be read.
    """
    records = [load_run(p) for p in find_runs(paths)]
    labels = unique_labels([r.label for r in records], [r.path for r in records])
    return [RunRecord(r.path, label, r.config, r.status, r.meta, r.series) for r, label in zip(records, labels)]


# seeds ---------------------------------------------------------------------
def split_seed(label: str) -> tuple[str, int | None]:
    """``"bn/seed3"`` -> ``("bn", 3)``; a name without a seed -> ``(name, None)``."""
    match = _SEED.match(label)
    return (match["variant"], int(match["seed"])) if match else (label, None)


@dataclass(frozen=True)
class SeedGroup:
    """One entry of a plot: a variant's runs over several seeds, or a single run."""

    label: str
    records: tuple[RunRecord, ...]  # ascending seed

    @property
    def norm(self) -> str:
        return self.records[0].norm

    @property
    def seeded(self) -> bool:
        """Several seeds: drawn as mean and min-max band over seeds."""
        return len(self.records) > 1


def seed_groups(records: Sequence[RunRecord]) -> list[SeedGroup]:
    """Runs labelled ``VARIANT/seedS`` that share ``VARIANT`` -> one group labelled
    ``"VARIANT (N seeds)"``, at the position of its first run. Any other run (no seed in
    its label, or the only seed of its variant) is a group of its own under its label."""
    members: dict[str, list[tuple[int, RunRecord]]] = {}
    for record in records:
        variant, seed = split_seed(record.label)
        if seed is not None:
            members.setdefault(variant, []).append((seed, record))
    groups: list[SeedGroup] = []
    done: set[str] = set()
    for record in records:
        variant, seed = split_seed(record.label)
        if seed is None or len(members[variant]) < 2:
            groups.append(SeedGroup(record.label, (record,)))
        elif variant not in done:
            done.add(variant)
            runs = tuple(r for _, r in sorted(members[variant], key=lambda m: m[0]))
            groups.append(SeedGroup(f"{variant} ({len(runs)} seeds)", runs))
    return groups


def seed_stats(
    series: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over seeds of one scalar series.

    Seeds are compared at the steps they all recorded (the intersection; nothing is
    interpolated, so every number is a measured one). A step where some seed's value
    is not finite (a diverged seed) is NaN in all three: a gap, not a mean of survivors.

    Args:
        series: one (steps (N_s,), values (N_s,)) per seed.

    Returns:
        (steps (N,), mean (N,), lo (N,), hi (N,)) over the N shared steps.
    """
    common = np.asarray(series[0][0]) if series else np.empty(0, dtype=np.int64)
    for steps, _ in series[1:]:
        common = np.intersect1d(common, steps)
    common = np.unique(common)
    columns = []
    for steps, values in series:
        _, idx, _ = np.intersect1d(np.asarray(steps), common, return_indices=True)
        columns.append(finite_or_nan(np.ravel(values))[idx])
    if not columns or not len(common):
        empty = np.empty(0)
        return common.astype(np.int64), empty, empty, empty
    values = np.column_stack(columns)  # (N, seeds)
    complete = np.isfinite(values).all(axis=1)
    values[~complete] = np.nan
    return common.astype(np.int64), values.mean(axis=1), values.min(axis=1), values.max(axis=1)


def first_seeds(records: Sequence[RunRecord]) -> list[RunRecord]:
    """One run per :class:`SeedGroup`: a seed group's lowest seed, relabelled
    ``"VARIANT (seed S of N)"`` (for plots that cannot average, e.g. histograms)."""
    out = []
    for group in seed_groups(records):
        first = group.records[0]
        if group.seeded:
            variant, seed = split_seed(first.label)
            first = replace(first, label=f"{variant} (seed {seed} of {len(group.records)})")
        out.append(first)
    return out


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


# series --------------------------------------------------------------------
def finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Float copy with +-inf replaced by NaN (a gap in the plot; JSON has no inf)."""
    values = np.array(values, dtype=float)
    values[~np.isfinite(values)] = np.nan
    return values


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


def expected_probe_series(record: RunRecord) -> list[str]:
    """The probe series a run's configuration asks for (none without a probe)."""
    probe = _get(record.config, "probe")
    if not isinstance(probe, Mapping):
        return []
    names = ["probe/loss", "probe/grad_diff", "probe/beta"]
    return names + (["probe/curvature"] if probe.get("curvature", True) else [])


def missing_series(records: Sequence[RunRecord], expects: Callable[[RunRecord], list[str]]) -> list[str]:
    """One line per run that lacks a series (a metric name or a name prefix) that
    ``expects(run)`` says its configuration asks for, so a report says so instead of
    silently drawing nothing."""
    lines = []
    for record in records:
        absent = [p for p in expects(record) if not any(name.startswith(p) for name in record.series)]
        if absent:
            lines.append(
                f"{record.label}: nothing recorded yet for {', '.join(absent)} although its configuration asks for it "
                f"(run status: {record.status})"
            )
    return lines


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
    """2/eta: gradient descent with step size eta is stable on a beta-smooth loss iff beta < 2/eta.

    Raises:
        ValueError: ``lr`` is not a positive finite number.
    """
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"step size must be positive and finite, got {lr}")
    return 2.0 / lr


def absolute_step_sizes(config: Mapping[str, Any]) -> np.ndarray | None:
    """The probe's absolute step sizes (relative ones are multiples of the training lr);
    None when the run has no probe configuration."""
    sizes = _get(config, "probe", "step_sizes")
    if not isinstance(sizes, Sequence) or not sizes:
        return None
    sizes = np.asarray(sizes, dtype=float)
    if _get(config, "probe", "relative", default=True):
        lr = _get(config, "train", "lr")
        if not isinstance(lr, (int, float)):
            return None
        sizes = sizes * float(lr)
    return sizes


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
        for index in _get(record.config, "ics", "highlight", default=()) or ():
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


def last_step(record: RunRecord) -> int | None:
    """The largest step recorded by any metric."""
    ends = [int(s[-1]) for s, _ in record.series.values() if len(s)]
    return max(ends) if ends else None


# configuration table -------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(_fmt(float(v) if isinstance(v, np.floating) else v) for v in value)
    return str(value)


def status_text(record: RunRecord) -> str:
    """'finished', 'diverged at step 1234', ... plus the stored message, if any."""
    text = record.status
    if record.diverged_step is not None:
        text += f" at step {record.diverged_step}"
    message = record.meta.get("message")
    if message:
        text += f": {message}"
    return text


def config_rows(records: Sequence[RunRecord]) -> list[tuple[str, list[str]]]:
    """(field, one plain-text value per run) rows of the side-by-side run table.

    Values are unescaped text; the HTML layer escapes them.
    """

    def row(field: str, fn: Any) -> tuple[str, list[str]]:
        return field, [_fmt(fn(r)) for r in records]

    def steps_text(r: RunRecord) -> str:
        epochs = _get(r.config, "train", "epochs")
        planned = f"{epochs} epochs" if epochs else _fmt(_get(r.config, "train", "steps"))
        return f"{planned} (last recorded {_fmt(last_step(r))})"

    def step_sizes_text(r: RunRecord) -> str:
        sizes = absolute_step_sizes(r.config)
        if sizes is None:
            return "—"
        relative = _get(r.config, "probe", "relative", default=True)
        given = _fmt(list(_get(r.config, "probe", "step_sizes")))
        return _fmt([float(s) for s in sizes]) + (f" (= {given} × lr)" if relative else "")

    return [
        row("run", lambda r: r.label),
        row("status", status_text),
        row("model", lambda r: _get(r.config, "model", "name")),
        row("norm", lambda r: NORM_LABELS.get(r.norm, r.norm) or None),
        row("data", lambda r: _get(r.config, "data", "name")),
        row("lr", lambda r: _get(r.config, "train", "lr")),
        row("momentum", lambda r: _get(r.config, "train", "momentum")),
        row(
            "batch size",
            lambda r: "full batch" if _get(r.config, "train", "full_batch") else _get(r.config, "train", "batch_size"),
        ),
        row("steps", steps_text),
        row("probe step sizes", step_sizes_text),
        row("probe direction", lambda r: _get(r.config, "probe", "direction")),
        row("BN mode (probe)", lambda r: _get(r.config, "probe", "bn_mode")),
        row("seed", lambda r: _get(r.config, "train", "seed")),
        row("kind", lambda r: r.config.get("kind")),
        row("device", lambda r: r.config.get("device")),
        row("git commit", lambda r: r.config.get("git_commit")),
        row("versions", lambda r: r.config.get("versions")),
        row("path", lambda r: str(r.path)),
    ]
