"""A SyncBatchNorm that runs on any torch.distributed backend, Gloo on CPUs
included (torch's ``nn.SyncBatchNorm`` needs GPUs): batch statistics over every
rank's shard of a global batch, differentiable to any order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from landscape.distributed import active, world_size


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable to any order (the gradient of a sum over ranks
    is the sum over ranks of the output gradients). Written with ``setup_context`` so
    that ``torch.func`` transforms (the ICS measurement's ``grad``) go through it."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose batch statistics span every rank (mean, then variance about
    it: two all-reduces per forward, differentiable, on any backend including Gloo;
    torch's own ``nn.SyncBatchNorm`` needs GPUs). Without a process group, or in
    eval mode, it is plain BatchNorm.

    Parameters, buffers and state-dict keys are BatchNorm's, so checkpoints load
    into either.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and active() and world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1, *[1] * (x.dim() - 2)]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        packed = all_reduce(torch.cat([x.sum(dims), count]))  # (C + 1,)
        total = packed[-1]
        mean = packed[:-1] / total
        centered = x - mean.view(shape)
        var = all_reduce((centered * centered).sum(dims)) / total
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = var.detach() * (total / (total - 1)).clamp_min(0)
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(unbiased, factor)
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every plain ``nn.BatchNorm1d/2d/3d`` by :class:`SyncBatchNorm`, sharing
    the parameters and buffers. Noisy BatchNorm and other subclasses are refused.

    Args:
        model: the model (changed in place where a child is replaced).

    Returns:
        The model, or the replacement when ``model`` itself is a BatchNorm.

    Raises:
        ValueError: the model has a BatchNorm subclass (e.g. noisy BN).
    """
    plain = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    if type(model) in plain:
        sync = SyncBatchNorm(model.num_features, model.eps, model.momentum, model.affine, model.track_running_stats)
        if model.affine:
            sync.weight, sync.bias = model.weight, model.bias
        sync.running_mean, sync.running_var = model.running_mean, model.running_var
        sync.num_batches_tracked = model.num_batches_tracked
        sync.training = model.training
        return sync
    if isinstance(model, _BatchNorm) and not isinstance(model, SyncBatchNorm):
        raise ValueError(f"--sync-bn supports plain BatchNorm only, not {type(model).__name__}")
    for name, child in model.named_children():
        setattr(model, name, convert_sync_batchnorm(child))
    return model
