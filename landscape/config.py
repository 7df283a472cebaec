"""Frozen, nested run configuration: every default of the toolkit lives here.

Each part owns its defaults and validates itself in ``__post_init__``; make
variants with :func:`dataclasses.replace`. Imports nothing from ``landscape``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# none, BatchNorm, noisy BN and its noise alone (the paper's Algorithm 1), the l_p norms
# (Sec. 3.3), and today's per-sample layer, group and RMS norms (landscape.models.norms).
NORMS = ("none", "bn", "noisy_bn", "noise", "l1", "l2", "linf", "layer", "group", "rms")
# Norms of conv feature maps only: group norm groups channels, and the deep linear
# network's activations are vectors of features (it takes bn, the l_p norms, layer, rms).
CONV_ONLY_NORMS = ("group",)
FULLY_CONNECTED_MODELS = ("dln",)
# The transformer on text (landscape.models.gpt): its norms, and where they sit.
SEQUENCE_MODELS = ("gpt",)
SEQUENCE_NORMS = ("layer", "rms", "none")
NORM_PLACEMENTS = ("pre", "post")
INITS = ("glorot", "glorot-normal", "torch")  # weights: Xavier-uniform (the paper's), Xavier-normal, PyTorch's
BN_MODES = ("train", "eval")
DTYPES = ("float32", "float64")
# How a batch's loss is reduced: "mean" over every entry (torch's default), "sum"
# over every entry, or "sample-sum": summed over the examples, each example's loss
# averaged over its entries (the paper's deep-linear-network objective; for
# cross-entropy, whose examples have one entry, the same as "sum").
LOSS_REDUCTIONS = ("mean", "sum", "sample-sum")
# Training and test examples of the fixed-size data sets (the synthetic set's are
# DataConfig fields): read by the data loaders and by the torch-free report.
DATASET_SIZES = {"cifar10": (50_000, 10_000), "gaussian-linear": (1000, 1000)}
# Image and vector sets, and the character-level text sets: "shakespeare"
# (DATA_DIR/shakespeare/input.txt) and "text:PATH" (any UTF-8 file).
DATASETS = ("cifar10", "synthetic", "gaussian-linear", "shakespeare")
TEXT_PREFIX = "text:"


def is_text(dataset: str) -> bool:
    """Whether ``dataset`` names a character-level text set."""
    return dataset == "shakespeare" or dataset.startswith(TEXT_PREFIX)


# A probe's direction: the gradient, a random or filter-normalized Gaussian, or the
# optimizer's update u = (w_t - w_{t+1}) / lr from a dry run of its step.
DIRECTIONS = ("gradient", "random", "filter", "update")
# torch.optim.SGD (with --momentum, --dampening, --nesterov), Adam (weight decay coupled:
# added to the gradient) and AdamW (decoupled: w <- w (1 - lr wd) before the step).
OPTIMIZERS = ("sgd", "adam", "adamw")
ADAM_OPTIMIZERS = ("adam", "adamw")  # those with a diagonal preconditioner P (landscape.measure.preconditioner)
PROBE_METHODS = ("loop", "vmap", "auto")
# A run's loss surface: Li et al.'s filter-normalized or plain Gaussian directions, or
# the top Hessian eigenvectors.
SURFACE_DIRECTIONS = ("filter", "random", "eigen")


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line for the user."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build: a registry name plus its normalization."""

    name: str = "vgg16"
    norm: str = "bn"
    num_classes: int = 10
    init: str = "glorot"  # "glorot" (paper: Xavier-uniform, zero bias), "glorot-normal" or "torch"
    init_gain: float = 1.0  # Glorot's gain (the scale compounds over a deep linear network's layers)
    stem: str = "cifar"  # ResNets: "cifar" (3x3 conv, no max-pool) or "imagenet"
    depth: int = 25  # deep linear network: number of layers
    width: int = 10  # deep linear network: width of every layer
    width_mult: float = 1.0  # VGG: channels of every conv times this (the CPU-scale reproductions' reduction)
    # The GPT (landscape.models.gpt): its width is ``width`` (its protocol sets 64), its
    # context ``block_size``, and the norm ``norm`` before ("pre") or after ("post") each
    # residual branch.
    layers: int = 2
    heads: int = 2
    block_size: int = 64
    norm_placement: str = "pre"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _require(bool(self.name), "model name is empty")
        _require(self.norm in NORMS, f"unknown norm {self.norm!r}; choose from {', '.join(NORMS)}")
        _require(
            not (self.name in FULLY_CONNECTED_MODELS and self.norm in CONV_ONLY_NORMS),
            f"--norm {self.norm} normalizes groups of conv channels; --model {self.name} is fully connected: "
            f"choose from {', '.join(n for n in NORMS if n not in CONV_ONLY_NORMS)}",
        )
        _require(self.init in INITS, f"unknown init {self.init!r}; choose from {', '.join(INITS)}")
        _require(self.init_gain > 0 and math.isfinite(self.init_gain), "--init-gain must be a positive number")
        _require(self.stem in ("cifar", "imagenet"), f"unknown stem {self.stem!r}; choose cifar or imagenet")
        _require(self.num_classes > 0, "num_classes must be positive")
        _require(self.depth > 0 and self.width > 0, "depth and width must be positive")
        _require(self.width_mult > 0, "width_mult must be positive")
        if self.name in SEQUENCE_MODELS:
            _require(
                self.norm in SEQUENCE_NORMS,
                f"--model {self.name} takes --norm {', '.join(SEQUENCE_NORMS)} (LayerNorm, RMSNorm or none), "
                f"not {self.norm}",
            )
            _require(self.layers > 0 and self.heads > 0 and self.block_size > 0, "--layers, --heads and "
                     "--block-size must be positive")  # fmt: skip
            _require(self.width % self.heads == 0, f"--width {self.width} must be a multiple of --heads {self.heads}")
            _require(self.norm_placement in NORM_PLACEMENTS, f"--norm-placement must be pre or post, got "
                     f"{self.norm_placement!r}")  # fmt: skip
            _require(0 <= self.dropout < 1, "--dropout must lie in [0, 1)")


