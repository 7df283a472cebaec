"""l_p normalization layers (Santurkar et al. 2018, Section 3.3 and Appendix B,
Figs. 5, 6, 12 and 13): BatchNorm's relatives that divide by an l_p norm instead of the
standard deviation.

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
"""

from __future__ import annotations

import math

import torch
from torch import nn

LP_NORMS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}  # norm name -> p


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
