"""Cost of float64 against float32 for the deep linear network (25 layers of 10,
full batch of 1000, the paper's summed squared error), side by side in one run
with interleaved repeats (median reported):

- step: one training step (forward, backward, SGD update);
- probe: one probe at the DLN's five default step sizes (0.01 ... 30 x lr), reusing
  the training gradient, with the curvature (what ``landscape probe --model dln`` runs).

Run: ``python bench/dtype_bench.py --repeats 7``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from landscape.data import Objective
from landscape.measure.probes import probe_gradient, training_grads
from landscape.models import build_model

LR = 1e-6
STEP_SIZES = tuple(m * LR for m in (0.01, 0.1, 1.0, 10.0, 30.0))


def case(norm: str, dtype: torch.dtype):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = build_model("dln", norm=norm).to(dtype).train()
    x = torch.randn(1000, 10, generator=g).to(dtype)
    a = torch.randn(10, 10, generator=g).to(dtype)
    return model, x, x @ a.T, torch.optim.SGD(model.parameters(), lr=LR), Objective(True, "sample-sum")


def time_step(model, x, y, opt, loss_fn, steps: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def time_probe(model, x, y, opt, loss_fn, probes: int = 5) -> float:
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    start = time.perf_counter()
    for _ in range(probes):
        probe_gradient(model, loss_fn, x, y, STEP_SIZES, grad=training_grads(model), base_loss=loss.detach())
    return (time.perf_counter() - start) / probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| DLN | float32 step | float64 step | ratio | float32 probe | float64 probe | ratio |")
    print("|---|---|---|---|---|---|---|")
    for norm in ("none", "bn"):
        cases = {dt: case(norm, dt) for dt in (torch.float32, torch.float64)}
        times = {(dt, kind): [] for dt in cases for kind in ("step", "probe")}
        for _ in range(args.repeats):  # interleaved: drift hits both dtypes alike
            for dt, c in cases.items():
                times[(dt, "step")].append(time_step(*c))
                times[(dt, "probe")].append(time_probe(*c))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        s32, s64 = med[(torch.float32, "step")], med[(torch.float64, "step")]
        p32, p64 = med[(torch.float32, "probe")], med[(torch.float64, "probe")]
        print(
            f"| {norm} | {s32:.2f} ms | {s64:.2f} ms | {s64 / s32:.2f}x "
            f"| {p32:.2f} ms | {p64:.2f} ms | {p64 / p32:.2f}x |"
        )


if __name__ == "__main__":
    main()
