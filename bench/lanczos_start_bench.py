"""Where Lanczos starts, along a training run: HVPs to lambda_max at tol 1e-3 (the
residual certificate) from a random vector, from the batch's gradient (plus a Gaussian,
the default) and warm from the previous measurement's top eigenvector (plus a 1e-3
Gaussian; the gradient the first time), as ``--hessian-every`` measures it.

VGG-11-BN at width 1/4 (579,098 parameters) trained with SGD (step size 0.05, batch 128)
on the first 512 CIFAR-10 training images, as bench/curvature_bench.py does; every
``--every`` steps lambda_max of the step's batch, in train and eval BN mode.

    OMP_NUM_THREADS=1 python bench/lanczos_start_bench.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from landscape.config import DataConfig
from landscape.data import batches, load_data
from landscape.hessian import hessian_eigs
from landscape.models import build_model

ce = nn.functional.cross_entropy
STARTS = ("random", "gradient", "warm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=20)
    args = parser.parse_args()
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
                        r = hessian_eigs(model, ce, x, y, bn_mode=mode, start=begin, max_hvps=100,
                                         return_eigenvectors=start == "warm",
                                         generator=torch.Generator().manual_seed(step))
                        if start == "warm":
                            previous[mode] = r.eigenvectors[0]
                        counts[mode, start].append(r.hvps)
                        row.append(r)
                    print(f"| {step} | {mode} | {float(row[1].eigenvalues[0]):.4g} | "
                          + " | ".join(f"{r.hvps}{'' if r.converged else '*'}" for r in row) + " |", flush=True)
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
