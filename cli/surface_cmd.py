"""``landscape surface``: Li et al.'s loss surface (or trajectory plot) of a recorded run."""

from __future__ import annotations

from pathlib import Path

import click

from landscape.config import BN_MODES, SURFACE_DIRECTIONS, SurfaceConfig
from landscape_cli.errors import InputError, friendly_errors
from landscape_cli.launch import nproc_option, relaunch

_D = SurfaceConfig()  # the defaults live in landscape.config


@click.command("surface")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    default=_D.checkpoint,
    help="'last' (checkpoints/last.pt) or the STEP of a checkpoint kept with --keep-checkpoints.",
)
@click.option(
    "--directions",
    type=click.Choice(SURFACE_DIRECTIONS),
    default=_D.directions,
    help="filter: Li et al.'s filter-normalized Gaussian; random: Gaussian scaled to ||w||; "
    "eigen: the top --dims Hessian eigenvectors (unit length: --span is a distance in weight space).",
)
@click.option("--steps", type=int, default=_D.steps, help="Grid points per direction (odd).")
@click.option(
    "--span",
    type=float,
    default=_D.span,
    help="The grid covers [-span, span] along each direction; with --trajectory, span times 1.25 times "
    "the path's extent.",
)
@click.option("--dims", type=int, default=_D.dims, help="1 (a line) or 2 (a plane).")
@click.option(
    "--bn-mode",
    type=click.Choice(BN_MODES),
    default=_D.bn_mode,
    help="Normalization layers on batch statistics (train, the paper's objective) or running ones (eval); "
    "no-op for layer, group and rms, which keep none.",
)
@click.option(
    "--include-bias-and-bn", is_flag=True, help="Move biases and BN scales/shifts too (Li et al. leave them out)."
)
@click.option(
    "--batches",
    type=int,
    default=_D.batches,
    help="The loss is the mean over the run's first N training batches (epoch 0's order, its seed).",
)
@click.option("--seed", type=int, default=_D.seed, help="Seed of the Gaussian directions or the Lanczos start.")
@click.option(
    "--trajectory",
    is_flag=True,
    help="Li et al.'s trajectory plot: PCA directions of the kept checkpoints (train with "
    "--keep-checkpoints), with the training path over the contours.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for surface.json and surface.html  [default: RUN_DIR/surface]",
)
@click.option(
    "--points-per-forward",
    type=click.IntRange(min=1),
    default=1,
    help="Grid points per forward pass: 1 evaluates them one by one; N > 1 evaluates N at once "
    "(torch.func.vmap over stacked weights; N times the activation memory; meant for small "
    "models on a GPU, slower than 1 on a CPU). The losses agree to float rounding.",
)
@nproc_option()
@friendly_errors
def surface(run_dir: Path, out: Path | None, points_per_forward: int, nproc: int | None, **settings) -> None:
    """Compute the loss surface of the run in RUN_DIR around a checkpoint's weights
    (Li et al. 2018) and write surface.json and a self-contained surface.html.

    The loss is evaluated on the run's first --batches training batches, the batches
    of its steps 0, 1, ... without augmentation, so every checkpoint of a run is
    measured on the same data. `landscape report RUN_DIR` shows RUN_DIR/surface too.
    Prints the path of the written page.

    Under torchrun (or with --nproc N) every process evaluates its share of the grid
    points on the same batches; rank 0 writes the files.
    """
    relaunch(nproc)
    from landscape import distributed
    from landscape.report.html import write_surface_page
    from landscape.runner.surface_run import default_output, run_surface, save_surface

    config = SurfaceConfig(**settings)
    record = run_surface(run_dir, config, points_per_forward=points_per_forward)
    if not distributed.is_main():
        return
    folder = out if out is not None else default_output(run_dir)
    try:
        save_surface(folder, record)
        page = write_surface_page(record, folder / "surface.html", f"Loss surface — {record['label']}")
    except OSError as e:
        raise InputError(f"{folder}: cannot write the surface ({e})") from None
    click.echo(str(page))
