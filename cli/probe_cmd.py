"""``landscape probe``: train a model with and without BatchNorm and probe the
loss landscape along the gradient on a schedule (Santurkar et al. 2018, Fig. 4)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from landscape_cli import experiment
from landscape_cli.errors import InputError, friendly_errors
from landscape_cli.launch import nproc_option, relaunch
from landscape_cli.options import (
    build_run_config,
    data_options,
    experiment_options,
    hessian_options,
    model_options,
    parse_seeds,
    split_norms,
    train_options,
)


@click.command()
@model_options(default_norm="none,bn", multiple_norms=True)
@data_options()
@train_options()
@click.option(
    "--step-sizes",
    default=None,
    help="Probe step sizes: multiples of lr ('0.5,1,2,4'), absolute ('abs:0.05,0.1'), or ranges "
    "('lin:0.5:4:8', 'log:0.01:30:6') [default: 0.5,1,2,4 x lr; DLN 0.01,0.1,1,10,30 x lr].",
)
@click.option(
    "--direction",
    type=click.Choice(["gradient", "random", "filter", "update"]),
    default="gradient",
    show_default=True,
    help="Step along the gradient, a Gaussian direction scaled to ||g||, a filter-normalized one (Li et al. 2018), "
    "or the optimizer's update u = (w_t - w_{t+1}) / lr (at eta = lr: the step taken).",
)
@click.option(
    "--bn-mode",
    type=click.Choice(["train", "eval"]),
    default="train",
    show_default=True,
    help="BatchNorm statistics inside a probe: batch (train; what SGD optimises) or running (eval); "
    "no-op for layer, group and rms, which keep none.",
)
@click.option(
    "--probe-every",
    type=int,
    default=None,
    help="Probe every N steps [default: 100 at 15k steps, scaled with --steps].",
)
@click.option(
    "--dense-until", type=int, default=None, help="Probe densely before this step [default: 1000 at 15k steps, scaled]."
)
@click.option("--dense-every", type=int, default=None, help="Dense probe interval [default: 10 at 15k, scaled].")
@click.option(
    "--curvature/--no-curvature",
    default=True,
    show_default=True,
    help="Also record g^T H g / ||g||^2 (one Hessian-vector product per probe).",
)
@click.option(
    "--probe-method",
    type=click.Choice(["loop", "vmap", "auto"]),
    default="loop",
    show_default=True,
    help="Evaluate the step sizes one after another (loop: fastest on CPUs and for large models) or "
    "together under torch.func.vmap (about 2x faster for small models such as the DLN on a GPU, "
    "K times the activation memory); auto: vmap on CUDA for models under 1M parameters.",
)
@click.option(
    "--probe-chunk-size",
    type=int,
    default=None,
    help="vmap: step sizes per vmapped call, to bound memory [default: all at once].",
)
@hessian_options()
@experiment_options("probe")
@nproc_option()
@friendly_errors
def probe(
    nproc: int | None,
    norm: str,
    step_sizes: str | None,
    direction: str,
    bn_mode: str,
    probe_every: int | None,
    dense_until: int | None,
    dense_every: int | None,
    curvature: bool,
    probe_method: str,
    probe_chunk_size: int | None,
    run_dir: Path | None,
    resume_dir: Path | None,
    dry_run: bool,
    seeds: str | None,
    report: bool,
    progress: bool,
    layout: str,
    tensorboard: Path | None,
    **options,
) -> None:
    """Train MODEL once per normalization (default: without and with BatchNorm) from
    the same seed, initial weights and data order, and at scheduled steps measure
    along the gradient, for each step size eta: the loss L(w - eta g), the gradient
    predictiveness ||grad L(w - eta g) - g|| and the effective beta-smoothness.

    Several processes (torchrun or --nproc) either share the variants out, one per
    process (--layout spread), or train each variant in turn with DDP over the global
    batch (--layout ddp), where probe losses and gradients are all-reduced, so that
    they are the global batch's."""
    relaunch(nproc)
    from landscape.config import ScheduleConfig
    from landscape.measure.step_sizes import parse_step_sizes
    from landscape.paper.defaults import probe_config
    from landscape.runner.experiments import variants

    def build() -> list:
        norms = split_norms(norm, options["model"])
        base = build_run_config("train", norm=norms[0], **options)
        sizes, relative = None, True
        if step_sizes is not None:
            try:
                sizes, relative = parse_step_sizes(step_sizes)
            except ValueError as e:
                raise InputError(f"--step-sizes: {e}") from None
        probe_cfg = probe_config(
            base,
            step_sizes=sizes,
            relative=relative,
            direction=direction,
            bn_mode=bn_mode,
            curvature=curvature,
            method=probe_method,
            chunk_size=probe_chunk_size,
        )
        s = probe_cfg.schedule
        schedule = ScheduleConfig(
            every=probe_every or s.every,
            dense_every=dense_every or s.dense_every,
            dense_until=s.dense_until if dense_until is None else dense_until,
        )
        probe_cfg = dataclasses.replace(probe_cfg, schedule=schedule)
        return variants(dataclasses.replace(base, probe=probe_cfg), norms)

    experiment.execute(
        "probe",
        build,
        run_dir=run_dir,
        resume_dir=resume_dir,
        dry_run=dry_run,
        seeds=parse_seeds(seeds, options["seed"]),
        progress=progress,
        report=report,
        layout=layout,
        tensorboard=tensorboard,
    )
