"""Options shared by the training commands, defined once, and their translation
into a :class:`landscape.config.RunConfig` (CLI flag > the paper's per-model
default from :mod:`landscape.paper.defaults` > library default)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from landscape.config import (
    ADAM_OPTIMIZERS,
    HESSIAN_STARTS,
    NORMS,
    SEQUENCE_MODELS,
    SEQUENCE_NORMS,
    TEXT_PREFIX,
    ConfigError,
    HessianConfig,
    NoiseConfig,
    RunConfig,
    ScheduleConfig,
    is_text,
)


def _options(*decorators: Callable) -> Callable:
    def apply(fn: Callable) -> Callable:
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return apply


def model_options(default_norm: str = "bn", multiple_norms: bool = False) -> Callable:
    norm_help = (
        f"Comma list of normalizations to compare ({', '.join(NORMS)})."
        if multiple_norms
        else f"Normalization after every conv/linear layer ({', '.join(NORMS)})."
    )
    return _options(
        click.option(
            "--model",
            default="vgg16",
            show_default=True,
            help="Registry name (vgg11/13/16/19, resnet18/50, dln, tiny), torchvision:NAME, or pkg.module:factory.",
        ),
        click.option("--norm", default=default_norm, show_default=True, help=norm_help),
        click.option(
            "--init",
            type=click.Choice(["glorot", "glorot-normal", "torch"]),
            default=None,
            help="glorot: Xavier-uniform weights, zero biases (the paper's); "
            "glorot-normal: Xavier-normal; torch: the builder's own (PyTorch's defaults; GPT-2's for the GPT) "
            "[default: glorot; torch for the GPT].",
        ),
        click.option(
            "--init-gain",
            type=float,
            default=1.0,
            show_default=True,
            help="Glorot's gain (the paper's: 1; it compounds over a deep linear network's layers).",
        ),
        click.option(
            "--stem",
            type=click.Choice(["cifar", "imagenet"]),
            default="cifar",
            show_default=True,
            help="ResNet stem: cifar (3x3 conv, no max-pool) or torchvision's imagenet stem.",
        ),
        click.option("--depth", type=int, default=25, show_default=True, help="Deep linear network: layers."),
        click.option(
            "--width", type=int, default=None, help="Deep linear network or GPT: width [default: 10 DLN, 64 GPT]."
        ),
        click.option("--layers", type=int, default=None, help="GPT: transformer blocks [default: 2]."),
        click.option("--heads", type=int, default=None, help="GPT: attention heads [default: 2]."),
        click.option("--block-size", type=int, default=None, help="GPT: context in characters [default: 64]."),
        click.option(
            "--norm-placement",
            type=click.Choice(["pre", "post"]),
            default=None,
            help="GPT: the norm before each residual branch (pre-LN) or after the residual sum (post-LN) "
            "[default: pre].",
        ),
        click.option("--dropout", type=float, default=None, help="GPT: dropout probability [default: 0]."),
        click.option(
            "--width-mult",
            type=float,
            default=1.0,
            show_default=True,
            help="VGG: channels of every conv times this (0.25: a quarter-width VGG for CPUs).",
        ),
    )


def data_options() -> Callable:
    return _options(
        click.option(
            "--dataset",
            default=None,
            help="cifar10, synthetic, gaussian-linear, shakespeare (DATA_DIR/shakespeare/input.txt) or "
            "text:PATH (any UTF-8 file, character level) [default: cifar10; gaussian-linear for dln; "
            "shakespeare for gpt].",
        ),
        click.option(
            "--data-dir",
            envvar="LANDSCAPE_DATA",
            default=None,
            show_envvar=True,
            help="Folder holding cifar-10-batches-py and shakespeare/input.txt [default: ./data].",
        ),
        click.option(
            "--augment/--no-augment",
            default=False,
            show_default=True,
            help="Random crop and flip (the paper trains without).",
        ),
        click.option("--subset", type=int, default=None, help="Keep the first N training images."),
    )


def train_options() -> Callable:
    return _options(
        click.option("--steps", type=int, default=None, help="Optimizer steps [default: 15000 (VGG), 10000 (DLN)]."),
        click.option("--epochs", type=int, default=None, help="Epochs instead of steps [default: 20 for ResNets]."),
        click.option(
            "--batch-size",
            type=int,
            default=None,
            help="Mini-batch size: the GLOBAL batch, split evenly over the processes under torchrun/--nproc "
            "[default: 128; 32 for the GPT].",
        ),
        click.option(
            "--lr", type=float, default=None, help="Constant step size [default: 0.1 VGG, 0.01 ResNet, 1e-6 DLN]."
        ),
        click.option(
            "--optimizer",
            default=None,
            help="sgd, adam or adamw (torch.optim's) [default: the model's protocol: plain sgd, the paper's].",
        ),
        click.option("--momentum", type=float, default=0.0, show_default=True, help="SGD momentum (paper: 0)."),
        click.option("--dampening", type=float, default=0.0, show_default=True, help="SGD momentum dampening."),
        click.option("--nesterov/--no-nesterov", default=False, show_default=True, help="SGD: Nesterov momentum."),
        click.option("--betas", default=None, help="Adam/AdamW: B1,B2 [default: 0.9,0.999]."),
        click.option("--eps", type=float, default=None, help="Adam/AdamW: epsilon [default: 1e-8]."),
        click.option(
            "--weight-decay",
            type=float,
            default=None,
            help="Weight decay, coupled for sgd and adam, decoupled for adamw [default: 0, the paper's; 0.1 GPT].",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, data order, noise."),
        click.option(
            "--noise-seed", type=int, default=None, help="Seed of the noisy-BN noise (Algorithm 1) [default: --seed]."
        ),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option(
            "--bf16/--no-bf16",
            default=False,
            show_default=True,
            help="bf16 autocast for the training step only; probes recompute their gradient in float32.",
        ),
        click.option(
            "--dtype",
            type=click.Choice(["float32", "float64"]),
            default=None,
            help="Precision of parameters and data [default: float64 for the DLN, else float32].",
        ),
        click.option(
            "--loss-reduction",
            type=click.Choice(["mean", "sum", "sample-sum"]),
            default=None,
            help="Loss over a batch: mean over every entry, sum over every entry, or sample-sum "
            "(summed over the examples, each averaged over its outputs: the paper's DLN objective) "
            "[default: sample-sum for the DLN, else mean].",
        ),
        click.option(
            "--eval-every",
            type=int,
            default=None,
            help="Test loss/accuracy every N steps [default: 500; ics-noise: 5 times per run].",
        ),
        click.option(
            "--eval-samples",
            type=int,
            default=None,
            help="Evaluate on the first N test examples [default: all; 640 blocks (20 batches) for the GPT].",
        ),
        click.option(
            "--log-every",
            type=int,
            default=10,
            show_default=True,
            help="Write (and check) the per-step train loss every N steps.",
        ),
        click.option(
            "--checkpoint-every",
            type=int,
            default=1000,
            show_default=True,
            help="Checkpoint every N steps (and at the end, and on Ctrl-C).",
        ),
        click.option(
            "--keep-checkpoints/--no-keep-checkpoints",
            default=False,
            show_default=True,
            help="Also keep the weights of every checkpoint (checkpoints/weights-STEP.pt), not just the "
            "last: what `landscape surface --trajectory` projects.",
        ),
        click.option(
            "--sync-bn/--no-sync-bn",
            default=False,
            show_default=True,
            help="Several processes: BatchNorm statistics over the global batch (SyncBatchNorm); "
            "without it each process normalizes over its own shard.",
        ),
    )


def hessian_options() -> Callable:
    """Tracking the Hessian's top eigenvalues during training (``landscape train``, ``probe``)."""
    return _options(
        click.option(
            "--hessian-every",
            type=click.IntRange(min=0),
            default=None,
            help="Record the largest Hessian eigenvalue(s) of the training batch's loss every N steps "
            "(Lanczos, exact Hessian-vector products; 0 or unset: off).",
        ),
        click.option(
            "--hessian-k",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="How many of the largest Hessian eigenvalues to track.",
        ),
        click.option(
            "--hessian-start",
            type=click.Choice(HESSIAN_STARTS),
            default="gradient",
            show_default=True,
            help="Lanczos's start: the batch's gradient (plus noise), random, or warm (the previous "
            "measurement's top eigenvector).",
        ),
        click.option(
            "--hessian-preconditioned/--no-hessian-preconditioned",
            default=None,
            help="Also track Adam's preconditioned sharpness lambda_max(P^-1 H) (hessian/lambda_max_precond), "
            "P from the optimizer's state [default: on with adam and adamw].",
        ),
    )


