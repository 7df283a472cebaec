"""One probe step (curvature off, 4 step sizes) on one global batch, in 1 and in 2
processes (Gloo, this CPU), side by side: the 2-process run gives each rank half
of the batch and all-reduces [loss, *grads] once per step size.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/dist_bench.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from landscape import distributed
from landscape.config import ModelConfig
from landscape.measure.probes import probe_gradient
from landscape.models import build_model

CASES = {  # name: (model config, global batch builder)
    "dln depth 25, batch 1000": (
        ModelConfig(name="dln", norm="none", depth=25, width=10),
        lambda g: (torch.randn(1000, 10, generator=g), torch.randn(1000, 10, generator=g)),
    ),
    "vgg_tiny, batch 128 x 3x32x32": (
        ModelConfig(name="vgg_tiny", norm="none", num_classes=10),
        lambda g: (torch.randn(128, 3, 32, 32, generator=g), torch.randint(10, (128,), generator=g)),
    ),
}
STEP_SIZES = (0.05, 0.1, 0.2, 0.4)
REPEATS = 7


def time_probe(name: str, rank: int, world: int) -> float:
    config, make = CASES[name]
    torch.manual_seed(0)
    model = build_model(config)
    x, y = make(torch.Generator().manual_seed(0))
    shard = len(x) // world
    x, y = x[rank * shard : (rank + 1) * shard], y[rank * shard : (rank + 1) * shard]
    loss_fn = nn.MSELoss() if y.is_floating_point() else nn.CrossEntropyLoss()
    reduce = distributed.all_reduce_mean if world > 1 else None
    times = []
    for i in range(REPEATS + 1):
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        probe_gradient(model, loss_fn, x, y, STEP_SIZES, curvature=False, reduce=reduce)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(rank: int, world: int, port: int, queue) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for name in CASES:
            t = time_probe(name, rank, world)
            if rank == 0:
                queue.put((name, t))
    finally:
        dist.destroy_process_group()


def main() -> None:
    torch.set_num_threads(1)
    one = {name: time_probe(name, 0, 1) for name in CASES}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.spawn(worker, args=(2, 29517, queue), nprocs=2, join=True)
    two = dict(queue.get() for _ in CASES)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, 1 thread per process, median of {REPEATS}")
    print("| probe step (4 step sizes, no curvature) | 1 process | 2 processes (Gloo) | speed-up |")
    print("|---|---|---|---|")
    for name in CASES:
        print(f"| {name} | {one[name] * 1e3:.1f} ms | {two[name] * 1e3:.1f} ms | {one[name] / two[name]:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
