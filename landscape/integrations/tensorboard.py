"""Run stores -> TensorBoard event files: after a run (:func:`export_run`, behind
``landscape runs export RUN --format tensorboard``) or while it trains
(:class:`TensorBoardMirror`, behind ``--tensorboard DIR``).

Tags, from the records of one step:

- a scalar metric is one tag under its own name (``train/loss``, ``probe/beta``);
- a probe's per-step-size array (``probe/loss``, ``probe/grad_diff``,
  ``probe/grad_cosine``: one value per step size) is one tag per column,
  ``probe/loss/eta=0.05`` with eta the absolute step size from config.json;
- a layer-input histogram ``dist/hist/L`` with its edges ``dist/edges/L`` is a
  TensorBoard histogram ``dist/hist/L`` (its sum and sum of squares taken at the bin
  centres); the edges and the sampled channels (``dist/channels/L``) are not tags;
- any other array (``hessian/eigs``, ``dist/mean/L`` over channels) is one tag per
  index, ``NAME/i``.

Event files hold float32. Writing needs the ``tensorboard`` package (the
``tensorboard`` extra); it is imported only here, and only when asked for.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape.runs import RunStore, StoreError

log = logging.getLogger(__name__)

MISSING = "TensorBoard needs the tensorboard package: pip install 'torch-landscape[tensorboard]'"
PER_STEP_SIZE = ("probe/",)  # prefixes of the arrays with one value per probe step size
NOT_TAGS = ("dist/edges/", "dist/channels/")  # arrays that describe another series

Records = Iterable[tuple[int, Mapping[str, float | Sequence[float]]]]


class TensorBoardMissing(ImportError):
    """The tensorboard package is not installed; the message is one line."""


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``.

    Raises:
        TensorBoardMissing: tensorboard is not installed.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TensorBoardMissing(MISSING) from None
    return SummaryWriter


def step_size_labels(config: Mapping[str, Any]) -> list[str] | None:
    """``eta=<absolute step size>`` per probe column; None without a probe configuration."""
    from landscape.report.data import absolute_step_sizes

    sizes = absolute_step_sizes(config)
    if sizes is None:
        return None
    labels = [f"eta={s:g}" for s in sizes]
    return labels if len(set(labels)) == len(labels) else None


@dataclass(frozen=True)
class Histogram:
    """One TensorBoard histogram: ``bucket_limits`` are the right edges."""

    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    bucket_limits: list[float]
    bucket_counts: list[float]


def histogram(counts: Sequence[float], edges: Sequence[float]) -> Histogram | None:
    """The histogram of ``counts`` over ``edges`` (bins + 1); None when they do not fit."""
    counts_a, edges_a = np.asarray(counts, dtype=float), np.asarray(edges, dtype=float)
    if len(edges_a) != len(counts_a) + 1 or not np.all(np.isfinite(edges_a)) or not np.all(np.isfinite(counts_a)):
        return None
    centres = (edges_a[:-1] + edges_a[1:]) / 2
    return Histogram(
        float(edges_a[0]),
        float(edges_a[-1]),
        float(counts_a.sum()),
        float(counts_a @ centres),
        float(counts_a @ centres**2),
        edges_a[1:].tolist(),
        counts_a.tolist(),
    )


def tags(
    metrics: Mapping[str, float | Sequence[float]], labels: Sequence[str] | None
) -> tuple[dict[str, float], dict[str, Histogram]]:
    """One step's metrics as TensorBoard scalars and histograms (see the module doc).

    Args:
        metrics: name -> number or array, as the run store records them.
        labels: one label per probe step size (:func:`step_size_labels`), or None.

    Returns:
        (scalars tag -> value, histograms tag -> :class:`Histogram`).
    """
    scalars: dict[str, float] = {}
    histograms: dict[str, Histogram] = {}
    for name, value in metrics.items():
        if isinstance(value, (int, float, np.floating, np.integer)):
            scalars[name] = float(value)
            continue
        if name.startswith(NOT_TAGS):
            continue
        values = [float(v) for v in value]
        if name.startswith("dist/hist/"):
            edges = metrics.get("dist/edges/" + name.removeprefix("dist/hist/"))
            found = histogram(values, edges) if edges is not None else None
            if found is not None:
                histograms[name] = found
                continue
        per_size = labels is not None and name.startswith(PER_STEP_SIZE) and len(values) == len(labels)
        columns = labels if per_size else [str(i) for i in range(len(values))]
        scalars.update({f"{name}/{column}": v for column, v in zip(columns, values)})
    return scalars, histograms


def write_records(writer: Any, records: Records, labels: Sequence[str] | None) -> int:
    """Write ``(step, metrics)`` records with a SummaryWriter; returns the number of tags written."""
    count = 0
    for step, metrics in records:
        scalars, histograms = tags(metrics, labels)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, global_step=step)
        for tag, h in histograms.items():
            writer.add_histogram_raw(
                tag, h.min, h.max, h.num, h.sum, h.sum_squares, h.bucket_limits, h.bucket_counts, global_step=step
            )
        count += len(scalars) + len(histograms)
    return count


def store_records(store: RunStore) -> Records:
    """The store's records grouped by step, in step order."""
    for step, rows in itertools.groupby(store.rows(), key=lambda row: row[0]):
        yield step, {name: value for _, name, value in rows}


