"""Fig. 10, investigated: which of the choices the paper leaves open brings the
standard deep linear network's landscape to the paper's magnitudes?

Our standard DLN's loss band and beta_eff are about 1e3-1e10 below the paper's Fig. 10
(band up to ~1e14, beta_eff 1e7-1e15 there). This runs the standard DLN (seed 0, the
paper's 10k full-batch steps at lr 1e-6, float64) over a grid of the choices the paper
does not state (``../shared/PAPER-PROTOCOL.md`` §2.2-2.3, §6.1):

* the output reduction: the squared error summed over the samples and averaged over
  the 10 outputs (``sample-sum``, ours) or summed over both (``sum``);
* the init: Glorot-uniform (ours), Glorot-normal, Glorot-uniform with gain 1.5 or 2
  (the gain compounds over the 25 layers as s^25);
* the probe grid: the 5 geometric step sizes {0.01, 0.1, 1, 10, 30} x lr, or 13
  linear points over the same range;

and prints, per setting, the band's median and max over the probes, beta_eff's median
and max, and the final training loss (the paper's: ~1.7e3 standard, ~5e2 with BN).
A run whose loss is not finite is said so.

    OMP_NUM_THREADS=1 python bench/dln_fig10_grid.py --out runs/dln-fig10-grid   # ~20 min here
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import torch

from landscape.paper.defaults import paper_config, probe_config
from landscape.paper.measures import band_width, beta
from landscape.report import data
from landscape.runner.train import train

REDUCTIONS = ("sample-sum", "sum")
INITS = (("glorot", 1.0), ("glorot-normal", 1.0), ("glorot", 1.5), ("glorot", 2.0))
GRIDS = {"geometric 5": (0.01, 0.1, 1.0, 10.0, 30.0), "linear 13": tuple(np.linspace(0.01, 30.0, 13).round(6))}


def config_for(reduction: str, init: str, gain: float, grid: str, steps: int):
    config = paper_config("dln", "probe", norm="none", init=init, init_gain=gain)
    config = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, loss_reduction=reduction, steps=steps, device="cpu"),
        name=f"{reduction}-{init}-g{gain:g}-{grid.replace(' ', '')}",
    )
    return dataclasses.replace(config, probe=probe_config(config, step_sizes=GRIDS[grid]))


def row(path: Path) -> dict[str, float]:
    record = data.load_run(path)
    _, band = band_width(record)
    _, b = beta(record)
    loss = record.series["train/loss"][1]
    finite = lambda v: v[np.isfinite(v)]  # noqa: E731
    band, b = finite(np.asarray(band, float)), finite(np.asarray(b, float))
    return {
        "band median": float(np.median(band)) if band.size else math.nan,
        "band max": float(band.max()) if band.size else math.nan,
        "beta median": float(np.median(b)) if b.size else math.nan,
        "beta max": float(b.max()) if b.size else math.nan,
        "final loss": float(loss[-1]),
        "status": record.status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/dln-fig10-grid"))
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| reduction | init | probe grid | band median | band max | beta_eff median | beta_eff max | "
        "final train loss |\n|---|---|---|---|---|---|---|---|"
    )
    for reduction, (init, gain), grid in itertools.product(REDUCTIONS, INITS, GRIDS):
        config = config_for(reduction, init, gain, grid, args.steps)
        run_dir = args.out / config.name
        if not (run_dir / "config.json").is_file():
            train(config, run_dir=run_dir)
        r = row(run_dir)
        status = "" if r["status"] == "finished" else f" ({r['status']})"
        print(
            f"| {reduction} | {init}{f' x{gain:g}' if gain != 1 else ''} | {grid} | {r['band median']:.3g} | "
            f"{r['band max']:.3g} | {r['beta median']:.3g} | {r['beta max']:.3g} | {r['final loss']:.4g}{status} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