@dataclass(frozen=True)
class DataConfig:
    """Which data set and how it is prepared (paper protocol by default)."""

    name: str = "cifar10"  # "cifar10", "synthetic", "gaussian-linear", "shakespeare" or "text:PATH"
    data_dir: str | None = None  # None: $LANDSCAPE_DATA, then ./data
    augment: bool = False  # paper: no augmentation
    subset: int | None = None  # keep the first N training examples
    seed: int = 0  # generation seed of the synthetic sets
    synthetic_train: int = 512
    synthetic_test: int = 256
    image_size: int = 32  # synthetic images are (3, image_size, image_size)
    dim: int = 10  # gaussian-linear: dimension of x and y (the deep linear network's width)
    num_classes: int = 10
    block_size: int = 64  # text: characters per example (the model's context)

    def __post_init__(self) -> None:
        _require(
            self.name in DATASETS or is_text(self.name),
            f"unknown dataset {self.name!r}; choose {', '.join(DATASETS)} or text:PATH",
        )
        _require(not self.name == "text:", "text:PATH needs a path")
        _require(self.block_size > 0, "--block-size must be positive")
        _require(self.subset is None or self.subset > 0, "--subset must be positive")
        _require(self.synthetic_train > 0 and self.synthetic_test > 0, "synthetic sizes must be positive")
        _require(self.dim > 0, "gaussian-linear dimension must be positive")


