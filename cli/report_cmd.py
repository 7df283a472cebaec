"""``landscape report``: write the interactive HTML report of runs or experiments."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from landscape_cli.errors import InputError


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write (e.g. reports/NAME.html)  [default: FIRST_DIR/report.html]",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the report in the default web browser.")
@click.option("--title", default=None, help="Page title  [default: the directory names]")
def report(run_dirs: tuple[Path, ...], output: Path | None, open_browser: bool, title: str | None) -> None:
    """Write one self-contained HTML page comparing RUN_DIRS (runs or experiment directories).

    The page works offline (plotly.js is inlined) and can be written while a run is
    still training. By default it is written beside the data, as FIRST_DIR/report.html.
    Prints the path of the written file.
    """
    from landscape.report import default_output, write_report
    from landscape.runs import StoreError

    target = output if output is not None else default_output(run_dirs)
    try:
        path = write_report(run_dirs, target, title=title)
    except StoreError as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"{target}: cannot write the report ({e})") from None
    click.echo(str(path))
    if open_browser:
        webbrowser.open(path.resolve().as_uri())
