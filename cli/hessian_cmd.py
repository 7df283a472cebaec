"""``landscape hessian``: the top Hessian eigenvalues (and trace) of a recorded run's
training loss at its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from landscape_cli.errors import InputError, friendly_errors


def _line(result) -> str:
    values = ", ".join(f"{v:.6g}" for v in result.eigenvalues)
    text = (f"{result.run} step {result.step}: lambda_max {result.lambda_max:.6g} "
            f"(residual {result.residual:.2g}, {result.hvps} HVPs{'' if result.converged else ', not converged'})")
    if len(result.eigenvalues) > 1:
        text += f"; top {len(result.eigenvalues)}: {values}"
    if result.trace is not None:
        text += f"; trace {result.trace:.6g} +- {result.trace_stderr:.2g}"
    return text


@click.command("hessian")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Choice(["last", "all"]), default="last", show_default=True,
              help="The last checkpoint, or also every one a run trained with --keep-checkpoints kept.")
@click.option("--k", type=click.IntRange(min=1), default=1, show_default=True, help="How many largest eigenvalues.")
@click.option("--trace/--no-trace", default=False, show_default=True, help="Also estimate tr H (Hutch++).")
@click.option("--bn-mode", type=click.Choice(["train", "eval"]), default="train", show_default=True,
              help="BatchNorm statistics: batch (train; what SGD optimises) or running (eval).")
@click.option("--batches", type=click.IntRange(min=1), default=4, show_default=True,
              help="H is the mean over the run's first N training batches (its first epoch's order).")
@click.option("--max-hvps", type=click.IntRange(min=2), default=100, show_default=True,
              help="At most this many Hessian-vector products per estimate.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the values as JSON to this file.")
@friendly_errors
def hessian(run_dir: Path, checkpoint: str, k: int, trace: bool, bn_mode: str, batches: int, max_hvps: int,
            device: str, out: Path | None) -> None:
    """The largest Hessian eigenvalue lambda_max (Lanczos, exact Hessian-vector
    products) of RUN_DIR's training loss at its checkpoint(s), H being the mean over
    its first training batches; compare lambda_max with 2/lr, the stability limit of
    gradient descent. Prints one line per checkpoint."""
    from landscape.distributed import resolve_device
    from landscape.spectrum import checkpoint_spectrum

    results = checkpoint_spectrum(run_dir, checkpoint=checkpoint, k=k, trace=trace, bn_mode=bn_mode,
                                  batches=batches, max_hvps=max_hvps, device=resolve_device(device))
    for result in results:
        click.echo(_line(result))
    if out is not None:
        try:
            out.write_text(json.dumps([r.to_dict() for r in results], indent=2))
        except OSError as e:
            raise InputError(f"{out}: cannot write ({e.strerror or e})") from None
        click.echo(f"wrote {out}", err=True)
