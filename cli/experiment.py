"""What the experiment commands (probe, ics-noise, ics) share: resuming from
``experiment.json``, the plan and timed estimate, running, and the report."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import click

from landscape_cli.progress import progress_bar
from landscape_cli.train_cmd import echo_result


def new_experiment_dir(run_dir: Path | None, kind: str, model: str) -> Path:
    """A new experiment directory's path, decided by rank 0 alone under torchrun."""
    from landscape import distributed

    return distributed.on_main(lambda: _new_experiment_dir(run_dir, kind, model))


def _new_experiment_dir(run_dir: Path | None, kind: str, model: str) -> Path:
    from landscape.runs import StoreError

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    exp_dir = run_dir or Path("runs") / f"{kind}-{model.replace(':', '_')}-{stamp}"
    if exp_dir.exists() and any(exp_dir.iterdir()):
        raise StoreError(f"{exp_dir}: already exists; continue it with --resume {exp_dir}")
    return exp_dir


def resume_configs(resume_dir: Path, kind: str) -> list:
    from landscape.config import RunConfig
    from landscape.runs import EXPERIMENT, StoreError

    try:
        manifest = json.loads((resume_dir / EXPERIMENT).read_text())
        if manifest.get("kind") != kind:
            raise ValueError(manifest.get("kind"))
        return [RunConfig.from_dict(c) for c in manifest["configs"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StoreError(f"{resume_dir}: not a {kind} experiment ({type(e).__name__}: {e})") from None


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan(configs, extra_passes_per_step: float = 0.0) -> str:
    """The plan line and a timed estimate from a short micro-benchmark."""
    from landscape.data import total_steps
    from landscape.distributed import resolve_device
    from landscape.runner.experiments import check_configs, estimate_passes, time_one_pass

    check_configs(configs)
    passes = [estimate_passes(c, total_steps(c)) for c in configs]
    total = sum(p["total"] + extra_passes_per_step * p["train"] for p in passes)
    first = passes[0]
    what = f"{first['train']} training steps"
    if configs[0].probe is not None:
        what += f" + {first['probes']} probes x {len(configs[0].probe.step_sizes)} step sizes"
        what += " + curvature" if configs[0].probe.curvature else ""
    if configs[0].hessian is not None:
        what += f" + Hessian eigenvalues every {configs[0].hessian.schedule.every} steps"
    what += f" + {first['eval_passes']} passes' worth of evaluation" if first["eval_passes"] else ""
    lines = [f"plan: {len(configs)} runs x ({what}) = about {total:.0f} forward+backward passes"]
    per_pass = time_one_pass(configs[0])
    seconds = total * per_pass
    device = resolve_device(configs[0].train.device)
    lines.append(f"estimate: {per_pass * 1e3:.0f} ms per pass on {device} -> about {duration(seconds)}")
    if seconds > 1800:
        lines.append(
            "hint: this is GPU work (--device cuda); on a CPU shrink it: fewer --steps or a smaller --model (vgg11)"
        )
    return "\n".join(lines)


def execute(
    kind: str,
    build,
    *,
    run_dir: Path | None,
    resume_dir: Path | None,
    dry_run: bool,
    progress: bool,
    report: bool,
    layout: str,
    seeds: tuple[int, ...] | None = None,
    tensorboard: Path | None = None,
) -> None:
    """What every experiment command does once its options are read: take the variants
    from ``--resume``'s experiment.json or from ``build()`` (once per seed with
    ``seeds``), print the plan and its timed estimate, and (unless ``--dry-run``) run them;
    ``tensorboard``: mirror each run's records into ``tensorboard/<run name>``."""
    if resume_dir is not None:
        configs, exp_dir = resume_configs(resume_dir, kind), resume_dir
    else:
        from landscape.runner.experiments import with_seeds

        configs = build() if seeds is None else with_seeds(build(), seeds)
        exp_dir = new_experiment_dir(run_dir, kind, configs[0].model.name)
    if tensorboard is not None:
        from landscape.integrations.tensorboard import summary_writer_class

        summary_writer_class()  # a missing tensorboard fails before the plan's benchmark
    click.echo(plan(configs))
    if not dry_run:
        run(configs, exp_dir, kind, progress, report, layout, tensorboard=tensorboard)


def run(
    configs,
    exp_dir: Path,
    kind: str,
    show_progress: bool,
    report: bool,
    layout: str = "auto",
    paper: dict | None = None,
    echo_claims: bool = True,
    tensorboard: Path | None = None,
) -> list:
    """Train every variant, write the report (also after Ctrl-C), print the outcome;
    ``paper``: ``{"model", "steps"}`` of the paper's protocol the verdicts' scale is
    measured against (default: the model family's). Returns the runs' results."""
    from landscape import distributed
    from landscape.runner.experiments import choose_layout, run_experiment

    world = distributed.world_size()
    layout = choose_layout(layout, len(configs), world)
    click.echo(f"experiment: {exp_dir}")
    if world > 1:
        how = (
            f"spread: run i on process i mod {world}, each alone"
            if layout == "spread"
            else f"ddp: each run in turn on all {world} processes"
        )
        click.echo(f"layout: {how}")
    show_progress = show_progress and distributed.is_main()  # rank 0's bars only
    verdicts = None
    try:
        results = run_experiment(
            configs,
            exp_dir,
            kind=kind,
            progress_for=lambda c: progress_bar(f"{c.model.name} {c.name}", show_progress),
            extra={"configs": [c.to_dict() for c in configs]},
            layout=layout,
            tensorboard=tensorboard,
        )
    finally:
        if distributed.is_main():
            verdicts = write_claims(exp_dir, kind, configs[0], paper)
            if report:
                path = write_report(exp_dir)
                if path is not None:
                    click.echo(f"report: {path}")
    if tensorboard is not None:
        click.echo(f"tensorboard: tensorboard --logdir {tensorboard}")
    if verdicts is not None and echo_claims:
        click.echo(verdicts)
    for config, result in zip(configs, results):
        if result is None:
            click.echo(f"{exp_dir / config.name}: already complete")
        else:
            echo_result(result)
    if any(r is not None and r.status == "interrupted" for r in results):
        click.echo(f"continue with: landscape {kind} --resume {exp_dir}")
    return results


def write_claims(exp_dir: Path, kind: str, config, paper: dict | None = None) -> str | None:
    """The paper's claims on the experiment's runs: ``claims.json`` beside them and the
    printed table (None when no run was created)."""
    from landscape.data import total_steps
    from landscape.paper import claims
    from landscape.paper.catalogue import PAPER_MODEL, family
    from landscape.paper.defaults import paper_config
    from landscape.report import data
    from landscape.runs import CLAIMS, StoreError, write_json_atomic

    try:
        records = data.load_runs([exp_dir])
    except StoreError:  # interrupted before any run was created
        return None
    if paper is None:  # the paper's protocol for this model's family
        model = PAPER_MODEL.get(family(config.model.name), config.model.name)
        paper = {"model": model, "steps": total_steps(paper_config(config.model.name, "train"))}
    found = claims.experiment_claims(records, kind, paper)
    write_json_atomic(exp_dir / CLAIMS, [c.to_dict() for c in found])
    return "claims (see README, 'Claims and verdicts'):\n" + claims.table(found)


def write_report(exp_dir: Path) -> Path | None:
    from landscape.report import write_report as write
    from landscape.runs import StoreError

    try:
        return write([exp_dir], exp_dir / "report.html")
    except StoreError:  # interrupted before any run was created
        return None
