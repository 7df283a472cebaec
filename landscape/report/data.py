"""Run records -> plain numpy arrays for the report: pure functions, no torch, no plotting.

The quantities are those of Santurkar et al. (2018), Sec. 3.1 and App. D:

- the *loss landscape* band at step t is [min_eta L(w_t - eta g_t), max_eta L(w_t - eta g_t)]
  over the probe step sizes eta (Fig. 4a);
- *gradient predictiveness* is the band of ||g(w_t) - g(w_t - eta g_t)|| over eta (Fig. 4b);
- *effective beta-smoothness* is max_eta ||g(w_t) - g(w_t - eta g_t)|| / ||eta g_t|| (Fig. 4c),
  drawn against the full-batch stability limit of the run's optimizer (2/eta for plain
  gradient descent on a beta-smooth function; :mod:`landscape.report.limits`).

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import ADAM_OPTIMIZERS
from landscape.report import limits
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
    "layer": "#17becf",
    "group": "#bcbd22",
    "rms": "#393b79",
}
NORM_LABELS: dict[str, str] = {
    "none": "standard",
    "bn": "bn",
    "noisy_bn": "noisy bn",
    "l1": "l1",
    "l2": "l2",
    "linf": "linf",
    "noise": "noise",
    "layer": "layer norm",
    "group": "group norm",
    "rms": "rms norm",
}
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
        return str(nested_get(self.config, "model", "norm", default="") or "")

    @property
    def lr(self) -> float | None:
        lr = nested_get(self.config, "train", "lr")
        ok = isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0
        return float(lr) if ok else None

    @property
    def diverged_step(self) -> int | None:
        step = self.meta.get("diverged_step")
        return int(step) if self.status == "diverged" and isinstance(step, (int, float)) else None


def nested_get(mapping: Mapping[str, Any] | None, *keys: str, default: Any = None) -> Any:
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
    model = nested_get(config, "model", "name", default="run")
    norm = nested_get(config, "model", "norm", default="")
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
def finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Float copy with +-inf replaced by NaN (a gap in the plot; JSON has no inf)."""
    values = np.array(values, dtype=float)
    values[~np.isfinite(values)] = np.nan
    return values


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


def expected_probe_series(record: RunRecord) -> list[str]:
    """The probe series a run's configuration asks for (none without a probe)."""
    probe = nested_get(record.config, "probe")
    if not isinstance(probe, Mapping):
        return []
    names = ["probe/loss", "probe/grad_diff", "probe/beta"]
    return names + (["probe/curvature"] if probe.get("curvature", True) else [])


def expected_smoothness_series(record: RunRecord) -> list[str]:
    """The probe's series and the Hessian's λ_max that a run's configuration asks for;
    an Adam or AdamW run's also in its preconditioner's geometry where it asks for them
    (``probe/beta_precond`` along the update, ``hessian/lambda_max_precond`` with
    ``hessian.preconditioned``), the sharpness its stability limit bounds
    (:mod:`landscape.report.limits`)."""
    adam = str(nested_get(record.config, "train", "optimizer") or "sgd").lower() in ADAM_OPTIMIZERS
    names = expected_probe_series(record)
    along_update = nested_get(record.config, "probe", "direction") == "update"
    names += ["probe/beta_precond"] if names and adam and along_update else []
    if record.config.get("hessian"):
        preconditioned = bool(nested_get(record.config, "hessian", "preconditioned"))
        names += ["hessian/lambda_max"] + (["hessian/lambda_max_precond"] if adam and preconditioned else [])
    return names


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


def absolute_step_sizes(config: Mapping[str, Any]) -> np.ndarray | None:
    """The probe's absolute step sizes (relative ones are multiples of the training lr);
    None when the run has no probe configuration."""
    sizes = nested_get(config, "probe", "step_sizes")
    if not isinstance(sizes, Sequence) or not sizes:
        return None
    sizes = np.asarray(sizes, dtype=float)
    if nested_get(config, "probe", "relative", default=True):
        lr = nested_get(config, "train", "lr")
        if not isinstance(lr, (int, float)):
            return None
        sizes = sizes * float(lr)
    return sizes


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
        epochs = nested_get(r.config, "train", "epochs")
        planned = f"{epochs} epochs" if epochs else _fmt(nested_get(r.config, "train", "steps"))
        return f"{planned} (last recorded {_fmt(last_step(r))})"

    def step_sizes_text(r: RunRecord) -> str:
        sizes = absolute_step_sizes(r.config)
        if sizes is None:
            return "—"
        relative = nested_get(r.config, "probe", "relative", default=True)
        given = _fmt(list(nested_get(r.config, "probe", "step_sizes")))
        return _fmt([float(s) for s in sizes]) + (f" (= {given} × lr)" if relative else "")

    def limit_text(r: RunRecord) -> str:
        try:
            limit = limits.stability_limit(nested_get(r.config, "train"))
        except ValueError as e:
            return f"— ({e})"
        return "—" if limit is None else limit.label.removeprefix("full-batch limit ")

    return [
        row("run", lambda r: r.label),
        row("status", status_text),
        row("model", lambda r: nested_get(r.config, "model", "name")),
        row("norm", lambda r: NORM_LABELS.get(r.norm, r.norm) or None),
        row("data", lambda r: nested_get(r.config, "data", "name")),
        row("lr", lambda r: nested_get(r.config, "train", "lr")),
        row("optimizer", lambda r: nested_get(r.config, "train", "optimizer", default="sgd")),
        row("momentum", lambda r: nested_get(r.config, "train", "momentum")),
        row("nesterov", lambda r: nested_get(r.config, "train", "nesterov")),
        row("betas", lambda r: nested_get(r.config, "train", "betas")),
        row("weight decay", lambda r: nested_get(r.config, "train", "weight_decay")),
        row("full-batch limit", limit_text),
        row(
            "batch size",
            lambda r: (
                "full batch"
                if nested_get(r.config, "train", "full_batch")
                else nested_get(r.config, "train", "batch_size")
            ),
        ),
        row("steps", steps_text),
        row("probe step sizes", step_sizes_text),
        row("probe direction", lambda r: nested_get(r.config, "probe", "direction")),
        row("BN mode (probe)", lambda r: nested_get(r.config, "probe", "bn_mode")),
        row("seed", lambda r: nested_get(r.config, "train", "seed")),
        row("kind", lambda r: r.config.get("kind")),
        row("device", lambda r: r.config.get("device")),
        row("git commit", lambda r: r.config.get("git_commit")),
        row("versions", lambda r: r.config.get("versions")),
        row("path", lambda r: str(r.path)),
    ]
