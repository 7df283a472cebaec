"""How a run's configuration becomes the parts the training loop works with: the
seeded model (the paper's init, this process's noise seed, the run's dtype, checked
against the data), the optimizer (plain SGD by default, as the paper), the
measurement hooks the config asks for, and the record of the environment that
every run's config.json keeps.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

import landscape
from landscape import distributed
from landscape.config import ADAM_OPTIMIZERS, ConfigError, RunConfig, ScheduleConfig, is_text
from landscape.curvature.hessian import check_lanczos_memory
from landscape.data import check_fits_data, data_root
from landscape.measure.distributions import PAPER_LAYERS, activation_sites
from landscape.measure.probes import choose_method
from landscape.models import build_model
from landscape.models.noise import rank_noise
from landscape.paper import catalogue
from landscape.runner.adapters import HessianHook, ICSHook, LayerInputDistributions, ProbeHook
from landscape.state import trainable_count
from landscape.text import vocabulary
from landscape.training.hooks import DenseEarly, Hook, Scheduled


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, git commit and device, saved in every run's config.json."""
    import torchvision

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(landscape.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "landscape": landscape.__version__,
        },
        "git_commit": commit,
        "device": str(device) if device.type != "cuda" else f"{device} ({torch.cuda.get_device_name(device)})",
        "host": socket.gethostname(),
    }


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config.name or config.model.name + '-' + config.model.norm}-{stamp}"
    path = base
    for i in itertools.count(1):
        if not path.exists():
            return path
        path = base.with_name(f"{base.name}-{i}")
    raise AssertionError("unreachable")


def build_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """The run's optimizer (:data:`landscape.config.OPTIMIZERS`): torch.optim.SGD (plain by
    default, the paper's), Adam (weight decay added to the gradient) or AdamW (decoupled)."""
    t = config.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=t.lr,
            momentum=t.momentum,
            dampening=t.dampening,
            nesterov=t.nesterov,
            weight_decay=t.weight_decay,
        )
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[t.optimizer]
    return kind(model.parameters(), lr=t.lr, betas=t.betas, eps=t.eps, weight_decay=t.weight_decay)


def _scheduled(schedule: ScheduleConfig, hook: Hook) -> Scheduled:
    return Scheduled(DenseEarly.of(schedule), hook)


def default_distribution_layers(model: nn.Module, config: RunConfig | None = None) -> tuple[int, ...]:
    """The layers whose inputs the paper's claims on distributions read (Fig. 1(c) #3,
    #11; Fig. 2 and 8 #2, #9, #13; Fig. 6 #11; Fig. 9's DLN 1, 11, 24), mapped onto the
    model (:func:`landscape.paper.catalogue.map_layer`); for other families, or without a
    config, its second, middle and last activation sites."""
    n = len(activation_sites(model))
    fam = catalogue.family(config.model.name) if config is not None else "other"
    if fam in catalogue.PAPER_LAYERS:
        paper = catalogue.paper_layers(catalogue.KIND_GROUPS["ics-noise"], fam)
        if fam == "dln":
            paper = tuple(sorted({*paper, 11}))  # Fig. 9 also shows the middle layer
        mapped = {catalogue.map_layer(i, config.model.name, config.model.depth) for i in paper}
        return tuple(sorted(i for i in mapped if i <= n))
    if n >= 13:
        return PAPER_LAYERS
    return tuple(sorted({min(2, n), (n + 1) // 2, n}))


def config_hooks(config: RunConfig, model: nn.Module) -> list[Hook]:
    """The measurement hooks a run's config asks for (probes, ICS, layer-input
    distributions, Hessian eigenvalues), so a resumed run gets them back.

    Raises:
        ValueError: a layer the model lacks, or a Hessian whose Lanczos basis of
            ``hessian.max_hvps`` vectors cannot fit the run's device.
    """
    hooks: list[Hook] = []
    ddp = distributed.world_size() > 1  # measure on the global batch: every rank holds a shard
    reduce = distributed.all_reduce_mean if ddp else None
    p = config.probe
    if p is not None:
        probe = ProbeHook(
            p.absolute_step_sizes(config.train.lr),
            direction=p.direction,
            bn_mode=p.bn_mode,
            seed=config.train.seed,
            curvature=p.curvature,
            reduce=reduce,
            method=choose_method(p.method, model),
            chunk_size=p.chunk_size,
            # Under bf16 autocast the training gradient is not the gradient of the
            # (float32) loss the probe evaluates: the probe computes its own.
            reuse_grad=not config.train.bf16,
        )
        hooks.append(_scheduled(p.schedule, probe))
    if config.ics is not None:
        hooks.append(_scheduled(config.ics.schedule, ICSHook(reduce=reduce)))
    d = config.distributions
    if d is not None:
        layers = tuple(int(x) if x.isdigit() else x for x in d.layers) or default_distribution_layers(model, config)
        dist = LayerInputDistributions(
            layers, channels=d.channels, bins=d.bins, seed=config.train.seed, global_batch=ddp
        )
        dist.resolve(model)  # a layer that does not exist is bad input: fail before training
        hooks.append(_scheduled(d.schedule, dist))
    h = config.hessian
    if h is not None:
        # A Lanczos basis that cannot fit is refused before training, not at step 0.
        check_lanczos_memory(
            trainable_count(model),
            h.max_hvps,
            getattr(torch, config.train.dtype),
            distributed.resolve_device(config.train.device),
            option="the run config's hessian.max_hvps",
        )
        if h.preconditioned and config.train.optimizer not in ADAM_OPTIMIZERS:
            raise ConfigError("the preconditioned sharpness reads Adam's state: it needs optimizer adam or adamw")
        hessian = HessianHook(h, seed=config.train.seed, reduce=reduce)
        hooks.append(_scheduled(h.schedule, hessian))
    return hooks


def fit_vocabulary(config: RunConfig) -> RunConfig:
    """``config`` with a text set's vocabulary (its file's characters) as the model's
    and the data's classes; any other config as it is.

    Raises:
        DataError: the text file cannot be read.
    """
    if not is_text(config.data.name):
        return config
    size = len(vocabulary(config.data, data_root(config.data)))
    model = dataclasses.replace(config.model, num_classes=size)
    return dataclasses.replace(config, model=model, data=dataclasses.replace(config.data, num_classes=size))


def build_run_model(config: RunConfig, device: torch.device | str = "cpu") -> nn.Module:
    """The network a run starts from: seeded with the run's seed and built by
    :func:`landscape.models.build_model` (so every variant of an experiment starts
    exactly as its standalone build), with this process's noise seed
    (:func:`rank_noise`), on ``device`` in the run's dtype.

    A text set's model gets the file's vocabulary as its classes (:func:`fit_vocabulary`).

    Raises:
        ValueError: the model cannot be built, or does not fit the data (checked on
            two examples before any data is loaded).
        DataError: a text set's file cannot be read.
    """
    config = fit_vocabulary(config)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, noise=rank_noise(config.noise, distributed.rank()))
    model = model.to(device, getattr(torch, config.train.dtype))
    check_fits_data(config, model)
    return model
