"""The run store: one directory per run.

```
RUN_DIR/
  config.json        the full RunConfig, seed, versions, git commit, device
  metrics.sqlite     table metrics(step, name, value, array), table meta(key, value)
  checkpoints/last.pt
  surface/           surface.json and surface.html of `landscape surface` (optional)
  spectrum/          density.json of `landscape hessian --density` (optional)
```

Metrics are keyed by (step, name): a scalar goes in ``value``, a small array
(one value per step size, a histogram) goes in ``array`` as JSON. Every write is
one SQLite transaction in WAL mode, so a process killed at any moment leaves a
store that opens and reads. An *experiment* directory holds several runs as
sub-directories plus ``experiment.json``. This module does not import torch
(the report reads stores without it); checkpoints live in
:mod:`landscape.training.checkpoint`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

CONFIG = "config.json"
METRICS = "metrics.sqlite"
EXPERIMENT = "experiment.json"
CLAIMS = "claims.json"  # the paper's claims on an experiment (landscape.paper.claims)
SURFACE_DIR = "surface"  # a run's loss surface (landscape.runner.surface_run): surface.json and surface.html
SURFACE_JSON = "surface.json"
SPECTRUM_DIR = "spectrum"  # a run's Hessian spectrum (landscape.runner.spectrum): density.json
DENSITY_JSON = "density.json"
STATUSES = ("running", "finished", "diverged", "interrupted", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (
    step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, array TEXT,
    PRIMARY KEY (step, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(Exception):
    """A path is not a run, or its store cannot be read; the message is one line."""


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None], mode: int | None = None) -> Path:
    """Write a file through a temp file beside it, fsync, rename and fsync the folder:
    readers (and a crash) see the old file or the new one, never half of one.

    Args:
        path: the file.
        write: writes the content into the open binary file it is given.
        mode: permission bits for the new file (mkstemp's are 0o600).

    Returns:
        ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> None:
    """JSON through :func:`write_atomic`."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    write_atomic(path, lambda f: f.write(text.encode()))


def is_run(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file() and (Path(path) / METRICS).is_file()


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand run and experiment directories into run directories, in order.

    Raises:
        StoreError: a path does not exist or holds no run.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise StoreError(f"{path}: no such directory")
        if is_run(path):
            found.append(path)
            continue
        exp = path / EXPERIMENT
        names: list[str] = []
        if exp.is_file():
            try:
                names = list(json.loads(exp.read_text()).get("runs", []))
            except (OSError, ValueError) as e:
                raise StoreError(f"{exp}: unreadable experiment file ({e})") from None
        names += sorted(p.name for p in path.iterdir() if p.is_dir() and p.name not in names)
        runs = [path / n for n in names if is_run(path / n)]
        if not runs:
            raise StoreError(f"{path}: not a run or experiment directory (no {CONFIG} and {METRICS})")
        found.extend(runs)
    return found


def _encode(value: float | Sequence[float]) -> tuple[float | None, str | None]:
    if isinstance(value, (int, float, np.floating, np.integer)):
        v = float(value)
        return (v if math.isfinite(v) else _nonfinite(v)), None
    arr = np.asarray(value, dtype=float).ravel()
    return None, json.dumps(arr.tolist())  # NaN/Infinity round-trip through Python's json


def _nonfinite(v: float) -> float | None:
    # SQLite stores inf but turns NaN into NULL; keep NaN distinct from "no value".
    return v if not math.isnan(v) else None


class RunStore:
    """Read and write one run directory's metrics and status."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if not is_run(self.path):
            raise StoreError(f"{self.path}: not a run directory (no {CONFIG} and {METRICS})")
        try:
            self.config: dict[str, Any] = json.loads((self.path / CONFIG).read_text())
            uri = f"file:{self.path / METRICS}" + ("?mode=ro" if readonly else "")
            self._db = sqlite3.connect(uri, uri=True, timeout=30.0)
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("SELECT count(*) FROM meta").fetchone()
        except (OSError, ValueError, sqlite3.DatabaseError) as e:
            raise StoreError(f"{self.path}: corrupt run store ({e})") from None

    @classmethod
    def create(cls, path: str | Path, config: Mapping[str, Any]) -> RunStore:
        """Make a new run directory with ``config.json`` and an empty store."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path}: already exists and is not empty (use --resume or another --run-dir)")
        path.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path / METRICS)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        db.commit()
        db.close()
        write_json_atomic(path / CONFIG, dict(config))
        store = cls(path)
        store.set_meta(status="running", created=time.time())
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writing -------------------------------------------------------------
    def log(self, step: int, metrics: Mapping[str, float | Sequence[float]]) -> None:
        """Record metrics at ``step`` in one transaction (a re-logged key replaces the old)."""
        self.log_many([(step, metrics)])

    def log_many(self, records: Iterable[tuple[int, Mapping[str, float | Sequence[float]]]]) -> None:
        """Record several steps' metrics in one transaction."""
        rows = [(int(step), name, *_encode(v)) for step, metrics in records for name, v in metrics.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)", rows)

    def truncate_after(self, step: int) -> None:
        """Drop every metric recorded after ``step`` (resume from a checkpoint at ``step``)."""
        with self._db:
            self._db.execute("DELETE FROM metrics WHERE step > ?", (int(step),))

    def set_meta(self, **values: Any) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
            )

    def set_status(self, status: str, **info: Any) -> None:
        assert status in STATUSES, status
        values = dict(info, status=status, updated=time.time())
        if status == "running":
            values.update(pid=os.getpid(), host=socket.gethostname())
        self.set_meta(**values)

    # reading -------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    @property
    def status(self) -> str:
        """running, finished, diverged, interrupted or failed; a 'running' run whose
        process is gone (killed) reads as interrupted."""
        meta = self.meta
        status = meta.get("status", "interrupted")
        if status == "running" and meta.get("host") == socket.gethostname() and not _alive(meta.get("pid")):
            return "interrupted"
        return status

    def names(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT name FROM metrics ORDER BY name")]

    def last_step(self) -> int | None:
        return self._db.execute("SELECT max(step) FROM metrics").fetchone()[0]

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric in step order; array metrics give a 2-D values array
        (one row per step; rows of unequal length are padded with NaN)."""
        rows = self._db.execute(
            "SELECT step, value, array FROM metrics WHERE name = ? ORDER BY step", (name,)
        ).fetchall()
        steps = np.array([r[0] for r in rows], dtype=np.int64)
        if rows and rows[0][2] is not None:
            arrays = [np.array(json.loads(r[2]), dtype=float) for r in rows]
            width = max(len(a) for a in arrays)
            values = np.full((len(arrays), width), np.nan)
            for i, a in enumerate(arrays):
                values[i, : len(a)] = a
            return steps, values
        return steps, np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=float)

    def rows(self) -> Iterator[tuple[int, str, float | list[float]]]:
        """Every record in (step, name) order; arrays as lists."""
        for step, name, value, array in self._db.execute(
            "SELECT step, name, value, array FROM metrics ORDER BY step, name"
        ):
            if array is not None:
                yield step, name, [float(x) for x in json.loads(array)]
            else:
                yield step, name, math.nan if value is None else value

    def final(self, name: str) -> float | None:
        row = self._db.execute(
            "SELECT value FROM metrics WHERE name = ? AND array IS NULL ORDER BY step DESC LIMIT 1", (name,)
        ).fetchone()
        return None if row is None else (math.nan if row[0] is None else row[0])


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
