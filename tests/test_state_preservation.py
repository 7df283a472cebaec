"""Measurements leave the model as they found it (parameters, buffers such as BN running
statistics and num_batches_tracked, .grad, training flags, optimizer state, every RNG)
on registry models with conv BN, noisy BN, the l_p layers and the layer, group and RMS
norms, and on the SyncBatchNorm of multi-process runs."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from landscape.config import NoiseConfig
from landscape.measure.ics import measure_ics
from landscape.measure.probes import probe_gradient, training_grads
from landscape.models import build_model
from landscape.runner.adapters import LayerInputDistributions
from landscape.state import differences, snapshot


def trained_model(name: str, norm: str, x, y):
    """A registry model after one SGD step with momentum (moved statistics, a momentum
    buffer) and a fresh backward, as at AFTER_BACKWARD."""
    torch.manual_seed(0)
    model = build_model(name, norm=norm, noise=NoiseConfig(seed=3), num_classes=4).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if _ == 0:
            opt.step()
    return model, opt


@pytest.mark.parametrize("norm", ["bn", "noisy_bn", "l1", "l2", "linf", "layer", "group", "rms"])
@pytest.mark.parametrize("name", ["vgg_tiny", "resnet18"])
def test_measurements_leave_registry_models_untouched(name, norm):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 4, (6,), generator=g)
    model, opt = trained_model(name, norm, x, y)
    before = snapshot(model, opt)
    loss_fn = nn.functional.cross_entropy
    for bn_mode in ("train", "eval"):
        probe_gradient(model, loss_fn, x, y, (0.01, 0.05), grad=training_grads(model), bn_mode=bn_mode)
        assert differences(before, snapshot(model, opt)) == [], bn_mode
    measure_ics(model, loss_fn, x, y, optimizer=opt)
    assert differences(before, snapshot(model, opt)) == []
    LayerInputDistributions((1, 2), channels=2, bins=4).measure(model, x)
    assert differences(before, snapshot(model, opt)) == []


def _sync_bn_rank(rank: int, world: int, port: int, out: str) -> None:
    """One Gloo rank: a conv net with SyncBatchNorm on its shard; probe and ICS with the
    all-reduce; writes which snapshot fields changed."""
    import torch.distributed as dist

    from landscape import distributed
    from landscape.training.syncbn import SyncBatchNorm, convert_sync_batchnorm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = convert_sync_batchnorm(
        nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 2))
    )
    assert any(isinstance(m, SyncBatchNorm) for m in model.modules())
    g = torch.Generator().manual_seed(rank)
    x, y = torch.randn(4, 2, 4, 4, generator=g), torch.randint(0, 2, (4,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.functional.cross_entropy
    for step in range(2):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        for p in model.parameters():  # the global gradient, as DDP would leave it
            p.grad = distributed.all_reduce_mean([p.grad])[0]
        if step == 0:
            opt.step()
    before = snapshot(model, opt)
    reduce = distributed.all_reduce_mean
    probe_gradient(model, loss_fn, x, y, (0.1, 0.5), grad=training_grads(model), reduce=reduce)
    changed = differences(before, snapshot(model, opt))
    measure_ics(model, loss_fn, x, y, optimizer=opt, reduce=reduce)
    changed += differences(before, snapshot(model, opt))
    with open(f"{out}.{rank}", "w") as f:
        f.write(",".join(changed) or "none")
    dist.destroy_process_group()


def test_measurements_leave_sync_batchnorm_untouched(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "changed")
    mp.spawn(_sync_bn_rank, args=(2, port, out), nprocs=2, join=True)
    assert [open(f"{out}.{r}").read() for r in range(2)] == ["none", "none"]
