"""Normalization layers beyond BatchNorm: the paper's l_p norms, and today's per-sample
norms (layer, group and RMS normalization) in BatchNorm's place.

The l_p normalization layers (Santurkar et al. 2018, Section 3.3 and Appendix B,
Figs. 5, 6, 12 and 13) are BatchNorm's relatives that divide by an l_p norm instead
of the standard deviation.

Over BatchNorm's normalization set for channel j (the batch, and height and
width for conv feature maps; n elements ``y``)::

    mu_j  = mean(y)
    N_p,j = (mean |y|^p)^(1/p)     p = 1: mean |y|;  p = 2: sqrt(mean y^2)
          = max |y|                p = inf
    z     = gamma_j * (y - mu_j) / (N_p,j + eps) + beta_j

i.e. the mean l_p norm read as the power mean of the elements' magnitudes,
computed on the un-centered activations ("before shifting the mean", as in the
paper). With ``center_first=True`` the norm is taken of ``y - mu_j`` instead (for
p = 2 that is the batch standard deviation, so the layer is BatchNorm with eps
outside the square root). The mean and the norm carry gradients, like
BatchNorm's batch statistics.

Eval mode uses running averages of ``mu_j`` and ``N_p,j``, updated in training
as ``r <- (1 - momentum) r + momentum * batch_value`` (BatchNorm's rule, with the
batch norm as is: there is no unbiased correction for an l_p norm).

The per-sample norms normalize each example over its own (C, H, W) feature map
(Ba et al. 2016; Wu & He 2018; Zhang & Sennrich 2019), with a per-channel affine::

    layer:  z = gamma_c (y - mean(y)) / sqrt(var(y) + eps) + beta_c     over (C, H, W)
    group:  the same over each of G groups of C/G channels, G the largest divisor of C <= 32
    rms:    z = gamma_c y / sqrt(mean(y^2) + eps)                       over (C, H, W)

(var biased). Layer and group norm are ``nn.GroupNorm`` with one and G groups
(eps 1e-5); RMS norm is :class:`ChannelRMSNorm` (eps: the dtype's machine epsilon,
torch's ``nn.RMSNorm`` default). They keep no running statistics and draw nothing, so
train and eval mode are the same function: a probe's ``bn_mode`` does not change them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LP_NORMS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}  # norm name -> p
MAX_GROUPS = 32  # group norm's groups: Wu & He's default G = 32 where C allows it


class LpNorm(nn.Module):
    """Per-channel l_p normalization of (B, C) or (B, C, H, W) activations.

    Args:
        num_features: number of channels C.
        p: 1, 2 or ``math.inf``.
        dims: 2 for conv feature maps (B, C, H, W), 1 for vectors (B, C).
        eps: added to the norm before dividing.
        momentum: weight of the batch value in the running averages.
        center_first: take the norm of the centered activations.
        affine: learn gamma (init 1) and beta (init 0).
    """

    def __init__(
        self,
        num_features: int,
        p: float,
        dims: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        center_first: bool = False,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if p not in (1.0, 2.0, math.inf):
            raise ValueError(f"p must be 1, 2 or inf, got {p}")
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        self.num_features = num_features
        self.p = float(p)
        self.dims = dims
        self.eps = eps
        self.momentum = momentum
        self.center_first = center_first
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_norm", torch.ones(num_features))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, p={self.p}, dims={self.dims}, eps={self.eps}, "
            f"momentum={self.momentum}, center_first={self.center_first}, affine={self.affine}"
        )

    def _batch_norm_p(self, y: torch.Tensor, reduce: tuple[int, ...]) -> torch.Tensor:
        if self.p == math.inf:
            return y.abs().amax(dim=reduce)
        if self.p == 1.0:
            return y.abs().mean(dim=reduce)
        return y.square().mean(dim=reduce).sqrt()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        expected = 4 if self.dims == 2 else 2
        if y.dim() != expected or y.shape[1] != self.num_features:
            raise ValueError(f"expected {expected}D input with {self.num_features} channels, got {tuple(y.shape)}")
        reduce = (0,) + tuple(range(2, y.dim()))  # everything but the channel
        if self.training:
            mu = y.mean(dim=reduce)  # (C,)
            base = y - mu.view(self._channel_shape(y)) if self.center_first else y
            norm = self._batch_norm_p(base, reduce)
            with torch.no_grad():
                self.running_mean.lerp_(mu.detach(), self.momentum)
                self.running_norm.lerp_(norm.detach(), self.momentum)
        else:
            mu, norm = self.running_mean, self.running_norm
        shape = self._channel_shape(y)
        z = (y - mu.view(shape)) / (norm.view(shape) + self.eps)
        if self.affine:
            z = z * self.weight.view(shape) + self.bias.view(shape)
        return z

    @staticmethod
    def _channel_shape(y: torch.Tensor) -> tuple[int, ...]:
        return (1, y.shape[1]) + (1,) * (y.dim() - 2)


def group_count(channels: int, max_groups: int = MAX_GROUPS) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups``: group norm's
    number of groups (C = 64: 32; C = 48: 24; C = 100: 25; C <= 32: C, one channel each)."""
    if channels < 1 or max_groups < 1:
        raise ValueError(f"channels and max_groups must be positive, got {channels} and {max_groups}")
    return max(d for d in range(1, min(channels, max_groups) + 1) if channels % d == 0)


def layer_norm(num_features: int) -> nn.GroupNorm:
    """Layer normalization of (B, C, ...) feature maps over (C, H, W) per sample, with
    a per-channel affine: ``nn.GroupNorm`` with one group, so any H and W work."""
    return nn.GroupNorm(1, num_features)


def group_norm(num_features: int) -> nn.GroupNorm:
    """Group normalization with :func:`group_count` groups and a per-channel affine."""
    return nn.GroupNorm(group_count(num_features), num_features)


class ChannelRMSNorm(nn.Module):
    """RMS normalization of (B, C, ...) activations over everything but the batch dim,
    with a per-channel scale: ``z = weight_c * y / sqrt(mean(y^2) + eps)``, the mean
    over (C, H, W) of each example.

    ``nn.RMSNorm`` normalizes over trailing dims too, but its affine weight has the
    normalized shape (C, H, W), which ties the layer to one input size; this one has
    one weight per channel, broadcast over H and W, as the other norm layers do.

    Args:
        num_features: number of channels C.
        eps: added to the mean square; None: ``torch.finfo(y.dtype).eps`` (as
            ``nn.RMSNorm``'s default).
        affine: learn the per-channel weight (init 1); there is no shift.
    """

    def __init__(self, num_features: int, eps: float | None = None, affine: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
        else:
            self.register_parameter("weight", None)
        self.register_parameter("bias", None)  # no shift: the conv before it keeps its bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() < 2 or y.shape[1] != self.num_features:
            raise ValueError(f"expected (B, {self.num_features}, ...) input, got {tuple(y.shape)}")
        z = nn.functional.rms_norm(y, y.shape[1:], eps=self.eps)  # (B, C, H, W), per example
        if self.weight is not None:
            z = z * self.weight.view((1, -1) + (1,) * (y.dim() - 2))
        return z


# The per-sample norms: statistics of each example alone, no running averages, no noise,
# so their training flag changes nothing (nn.RMSNorm and nn.LayerNorm: the DLN's).
PER_SAMPLE_NORM_TYPES: tuple[type[nn.Module], ...] = (nn.GroupNorm, nn.LayerNorm, nn.RMSNorm, ChannelRMSNorm)
