"""Weight initialization of the paper's protocol (Santurkar et al. 2018):
Glorot/Xavier-uniform weights, W_ij ~ U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
zero biases, and normalization layers at the identity (weight 1, bias 0). The paper
says "standard Glorot initialization" and leaves uniform or normal, and the gain,
open: Xavier-normal and a gain are options (a gain s multiplies a deep linear
network's product of 25 layers by s^25).

Also the zero-init of the last convolution of every residual branch, which keeps
residual networks without normalization trainable (each block starts as the
identity, so the forward signal does not grow with depth).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torchvision.models.resnet import BasicBlock, Bottleneck

# Normalization layers with an affine weight/bias; subclasses are covered through
# isinstance, other per-feature norms (noisy BN, l_p norms) through is_norm_layer.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    _NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*, and their subclasses
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
)

# The paper's "layers": every convolution (of any dimension, transposed too) and every
# linear map. The one definition, used by the init, the layer-input distributions and
# the experiments' pass estimates; ICS counts these and embeddings (is_ics_layer).
WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def is_weight_layer(module: nn.Module) -> bool:
    """A convolution or linear layer: what Glorot initializes (ICS: :func:`is_ics_layer`)."""
    return isinstance(module, WEIGHT_TYPES)


# What ICS (landscape.measure.ics) counts as a layer: the weight layers, and embeddings
# (a lookup is a linear map of a one-hot input; a transformer's layer 1). A predicate
# of its own so that the Glorot init and the layer-input distributions, which use
# is_weight_layer, leave the embeddings of a user's model alone.
ICS_TYPES: tuple[type[nn.Module], ...] = (*WEIGHT_TYPES, nn.Embedding)


def is_ics_layer(module: nn.Module) -> bool:
    """A convolution, linear layer or embedding: what ICS measures."""
    return isinstance(module, ICS_TYPES)


def is_norm_layer(module: nn.Module) -> bool:
    """A normalization layer: a torch norm type, or any module with an integer
    ``num_features`` and a per-feature weight of that length (e.g. an l_p norm)."""
    if isinstance(module, NORM_TYPES):
        return True
    weight = getattr(module, "weight", None)
    features = getattr(module, "num_features", None)
    return isinstance(features, int) and isinstance(weight, torch.Tensor) and weight.shape == (features,)


def learns_shift(norm: nn.Module | None) -> bool:
    """Whether a norm layer has a learnable per-feature shift (an affine bias), which
    makes the bias of the conv/linear before it redundant."""
    return norm is not None and isinstance(getattr(norm, "bias", None), nn.Parameter)


def glorot_init_(
    model: nn.Module, generator: torch.Generator | None = None, *, normal: bool = False, gain: float = 1.0
) -> nn.Module:
    """Xavier-uniform (``normal``: Xavier-normal, std = gain sqrt(2 / (fan_in + fan_out)))
    every conv/linear weight with ``gain`` (the paper's: uniform, gain 1), zero their
    biases, and set every normalization layer's affine weight to 1 and bias to 0. In place.

    The weights are drawn in module order from ``generator``, so the k-th
    conv/linear weight depends only on the generator's seed and the shapes of the
    first k: networks that differ only in their normalization (and so in which
    layers have a bias) get the same weights from the same seed.

    Args:
        model: the freshly built network.
        generator: the source of the weights (a CPU generator for a CPU model);
            None: the global RNG.

    Returns:
        ``model`` itself.
    """
    for module in model.modules():
        if is_weight_layer(module):
            init = nn.init.xavier_normal_ if normal else nn.init.xavier_uniform_
            init(module.weight, gain=gain, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif is_norm_layer(module):
            if getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    return model


def zero_init_residual_(model: nn.Module) -> int:
    """Zero the last conv of every torchvision residual branch (``BasicBlock.conv2``,
    ``Bottleneck.conv3``), so each block starts as the identity (or its downsample
    shortcut). In place.

    Without normalization a ResNet's activations grow with depth. Measured (CIFAR
    stem, no norm, a 32-image synthetic batch, plain SGD at lr 0.01): with
    torchvision's default init the loss went 7.45, 5.5e3, then NaN after two steps;
    with this zero-init it stayed at 2.3 and decreased.

    Args:
        model: any network; modules other than the two block types are untouched.

    Returns:
        The number of convolutions zeroed.
    """
    zeroed = 0
    for module in model.modules():
        if isinstance(module, BasicBlock):
            nn.init.zeros_(module.conv2.weight)
            zeroed += 1
        elif isinstance(module, Bottleneck):
            nn.init.zeros_(module.conv3.weight)
            zeroed += 1
    return zeroed
