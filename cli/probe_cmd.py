"""``landscape probe``: train a model with and without BatchNorm and probe the
loss landscape along the gradient on a schedule (Santurkar et al. 2018, Fig. 4)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path

import click

from landscape_cli.errors import InputError, friendly_errors
from landscape_cli.options import build_run_config, data_options, family, model_options, split_norms, train_options
from landscape_cli.progress import progress_bar
from landscape_cli.train_cmd import echo_result


def _estimate(configs, per_pass: float | None) -> str:
    from landscape.experiments import estimate_passes, total_steps
    from landscape.train import resolve_device

    device = resolve_device(configs[0].train.device)
    passes = [estimate_passes(c, total_steps(c)) for c in configs]
    total = sum(p["total"] for p in passes)
    p0 = passes[0]
    k = len(configs[0].probe.step_sizes)
    lines = [
        f"plan: {len(configs)} runs x ({p0['train']} training steps + {p0['probes']} probes x "
        f"{k} step sizes{' + curvature' if configs[0].probe.curvature else ''}) "
        f"= {total} forward+backward passes",
    ]
    if per_pass is not None:
        seconds = total * per_pass
        lines.append(
            f"estimate: {per_pass * 1e3:.0f} ms per pass on {device} -> about "
            f"{_duration(seconds)} (plus evaluation)"
        )
        if seconds > 1800:
            lines.append(
                "hint: this is GPU work (--device cuda); on a CPU shrink it: fewer --steps, "
                "a smaller --model (vgg11), --no-curvature, or fewer --step-sizes"
            )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _report(exp_dir: Path) -> Path | None:
    from landscape.report import write_report
    from landscape.runs import StoreError

    try:
        return write_report([exp_dir], exp_dir / "report.html")
    except StoreError:  # interrupted before any run was created
        return None


@click.command()
@model_options(default_norm="none,bn", multiple_norms=True)
@data_options()
@train_options()
@click.option("--step-sizes", default=None,
              help="Probe step sizes: multiples of lr ('0.5,1,2,4'), absolute ('abs:0.05,0.1'), or ranges "
                   "('lin:0.5:4:8', 'log:0.01:30:6') [default: 0.5,1,2,4 x lr; DLN 0.01,0.1,1,10,30 x lr].")
@click.option("--direction", type=click.Choice(["gradient", "random", "filter"]), default="gradient",
              show_default=True, help="Step along the gradient, a Gaussian direction scaled to ||g||, or a "
                                      "filter-normalized one (Li et al. 2018).")
@click.option("--bn-mode", type=click.Choice(["train", "eval"]), default="train", show_default=True,
              help="BatchNorm statistics inside a probe: batch (train; what SGD optimises) or running (eval).")
@click.option("--probe-every", type=int, default=None,
              help="Probe every N steps [default: 100 at 15k steps, scaled with --steps].")
@click.option("--dense-until", type=int, default=None,
              help="Probe densely before this step [default: 1000 at 15k steps, scaled].")
@click.option("--dense-every", type=int, default=None, help="Dense probe interval [default: 10 at 15k, scaled].")
@click.option("--curvature/--no-curvature", default=True, show_default=True,
              help="Also record g^T H g / ||g||^2 (one Hessian-vector product per probe).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Experiment directory [default: runs/probe-<model>-<time>].")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue an interrupted probe experiment (other options are ignored).")
@click.option("--dry-run", is_flag=True, help="Print the passes and a timed estimate, then exit.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write report.html at the end.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@friendly_errors
def probe(norm: str, step_sizes: str | None, direction: str, bn_mode: str, probe_every: int | None,
          dense_until: int | None, dense_every: int | None, curvature: bool, run_dir: Path | None,
          resume_dir: Path | None, dry_run: bool, report: bool, progress: bool, **options) -> None:
    """Train MODEL once per normalization (default: without and with BatchNorm) from
    the same seed, initial weights and data order, and at scheduled steps measure
    along the gradient, for each step size eta: the loss L(w - eta g), the gradient
    predictiveness ||grad L(w - eta g) - g|| and the effective beta-smoothness."""
    from landscape.config import ConfigError, ProbeConfig, RunConfig
    from landscape.experiments import run_experiment, scaled_probe_schedule, time_one_pass, total_steps, variants
    from landscape.probes import DEFAULT_STEP_SIZES, parse_step_sizes
    from landscape.runs import EXPERIMENT, StoreError

    if resume_dir is not None:
        manifest = resume_dir / EXPERIMENT
        try:
            configs = [RunConfig.from_dict(c) for c in json.loads(manifest.read_text())["configs"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(f"{resume_dir}: not a probe experiment ({type(e).__name__})") from None
        exp_dir = resume_dir
    else:
        norms = split_norms(norm)
        base = build_run_config(norm=norms[0], **options)
        if step_sizes is None:
            sizes, relative = DEFAULT_STEP_SIZES[family(base.model.name)], True
        else:
            try:
                sizes, relative = parse_step_sizes(step_sizes)
            except ValueError as e:
                raise InputError(f"--step-sizes: {e}") from None
        k = len(sizes) + (2 if curvature else 0)
        schedule = scaled_probe_schedule(total_steps(base), k)
        probe_cfg = ProbeConfig(
            step_sizes=tuple(sizes), relative=relative, direction=direction, bn_mode=bn_mode,
            every=probe_every or schedule["every"],
            dense_until=schedule["dense_until"] if dense_until is None else dense_until,
            dense_every=dense_every or schedule["dense_every"], curvature=curvature,
        )
        configs = variants(dataclasses.replace(base, probe=probe_cfg), norms)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        exp_dir = run_dir or Path("runs") / f"probe-{base.model.name.replace(':', '_')}-{stamp}"
        if exp_dir.exists() and any(exp_dir.iterdir()):
            raise StoreError(f"{exp_dir}: already exists; continue it with --resume {exp_dir}")

    per_pass = time_one_pass(configs[0])
    click.echo(_estimate(configs, per_pass))
    if dry_run:
        return
    click.echo(f"experiment: {exp_dir}")
    try:
        results = run_experiment(
            configs, exp_dir, kind="probe",
            progress_for=lambda c: progress_bar(f"{c.model.name} {c.name}", progress),
            extra={"configs": [c.to_dict() for c in configs]},
        )
    finally:
        if report:
            path = _report(exp_dir)
            if path is not None:
                click.echo(f"report: {path}")
    for config, result in zip(configs, results):
        if result is None:
            click.echo(f"{exp_dir / config.name}: already complete")
        else:
            echo_result(result)
    if any(r is not None and r.status == "interrupted" for r in results):
        click.echo(f"continue with: landscape probe --resume {exp_dir}")
