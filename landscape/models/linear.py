"""Deep linear network of Santurkar et al. 2018 (their DLN experiments: 25 layers
of 10 units, trained on y = A x): f(x) = W_L N(W_{L-1} ... N(W_1 x)), no nonlinearity and no
bias, with an optional normalization N between layers and none after the last.
"""

from __future__ import annotations

import torch
from torch import nn

from landscape.models.noise import NormFactory


class DeepLinearNetwork(nn.Module):
    """``depth`` bias-free layers ``Linear(width, width)`` with an optional norm between them.

    No layer has a bias: the paper's objective ``||W_L ... W_1 x - A x||^2`` has only
    the W_i (with a norm layer, its learnable shift is the only offset).
    Input and output are (B, width).

    Args:
        depth: number of linear layers.
        width: features of every layer.
        norm_layer: ``num_features -> nn.Module`` for (B, C) vectors, or None.
    """

    def __init__(self, depth: int = 25, width: int = 10, norm_layer: NormFactory | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            norm = norm_layer(width) if norm_layer is not None and i < depth - 1 else None
            layers.append(nn.Linear(width, width, bias=False))
            if norm is not None:
                layers.append(norm)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, width)
