"""Per-step cost of landscape's training loop with idle hooks against a bare
PyTorch loop on the same model and batches, measured side by side (interleaved
rounds, median of per-step intervals, so start-up, final evaluation and the
final checkpoint are excluded from both).

    python bench/loop_bench.py --model vgg16 --norm bn --batch-size 128 --steps 12 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from landscape.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from landscape.data import batches, load_data, objective
from landscape.distributed import resolve_device
from landscape.models import build_model
from landscape.runner.train import train
from landscape.training.hooks import Event, hook


@hook(*Event)
def idle(ctx):
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def landscape_intervals(config: RunConfig, device: torch.device) -> list[float]:
    stamps: list[float] = []

    def progress(step: int, total: int, postfix: object) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        train(config, run_dir=f"{tmp}/run", hooks=[idle], progress=progress)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def bare_intervals(config: RunConfig, device: torch.device) -> list[float]:
    torch.manual_seed(config.train.seed)
    model = build_model(config.model).to(device)
    data = load_data(config.data, device)
    loss_fn = objective(data)
    opt = torch.optim.SGD(model.parameters(), lr=config.train.lr)
    gen = torch.Generator().manual_seed(config.train.seed)
    stamps: list[float] = []
    step = 0
    while step < config.train.steps:
        for x, y in batches(data, config.train.batch_size, gen):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            step += 1
            sync(device)
            stamps.append(time.perf_counter())
            if step == config.train.steps:
                break
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg16")
    p.add_argument("--norm", default="bn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    dln = args.model == "dln"
    data = (
        DataConfig(name="gaussian-linear")
        if dln
        else DataConfig(name="synthetic", synthetic_train=args.batch_size * 4, synthetic_test=args.batch_size)
    )
    config = RunConfig(
        model=ModelConfig(name=args.model, norm=args.norm),
        data=data,
        train=TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=0.01,
            device=str(device),
            eval_every=10**9,
            checkpoint_every=10**9,
            log_every=10,
        ),
    )
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(args.rounds):  # interleaved, so drift hits both alike
        bare += bare_intervals(config, device)
        ours += landscape_intervals(config, device)
    b, o = statistics.median(bare), statistics.median(ours)
    name = f"{args.model}-{args.norm} batch {args.batch_size}"
    print("| case | device | bare loop ms/step | landscape (idle hooks) ms/step | ratio |")
    print("|---|---|---|---|---|")
    print(f"| {name} | {device} | {b * 1e3:.1f} | {o * 1e3:.1f} | {o / b:.3f} |")


if __name__ == "__main__":
    main()
