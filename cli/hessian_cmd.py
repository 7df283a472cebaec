"""``landscape hessian``: the top Hessian eigenvalues (and trace, and eigenvalue
density) of a recorded run's training loss at its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from landscape.config import DensityConfig
from landscape_cli.errors import InputError, friendly_errors

_DENSITY = DensityConfig()  # the defaults live in landscape.config


def _line(result) -> str:
    if result.nonfinite is not None:
        return f"{result.run} step {result.step}: no curvature ({result.nonfinite})"
    values = ", ".join(f"{v:.6g}" for v in result.eigenvalues)
    text = (
        f"{result.run} step {result.step}: lambda_max {result.lambda_max:.6g} "
        f"(residual {result.residual:.2g}, {result.hvps} HVPs{'' if result.converged else ', not converged'})"
    )
    if len(result.eigenvalues) > 1:
        text += f"; top {len(result.eigenvalues)}: {values}"
    if result.trace is not None:
        text += f"; trace {result.trace:.6g} +- {result.trace_stderr:.2g}"
    return text


def _density_line(result) -> str:
    d = result.density
    low, high = min(min(t) for t in d.nodes), max(max(t) for t in d.nodes)
    return (
        f"{result.run} step {result.step}: density nodes in [{low:.6g}, {high:.6g}], "
        f"mean {d.mean:.6g} (tr H / n, n = {d.parameters}), {d.hvps} HVPs ({d.runs} runs x {d.steps} steps)"
    )


def _dry_run(run_dir: Path, max_hvps: int, density: DensityConfig | None, device) -> None:
    """One line: the Lanczos basis's worst case and the device's available memory;
    exit 2 where it cannot fit (the run would be refused)."""
    from landscape.runner.spectrum import basis_memory

    m = basis_memory(run_dir, max_hvps=max_hvps, density=density, device=device)
    available = "unknown memory" if m.available is None else _size(m.available)
    click.echo(
        f"{run_dir}: the Lanczos basis takes at most {_size(m.bytes)} ({m.products} products on "
        f"{m.parameters:,} {m.dtype} parameters, in blocks of 16 vectors); {m.device} has {available} available"
    )
    if not m.fits:
        raise InputError(f"the Lanczos basis cannot fit {m.device}: lower --max-hvps (at most {m.most} fit)")


def _size(count: int) -> str:
    return f"{count / 2**20:.3g} MiB" if count < 2**30 else f"{count / 2**30:.3g} GiB"


@click.command("hessian")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    type=click.Choice(["last", "all"]),
    default="last",
    show_default=True,
    help="The last checkpoint, or also every one a run trained with --keep-checkpoints kept.",
)
@click.option("--k", type=click.IntRange(min=1), default=1, show_default=True, help="How many largest eigenvalues.")
@click.option("--trace/--no-trace", default=False, show_default=True, help="Also estimate tr H (Hutch++).")
@click.option(
    "--bn-mode",
    type=click.Choice(["train", "eval"]),
    default="train",
    show_default=True,
    help="BatchNorm statistics: batch (train; what SGD optimises) or running (eval); "
    "no-op for layer, group and rms, which keep none.",
)
@click.option(
    "--batches",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="H is the mean over the run's first N training batches (its first epoch's order).",
)
@click.option(
    "--max-hvps",
    type=click.IntRange(min=2),
    default=100,
    show_default=True,
    help="At most this many Hessian-vector products per estimate.",
)
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--density/--no-density",
    default=False,
    show_default=True,
    help="Also estimate the eigenvalue density (stochastic Lanczos quadrature) and write it to "
    "RUN_DIR/spectrum/density.json for `landscape report`.",
)
@click.option(
    "--density-runs",
    type=click.IntRange(min=1),
    default=_DENSITY.runs,
    show_default=True,
    help="Random start vectors of the density (its estimate is their mean).",
)
@click.option(
    "--density-steps",
    type=click.IntRange(min=1),
    default=_DENSITY.steps,
    show_default=True,
    help="Lanczos steps per start vector (Hessian-vector products per run).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the values as JSON to this file.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    default=False,
    help="Print the Lanczos basis's worst-case memory against the device's and measure nothing.",
)
@friendly_errors
def hessian(
    run_dir: Path,
    checkpoint: str,
    k: int,
    trace: bool,
    bn_mode: str,
    batches: int,
    max_hvps: int,
    device: str,
    density: bool,
    density_runs: int,
    density_steps: int,
    out: Path | None,
    dry_run: bool,
) -> None:
    """The largest Hessian eigenvalue lambda_max (Lanczos, exact Hessian-vector
    products) of RUN_DIR's training loss at its checkpoint(s), H being the mean over
    its first training batches; compare lambda_max with 2/lr, the stability limit of
    gradient descent. Prints one line per checkpoint.

    A checkpoint whose weights or Hessian-vector products are not finite (a diverged
    or overflowing run) gets a line saying so instead of numbers; when no checkpoint
    has finite curvature the command fails (exit 2).

    With --density, also the density of H's eigenvalues (Ghorbani et al. 2019) at
    each checkpoint, one more line each, written to RUN_DIR/spectrum/density.json
    (one entry per checkpoint), which `landscape report RUN_DIR` draws."""
    from landscape.distributed import resolve_device
    from landscape.runner.spectrum import checkpoint_spectrum, density_record, save_density

    context = click.get_current_context()
    for name in ("density_runs", "density_steps"):
        if not density and context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            raise InputError(f"--{name.replace('_', '-')} sets the density: add --density")
    settings = DensityConfig(runs=density_runs, steps=density_steps) if density else None
    if dry_run:
        _dry_run(run_dir, max_hvps, settings, resolve_device(device))
        return
    results = checkpoint_spectrum(
        run_dir,
        checkpoint=checkpoint,
        k=k,
        trace=trace,
        bn_mode=bn_mode,
        batches=batches,
        max_hvps=max_hvps,
        device=resolve_device(device),
        density=settings,
    )
    if all(r.nonfinite is not None for r in results):
        raise InputError(
            f"{run_dir}: no finite curvature at " + "; ".join(f"step {r.step} ({r.nonfinite})" for r in results)
        )
    for result in results:
        click.echo(_line(result))
        if result.density is not None:
            click.echo(_density_line(result))
    if settings is not None:
        try:
            path = save_density(run_dir, density_record(run_dir, results))
        except OSError as e:
            raise InputError(f"{run_dir}: cannot write the density ({e.strerror or e})") from None
        click.echo(f"wrote {path}", err=True)
    if out is not None:
        try:
            out.write_text(json.dumps([r.to_dict() for r in results], indent=2))
        except OSError as e:
            raise InputError(f"{out}: cannot write ({e.strerror or e})") from None
        click.echo(f"wrote {out}", err=True)
