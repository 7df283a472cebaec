"""Benchmark of the gradient-direction probe against its cost floor and a naive probe.

Side by side, in one run with interleaved repeats (median reported):
- floor: K plain forward+backward passes of the same model and batch
  (``model(x)`` + ``loss.backward()``), the least any K-point probe can cost;
- probe: :func:`landscape.measure.probes.probe_gradient` reusing the training gradient,
  with curvature off and on, by the loop and by vmap;
- update: the probe along Adam's update (``direction="update"``: a dry run of an
  Adam optimizer with state on copies of it), against K+1 passes (``floor+1``);
- naive: what public reproductions do, for each step size deepcopy the model,
  ``w -= eta g`` in place, forward+backward and read the ``.grad`` fields.

Cases (models from the registry): VGG-16-BN on a (128, 3, 32, 32) random batch
with 10 classes, and the deep linear network (25 layers of width 10, full batch
of 1000, MSE), plain (``dln``) or with BN (``dln_bn``).

Run: ``python bench/probe_bench.py --device cpu --repeats 3``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from landscape.measure.probes import probe_gradient, training_grads
from landscape.models import build_model


def make_case(name: str, device: torch.device) -> tuple[nn.Module, Callable, torch.Tensor, torch.Tensor]:
    """The model (registry builder, paper init, training mode), loss and one batch."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name == "vgg16_bn":
        model = build_model("vgg16", norm="bn")
        x = torch.randn(128, 3, 32, 32, generator=generator)
        y = torch.randint(0, 10, (128,), generator=generator)
        loss_fn = nn.functional.cross_entropy
    elif name in ("dln", "dln_bn"):
        model = build_model("dln", norm="bn" if name == "dln_bn" else "none")
        x = torch.randn(1000, 10, generator=generator)
        y = torch.randn(1000, 10, generator=generator)
        loss_fn = nn.functional.mse_loss
    else:
        raise ValueError(f"unknown case {name!r}; choose vgg16_bn, dln or dln_bn")
    return model.to(device).train(), loss_fn, x.to(device), y.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, k: int) -> None:
    for _ in range(k):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()


def naive(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, etas: list[float]) -> list[float]:
    g = [p.grad.clone() for p in model.parameters()]
    diffs = []
    for eta in etas:
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for p, gi in zip(moved.parameters(), g):
                p -= eta * gi
        moved.zero_grad(set_to_none=True)
        loss_fn(moved(x), y).backward()
        diffs.append(torch.sqrt(sum(((p.grad - gi) ** 2).sum() for p, gi in zip(moved.parameters(), g))).item())
    return diffs


def run_case(name: str, k: int, device: torch.device, repeats: int, methods: list[str]) -> dict[str, float]:
    model, loss_fn, x, y = make_case(name, device)
    etas = [0.1 * 2 ** (i / 2) for i in range(k)] if name == "vgg16_bn" else [0.01 * 2**i for i in range(k)]
    # The training step the probe piggybacks on: .grad and the loss are there already.
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    base_loss = loss.item()
    grads = training_grads(model)
    saved = {n: g.clone() for n, g in grads.items()}
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    adam.state.update(
        {p: {"step": torch.tensor(10.0), "exp_avg": g.clone(), "exp_avg_sq": g.square()} for p, g in
         zip(model.parameters(), saved.values())}
    )  # fmt: skip

    def probe(method: str, curvature: bool, direction: str = "gradient") -> Callable[[], object]:
        optimizer = adam if direction == "update" else None
        return lambda: probe_gradient(
            model, loss_fn, x, y, etas, grad=grads, base_loss=base_loss, method=method, curvature=curvature,
            direction=direction, optimizer=optimizer,
        )  # fmt: skip

    def restore_grads() -> None:  # the probes reuse the training .grad, which the floor overwrote
        for n, p in model.named_parameters():
            p.grad = saved[n].clone()

    candidates = {
        "floor": lambda: floor(model, loss_fn, x, y, k),
        "floor+1": lambda: floor(model, loss_fn, x, y, k + 1),
        "update": probe("loop", False, "update"),
        "probe": probe("loop", False),
        "probe+curv": probe("loop", True),
        "vmap": probe("vmap", False),
        "naive": lambda: naive(model, loss_fn, x, y, etas),
    }
    chosen = {m: candidates[m] for m in ["floor", *methods] if m in candidates}
    times: dict[str, list[float]] = {m: [] for m in chosen}
    for fn in chosen.values():  # warm-up (allocator, lazy init)
        fn()
        restore_grads()
    for _ in range(repeats):
        for m, fn in chosen.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[m].append(1000 * (time.perf_counter() - start))
            if m.startswith("floor"):
                restore_grads()  # not timed
    return {m: statistics.median(t) for m, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="vgg16_bn:4,vgg16_bn:8,dln:4,dln:8", help="name:K,...")
    parser.add_argument("--methods", default="probe,probe+curv,vmap,naive", help="besides the floor")
    args = parser.parse_args()
    device = torch.device(args.device)
    methods = args.methods.split(",")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    columns = ["floor", *[m for m in methods]]
    head = " | ".join(f"{c} ms" for c in columns)
    print(f"| case | K | device | {head} | probe/floor | naive/probe | update/floor+1 |")
    print("|" + "---|" * (len(columns) + 6))
    for case in args.cases.split(","):
        name, k = case.split(":")
        med = run_case(name, int(k), device, args.repeats, methods)
        ratio = f"{med['probe'] / med['floor']:.2f}" if "probe" in med else "-"
        naive_ratio = f"{med['naive'] / med['probe']:.2f}" if "probe" in med and "naive" in med else "-"
        update = f"{med['update'] / med['floor+1']:.2f}" if "update" in med and "floor+1" in med else "-"
        cells = " | ".join(f"{med[c]:.1f}" if c in med else "-" for c in columns)
        print(f"| {name} | {k} | {device.type} | {cells} | {ratio} | {naive_ratio} | {update} |", flush=True)


if __name__ == "__main__":
    main()
