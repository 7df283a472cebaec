"""Products to Adam's preconditioned sharpness lambda_max(P^{-1} H) (issue 23 item 3).

VGG-11-BN at width 1/4 (579,098 parameters) trained with AdamW (step size eta = 1e-3,
betas (0.9, 0.999), eps 1e-8, weight decay 0.01, batch 128, no augmentation) for
300 steps on the CIFAR-10 training set, then on the next training batch of 128, in
train BN mode (the model at w_300, P the preconditioner of step 300, as the Hessian
hook sees them at ``AFTER_BACKWARD``):

    preconditioned  hessian_eigs(k=1, tol=1e-3, start="gradient", preconditioner=optimizer)
    plain           the same without the preconditioner: lambda_max(H)

each with its products, convergence flag, residual and wall time, next to Cohen et
al.'s (2022) equilibrium 38 / eta = (2 + 2 beta1) / ((1 - beta1) eta). With
``--reference`` also both values at tol 1e-6 (up to ``--reference-hvps`` products),
to see how far the tol-1e-3 values are from the converged ones. Checks that the
optimizer's state and the model come back bit-identical.

    OMP_NUM_THREADS=1 python bench/precond_products.py --data-dir /work/shared/data
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from landscape.config import DataConfig
from landscape.curvature.hessian import hessian_eigs
from landscape.data import batches, load_data
from landscape.models import build_model

ce = nn.functional.cross_entropy


def same_state(a: dict, b: dict) -> bool:
    """Whether two (nested) state dicts hold equal tensors and values."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def measure(model, optimizer, x, y, label: str, **kwargs) -> None:
    begin = time.perf_counter()
    r = hessian_eigs(model, ce, x, y, k=1, bn_mode="train", generator=torch.Generator().manual_seed(0), **kwargs)
    seconds = time.perf_counter() - begin
    print(
        f"| {label} | {float(r.eigenvalues[0]):.6g} | {r.hvps} | {r.converged} | "
        f"{float(r.residuals[0]):.3g} | {seconds:.1f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--reference", action="store_true", help="Also both values at tol 1e-6.")
    parser.add_argument("--reference-hvps", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("vgg11", norm="bn", width_mult=0.25).train()
    dataset = load_data(DataConfig(name="cifar10", data_dir=args.data_dir))
    beta1 = 0.9
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(beta1, 0.999), eps=1e-8, weight_decay=args.weight_decay
    )
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stream = batches(dataset, 128, torch.Generator().manual_seed(0))
    begin = time.perf_counter()
    for _ in range(args.steps):
        x, y = next(stream)
        optimizer.zero_grad(set_to_none=True)
        loss = ce(model(x), y)
        loss.backward()
        loss = loss.detach()
        optimizer.step()
    print(
        f"{n:,} parameters; {args.steps} AdamW steps (lr {args.lr:g}, weight decay {args.weight_decay:g}) in "
        f"{time.perf_counter() - begin:.0f} s, last training loss {loss.item():.4f}",
        flush=True,
    )
    x, y = next(stream)  # batch 301: the one step 301 would take, at w_300 and P_300
    optimizer.zero_grad(set_to_none=True)
    ce(model(x), y).backward()  # as at AFTER_BACKWARD: .grad holds this batch's gradient
    model_before, state_before = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    grads_before = [p.grad.clone() for p in model.parameters()]
    print(f"38 / eta = (2 + 2 beta1) / ((1 - beta1) eta) = {(2 + 2 * beta1) / ((1 - beta1) * args.lr):.6g}")
    print("\n| measurement | lambda_max | HVPs | converged | residual | seconds |\n|---|---|---|---|---|---|")
    measure(model, optimizer, x, y, "P^-1 H, tol 1e-3", tol=1e-3, preconditioner=optimizer)
    measure(model, optimizer, x, y, "H, tol 1e-3", tol=1e-3)
    if args.reference:
        more = dict(tol=1e-6, max_hvps=args.reference_hvps)
        measure(model, optimizer, x, y, "P^-1 H, tol 1e-6", preconditioner=optimizer, **more)
        measure(model, optimizer, x, y, "H, tol 1e-6", **more)
    untouched = (
        same_state(model_before, model.state_dict())
        and same_state(state_before, optimizer.state_dict())
        and all(torch.equal(g, p.grad) for g, p in zip(grads_before, model.parameters()))
    )
    print(f"\nmodel, .grad and optimizer state bit-identical afterwards: {untouched}")


if __name__ == "__main__":
    main()