def export_run(run_dir: str | Path, log_dir: str | Path) -> int:
    """Write every record of a run as TensorBoard event files in ``log_dir``.

    Args:
        run_dir: the run directory.
        log_dir: a new or empty directory (TensorBoard would show a second export
            beside the first).

    Returns:
        The number of tags written (summed over steps).

    Raises:
        TensorBoardMissing: tensorboard is not installed.
        StoreError: not a run, or ``log_dir`` holds files.
    """
    writer_class = summary_writer_class()
    log_dir = Path(log_dir)
    if log_dir.exists() and any(log_dir.iterdir()):
        raise StoreError(f"{log_dir}: already exists and is not empty (export into a new directory)")
    with RunStore(run_dir, readonly=True) as store:
        writer = writer_class(str(log_dir))
        try:
            return write_records(writer, store_records(store), step_size_labels(store.config))
        finally:
            writer.close()


class TensorBoardMirror:
    """A run store that also writes what it records to TensorBoard event files in
    ``log_dir``, as it is recorded (for rank 0's store; other ranks write nothing).

    ``truncate_after(step)`` (a resume, a divergence) starts a new event file whose
    ``purge_step`` hides the events after ``step`` that the old ones hold. A failing
    write is logged once and turns the mirror off: TensorBoard never stops a run.
    Everything else is the store's.
    """

    def __init__(self, store: RunStore, log_dir: str | Path, flush_secs: int = 5) -> None:
        self.store = store
        self.log_dir = Path(log_dir)
        self._writer_class = summary_writer_class()
        self._labels = step_size_labels(store.config)
        self._flush_secs = flush_secs
        self._writer: Any = None
        self._broken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def log(self, step: int, metrics: Mapping[str, float | Sequence[float]]) -> None:
        self.store.log(step, metrics)
        self._write([(step, metrics)])

    def log_many(self, records: Records) -> None:
        records = list(records)
        self.store.log_many(records)
        self._write(records)

    def truncate_after(self, step: int) -> None:
        self.store.truncate_after(step)
        self._close_writer()
        self._open_writer(purge_step=step + 1)

    def close(self) -> None:
        self._close_writer()
        self.store.close()

    def _open_writer(self, purge_step: int | None = None) -> None:
        if self._broken:
            return
        try:
            self._writer = self._writer_class(str(self.log_dir), purge_step=purge_step, flush_secs=self._flush_secs)
        except Exception as e:  # TensorBoard is a view: the run goes on without it
            self._fail(e)

    def _write(self, records: Records) -> None:
        if self._writer is None:
            self._open_writer()
        if self._broken:
            return
        try:
            write_records(self._writer, records, self._labels)
        except Exception as e:  # TensorBoard is a view: the run goes on without it
            self._fail(e)

    def _close_writer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as e:  # TensorBoard is a view: the run goes on without it
                self._fail(e)
            self._writer = None

    def _fail(self, error: Exception) -> None:
        log.warning("TensorBoard mirror %s stopped (the run store keeps every record): %s", self.log_dir, error)
        self._broken, self._writer = True, None
