"""Whole `landscape probe` commands with two variants (none, bn), side by side in
one run with interleaved repeats: one process, two processes with --layout ddp
(each variant in turn on both, DDP over the global batch) and two processes with
--layout spread (one variant per process). Wall time of the command, start-up
of the interpreter and of torch.distributed.run included.

    PYTHONPATH=. python bench/layout_bench.py --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "dln (25 x 10, full batch 1000)": ["--model", "dln", "--steps", "2000", "--lr", "1e-6"],
    "vgg_tiny (synthetic, batch 128)": [
        "--model",
        "vgg_tiny",
        "--dataset",
        "synthetic",
        "--batch-size",
        "128",
        "--steps",
        "300",
        "--lr",
        "0.05",
        "--eval-samples",
        "256",
    ],
}
LAYOUTS = {
    "1 process": [],
    "2 processes, ddp": ["--nproc", "2", "--layout", "ddp"],
    "2 processes, spread": ["--nproc", "2", "--layout", "spread"],
}
COMMON = [
    "--norm",
    "none,bn",
    "--device",
    "cpu",
    "--no-progress",
    "--no-report",
    "--eval-every",
    "1000000",
    "--checkpoint-every",
    "1000000",
]


def run(args: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "landscape_cli", "probe", *args, *COMMON, "--run-dir", os.path.join(tmp, "exp")]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    repeats = parser.parse_args().repeats
    print(f"| command: probe, 2 variants | {' | '.join(LAYOUTS)} | spread / ddp speed-up | spread / 1 process |")
    print("|" + "---|" * (len(LAYOUTS) + 3))
    for case, args in CASES.items():
        times: dict[str, list[float]] = {k: [] for k in LAYOUTS}
        for _ in range(repeats):
            for layout, extra in LAYOUTS.items():
                times[layout].append(run([*args, *extra]))
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = " | ".join(f"{med[k]:.1f} s" for k in LAYOUTS)
        ddp, spread, one = med["2 processes, ddp"], med["2 processes, spread"], med["1 process"]
        print(f"| {case} | {cells} | {ddp / spread:.2f}x | {one / spread:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
