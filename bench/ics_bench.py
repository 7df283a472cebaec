"""Cost of one ICS / layer-input-distribution measurement relative to a training step."""

import statistics
import sys
import time

import torch
from torch import nn

from landscape.config import ModelConfig, NoiseConfig
from landscape.measure.ics import measure_ics
from landscape.models import build_model
from landscape.models.noise import Noise
from landscape.runner.adapters import LayerInputDistributions

device = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu")
if device.type == "cpu":
    # The 2 shared cores are oversubscribed: intra-op threads then spin-wait
    # for seconds in tiny BatchNorm kernels, and timings measure the load.
    torch.set_num_threads(1)
CASES = {  # (model, norm, batch); the DLN is the paper's 25 x 10
    "cpu": [("vgg_tiny", "bn", 128), ("vgg_tiny", "noisy_bn", 128), ("dln", "bn", 512), ("dln", "none", 512)],
    "cuda": [("vgg16", "bn", 128), ("vgg16", "noisy_bn", 128), ("vgg16", "none", 128), ("dln", "bn", 512)],
}[device.type]


def sync() -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")
print(
    "| model | norm | batch | conv/linear layers | train step ms | ICS ms | ICS / step "
    "| dist ms (#2, #9, #13 or 1, 2, 3) |"
)
print("|---|---|---|---|---|---|---|---|")
for name, norm, batch in CASES:
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, norm=norm, num_classes=10, depth=25, width=10)
    model = build_model(cfg, NoiseConfig()).to(device).train()
    if name == "dln":
        x, y, loss_fn = torch.randn(batch, 10), torch.randn(batch, 10), nn.functional.mse_loss
    else:
        x, y, loss_fn = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,)), nn.functional.cross_entropy
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    hook = LayerInputDistributions(layers=(2, 9, 13) if name.startswith("vgg16") or name == "dln" else (1, 2, 3))

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    repeats = 10 if device.type == "cuda" else 5
    step_ms = timed(step, repeats)
    ics_ms = timed(lambda: measure_ics(model, loss_fn, x, y, optimizer=opt), max(2, repeats // 3))
    dist_ms = timed(lambda: hook.measure(model, x), repeats)
    print(
        f"| {name} | {norm} | {batch} | {layers} | {step_ms:.1f} | {ics_ms:.1f} | {ics_ms / step_ms:.1f} "
        f"| {dist_ms:.1f} |"
    )

if device.type == "cuda":
    # The noise's random-number strategy on one (128, 64, 32, 32) activation:
    # drawn on the GPU from a per-step seed (what Noise does) versus drawn
    # elementwise on the CPU generator and copied over.
    a = torch.randn(128, 64, 32, 32, device=device)
    noise = Noise(64, NoiseConfig()).train()
    bn = nn.BatchNorm2d(64).to(device).train()

    def cpu_draw_and_copy() -> torch.Tensor:
        s = torch.empty(a.shape).normal_(1.1, 0.1, generator=noise.generator)
        m = torch.empty(a.shape).uniform_(-0.1, 0.1, generator=noise.generator)
        return torch.addcmul(m.to(device), s.to(device), a)

    print(f"noise forward on the GPU (per-step seed): {timed(lambda: noise(a), 20):.2f} ms")
    print(f"noise drawn on the CPU and copied: {timed(cpu_draw_and_copy, 3):.2f} ms")
    print(f"plain BatchNorm2d forward: {timed(lambda: bn(a), 20):.2f} ms")
    print(f"new CUDA generator + seed: {timed(lambda: torch.Generator(device=device).manual_seed(1), 50) * 1e3:.1f} us")
