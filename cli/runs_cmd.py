"""``landscape runs``: list and export recorded runs."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import click

from landscape_cli.errors import InputError, friendly_errors


@click.group()
def runs() -> None:
    """Inspect run directories."""


def _all_runs(root: Path) -> list[Path]:
    from landscape.runs import is_run

    if is_run(root):
        return [root]
    return sorted({p.parent for p in root.rglob("config.json") if is_run(p.parent)})


@runs.command("ls")
@click.argument("root", type=click.Path(path_type=Path), default="runs")
@friendly_errors
def ls(root: Path) -> None:
    """List the runs under ROOT with status, steps and final test accuracy."""
    from landscape.runs import RunStore, StoreError

    if not root.is_dir():
        raise StoreError(f"{root}: no such directory")
    found = _all_runs(root)
    if not found:
        click.echo(f"no runs under {root}")
        return
    rows = [("run", "status", "steps", "test acc", "model", "norm")]
    for path in found:
        try:
            with RunStore(path, readonly=True) as store:
                meta, cfg = store.meta, store.config
                last = store.last_step()
                steps = meta.get("steps", last if last is not None else 0)
                acc = store.final("test/acc")
                status = store.status
                if status == "diverged":
                    status = f"diverged@{meta.get('diverged_step')}"
                rows.append(
                    (
                        str(path),
                        status,
                        f"{steps}/{cfg.get('total_steps', '?')}",
                        "-" if acc is None or math.isnan(acc) else f"{acc:.4f}",
                        cfg.get("model", {}).get("name", "?"),
                        cfg.get("model", {}).get("norm", "?"),
                    )
                )
        except StoreError as e:
            rows.append((str(path), "corrupt", "-", "-", "-", str(e)[:40]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@runs.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "tensorboard"]),
    default="csv",
    show_default=True,
    help="csv: step,name,value rows; jsonl: one JSON object per record; tensorboard: event files.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="File to write (csv, jsonl) [default: stdout], or the directory of the event files (tensorboard, required).",
)
@friendly_errors
def export(run_dir: Path, fmt: str, output: Path | None) -> None:
    """Write every metric of RUN_DIR.

    csv: rows step,name,value; an array metric gets one row per element, named NAME[i].

    jsonl: one {"step", "name", "value"} object per record, an array metric's value a
    list; NaN and infinities are null.

    tensorboard: event files in -o DIR, one tag per scalar metric and one per probe
    step size (probe/loss/eta=0.05); an experiment directory gets one folder per run.
    View them with: tensorboard --logdir DIR.
    """
    if fmt == "tensorboard":
        _export_tensorboard(run_dir, output)
        return
    from landscape.runs import RunStore

    with RunStore(run_dir, readonly=True) as store:
        handle = open(output, "w", newline="") if output else sys.stdout
        try:
            (_write_csv if fmt == "csv" else _write_jsonl)(store.rows(), handle)
        finally:
            if output:
                handle.close()
    if output:
        click.echo(f"wrote {output}", err=True)


def _write_csv(rows, handle) -> None:
    writer = csv.writer(handle)
    writer.writerow(["step", "name", "value"])
    for step, name, value in rows:
        if isinstance(value, list):
            writer.writerows([step, f"{name}[{i}]", repr(v)] for i, v in enumerate(value))
        else:
            writer.writerow([step, name, repr(value)])


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _write_jsonl(rows, handle) -> None:
    for step, name, value in rows:
        value = [_finite(v) for v in value] if isinstance(value, list) else _finite(value)
        handle.write(json.dumps({"step": step, "name": name, "value": value}, allow_nan=False) + "\n")


def _export_tensorboard(run_dir: Path, output: Path | None) -> None:
    from landscape.integrations.tensorboard import export_run
    from landscape.runs import find_runs

    if output is None:
        raise InputError("--format tensorboard needs -o DIR, the directory of the event files")
    runs = find_runs([run_dir])
    for run in runs:
        target = output if run == run_dir else output / run.relative_to(run_dir)
        count = export_run(run, target)
        click.echo(f"wrote {count} values of {run} to {target}", err=True)
    click.echo(f"view with: tensorboard --logdir {output}", err=True)
