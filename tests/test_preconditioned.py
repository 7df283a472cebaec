"""Tests of Adam's preconditioner and of the preconditioned spectrum lambda(P^{-1} H)
against an independent dense float64 calculation: the Hessian by
``torch.autograd.functional.hessian`` of ``functional_call`` over the flat parameter
vector, P by hand from the optimizer's state, and ``eigvalsh`` of P^{-1/2} H P^{-1/2}."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape.curvature.hessian import hessian_eigs
from landscape.measure.preconditioner import adam_preconditioner, check_preconditioner

ce = nn.functional.cross_entropy
OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.9, 0.99), eps=1e-6),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2, betas=(0.8, 0.995), eps=1e-5, weight_decay=0.1),
}


def bn_net(seed: int = 0) -> nn.Sequential:
    """Linear(8,16)-BN-Tanh-Linear(16,4), float64: 244 parameters."""
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(fc1=nn.Linear(8, 16), bn=nn.BatchNorm1d(16), act=nn.Tanh(), fc2=nn.Linear(16, 4))
    ).double()


def batch(seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + seed)
    return torch.randn(size, 8, generator=gen, dtype=torch.float64), torch.randint(0, 4, (size,), generator=gen)


def trained(kind: str = "adam", steps: int = 5, **options) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The network after ``steps`` optimizer steps in train mode (running stats moved)."""
    model = bn_net()
    optimizer = OPTIMIZERS[kind](model.parameters()) if not options else torch.optim.Adam(model.parameters(), **options)
    for step in range(steps):
        x, y = batch(step)
        optimizer.zero_grad()
        ce(model(x), y).backward()
        optimizer.step()
    return model, optimizer


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bn_mode: str, names: list[str]) -> torch.Tensor:
    """(n, n) Hessian over ``names`` (the other parameters held fixed), in that order."""
    m = copy.deepcopy(model).train(bn_mode == "train")
    params = {n: p.detach() for n, p in m.named_parameters()}
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        pieces = {**params, **{n: c.view(s) for n, c, s in zip(names, flat.split(sizes), shapes)}}
        buffers = {n: b.clone() for n, b in m.named_buffers()}
        return ce(functional_call(m, (pieces, buffers), (x,)), y)

    flat = torch.cat([params[n].reshape(-1) for n in names])
    return torch.autograd.functional.hessian(loss, flat)


def hand_diagonal(model: nn.Module, optimizer: torch.optim.Optimizer, names: list[str]) -> torch.Tensor:
    """(1 - beta1^t)(sqrt(v / (1 - beta2^t)) + eps), flat over ``names``, from the state."""
    params = dict(model.named_parameters())
    pieces = []
    for name in names:
        p = params[name]
        group = next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))
        (b1, b2), eps = group["betas"], group["eps"]
        state = optimizer.state[p]
        t = state["step"].item()
        v = state["max_exp_avg_sq" if group["amsgrad"] else "exp_avg_sq"]
        pieces.append(((1 - b1**t) * (torch.sqrt(v / (1 - b2**t)) + eps)).reshape(-1))
    return torch.cat(pieces).double()


def reference(model, optimizer, x, y, bn_mode, names) -> torch.Tensor:
    """eigvalsh(P^{-1/2} H P^{-1/2}), largest first."""
    h = dense_hessian(model, x, y, bn_mode, names)
    s = hand_diagonal(model, optimizer, names).rsqrt()
    return torch.linalg.eigvalsh(s[:, None] * h * s[None, :]).flip(0)


def eigs(model, x, y, **kwargs):
    options = dict(k=3, tol=1e-10, max_hvps=244, generator=torch.Generator().manual_seed(0))
    return hessian_eigs(model, ce, x, y, **{**options, **kwargs})


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict, list]:
    state = copy.deepcopy(optimizer.state_dict())
    return copy.deepcopy(model.state_dict()), state, [p.grad.clone() for p in model.parameters()]


def assert_same(before, after) -> None:
    (model_a, opt_a, grads_a), (model_b, opt_b, grads_b) = before, after
    assert model_a.keys() == model_b.keys() and all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for i, state in opt_a["state"].items():
        assert state.keys() == opt_b["state"][i].keys()
        assert all(torch.equal(state[k], opt_b["state"][i][k]) for k in state)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


