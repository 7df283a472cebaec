"""ResNet-50 paper-scale probe command on one GPU: measure per-step, per-probe and
per-evaluation cost inside one process, then project the full command's wall time."""

import dataclasses
import json
import statistics
import sys
import tempfile
import time

import torch

from landscape.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, ScheduleConfig, TrainConfig
from landscape.data import total_steps
from landscape.models import build_model
from landscape.paper.defaults import scaled_probe_schedule
from landscape.runner.train import train
from landscape.training.hooks import count_steps
from landscape.training.loop import evaluate

dev = torch.device("cuda")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "steps_measured": N}


def cfg(norm, steps, probe=None):
    return RunConfig(
        model=ModelConfig(name="resnet50", norm=norm),
        data=DataConfig(name="synthetic", synthetic_train=1024, synthetic_test=256),
        train=TrainConfig(
            steps=steps, lr=0.01, batch_size=128, device="cuda", eval_every=10**9, checkpoint_every=10**9, log_every=50
        ),
        probe=probe,
        name=norm,
    )


base = cfg("bn", 1)
paper = dataclasses.replace(
    base, train=dataclasses.replace(base.train, steps=None, epochs=20), data=DataConfig(name="cifar10")
)
full_steps = total_steps(paper)
sched = scaled_probe_schedule(full_steps, 4 + 2)
n_probes_full = count_steps(sched, full_steps)
out.update(full_steps=full_steps, schedule=dataclasses.asdict(sched), probes_full=n_probes_full)


def timed_run(config):
    stamps = []

    def progress(step, total, postfix):
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = train(config, run_dir=f"{tmp}/r", progress=progress)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    return r, wall, stamps


probe_cfg = ProbeConfig(step_sizes=(0.5, 1, 2, 4), schedule=ScheduleConfig(every=10), curvature=True)
for norm in ("none", "bn"):
    r, wall, st = timed_run(cfg(norm, N))
    d = [b - a for a, b in zip(st, st[1:])]
    step = statistics.median(d[20:])
    rp, wallp, stp = timed_run(cfg(norm, N, probe_cfg))
    n_probes = count_steps(probe_cfg.schedule, N)
    per_probe = (wallp - wall) / n_probes
    out[norm] = {
        "status": r.status,
        "step_ms": step * 1e3,
        "wall_train_s": wall,
        "wall_probed_s": wallp,
        "probes": n_probes,
        "probe_ms": per_probe * 1e3,
        "probe_over_step": per_probe / step,
    }
# evaluation on a CIFAR-sized test set (10k images), as eval_every=500 does
model = build_model(ModelConfig(name="resnet50", norm="bn")).to(dev)
x = torch.randn(10000, 3, 32, 32, device=dev)
y = torch.randint(10, (10000,), device=dev)
evaluate(model, torch.nn.CrossEntropyLoss(), x, y)
torch.cuda.synchronize()
t0 = time.perf_counter()
evaluate(model, torch.nn.CrossEntropyLoss(), x, y)
torch.cuda.synchronize()
ev = time.perf_counter() - t0
n_evals = full_steps // 500 + 1
proj = sum(
    full_steps * out[n]["step_ms"] / 1e3 + n_probes_full * out[n]["probe_ms"] / 1e3 + n_evals * ev
    for n in ("none", "bn")
)
train_only = sum(full_steps * out[n]["step_ms"] / 1e3 for n in ("none", "bn"))
out.update(
    eval_s=ev,
    projected_wall_s=proj,
    projected_train_only_s=train_only,
    projected_probe_overhead=(proj - train_only - 2 * n_evals * ev) / train_only,
)
print(json.dumps(out, indent=1))