@dataclass(frozen=True)
class NoiseConfig:
    """Constants of the paper's Algorithm 1 (noisy BatchNorm)."""

    mean_range: float = 0.5  # mu_j ~ U(-mean_range, mean_range)
    scale_low: float = 1.0  # sigma_j ~ U(scale_low, scale_high)
    scale_high: float = 1.25
    mean_jitter: float = 0.1  # m ~ U(mu_j - mean_jitter, mu_j + mean_jitter)
    scale_jitter_std: float = 0.1  # s ~ N(sigma_j, scale_jitter_std)
    seed: int = 0  # seeds the noise's own torch.Generator (the CLI's --noise-seed, default --seed)

    def __post_init__(self) -> None:
        _require(self.mean_range >= 0 and self.mean_jitter >= 0, "noise ranges must be non-negative")
        _require(self.scale_low <= self.scale_high, "noise scale_low must not exceed scale_high")
        _require(self.scale_jitter_std >= 0, "noise scale_jitter_std must be non-negative")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and loop settings; paper defaults: plain SGD, batch 128, constant lr."""

    steps: int | None = 15_000
    epochs: int | None = None  # when set, overrides steps
    batch_size: int = 128
    lr: float = 0.1  # the training step size (torch's and the command line's name); a probe's are step_sizes
    optimizer: str = "sgd"  # see OPTIMIZERS; the paper's: plain SGD
    momentum: float = 0.0  # SGD's heavy-ball momentum
    dampening: float = 0.0  # SGD's momentum dampening
    nesterov: bool = False  # SGD: PyTorch's Nesterov momentum (needs momentum > 0, dampening 0)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW
    eps: float = 1e-8  # Adam/AdamW
    weight_decay: float = 0.0  # coupled for SGD and Adam, decoupled for AdamW (torch's)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    bf16: bool = False  # autocast the training step only
    dtype: str = "float32"  # parameters, buffers and floating data ("float64" for the DLN)
    loss_reduction: str = "mean"  # see LOSS_REDUCTIONS
    eval_every: int = 500  # test loss and accuracy every N steps (and at the end)
    eval_samples: int | None = None  # evaluate on the first N test examples (None: all)
    log_every: int = 10  # per-step train loss is written (and checked) every N steps
    checkpoint_every: int = 1000
    full_batch: bool = False  # one batch = the whole training set (the DLN task)
    sync_bn: bool = False  # multi-process runs: BatchNorm statistics over the global batch
    keep_checkpoints: bool = False  # also keep every checkpoint's weights (checkpoints/weights-STEP.pt)

    def __post_init__(self) -> None:
        _require(self.steps is None or self.steps > 0, "--steps must be positive")
        _require(self.epochs is None or self.epochs > 0, "--epochs must be positive")
        _require(self.steps is not None or self.epochs is not None, "give --steps or --epochs")
        _require(self.batch_size > 0, "--batch-size must be positive")
        _require(math.isfinite(self.lr) and self.lr > 0, "--lr must be a positive finite number")
        _require(self.momentum >= 0 and self.weight_decay >= 0, "--momentum and --weight-decay must be non-negative")
        self._check_optimizer()
        _require(self.eval_every > 0 and self.log_every > 0, "--eval-every and --log-every must be positive")
        _require(self.checkpoint_every > 0, "--checkpoint-every must be positive")
        _require(self.eval_samples is None or self.eval_samples > 0, "--eval-samples must be positive")
        _require(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        _require(
            not (self.bf16 and self.dtype != "float32"), "--bf16 autocasts float32 training; it needs --dtype float32"
        )
        _require(
            self.loss_reduction in LOSS_REDUCTIONS,
            f"unknown loss reduction {self.loss_reduction!r}; choose from {', '.join(LOSS_REDUCTIONS)}",
        )
        _require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"unknown device {self.device!r}; choose auto, cpu or cuda",
        )

    def _check_optimizer(self) -> None:
        _require(
            self.optimizer in OPTIMIZERS,
            f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}",
        )
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))  # a list from config.json
        _require(len(self.betas) == 2, f"--betas takes two numbers B1,B2, got {len(self.betas)}")
        _require(all(0 <= b < 1 for b in self.betas), f"--betas must lie in [0, 1), got {self.betas}")
        _require(math.isfinite(self.eps) and self.eps > 0, "--eps must be a positive finite number")
        _require(self.momentum < 1 and 0 <= self.dampening <= 1, "--momentum must be below 1, --dampening in [0, 1]")
        if self.optimizer != "sgd":
            _require(
                self.momentum == 0 and self.dampening == 0 and not self.nesterov,
                f"--momentum, --dampening and --nesterov are SGD's; {self.optimizer} takes --betas",
            )
        _require(
            not self.nesterov or (self.momentum > 0 and self.dampening == 0),
            "--nesterov needs --momentum > 0 and --dampening 0 (as torch.optim.SGD)",
        )


@dataclass(frozen=True)
class ScheduleConfig:
    """Every ``every`` steps, and every ``dense_every`` steps before ``dense_until``."""

    every: int = 100
    dense_until: int = 0
    dense_every: int = 10

    def __post_init__(self) -> None:
        _require(self.every > 0 and self.dense_every > 0 and self.dense_until >= 0, "schedules must be positive")


@dataclass(frozen=True)
class SurfaceConfig:
    """A loss surface of a recorded run (``landscape surface``, :mod:`landscape.runner.surface_run`):
    Li et al. 2018's grid around one checkpoint's weights, on the run's first
    ``batches`` training batches; with ``trajectory``, over the two PCA directions of
    the run's kept checkpoints."""

    checkpoint: str = "last"  # "last" (checkpoints/last.pt) or the step of a kept checkpoint
    directions: str = "filter"  # see SURFACE_DIRECTIONS
    steps: int = 21  # grid points per direction (odd: the grid holds the centre)
    span: float = 1.0  # coefficients in [-span, span]; with trajectory, times the path's extent with a margin
    dims: int = 2
    bn_mode: str = "train"
    include_bias_and_bn: bool = False
    batches: int = 4
    seed: int = 0  # the Gaussian directions' draw, or the Lanczos start vector
    trajectory: bool = False

    def __post_init__(self) -> None:
        _require(
            self.checkpoint == "last" or self.checkpoint.isdigit(),
            f"--checkpoint must be 'last' or a step number, got {self.checkpoint!r}",
        )
        _require(
            self.directions in SURFACE_DIRECTIONS,
            f"unknown directions {self.directions!r}; choose from {', '.join(SURFACE_DIRECTIONS)}",
        )
        _require(
            self.steps >= 3 and self.steps % 2 == 1,
            f"--steps must be an odd number >= 3 (the grid holds its centre), got {self.steps}",
        )
        _require(math.isfinite(self.span) and self.span > 0, "--span must be a positive finite number")
        _require(self.dims in (1, 2), f"--dims must be 1 or 2, got {self.dims}")
        _require(self.bn_mode in BN_MODES, f"unknown bn mode {self.bn_mode!r}; choose train or eval")
        _require(self.batches > 0, "--batches must be positive")
        _require(not self.trajectory or self.dims == 2, "--trajectory draws a 2-D surface; it needs --dims 2")
        _require(
            not self.trajectory or self.directions == "filter",
            "--trajectory uses the PCA directions of the checkpoints; leave --directions out",
        )


