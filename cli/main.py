"""The ``landscape`` command group."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click


class _OneLineErrors(click.Group):
    """Every usage or input error is one ``Error: ...`` line and exit code 2."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        extra.pop("standalone_mode", None)
        self.argv = list(sys.argv[1:] if args is None else args)  # for --nproc's re-launch
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except RuntimeError as e:  # under torchrun: a peer died or a collective timed out
            if "RANK" not in os.environ or os.environ.get("LANDSCAPE_DEBUG"):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            click.echo(
                f"Error: rank {os.environ['RANK']}: another process of the job failed or stopped "
                f"answering ({first[:200]}); continue with --resume",
                err=True,
            )
            sys.exit(1)


class _EchoHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="torch-landscape")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Loss-landscape analysis for PyTorch: gradient-direction probes, internal
    covariate shift and interactive reports (Santurkar et al., "How Does Batch
    Normalization Help Optimization?", NeurIPS 2018)."""
    root = logging.getLogger("landscape")
    if not any(isinstance(h, _EchoHandler) for h in root.handlers):
        root.addHandler(_EchoHandler(logging.WARNING))
        root.propagate = False
    from landscape_cli.launch import ARGV_KEY, join_if_launched

    ctx.meta[ARGV_KEY] = getattr(ctx.command, "argv", sys.argv[1:])
    join_if_launched(ctx)


def _register() -> None:
    from landscape_cli.hessian_cmd import hessian
    from landscape_cli.ics_cmd import ics, ics_noise
    from landscape_cli.probe_cmd import probe
    from landscape_cli.report_cmd import report
    from landscape_cli.reproduce_cmd import reproduce
    from landscape_cli.runs_cmd import runs
    from landscape_cli.surface_cmd import surface
    from landscape_cli.train_cmd import train

    cli.add_command(train)
    cli.add_command(probe)
    cli.add_command(ics_noise)
    cli.add_command(ics)
    cli.add_command(report)
    cli.add_command(reproduce)
    cli.add_command(runs)
    cli.add_command(surface)
    cli.add_command(hessian)


_register()