def with_hessian(
    config: RunConfig, every: int | None, k: int = 1, start: str = "gradient", preconditioned: bool | None = None
) -> RunConfig:
    """``config`` tracking the top ``k`` Hessian eigenvalues every ``every`` steps from
    ``start`` (unchanged when ``every`` is 0 or None), and Adam's preconditioned
    sharpness where ``preconditioned`` (None: with adam and adamw)."""
    if not every:
        if preconditioned:
            raise ConfigError("--hessian-preconditioned needs --hessian-every N")
        return config
    if preconditioned is None:
        preconditioned = config.train.optimizer in ADAM_OPTIMIZERS
    elif preconditioned and config.train.optimizer not in ADAM_OPTIMIZERS:
        raise ConfigError("--hessian-preconditioned reads Adam's state: it needs --optimizer adam or adamw")
    schedule = ScheduleConfig(every=every, dense_until=0)
    hessian = HessianConfig(schedule=schedule, k=k, start=start, preconditioned=preconditioned)
    return dataclasses.replace(config, hessian=hessian)


def tensorboard_option() -> Callable:
    return click.option(
        "--tensorboard",
        "tensorboard",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Also write every record to TensorBoard event files in this directory as it is recorded "
        "(an experiment: one folder per run; needs the tensorboard extra). View: tensorboard --logdir DIR.",
    )