@pytest.mark.parametrize("kind", OPTIMIZERS)
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_matches_dense_preconditioned_spectrum(kind: str, bn_mode: str) -> None:
    model, optimizer = trained(kind)
    x, y = batch(42)
    names = [n for n, _ in model.named_parameters()]
    want = reference(model, optimizer, x, y, bn_mode, names)
    before = snapshot(model, optimizer)
    r = eigs(model, x, y, bn_mode=bn_mode, preconditioner=optimizer, return_eigenvectors=True)
    assert_same(before, snapshot(model, optimizer))
    assert r.converged and r.hvps <= 244
    torch.testing.assert_close(r.eigenvalues, want[:3], rtol=1e-6, atol=0)
    # Not H's spectrum: the preconditioner matters here.
    h_top = torch.linalg.eigvalsh(dense_hessian(model, x, y, bn_mode, names))[-1]
    assert abs(float(h_top) - float(want[0])) > 1e-3 * abs(float(want[0]))
    # The eigenvectors are those of the symmetric S H S, S = P^{-1/2}; S u is one of P^{-1} H.
    h = dense_hessian(model, x, y, bn_mode, names)
    d = hand_diagonal(model, optimizer, names)
    for value, vector in zip(r.eigenvalues, r.eigenvectors):
        u = torch.cat([vector[n].reshape(-1) for n in names])
        s = d.rsqrt()
        assert torch.linalg.vector_norm(s * (h @ (s * u)) - value * u) < 1e-6 * abs(value)
        w = s * u
        assert torch.linalg.vector_norm((h @ w) / d - value * w) < 1e-6 * abs(value) * torch.linalg.vector_norm(w)
    # The dict form gives the same, bit for bit.
    diagonal = adam_preconditioner(model, optimizer)
    assert_same(before, snapshot(model, optimizer))
    again = eigs(model, x, y, bn_mode=bn_mode, preconditioner=diagonal)
    assert torch.equal(again.eigenvalues, r.eigenvalues) and again.hvps == r.hvps


