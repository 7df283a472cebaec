"""``landscape train``: one run of the instrumented training loop."""

from __future__ import annotations

from pathlib import Path

import click

from landscape_cli.errors import friendly_errors
from landscape_cli.launch import nproc_option, relaunch
from landscape_cli.options import (
    build_run_config,
    data_options,
    hessian_options,
    model_options,
    tensorboard_option,
    train_options,
)
from landscape_cli.progress import progress_bar


def echo_result(result) -> None:
    if result.status == "diverged":
        click.echo(
            f"{result.run_dir}: diverged at step {result.diverged_step} (loss became non-finite); "
            "everything up to it is recorded."
        )
    elif result.status == "interrupted":
        click.echo(
            f"{result.run_dir}: interrupted at step {result.steps}/{result.total_steps}; "
            f"continue with: landscape train --resume {result.run_dir}"
        )
    else:
        final = ", ".join(f"{k} {v:.4g}" for k, v in result.final.items())
        click.echo(f"{result.run_dir}: finished {result.steps} steps ({final})")


@click.command()
@model_options()
@data_options()
@train_options()
@hessian_options()
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory [default: runs/<model>-<norm>-<time>].",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Continue the run in this directory from its last checkpoint (other options are ignored).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@tensorboard_option()
@nproc_option()
@friendly_errors
def train(
    nproc: int | None,
    run_dir: Path | None,
    resume_dir: Path | None,
    progress: bool,
    tensorboard: Path | None,
    **options,
) -> None:
    """Train one model with the paper's protocol (plain SGD, batch 128, constant lr)
    and record train/test loss and accuracy in a run directory (DDP over the global
    batch under torchrun or with --nproc)."""
    relaunch(nproc)
    from landscape.runner.train import train as train_run

    if resume_dir is not None:
        with progress_bar(f"resume {resume_dir.name}", progress) as bar:
            result = train_run(run_dir=resume_dir, resume=True, progress=bar, tensorboard=tensorboard)
    else:
        config = build_run_config("train", **options)
        with progress_bar(f"{config.model.name} {config.model.norm}", progress) as bar:
            result = train_run(config, run_dir=run_dir, progress=bar, tensorboard=tensorboard)
    echo_result(result)
