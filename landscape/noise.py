"""Normalization layers by name: the one place where a norm choice becomes a
``norm_layer`` factory for the model builders.

(Noisy BN, Algorithm 1 of Santurkar et al. 2018, and l_p normalization are
added here by the ICS work.)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from landscape.config import NoiseConfig

NormFactory = Callable[[int], nn.Module]


def make_norm_layer(norm: str, dims: int, noise: NoiseConfig | None = None) -> NormFactory | None:
    """Factory ``num_features -> nn.Module`` for ``norm`` on ``dims``-D features
    (2: conv feature maps (B, C, H, W); 1: vectors (B, C)).

    Returns None for ``norm="none"``: builders then put no layer at all (and keep
    the bias of the preceding conv/linear).
    """
    if norm == "none":
        return None
    if norm == "bn":
        return nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    raise ValueError(f"norm {norm!r} is not available yet")
