"""``landscape runs``: list and export recorded runs."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import click

from landscape_cli.errors import friendly_errors


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
                rows.append((str(path), status, f"{steps}/{cfg.get('total_steps', '?')}",
                             "-" if acc is None or math.isnan(acc) else f"{acc:.4f}",
                             cfg.get("model", {}).get("name", "?"), cfg.get("model", {}).get("norm", "?")))
        except StoreError as e:
            rows.append((str(path), "corrupt", "-", "-", "-", str(e)[:40]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@runs.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV file [default: stdout].")
@friendly_errors
def export(run_dir: Path, output: Path | None) -> None:
    """Write every metric of RUN_DIR as CSV (step,name,value); array metrics get one
    row per element, named NAME[i]."""
    from landscape.runs import RunStore

    with RunStore(run_dir, readonly=True) as store:
        handle = open(output, "w", newline="") if output else sys.stdout
        try:
            writer = csv.writer(handle)
            writer.writerow(["step", "name", "value"])
            for step, name, value in store.rows():
                if isinstance(value, list):
                    writer.writerows([step, f"{name}[{i}]", repr(v)] for i, v in enumerate(value))
                else:
                    writer.writerow([step, name, repr(value)])
        finally:
            if output:
                handle.close()
    if output:
        click.echo(f"wrote {output}", err=True)