@dataclass(frozen=True)
class DensityConfig:
    """The Hessian's eigenvalue density at a run's checkpoints (``landscape hessian
    --density``, :mod:`landscape.runner.spectrum`): stochastic Lanczos quadrature with ``runs``
    start vectors of ``steps`` Lanczos steps each, drawn on ``grid_size`` points."""

    runs: int = 5
    steps: int = 80
    grid_size: int = 1000

    def __post_init__(self) -> None:
        _require(self.runs >= 1, f"--density-runs must be at least 1, got {self.runs}")
        _require(self.steps >= 1, f"--density-steps must be at least 1, got {self.steps}")
        _require(self.grid_size >= 2, f"the density's grid needs at least 2 points, got {self.grid_size}")


@dataclass(frozen=True)
class ProbeConfig:
    """Gradient-direction probe (Santurkar et al. 2018, Fig. 4): where and how to step."""

    step_sizes: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    relative: bool = True  # step sizes are multiples of the training lr
    direction: str = "gradient"
    bn_mode: str = "train"
    # Every 100 steps and every 10 before step 1,000 (the paper's, at 15k steps).
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(every=100, dense_until=1000))
    curvature: bool = True  # also g^T H g / ||g||^2 (one Hessian-vector product, ~2 passes)
    method: str = "loop"  # "loop", "vmap" or "auto" (see landscape.measure.probes.probe_gradient)
    chunk_size: int | None = None  # vmap: evaluation points per call (None: all)

    def __post_init__(self) -> None:
        _require(len(self.step_sizes) > 0, "step sizes are empty")
        _require(
            all(math.isfinite(s) and s > 0 for s in self.step_sizes),
            "step sizes must be positive finite numbers",
        )
        _require(
            self.direction in DIRECTIONS, f"unknown direction {self.direction!r}; choose from {', '.join(DIRECTIONS)}"
        )
        _require(self.bn_mode in BN_MODES, f"unknown bn mode {self.bn_mode!r}; choose train or eval")
        _require(self.method in PROBE_METHODS, f"unknown probe method {self.method!r}; choose loop, vmap or auto")
        _require(self.chunk_size is None or self.chunk_size > 0, "--probe-chunk-size must be positive")

    def absolute_step_sizes(self, lr: float) -> tuple[float, ...]:
        return tuple(s * lr for s in self.step_sizes) if self.relative else self.step_sizes


