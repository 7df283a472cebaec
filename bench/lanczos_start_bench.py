"""Where Lanczos starts, along a training run: HVPs to lambda_max at tol 1e-3 (the
residual certificate, claimed after at least 10 products) from a random vector, from
the batch's gradient (mixed half and half with a Gaussian, the default) and warm from
the previous measurement's top eigenvector (mixed alike; the gradient the first
time), as ``--hessian-every`` measures it.

VGG-11-BN at width 1/4 (579,098 parameters) trained with SGD (step size 0.05, batch 128)
on the first 512 CIFAR-10 training images, as bench/curvature_bench.py does; every
``--every`` steps lambda_max of the step's batch, in train and eval BN mode.

    OMP_NUM_THREADS=1 python bench/lanczos_start_bench.py --data-dir ../shared/data

With ``--swap``, instead: the swapped-eigenvalue study of issue 21. H = A of a
quadratic, eigenvalues 10 (e1), 9 (e2) and a bulk, started at e2 (what a warm start
holds after the top two swapped); over 200 generator seeds, how often lambda_max is
claimed converged at 9, under the start rule and the 10-product minimum, each alone
and neither (the old rule: v plus a 1e-3 Gaussian, no minimum). A few seconds.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

import landscape.curvature.hessian
import landscape.curvature.lanczos
from landscape.config import DataConfig
from landscape.curvature.hessian import hessian_eigs
from landscape.data import batches, load_data
from landscape.models import build_model

ce = nn.functional.cross_entropy
STARTS = ("random", "gradient", "warm")


class Quadratic(nn.Module):
    """L(w) = 1/2 w^T A w at w = 0: H = A."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.w = nn.Parameter(torch.zeros(len(a), dtype=a.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.w @ self.a @ self.w


def _old_start(op, start, generator):
    z = op.random("gaussian", generator)
    return start / start.norm() + 1e-3 * z / z.norm()


def swap_study() -> None:
    rules = {
        "mixed start + 10 products (now)": (True, 10),
        "10 products, start v + 1e-3 z": (False, 10),
        "mixed start, no minimum": (True, 1),
        "neither (the old rule)": (False, 1),
    }
    print("| bulk | n | tol | rule | claims at 9 (of 200) | converged | HVPs: mean | max |")
    print("|---|---|---|---|---|---|---|---|")
    mixed, minimum = landscape.curvature.hessian._start_vector, landscape.curvature.lanczos.MIN_PRODUCTS
    for low, high, n in [(-1.0, 1.0, 50), (0.0, 8.5, 200)]:
        g = torch.Generator().manual_seed(0)
        u = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
        bulk = low + (high - low) * torch.rand(n - 2, generator=g, dtype=torch.float64)
        model = Quadratic(u @ torch.diag(torch.cat([torch.tensor([10.0, 9.0], dtype=torch.float64), bulk])) @ u.T)
        for tol in (1e-2, 1e-3):
            for rule, (mix, products) in rules.items():
                landscape.curvature.hessian._start_vector = mixed if mix else _old_start
                landscape.curvature.lanczos.MIN_PRODUCTS = products
                try:
                    runs = [
                        hessian_eigs(
                            model,
                            lambda out, _: out,
                            torch.zeros(1),
                            torch.zeros(1),
                            start=u[:, 1],
                            tol=tol,
                            max_hvps=n,
                            generator=torch.Generator().manual_seed(seed),
                        )
                        for seed in range(200)
                    ]
                finally:
                    landscape.curvature.hessian._start_vector, landscape.curvature.lanczos.MIN_PRODUCTS = mixed, minimum
                wrong = sum(r.converged and abs(float(r.eigenvalues[0]) - 10) > tol * 10 for r in runs)
                hvps = [r.hvps for r in runs]
                print(
                    f"| [{low:g}, {high:g}] | {n} | {tol:g} | {rule} | {wrong} | {sum(r.converged for r in runs)} | "
                    f"{statistics.mean(hvps):.1f} | {max(hvps)} |",
                    flush=True,
                )
    print(
        "\nKuczynski-Wozniakowski eps at 1 %, m = 10: n = 50: "
        f"{landscape.curvature.lanczos.random_start_epsilon(50, 10):.2f}, "
        f"n = 200: {landscape.curvature.lanczos.random_start_epsilon(200, 10):.2f} (of lambda_max - lambda_min; "
        f"10 vs 9 is {1 / 11:.2f} and {1 / 10:.2f} of it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--swap", action="store_true", help="The swapped-eigenvalue study instead.")
    args = parser.parse_args()
    if args.swap:
        swap_study()
        return
    torch.manual_seed(0)
    model = build_model("vgg11", norm="bn", width_mult=0.25).train()
    dataset = load_data(DataConfig(name="cifar10", data_dir=args.data_dir, subset=512))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    counts = {(mode, start): [] for mode in ("train", "eval") for start in STARTS}
    previous: dict[str, dict] = {}
    step = 0
    print("| step | BN mode | lambda_max | HVPs random | HVPs gradient | HVPs warm |\n|---|---|---|---|---|---|")
    while step <= args.steps:
        for x, y in batches(dataset, 128, generator):
            if step % args.every == 0:
                for mode in ("train", "eval"):
                    row = []
                    for start in STARTS:
                        begin = previous.get(mode, "gradient") if start == "warm" else start
                        r = hessian_eigs(
                            model,
                            ce,
                            x,
                            y,
                            bn_mode=mode,
                            start=begin,
                            max_hvps=100,
                            return_eigenvectors=start == "warm",
                            generator=torch.Generator().manual_seed(step),
                        )
                        if start == "warm":
                            previous[mode] = r.eigenvectors[0]
                        counts[mode, start].append(r.hvps)
                        row.append(r)
                    print(
                        f"| {step} | {mode} | {float(row[1].eigenvalues[0]):.4g} | "
                        + " | ".join(f"{r.hvps}{'' if r.converged else '*'}" for r in row)
                        + " |",
                        flush=True,
                    )
            optimizer.zero_grad(set_to_none=True)
            ce(model(x), y).backward()
            optimizer.step()
            step += 1
            if step > args.steps:
                break
    print("\n| BN mode | start | HVPs: mean | median | max |\n|---|---|---|---|---|")
    for (mode, start), values in counts.items():
        print(f"| {mode} | {start} | {statistics.mean(values):.1f} | {statistics.median(values):g} | {max(values)} |")


if __name__ == "__main__":
    main()