def experiment_options(kind: str) -> Callable:
    """Options every experiment command (probe, ics-noise, ics) takes."""
    return _options(
        click.option(
            "--run-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=f"Experiment directory [default: runs/{kind}-<model>-<time>].",
        ),
        click.option(
            "--resume",
            "resume_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=f"Continue an interrupted {kind} experiment (other options are ignored).",
        ),
        click.option("--dry-run", is_flag=True, help="Print the passes and a timed estimate, then exit."),
        click.option(
            "--seeds",
            default=None,
            help="Run every variant once per seed, as runs VARIANT/seedS: a count N (seeds --seed, "
            "--seed+1, ...) or a comma list of seeds. Verdicts then need every seed to agree.",
        ),
        click.option("--report/--no-report", default=True, show_default=True, help="Write report.html at the end."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
        click.option(
            "--layout",
            type=click.Choice(["auto", "ddp", "spread"]),
            default="auto",
            show_default=True,
            help="Several processes (torchrun/--nproc): 'ddp' trains each run in turn with every process "
            "over the global batch; 'spread' gives run i to process i mod N, alone (results equal "
            "a single-process run's; no per-step communication, so faster for small models); "
            "'auto' spreads when the runs divide evenly over the processes, else ddp.",
        ),
        tensorboard_option(),
    )


def build_run_config(kind: str, norm: str | None = None, name: str = "", **o: Any) -> RunConfig:
    """The run a command starts from: :func:`landscape.paper.defaults.paper_config` for the model,
    with every option the user gave in place of the paper's default (CLI flag >
    paper default > library default), and the measurements of ``kind`` scaled to
    the run's length."""
    from landscape.paper.defaults import paper_config, with_measurements

    names = ("init", "init_gain", "stem", "depth", "width", "width_mult", "layers", "heads", "block_size")
    model_fields = {k: o[k] for k in (*names, "norm_placement", "dropout") if o.get(k) is not None}
    norm = default_norms(norm or o["norm"], o["model"])  # the train command's --norm arrives as norm
    config = paper_config(o["model"], "train", norm=norm, **model_fields)
    steps, epochs = o["steps"], o["epochs"]
    dataset = o["dataset"] or config.data.name
    path = dataset.removeprefix(TEXT_PREFIX)
    if path and path != dataset:  # text:PATH, absolute in config.json: resume and surface from anywhere
        dataset = TEXT_PREFIX + str(Path(path).expanduser().resolve())
    if is_text(dataset) and epochs is not None:
        raise ConfigError("--epochs does not apply to text (its blocks are drawn at random): give --steps")
    if steps is None and epochs is None:
        steps, epochs = config.train.steps, config.train.epochs
    data = dataclasses.replace(
        config.data,
        name=dataset,
        data_dir=o["data_dir"],
        augment=o["augment"],
        subset=o["subset"],
        seed=o["seed"],
        dim=config.model.width,
        block_size=config.model.block_size,
    )
    given = {k: o[k] for k in ("lr", "dtype", "loss_reduction") if o[k] is not None}
    train = dataclasses.replace(
        config.train,
        steps=steps,
        epochs=epochs,
        batch_size=config.train.batch_size if o["batch_size"] is None else o["batch_size"],
        **optimizer_fields(o, config.train.optimizer),
        seed=o["seed"],
        device=o["device"],
        bf16=o["bf16"],
        eval_samples=config.train.eval_samples if o["eval_samples"] is None else o["eval_samples"],
        log_every=o["log_every"],
        checkpoint_every=o["checkpoint_every"],
        sync_bn=o.get("sync_bn", False),
        keep_checkpoints=o.get("keep_checkpoints", False),
        full_batch=config.train.full_batch or dataset == "gaussian-linear",
        **given,
    )
    noise = NoiseConfig(seed=o["seed"] if o.get("noise_seed") is None else o["noise_seed"])
    from landscape.runner.assembly import fit_vocabulary  # the model's vocabulary: a text file's characters

    config = dataclasses.replace(config, data=data, train=train, noise=noise, name=name)
    config = with_measurements(fit_vocabulary(config), kind)
    if o["eval_every"] is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, eval_every=o["eval_every"]))
    return with_hessian(
        config,
        o.get("hessian_every"),
        o.get("hessian_k", 1),
        o.get("hessian_start", "gradient"),
        o.get("hessian_preconditioned"),
    )