def test_the_gradient_start_is_preconditioned() -> None:
    """After one product the value is the Rayleigh quotient of the start: the mix of
    S g (S = P^{-1/2}, g the batch's gradient) with the generator's Gaussian."""
    model, optimizer = trained()
    x, y = batch(42)
    names = [n for n, _ in model.named_parameters()]
    model.zero_grad()
    ce(model(x), y).backward()
    s = hand_diagonal(model, optimizer, names).rsqrt()
    g = s * torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    z = torch.randn(len(s), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = g / g.norm() + z / z.norm()
    q = q / q.norm()
    m = s[:, None] * dense_hessian(model, x, y, "train", names) * s[None, :]
    r = eigs(model, x, y, k=1, max_hvps=1, preconditioner=optimizer)
    assert r.hvps == 1
    torch.testing.assert_close(r.eigenvalues[0], q @ m @ q, rtol=1e-10, atol=0)


def test_block_and_a_partial_optimizer() -> None:
    model = bn_net()
    optimizer = torch.optim.Adam([*model.fc1.parameters(), *model.bn.parameters()], lr=1e-2)
    for step in range(4):
        x, y = batch(step)
        optimizer.zero_grad()
        ce(model(x), y).backward()
        optimizer.step()
    x, y = batch(42)
    with pytest.raises(ValueError, match="holds no state for parameter 'fc2.weight'"):
        eigs(model, x, y, preconditioner=optimizer)
    assert set(adam_preconditioner(model, optimizer)) == {"fc1.weight", "fc1.bias", "bn.weight", "bn.bias"}
    names = ["fc1.weight", "fc1.bias"]
    want = reference(model, optimizer, x, y, "train", names)
    r = eigs(model, x, y, block="fc1", k=2, max_hvps=len(want), preconditioner=optimizer)
    assert r.converged
    torch.testing.assert_close(r.eigenvalues, want[:2], rtol=1e-6, atol=0)


def test_identity_reproduces_the_plain_spectrum() -> None:
    model, _ = trained()
    x, y = batch(42)
    one = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    for start in ("gradient", "random"):
        plain = eigs(model, x, y, k=2, tol=1e-6, max_hvps=60, start=start)
        same = eigs(model, x, y, k=2, tol=1e-6, max_hvps=60, start=start, preconditioner=one)
        assert torch.equal(plain.eigenvalues, same.eigenvalues) and plain.hvps == same.hvps
        assert torch.equal(plain.residuals, same.residuals) and plain.converged == same.converged


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_preconditioner_by_hand(amsgrad: bool) -> None:
    model = bn_net()
    optimizer = torch.optim.Adam(
        [
            {"params": model.fc1.parameters(), "betas": (0.5, 0.9), "eps": 1e-3},
            {"params": [*model.bn.parameters(), *model.fc2.parameters()]},
        ],
        lr=0.05,
        amsgrad=amsgrad,
    )
    for step in range(6):
        x, y = batch(step)
        optimizer.zero_grad()
        ce(model(x), y).backward()
        optimizer.step()
    assert isinstance(optimizer.state[model.fc1.weight]["step"], torch.Tensor)
    diagonal = adam_preconditioner(model, optimizer)
    names = [n for n, _ in model.named_parameters()]
    assert list(diagonal) == names
    params = dict(model.named_parameters())
    assert all(diagonal[n].shape == params[n].shape and diagonal[n].dtype == torch.float64 for n in names)
    torch.testing.assert_close(
        torch.cat([diagonal[n].reshape(-1) for n in names]), hand_diagonal(model, optimizer, names), rtol=1e-14, atol=0
    )
    if amsgrad:  # the running maximum, not the current second moment
        state = optimizer.state[model.fc2.weight]
        assert not torch.equal(state["max_exp_avg_sq"], state["exp_avg_sq"])
    check_preconditioner(diagonal, params)


def test_wrapped_models_use_the_inner_names(tmp_path) -> None:
    model, optimizer = trained()
    plain = adam_preconditioner(model, optimizer)
    wrapped = adam_preconditioner(nn.DataParallel(model), optimizer)
    assert plain.keys() == wrapped.keys() and all(torch.equal(plain[n], wrapped[n]) for n in plain)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        from_ddp = adam_preconditioner(ddp, optimizer)
    finally:
        dist.destroy_process_group()
    assert plain.keys() == from_ddp.keys() and all(torch.equal(plain[n], from_ddp[n]) for n in plain)


def test_no_state_yet() -> None:
    model = bn_net()
    optimizer = torch.optim.AdamW(model.parameters())
    assert adam_preconditioner(model, optimizer) is None
    x, y = batch(42)
    with pytest.raises(ValueError, match=r"no state yet \(before its first step\)"):
        eigs(model, x, y, preconditioner=optimizer)


def test_other_optimizers_are_refused() -> None:
    model = bn_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = batch(0)
    ce(model(x), y).backward()
    optimizer.step()
    with pytest.raises(ValueError, match="Adam and AdamW only, not SGD"):
        adam_preconditioner(model, optimizer)
    with pytest.raises(ValueError, match="Adam and AdamW only, not SGD"):
        eigs(model, x, y, preconditioner=optimizer)
    with pytest.raises(ValueError, match="must be an Adam/AdamW optimizer or diag"):
        eigs(model, x, y, preconditioner=3.0)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["fc1.bias"].__setitem__(3, 0.0), "'fc1.bias' is not positive"),
        (lambda d: d["fc2.weight"].__setitem__((1, 2), -1.0), "'fc2.weight' is not positive"),
        (lambda d: d["bn.weight"].__setitem__(0, float("nan")), "'bn.weight' is not finite"),
        (lambda d: d["bn.bias"].__setitem__(0, float("inf")), "'bn.bias' is not finite"),
        (lambda d: d.__setitem__("fc1.weight", torch.ones(8, 16)), r"has shape \(8, 16\), the parameter \(16, 8\)"),
        (lambda d: d.pop("fc2.bias"), "no entry for parameter 'fc2.bias'"),
    ],
)
def test_bad_dict_entries(change, message: str) -> None:
    model = bn_net()
    diagonal = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    change(diagonal)
    x, y = batch(0)
    with pytest.raises(ValueError, match=message):
        eigs(model, x, y, preconditioner=diagonal)
    with pytest.raises(ValueError, match=message):
        check_preconditioner(diagonal, dict(model.named_parameters()))
