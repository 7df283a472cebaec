"""Model registry: a name and a :class:`~landscape.config.ModelConfig` become a
network, with every normalization layer taken from
:func:`landscape.models.noise.make_norm_layer` and the paper's initialization
(Santurkar et al. 2018: Glorot-uniform weights, zero biases, norm layers at the
identity).

Names: the registry keys (:data:`MODEL_NAMES`), ``torchvision:NAME`` for any
torchvision classification model, and ``pkg.module:factory`` for a user model.
The paper's VGG has at least 13 normalized layers, so ``vgg16`` is the default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from landscape.config import ModelConfig, NoiseConfig
from landscape.models.external import TORCHVISION_PREFIX, build_from_path, build_torchvision
from landscape.models.init import glorot_init_, zero_init_residual_
from landscape.models.linear import DeepLinearNetwork
from landscape.models.noise import make_norm_layer
from landscape.models.resnet import build_resnet
from landscape.models.vgg import LAYOUTS, POOL, VGG

_SEED_BOUND = 2**62

Builder = Callable[[ModelConfig, NoiseConfig | None], nn.Module]


def _vgg(layout: str) -> Builder:
    def build(cfg: ModelConfig, noise: NoiseConfig | None) -> nn.Module:
        channels = tuple(item if item == POOL else max(1, round(item * cfg.width_mult)) for item in LAYOUTS[layout])
        return VGG(channels, cfg.num_classes, make_norm_layer(cfg.norm, 2, noise))

    return build


def _resnet(name: str) -> Builder:
    def build(cfg: ModelConfig, noise: NoiseConfig | None) -> nn.Module:
        return build_resnet(name, cfg.num_classes, make_norm_layer(cfg.norm, 2, noise), cfg.stem)

    return build


def _dln(cfg: ModelConfig, noise: NoiseConfig | None) -> nn.Module:
    return DeepLinearNetwork(cfg.depth, cfg.width, make_norm_layer(cfg.norm, 1, noise))


def _gpt(cfg: ModelConfig, noise: NoiseConfig | None) -> nn.Module:
    from landscape.models.gpt import GPT

    # num_classes: the vocabulary (the text set's characters), as for a classifier's classes.
    return GPT(cfg.num_classes, cfg.block_size, cfg.layers, cfg.heads, cfg.width, cfg.norm, cfg.norm_placement,
               cfg.dropout)  # fmt: skip


REGISTRY: dict[str, Builder] = {
    "vgg11": _vgg("vgg11"),
    "vgg13": _vgg("vgg13"),
    "vgg16": _vgg("vgg16"),
    "vgg19": _vgg("vgg19"),
    "vgg_tiny": _vgg("vgg_tiny"),
    "tiny": _vgg("vgg_tiny"),
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
    "dln": _dln,
    "gpt": _gpt,
}

MODEL_NAMES: tuple[str, ...] = tuple(REGISTRY)

# Norm choices that leave activations unnormalized: the noise-only control must
# match "none" in everything but the noise, so both get the residual zero-init.
UNNORMALIZED = ("none", "noise")

_FAMILIES = {"vgg11": "vgg", "vgg13": "vgg", "vgg16": "vgg", "vgg19": "vgg", "vgg_tiny": "vgg", "tiny": "vgg"}
_FAMILIES |= {"resnet18": "resnet", "resnet50": "resnet", "dln": "dln", "gpt": "gpt"}


def _unknown(name: str) -> ValueError:
    return ValueError(
        f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}, torchvision:NAME or package.module:factory"
    )


def model_family(name: str) -> str:
    """``"vgg"``, ``"resnet"``, ``"dln"``, ``"gpt"``, or ``"other"`` for ``torchvision:NAME`` and
    import paths (whose architecture the registry does not know).

    Raises:
        ValueError: a name that is neither registered nor contains ``":"``.
    """
    if ":" in name:
        return "other"
    if name not in _FAMILIES:
        raise _unknown(name)
    return _FAMILIES[name]


def input_shape(cfg: ModelConfig) -> tuple[int, ...]:
    """Shape of one input example (no batch dimension).

    ``(width,)`` for the deep linear network; ``(block_size,)`` token ids for the GPT;
    ``(3, 224, 224)`` for torchvision
    models and the ImageNet-stem ResNets, which were designed for it;
    ``(3, 32, 32)`` (CIFAR) otherwise, user models included.
    """
    family = model_family(cfg.name)
    if family == "dln":
        return (cfg.width,)
    if family == "gpt":
        return (cfg.block_size,)
    if cfg.name.startswith(TORCHVISION_PREFIX) or (family == "resnet" and cfg.stem == "imagenet"):
        return (3, 224, 224)
    return (3, 32, 32)


def build_model(name_or_cfg: str | ModelConfig, noise: NoiseConfig | None = None, **overrides: object) -> nn.Module:
    """Build a network from a config or a name plus config fields.

    ``build_model(ModelConfig(...))`` and ``build_model("vgg16", norm="none")`` are
    the same thing. With ``init="glorot"`` (default) every conv/linear weight is
    Xavier-uniform with zero bias and every norm layer starts at weight 1, bias 0,
    the weights drawn from one seed taken from the global RNG before the model is
    built (so after ``torch.manual_seed(s)`` the variants of one network that differ
    only in their normalization get the same weights);
    ``init="torch"`` keeps the builder's own initialization. With ``norm="none"``
    (or ``"noise"``, its noise-only control) the last conv of every residual
    branch is zeroed afterwards (either init), so ResNets without normalization
    train (see
    :func:`landscape.models.init.zero_init_residual_`).

    Args:
        name_or_cfg: a model name or a full :class:`ModelConfig`.
        noise: constants of noisy BatchNorm, for ``norm="noisy_bn"``.
        **overrides: :class:`ModelConfig` fields replacing those of ``name_or_cfg``.

    Returns:
        The network on the CPU, in training mode.

    Raises:
        ValueError: unknown model name (message lists the valid names), or a model
            that cannot be built as asked.
    """
    if isinstance(name_or_cfg, ModelConfig):
        cfg = dataclasses.replace(name_or_cfg, **overrides)
    else:
        cfg = ModelConfig(name=name_or_cfg, **overrides)
    # The init's own seed, drawn before the builder runs: how many random numbers the
    # builder uses depends on the normalization (a conv before BN has no bias to
    # initialize), and the paper's init must not.
    init_seed = int(torch.randint(_SEED_BOUND, (1,)).item())
    if cfg.width_mult != 1 and (":" in cfg.name or model_family(cfg.name) != "vgg"):
        raise ValueError(f"width_mult applies to the VGG models only, not {cfg.name!r}")
    if cfg.name.startswith(TORCHVISION_PREFIX):
        tv_name = cfg.name.removeprefix(TORCHVISION_PREFIX)
        model = build_torchvision(tv_name, cfg.num_classes, cfg.norm, make_norm_layer(cfg.norm, 2, noise))
    elif ":" in cfg.name:
        model = build_from_path(cfg.name, cfg.num_classes, cfg.norm, make_norm_layer(cfg.norm, 2, noise))
    elif cfg.name in REGISTRY:
        model = REGISTRY[cfg.name](cfg, noise)
    else:
        raise _unknown(cfg.name)
    if cfg.init in ("glorot", "glorot-normal"):
        glorot_init_(
            model, torch.Generator().manual_seed(init_seed), normal=cfg.init == "glorot-normal", gain=cfg.init_gain
        )
    if cfg.norm in UNNORMALIZED:
        zero_init_residual_(model)
    return model


__all__ = ["MODEL_NAMES", "REGISTRY", "build_model", "input_shape", "model_family"]