@dataclass(frozen=True)
class ICSConfig:
    """ICS measurement (Definition 2.1) on a schedule; ``highlight`` names the
    1-based layers the report shows first (the paper's #9 and #17 for the DLN)."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    highlight: tuple[int, ...] = ()


@dataclass(frozen=True)
class DistributionConfig:
    """Layer-input distributions (Fig. 1, 2, 6, 8, 9): layers are 1-based activation
    sites or module names; empty means the paper's #2, #9, #13 where the model
    has them, else its second, middle and last site."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    layers: tuple[str, ...] = ()
    channels: int = 5
    bins: int = 60

    def __post_init__(self) -> None:
        _require(self.channels > 0 and self.bins > 0, "channels and bins must be positive")


# Lanczos's start for tracked eigenvalues: the batch's gradient (plus noise), a random
# vector, or the previous measurement's top eigenvector (landscape.runner.adapters.HessianHook).
LANCZOS_STARTS = ("gradient", "random")  # landscape.curvature.hessian.hessian_eigs's (or a vector)
HESSIAN_STARTS = (*LANCZOS_STARTS, "warm")


@dataclass(frozen=True)
class HessianConfig:
    """Hessian spectrum of the training batch's loss on a schedule
    (:mod:`landscape.curvature.hessian`): the ``k`` largest eigenvalues by Lanczos, stopping
    at relative residual ``tol`` or after ``max_hvps`` Hessian-vector products, from
    ``start`` (one of :data:`HESSIAN_STARTS`), and with ``trace`` also tr H by Hutch++
    (at most ``max_hvps`` products too)."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    k: int = 1
    trace: bool = False
    bn_mode: str = "train"
    tol: float = 1e-3
    max_hvps: int = 20
    start: str = "gradient"
    # Also lambda_max(P^-1 H) with Adam's P (landscape.measure.preconditioner), from the
    # gradient start: hessian/lambda_max_precond; needs an Adam or AdamW run.
    preconditioned: bool = False

    def __post_init__(self) -> None:
        _require(self.k >= 1, "--hessian-k must be at least 1")
        _require(
            self.start in HESSIAN_STARTS,
            f"unknown start {self.start!r} (--hessian-start); choose from {', '.join(HESSIAN_STARTS)}",
        )
        _require(self.bn_mode in BN_MODES, f"unknown bn mode {self.bn_mode!r}; choose train or eval")
        _require(math.isfinite(self.tol) and self.tol > 0, "hessian tol must be a positive finite number")
        _require(self.max_hvps >= self.k, "hessian max_hvps must be at least k")


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; saved as ``config.json`` next to its metrics."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    probe: ProbeConfig | None = None
    ics: ICSConfig | None = None
    distributions: DistributionConfig | None = None
    hessian: HessianConfig | None = None
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        probe = d.get("probe")
        if probe is not None:
            probe = dict(probe, step_sizes=tuple(probe["step_sizes"]))
            flat = {k: probe.pop(k) for k in ("every", "dense_until", "dense_every") if k in probe}  # before 0.2
            probe["schedule"] = ScheduleConfig(**(probe.get("schedule") or flat))
            probe = ProbeConfig(**probe)
        ics = d.get("ics")
        if ics is not None:
            ics = ICSConfig(schedule=ScheduleConfig(**ics["schedule"]), highlight=tuple(ics.get("highlight", ())))
        dist = d.get("distributions")
        if dist is not None:
            dist = DistributionConfig(
                schedule=ScheduleConfig(**dist["schedule"]),
                layers=tuple(dist.get("layers", ())),
                channels=dist["channels"],
                bins=dist["bins"],
            )
        hessian = d.get("hessian")  # absent from older config.json files: off
        if hessian is not None:
            hessian = HessianConfig(**dict(hessian, schedule=ScheduleConfig(**hessian["schedule"])))
        return cls(
            model=ModelConfig(**d.get("model", {})),
            data=DataConfig(**d.get("data", {})),
            train=TrainConfig(**d.get("train", {})),
            noise=NoiseConfig(**d.get("noise", {})),
            probe=probe,
            ics=ics,
            distributions=dist,
            hessian=hessian,
            name=d.get("name", ""),
        )
