"""A loss surface point against one plain forward: a 7x7 surface (loss_surface) timed
against 49 forwards of the same batch under torch.no_grad, alternately 5 times in one
process, on the curvature benchmark's trained VGG-11-BN/4 point (bench/curvature_bench.py
caches it), and the vector work of one point (w + a d1 + b d2) alone.

    OMP_NUM_THREADS=1 python bench/surface_cost.py
"""

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from curvature_bench import ce, fresh, make_points

from landscape.curvature.surface import loss_surface

torch.set_num_threads(1)
states, x, y = make_points("/work/shared/data", Path("/tmp/landscape_curvature_bench"))
for mode in ("train", "eval"):
    m = fresh(states["trained"], mode)
    ratios = []
    fwd_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(49):
                ce(m(x), y)
        t1 = time.perf_counter()
        loss_surface(m, ce, x, y, steps=7, dims=2, bn_mode=mode, generator=torch.Generator().manual_seed(0))
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
        fwd_times.append((t1 - t0) / 49)
    print(
        mode,
        "surface/49 forwards",
        [round(r, 3) for r in ratios],
        "median",
        round(statistics.median(ratios), 3),
        "forward ms",
        round(1000 * statistics.median(fwd_times), 1),
    )
n = sum(p.numel() for p in m.parameters())
d = [torch.randn_like(p) for p in m.parameters()]
w = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
ts = []
for _ in range(20):
    t0 = time.perf_counter()
    off = torch._foreach_mul(d, 0.3)
    torch._foreach_add_(off, d, alpha=0.2)
    flat = torch.cat([o.reshape(-1) for o in off])
    w2 = w + flat
    ts.append(time.perf_counter() - t0)
print("vector work per point ms", round(1000 * statistics.median(ts), 2), "n", n)