def optimizer_fields(o: dict, default: str = "sgd") -> dict:
    """TrainConfig's optimizer fields from the options, ``default`` the protocol's
    optimizer (validated by TrainConfig: one line each)."""
    fields = {k: o[k] for k in ("momentum", "dampening", "nesterov", "weight_decay") if o.get(k) is not None}
    fields["optimizer"] = (o.get("optimizer") or default).strip().lower()
    if o.get("betas") is not None:
        try:
            fields["betas"] = tuple(float(b) for b in o["betas"].split(","))
        except ValueError:
            raise ConfigError(f"--betas takes two numbers B1,B2, got {o['betas']!r}") from None
    if o.get("eps") is not None:
        fields["eps"] = o["eps"]
    if fields["optimizer"] == "sgd" and ("betas" in fields or "eps" in fields):
        raise ConfigError("--betas and --eps are Adam's; add --optimizer adam or adamw")
    return fields


def parse_seeds(text: str | None, first: int) -> tuple[int, ...] | None:
    """``--seeds``: None (one run per variant, as named), a count N (``first`` ...
    ``first + N - 1``) or a comma list of distinct seeds."""
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        values = [int(x) for x in items]
    except ValueError:
        raise click.BadParameter(f"not a count or a comma list of integers: {text!r}", param_hint="--seeds") from None
    if "," not in text:
        if not values or values[0] < 1:
            raise click.BadParameter("give a positive count or a comma list of seeds", param_hint="--seeds")
        return tuple(range(first, first + values[0]))
    if not values or len(set(values)) != len(values):
        raise click.BadParameter("give distinct seeds", param_hint="--seeds")
    return tuple(values)


def default_norms(text: str, model: str) -> str:
    """``--norm`` as given, or its default for ``model``: the GPT's (a sequence model)
    takes LayerNorm where the paper's networks take BatchNorm (``none,bn`` becomes
    ``none,layer``; norms it has no use for are left out)."""
    ctx = click.get_current_context(silent=True)
    given = ctx is None or ctx.get_parameter_source("norm") is not ParameterSource.DEFAULT
    if given or model not in SEQUENCE_MODELS:
        return text
    norms = ["layer" if n.strip() == "bn" else n.strip() for n in text.split(",")]
    return ",".join(dict.fromkeys(n for n in norms if n in SEQUENCE_NORMS))


def split_norms(text: str, model: str | None = None) -> list[str]:
    text = default_norms(text, model) if model is not None else text
    norms = [n.strip() for n in text.split(",") if n.strip()]
    if not norms:
        raise click.BadParameter("give at least one normalization", param_hint="--norm")
    bad = [n for n in norms if n not in NORMS]
    if bad:
        raise click.BadParameter(f"unknown {bad[0]!r}; choose from {', '.join(NORMS)}", param_hint="--norm")
    return norms
