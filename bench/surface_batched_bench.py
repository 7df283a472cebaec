"""Benchmark of :func:`landscape.curvature.surface.loss_surface` by the loop against N points per
forward (``points_per_forward``, ``torch.func.vmap`` over stacked parameter sets).

Side by side in one process, with interleaved repeats (median reported): a STEPS x
STEPS surface (filter-normalized directions, train-mode BN) of VGG-11-BN at a quarter
of its width on one random batch of 128 32x32 images, 10 classes; by the loop
(N = 1) and by N = 7 (a grid row per forward) and N = 49 (the whole 7x7 grid but its
centre in one). Also: the largest relative difference from the loop's losses, and the
peak memory of one surface (CUDA: the allocator's peak; CPU: the growth of the peak
resident set of a fresh process that computes one surface).

Run: ``OMP_NUM_THREADS=1 python bench/surface_batched_bench.py --device cpu --repeats 3``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from landscape.curvature.surface import Surface, loss_surface
from landscape.models import build_model


def make_case(device: torch.device, batch_size: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """VGG-11-BN at width 1/4 (training mode) and one random batch, seeded."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model("vgg11", norm="bn", width_mult=0.25).to(device).train()
    x = torch.randn(batch_size, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (batch_size,), generator=generator)
    return model, x.to(device), y.to(device)


def surface(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, per_forward: int) -> Surface:
    return loss_surface(
        model,
        nn.functional.cross_entropy,
        x,
        y,
        steps=steps,
        dims=2,
        generator=torch.Generator().manual_seed(1),
        points_per_forward=per_forward,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(args: argparse.Namespace, per_forward: int, device: torch.device) -> float:
    """The peak memory one surface adds, in MiB."""
    if device.type == "cuda":
        model, x, y = make_case(device, args.batch)
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        surface(model, x, y, args.steps, per_forward)
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    # The CPU allocator keeps no peak: a fresh process reports its peak resident set.
    cmd = [
        sys.executable,
        __file__,
        "--peak-of",
        str(per_forward),
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
    ]
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def peak_rss_kib() -> int:
    """This process's peak resident set (Linux). Not ``ru_maxrss``: a child's starts at
    its parent's resident set at the fork."""
    with open("/proc/self/status") as status:
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status.read(), re.MULTILINE)[1])


def rss_growth(args: argparse.Namespace, per_forward: int) -> float:
    """In this fresh process: how far one surface raises the peak resident set, in MiB."""
    model, x, y = make_case(torch.device("cpu"), args.batch)
    before = peak_rss_kib()
    surface(model, x, y, args.steps, per_forward)
    return (peak_rss_kib() - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--per-forward", default="7,49", help="N > 1 to compare with the loop, comma-separated")
    parser.add_argument("--no-memory", action="store_true", help="Skip the peak-memory column.")
    parser.add_argument("--peak-of", type=int, default=None, help=argparse.SUPPRESS)  # the memory child
    args = parser.parse_args()
    if args.peak_of is not None:
        print(rss_growth(args, args.peak_of))
        return
    device = torch.device(args.device)
    modes = [1, *(int(n) for n in args.per_forward.split(","))]
    model, x, y = make_case(device, args.batch)
    results = {n: surface(model, x, y, args.steps, n) for n in modes}  # warm-up, and the losses to compare
    times: dict[int, list[float]] = {n: [] for n in modes}
    for _ in range(args.repeats):
        for n in modes:
            sync(device)
            start = time.perf_counter()
            surface(model, x, y, args.steps, n)
            sync(device)
            times[n].append(time.perf_counter() - start)
    loop = statistics.median(times[1])
    threads = torch.get_num_threads() if device.type == "cpu" else None
    print(
        f"{args.steps}x{args.steps} surface, vgg11 bn width 1/4, batch {args.batch}x3x32x32, {device}"
        + (f", {threads} thread(s)" if threads else "")
        + f", median of {args.repeats}\n"
    )
    print("| points per forward | seconds | vs loop | max rel. diff. from loop | peak MiB |")
    print("|---:|---:|---:|---:|---:|")
    for n in modes:
        seconds = statistics.median(times[n])
        diff = ((results[n].losses - results[1].losses).abs() / results[1].losses.abs()).max().item()
        peak = "-" if args.no_memory else f"{peak_mib(args, n, device):.0f}"
        print(f"| {n}{' (loop)' if n == 1 else ''} | {seconds:.3f} | {loop / seconds:.2f}x | {diff:.1e} | {peak} |")


if __name__ == "__main__":
    main()
