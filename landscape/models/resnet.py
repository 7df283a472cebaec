"""Residual networks (He et al. 2016) from torchvision, with the normalization
layer passed in and, by default, the CIFAR stem: a 3x3 stride-1 first conv and
no max-pool, so 32x32 inputs keep a 32x32 first feature map.
"""

from __future__ import annotations

from collections.abc import Callable

import torchvision
from torch import nn

from landscape.models.init import learns_shift
from landscape.models.noise import NormFactory

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
}


def build_resnet(name: str, num_classes: int, norm_layer: NormFactory | None, stem: str = "cifar") -> nn.Module:
    """torchvision ``resnet18``/``resnet50`` with ``norm_layer`` at every BN site.

    With no normalization every BN site becomes ``nn.Identity``, and the convs
    keep torchvision's ``bias=False``: the networks then differ from the normed ones
    only by the missing norm layers (the CIFAR stem conv, which is ours, has a bias
    unless its norm layer learns a shift, as every VGG conv does). Residual nets without normalization
    need the caller's zero-init of the last conv of each residual branch
    (:func:`landscape.models.init.zero_init_residual_`) to train at all.

    Args:
        name: ``"resnet18"`` or ``"resnet50"``.
        num_classes: outputs of the head.
        norm_layer: ``num_features -> nn.Module`` for 2-D feature maps, or None.
        stem: ``"cifar"`` (3x3 conv, stride 1, padding 1, no max-pool) or
            ``"imagenet"`` (torchvision's 7x7 stride-2 conv and max-pool).

    Returns:
        The network, with torchvision's own initialization.
    """
    model = BUILDERS[name](weights=None, num_classes=num_classes, norm_layer=norm_layer or nn.Identity)
    if stem == "cifar":
        # model.bn1 is the stem's norm layer (nn.Identity without normalization).
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=not learns_shift(model.bn1))
        # Same init as torchvision gives its own convs, so init="torch" stays uniform.
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        if model.conv1.bias is not None:
            nn.init.zeros_(model.conv1.bias)
        model.maxpool = nn.Identity()
    return model
