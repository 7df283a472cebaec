"""Peak memory of Lanczos against the products it takes: a fresh subprocess per row
builds a 0.5M-parameter MLP (784-512-256-10, 535,818 weights, float32), takes one
gradient on a 256-example batch, then calls ``hessian_eigs(max_hvps=400)``. Added
memory = the subprocess's ``ru_maxrss`` at the end minus its RSS after the first
gradient (so the interpreter, torch and the model are not counted; the gradient
graph Lanczos keeps, the basis and the work vectors are).

Rows: lambda_max to tol 1e-2 and 1e-3 as it converges (m products), then a stop
after exactly m products for m in --products (tol 1e-12 and max_hvps = m: only the
budget stops it). The basis is ceil(m / 16) blocks of 16 vectors, 34 MB a block
here; a block's pages are resident once its rows are written, so the RSS grows by
2.1 MB a product.

    OMP_NUM_THREADS=1 python bench/lanczos_memory_bench.py
    OMP_NUM_THREADS=1 PYTHONPATH=OTHER_CHECKOUT python bench/lanczos_memory_bench.py  # compare
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

MAX_HVPS = 400


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(what: str) -> dict:
    import torch
    from torch import nn

    from landscape.curvature.hessian import hessian_eigs

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.Tanh(), nn.Linear(512, 256), nn.Tanh(), nn.Linear(256, 10))
    x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
    nn.functional.cross_entropy(model(x), y).backward()
    baseline = rss_bytes()
    converge = what.startswith("tol=")
    tol = float(what.removeprefix("tol=")) if converge else 1e-12
    limit = MAX_HVPS if converge else int(what)
    r = hessian_eigs(
        model, nn.functional.cross_entropy, x, y, tol=tol, max_hvps=limit, generator=torch.Generator().manual_seed(0)
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "max_hvps": limit,
        "hvps": r.hvps,
        "converged": r.converged,
        "lambda_max": float(r.eigenvalues[0]),
        "added_mb": (peak - baseline) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--products", default="10,16,17,20,29,32,48")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker)))
        return
    print("| run | max_hvps | products m | converged | lambda_max | added peak memory (MB) |")
    print("|---|---|---|---|---|---|")
    for what in ["tol=1e-2", "tol=1e-3", *args.products.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--worker", what], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        label = f"to {what.replace('=', ' ')}" if what.startswith("tol=") else f"{what} products"
        print(
            f"| {label} | {row['max_hvps']} | {row['hvps']} | {row['converged']} | {row['lambda_max']:.5g} | "
            f"{row['added_mb']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
