"""VGG networks in the CIFAR layout (Simonyan & Zisserman 2015), the model of
Santurkar et al. 2018: 3x3 conv stacks with 2x2 max-pooling, an optional
normalization layer after every convolution, and one linear head.

On 32x32 inputs the five pools leave 512x1x1 features; the final adaptive average
pool is then the identity and lets the tiny preset run on 8x8 inputs too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from landscape.models.init import learns_shift
from landscape.models.noise import NormFactory

POOL = "M"

# The standard configurations (torchvision's cfgs "A", "B", "D", "E").
LAYOUTS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    "vgg13": (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    "vgg19": (
        64,
        64,
        POOL,
        128,
        128,
        POOL,
        256,
        256,
        256,
        256,
        POOL,
        512,
        512,
        512,
        512,
        POOL,
        512,
        512,
        512,
        512,
        POOL,
    ),  # fmt: skip
    # A test-sized preset (like minGPT's gpt-nano): three convs, two pools.
    "vgg_tiny": (8, POOL, 16, POOL, 16),
}


class VGG(nn.Module):
    """Conv(3x3) -> [norm] -> ReLU stacks with max-pools, then ``Linear(C, num_classes)``.

    A conv followed by a norm layer with a learnable shift (BN's beta) has no bias,
    which the shift makes redundant; otherwise (no norm, or a shift-free one such
    as the noise-only layer) it keeps its bias. The head has no norm.

    The ReLUs are not in-place, so activation hooks on a norm layer see its output,
    not the rectified one.

    Args:
        layout: channel counts and ``"M"`` (max-pool) in order.
        num_classes: outputs of the head.
        norm_layer: ``num_features -> nn.Module`` for 2-D feature maps, or None for
            no normalization.
    """

    def __init__(
        self, layout: Sequence[int | str], num_classes: int = 10, norm_layer: NormFactory | None = None
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in layout:
            if item == POOL:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            out = int(item)
            norm = norm_layer(out) if norm_layer is not None else None
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=not learns_shift(norm)))
            if norm is not None:
                layers.append(norm)
            layers.append(nn.ReLU())
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))  # (B, C, 1, 1)
        return self.classifier(torch.flatten(x, 1))  # (B, num_classes)
