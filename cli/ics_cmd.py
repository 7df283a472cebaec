"""``landscape ics-noise`` and ``landscape ics``: the internal-covariate-shift
experiments of Santurkar et al. 2018 (Fig. 2, 3, 7, 8)."""

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
    model_options,
    parse_seeds,
    split_norms,
    train_options,
)


def _schedule(default, every: int | None):
    """The paper's schedule as scaled for the run, with ``every`` in place of its interval."""
    return dataclasses.replace(default, every=every) if every else default


def _layers(text: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else ()


@click.command("ics-noise")
@model_options(default_norm="none,bn,noisy_bn", multiple_norms=True)
@data_options()
@train_options()
@click.option(
    "--control", is_flag=True, help="Add the control the paper mentions but does not show: the same noise without BN."
)
@click.option(
    "--dist-layers",
    default=None,
    help="Layers whose inputs to record (was --layers, now the GPT's blocks): 1-based positions or module "
    "names, comma separated [default: the paper's #2, #9, #13 of VGG-16; else second, middle and last].",
)
@click.option("--channels", type=int, default=5, show_default=True, help="Channels per layer, drawn once.")
@click.option("--bins", type=int, default=60, show_default=True, help="Histogram bins.")
@click.option(
    "--dist-every",
    type=int,
    default=None,
    help="Record distributions every N steps [default: 100 at 15k steps, scaled].",
)
@experiment_options("ics-noise")
@nproc_option()
@friendly_errors
def ics_noise(
    nproc: int | None,
    norm: str,
    control: bool,
    dist_layers: str | None,
    channels: int,
    bins: int,
    dist_every: int | None,
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
    """Noisy BatchNorm (Fig. 2, 8): train Standard, Standard + BN and Standard + noisy
    BN (Algorithm 1: time-varying random shift and scale after every BN layer) and
    record train/test accuracy and the distributions of layer inputs.

    Under DDP (--layout ddp) the distributions are the global batch's: histograms
    summed and moments pooled over the processes."""
    relaunch(nproc)
    from landscape.runner.experiments import variants

    def build() -> list:
        norms = split_norms(norm, options["model"]) + (["noise"] if control and "noise" not in norm else [])
        base = build_run_config("ics-noise", norm=norms[0], **options)
        dist = dataclasses.replace(
            base.distributions,
            schedule=_schedule(base.distributions.schedule, dist_every),
            layers=_layers(dist_layers),
            channels=channels,
            bins=bins,
        )
        return variants(dataclasses.replace(base, distributions=dist), norms)

    experiment.execute(
        "ics-noise",
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


@click.command("ics")
@model_options(default_norm="none,bn", multiple_norms=True)
@data_options()
@train_options()
@click.option(
    "--lrs",
    default=None,
    help="Comma list of learning rates, one run per norm and lr [default: 0.1,0.01 for VGG; "
    "1e-6,1e-7 for the DLN; else --lr].",
)
@click.option(
    "--ics-every",
    type=int,
    default=None,
    help="Measure ICS every N steps [default: 100 at 15k steps, scaled, dense early].",
)
@experiment_options("ics")
@nproc_option()
@friendly_errors
def ics(
    nproc: int | None,
    norm: str,
    lrs: str | None,
    ics_every: int | None,
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
    """Internal covariate shift (Definition 2.1, Fig. 3): for every layer, the change
    of its gradient when the earlier layers take their optimizer step first, as l2
    distance and cosine; with and without BN, at two learning rates.

    Under DDP (--layout ddp) G and G' are the global batch's gradients (all-reduced)."""
    relaunch(nproc)
    from landscape.paper.defaults import protocol
    from landscape.runner.experiments import lr_variants

    def build() -> list:
        norms = split_norms(norm, options["model"])
        base = build_run_config("ics", norm=norms[0], **options)
        try:
            given = [float(x) for x in lrs.split(",")] if lrs else None
        except ValueError:
            raise InputError(f"--lrs: not a comma list of numbers: {lrs!r}") from None
        if given == []:
            raise InputError("--lrs: give at least one learning rate")
        rates = given or list(protocol(base.model.name).ics_lrs or (base.train.lr,))
        ics_cfg = dataclasses.replace(base.ics, schedule=_schedule(base.ics.schedule, ics_every))
        return lr_variants(dataclasses.replace(base, ics=ics_cfg), norms, rates)

    experiment.execute(
        "ics",
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
