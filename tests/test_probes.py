"""Tests of the gradient-direction probe against closed forms, independent autograd
computations and finite differences, plus state preservation."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from conftest import Quadratic
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from landscape.measure.probes import probe_gradient, training_grads
from landscape.measure.step_sizes import parse_step_sizes
from landscape.runner.adapters import ProbeHook
from landscape.state import differences, snapshot
from landscape.training.hooks import Context, Event, every


def identity_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return output


@pytest.fixture
def quadratic() -> tuple[Quadratic, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)  # symmetric positive definite
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    w = torch.randn(6, generator=gen, dtype=torch.float64)
    return Quadratic(a, b, w), a, b, w


def quad_loss(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> float:
    return float(0.5 * w @ a @ w - b @ w)


def test_quadratic_closed_form(quadratic):
    model, a, b, w = quadratic
    g = a @ w - b
    etas = (0.0, 0.01, 0.05, 0.2)
    r = probe_gradient(model, identity_loss, torch.zeros(1), torch.zeros(1), etas)
    assert r.base_loss == pytest.approx(quad_loss(a, b, w), abs=1e-10)
    assert r.grad_norm == pytest.approx(float(g.norm()), abs=1e-10)
    assert r.direction_norm == pytest.approx(float(g.norm()), abs=1e-10)
    ag = a @ g
    for eta, loss, diff, cos in zip(etas, r.losses, r.grad_diffs, r.grad_cosines):
        assert loss == pytest.approx(quad_loss(a, b, w - eta * g), abs=1e-10)
        assert diff == pytest.approx(eta * float(ag.norm()), abs=1e-10)  # grad(w - eta g) - g = -eta A g
        moved = g - eta * ag
        assert cos == pytest.approx(float(moved @ g / (moved.norm() * g.norm())), abs=1e-10)
    assert r.losses[0] == r.base_loss  # step size 0 is the current point
    assert r.beta == pytest.approx(float(ag.norm() / g.norm()), abs=1e-10)
    assert r.curvature == pytest.approx(float(g @ ag / (g @ g)), abs=1e-10)


def test_quadratic_random_direction(quadratic):
    model, a, b, w = quadratic
    g = a @ w - b
    r = probe_gradient(
        model,
        identity_loss,
        torch.zeros(1),
        torch.zeros(1),
        (0.1, 0.3),
        direction="random",
        generator=torch.Generator().manual_seed(3),
    )
    d = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    d = d * g.norm() / d.norm()
    assert r.direction_norm == pytest.approx(float(g.norm()), abs=1e-10)
    for eta, loss, diff in zip((0.1, 0.3), r.losses, r.grad_diffs):
        assert loss == pytest.approx(quad_loss(a, b, w - eta * d), abs=1e-10)
        assert diff == pytest.approx(eta * float((a @ d).norm()), abs=1e-10)
    assert r.beta == pytest.approx(float((a @ d).norm() / d.norm()), abs=1e-10)
    assert r.curvature == pytest.approx(float(g @ a @ g / (g @ g)), abs=1e-10)  # along g, whatever d


def deep_linear(depth: int, width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(depth)]).double()


def dln_loss(weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = x
    for wt in weights:
        out = out @ wt.T
    return nn.functional.mse_loss(out, y)


def test_dln_against_explicit_weight_copies():
    model = deep_linear(4, 3, seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    etas = (0.1, 0.5, 2.0)
    r = probe_gradient(model, nn.functional.mse_loss, x, y, etas)

    weights = [m.weight.detach().clone().requires_grad_() for m in model]
    loss = dln_loss(weights, x, y)
    g = torch.autograd.grad(loss, weights)
    g_flat = torch.cat([t.reshape(-1) for t in g])
    assert r.base_loss == pytest.approx(loss.item(), rel=1e-12)
    betas = []
    for eta, probe_loss, diff, cos in zip(etas, r.losses, r.grad_diffs, r.grad_cosines):
        moved = [(wt - eta * gt).detach().requires_grad_() for wt, gt in zip(weights, g)]
        moved_loss = dln_loss(moved, x, y)
        moved_grad = torch.cat([t.reshape(-1) for t in torch.autograd.grad(moved_loss, moved)])
        assert probe_loss == pytest.approx(moved_loss.item(), rel=1e-12)
        assert diff == pytest.approx(float((moved_grad - g_flat).norm()), rel=1e-10)
        assert cos == pytest.approx(float(moved_grad @ g_flat / (moved_grad.norm() * g_flat.norm())), rel=1e-10)
        betas.append(float((moved_grad - g_flat).norm()) / (eta * float(g_flat.norm())))
    assert r.beta == pytest.approx(max(betas), rel=1e-10)

    # Finite differences along g: dL/dh = -||g||^2 and g^T H g from central differences of the gradient.
    h = 1e-5
    plus = [(wt + h * gt).detach().requires_grad_() for wt, gt in zip(weights, g)]
    minus = [(wt - h * gt).detach().requires_grad_() for wt, gt in zip(weights, g)]
    slope = (dln_loss(plus, x, y) - dln_loss(minus, x, y)).item() / (2 * h)
    assert slope == pytest.approx(r.grad_norm**2, rel=1e-7)
    grad_plus = torch.cat([t.reshape(-1) for t in torch.autograd.grad(dln_loss(plus, x, y), plus)])
    grad_minus = torch.cat([t.reshape(-1) for t in torch.autograd.grad(dln_loss(minus, x, y), minus)])
    ghg = float(g_flat @ (grad_plus - grad_minus)) / (2 * h)
    assert r.curvature == pytest.approx(ghg / float(g_flat @ g_flat), rel=1e-6)


def tanh_twice(x: torch.Tensor, w: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    return nn.functional.linear(torch.tanh(nn.functional.linear(x, w, b1)), w, b2)


@pytest.mark.parametrize("sharing", ["module", "weight"])
def test_shared_weights(sharing):
    torch.manual_seed(0)
    first = nn.Linear(3, 3).double()
    if sharing == "module":
        second = first  # one module used twice
    else:
        second = nn.Linear(3, 3).double()
        second.weight = first.weight  # one weight held by two modules
    model = nn.Sequential(first, nn.Tanh(), second)
    x = torch.randn(8, 3, dtype=torch.float64)
    y = torch.randn(8, 3, dtype=torch.float64)
    before = snapshot(model)
    r = probe_gradient(model, nn.functional.mse_loss, x, y, (0.3,), curvature=False)
    assert differences(before, snapshot(model)) == []
    assert all(isinstance(m.weight, nn.Parameter) for m in (first, second))
    w, b1, b2 = (t.detach().clone().requires_grad_() for t in (first.weight, first.bias, second.bias))
    if sharing == "module":
        b2 = b1  # the same bias: autograd sums both uses
    gw, gb1, gb2 = torch.autograd.grad(nn.functional.mse_loss(tanh_twice(x, w, b1, b2), y), (w, b1, b2))
    if sharing == "module":
        gb2 = gb1
    moved = tanh_twice(x, w - 0.3 * gw, b1 - 0.3 * gb1, b2 - 0.3 * gb2)
    assert r.losses[0] == pytest.approx(nn.functional.mse_loss(moved, y).item(), rel=1e-12)


def test_reused_module_with_shared_weight():
    # The loop evaluates in the model itself, so both kinds of sharing together work;
    # functional_call (the vmap path) cannot tie weights here and refuses.
    torch.manual_seed(0)
    a, b = nn.Linear(2, 2).double(), nn.Linear(2, 2).double()
    b.weight = a.weight
    model = nn.Sequential(a, nn.Tanh(), b, nn.Tanh(), a)
    x, y = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    before = snapshot(model)
    r = probe_gradient(model, nn.functional.mse_loss, x, y, (0.1,), curvature=False)
    assert differences(before, snapshot(model)) == []
    reference = copy.deepcopy(model)  # deepcopy keeps both sharings
    g = torch.autograd.grad(nn.functional.mse_loss(reference(x), y), list(reference.parameters()))
    with torch.no_grad():
        for p, gi in zip(reference.parameters(), g):
            p -= 0.1 * gi
    assert r.losses[0] == pytest.approx(nn.functional.mse_loss(reference(x), y).item(), rel=1e-12)
    with pytest.raises(ValueError):
        probe_gradient(model, nn.functional.mse_loss, x, y, (0.1,), method="vmap")


def mlp(depth: int, width: int, bn: bool, dropout: float, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers.append(nn.Linear(width, width))
        if bn:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(NoisyScale(seed))
    layers.append(nn.Linear(width, 3))
    return nn.Sequential(*layers)


class NoisyScale(nn.Module):
    """A layer that, like noisy BN, draws from its own generator in training mode."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * (1 + 0.1 * torch.randn(x.shape[1:], generator=self.generator))


def trained_state(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.optim.Optimizer, float]:
    """An SGD-with-momentum optimizer that has stepped, and fresh .grad of the next batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return opt, loss.item()


@settings(max_examples=15, deadline=None)
@given(
    depth=st.integers(1, 3),
    width=st.integers(2, 5),
    bn=st.booleans(),
    dropout=st.sampled_from([0.0, 0.3]),
    model_training=st.booleans(),
    bn_mode=st.sampled_from(["train", "eval"]),
    direction=st.sampled_from(["gradient", "random", "filter"]),
    reuse=st.booleans(),
    method=st.sampled_from(["loop", "vmap"]),
    step_sizes=st.lists(st.floats(0.001, 10.0), min_size=1, max_size=3),
)
def test_probe_leaves_state_bit_identical(
    depth, width, bn, dropout, model_training, bn_mode, direction, reuse, method, step_sizes
):
    model = mlp(depth, width, bn, dropout, seed=depth * 10 + width)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, width, generator=gen)
    y = torch.randint(0, 3, (8,), generator=gen)
    opt, loss = trained_state(model, x, y)
    model.train(model_training)
    before = snapshot(model, opt)
    probe_gradient(
        model,
        nn.functional.cross_entropy,
        x,
        y,
        step_sizes,
        grad=training_grads(model) if reuse else None,
        base_loss=loss if reuse else None,
        direction=direction,
        bn_mode=bn_mode,
        method=method,
    )
    assert differences(before, snapshot(model, opt)) == []


def dropout_model() -> nn.Sequential:
    return mlp(2, 6, bn=True, dropout=0.5, seed=4)


def batch(width: int = 6, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return torch.randn(n, width, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def test_same_draw_at_every_point_and_across_calls():
    model = dropout_model()
    x, y = batch()
    rng = torch.get_rng_state()
    first = probe_gradient(model, nn.functional.cross_entropy, x, y, (0.0, 0.2, 0.2))
    second = probe_gradient(model, nn.functional.cross_entropy, x, y, (0.0, 0.2, 0.2))
    assert first == second
    assert torch.equal(torch.get_rng_state(), rng)
    # With the same draw, step size 0 is exactly g's point and repeated points agree.
    assert first.losses[0] == first.base_loss
    assert first.grad_diffs[0] == 0.0
    assert first.losses[1] == first.losses[2]


class Counter(nn.Module):
    """Output depends on a buffer that every forward updates: each evaluation must start
    from the model's own buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += 1
        return x * self.count


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_every_point_starts_from_the_model_buffers(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), Counter())
    x, y = torch.randn(4, 3), torch.randn(4, 3)
    r = probe_gradient(model, nn.functional.mse_loss, x, y, (0.0, 0.1, 0.1), method=method)
    assert r.losses[1] == pytest.approx(r.losses[2], rel=1e-6)
    assert r.losses[0] == pytest.approx(r.base_loss, rel=1e-6)
    assert model[1].count.item() == 1.0


def test_vmap_matches_loop():
    model = dropout_model()
    x, y = batch()
    etas = (0.05, 0.2, 1.0)
    loop = probe_gradient(model, nn.functional.cross_entropy, x, y, etas, method="loop")
    for chunk_size in (None, 2):
        vm = probe_gradient(model, nn.functional.cross_entropy, x, y, etas, method="vmap", chunk_size=chunk_size)
        for a, b in [(loop.losses, vm.losses), (loop.grad_diffs, vm.grad_diffs), (loop.grad_cosines, vm.grad_cosines)]:
            assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
        assert vm.beta == pytest.approx(loop.beta, rel=1e-4)


@pytest.mark.parametrize("bn", [False, True])
def test_grad_reuse_equals_standalone(bn):
    model = mlp(2, 6, bn=bn, dropout=0.0, seed=6)
    del model[-2]  # no random layer: the training forward and the probe see the same function
    x, y = batch()
    loss = nn.functional.cross_entropy(model(x), y)  # the training step, BN in train mode
    loss.backward()
    etas = (0.1, 0.5)
    reused = probe_gradient(
        model, nn.functional.cross_entropy, x, y, etas, grad=training_grads(model), base_loss=loss.item()
    )
    alone = probe_gradient(model, nn.functional.cross_entropy, x, y, etas)
    for a, b in zip(
        (reused.losses, reused.grad_diffs, reused.grad_cosines, (reused.base_loss, reused.grad_norm, reused.beta)),
        (alone.losses, alone.grad_diffs, alone.grad_cosines, (alone.base_loss, alone.grad_norm, alone.beta)),
    ):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    assert reused.curvature == pytest.approx(alone.curvature, rel=1e-4)


def test_grad_is_recomputed_where_it_cannot_be_reused():
    x, y = batch()
    for model, bn_mode in [(mlp(1, 6, bn=True, dropout=0.0, seed=7), "eval"), (dropout_model(), "train")]:
        bogus = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        reused = probe_gradient(
            model, nn.functional.cross_entropy, x, y, (0.1,), grad=bogus, base_loss=-1.0, bn_mode=bn_mode
        )
        alone = probe_gradient(model, nn.functional.cross_entropy, x, y, (0.1,), bn_mode=bn_mode)
        assert reused == alone


def normed_net(norm: str, seed: int) -> nn.Sequential:
    """conv -> norm -> ReLU -> conv -> norm -> ReLU -> linear, float64, with running
    statistics (and the noise generator) moved away from their start."""
    from landscape.config import NoiseConfig
    from landscape.models.noise import make_norm_layer

    torch.manual_seed(seed)
    factory = make_norm_layer(norm, 2, NoiseConfig(seed=seed))
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        factory(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1),
        factory(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 3),
    ).double()
    with torch.no_grad():  # non-trivial running statistics from shifted, scaled batches
        for shift in (1.0, 2.0, 3.0):
            model(torch.randn(8, 2, 4, 4, dtype=torch.float64) * 2 + shift)
    return model


def eval_reference(model: nn.Module, loss_fn, x, y, step_sizes):
    """The probe in eval mode the long way: a deep copy put in eval mode, its gradient g,
    and for every eta a fresh copy moved to w - eta g by hand."""
    ref = copy.deepcopy(model).eval()
    loss = loss_fn(ref(x), y)
    g = torch.autograd.grad(loss, list(ref.parameters()))
    losses, diffs = [], []
    for eta in step_sizes:
        moved = copy.deepcopy(ref)
        with torch.no_grad():
            for p, gi in zip(moved.parameters(), g):
                p.sub_(eta * gi)
        point = loss_fn(moved(x), y)
        grads = torch.autograd.grad(point, list(moved.parameters()))
        losses.append(float(point.detach()))
        diffs.append(float(torch.cat([(a - b).flatten() for a, b in zip(grads, g)]).norm()))
    return float(loss.detach()), losses, diffs


@pytest.mark.parametrize("norm", ["bn", "noisy_bn", "noise", "l1", "l2", "linf", "layer", "group", "rms"])
def test_bn_mode_eval_is_an_eval_mode_copy_for_every_normalization(norm):
    model = normed_net(norm, 8).train()
    x, y = torch.randn(6, 2, 4, 4, dtype=torch.float64), torch.randint(0, 3, (6,))
    loss_fn, sizes = nn.functional.cross_entropy, (0.1, 1.0)
    base, losses, diffs = eval_reference(model, loss_fn, x, y, sizes)
    before = snapshot(model)
    evals = probe_gradient(model, loss_fn, x, y, sizes, bn_mode="eval")
    assert differences(before, snapshot(model)) == []
    assert evals.bn_mode == "eval"
    assert evals.base_loss == pytest.approx(base, rel=1e-10)
    assert evals.losses == pytest.approx(losses, rel=1e-10)
    assert evals.grad_diffs == pytest.approx(diffs, rel=1e-8)
    train = probe_gradient(model, loss_fn, x, y, sizes, bn_mode="train")
    if norm not in ("layer", "group", "rms"):
        # Train mode (batch statistics, noise) is another landscape: the comparison is not vacuous.
        assert all(abs(a - b) > 1e-6 for a, b in zip(train.losses, evals.losses))
        return
    # No running statistics: bn_mode is a no-op, bit for bit, also when the training gradient is reused.
    assert dataclasses.replace(evals, bn_mode="train") == train
    loss = loss_fn(model(x), y)
    loss.backward()
    grad = training_grads(model)
    reused = [probe_gradient(model, loss_fn, x, y, sizes, grad=grad, bn_mode=mode) for mode in ("eval", "train")]
    assert dataclasses.replace(reused[0], bn_mode="train") == reused[1]
    assert reused[1].losses == pytest.approx(train.losses, rel=1e-12)  # g from the training pass: its last bits


def test_filter_direction():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double()
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    sizes = (0.05, 0.1, 0.5)
    r = probe_gradient(
        model,
        nn.functional.cross_entropy,
        x,
        y,
        sizes,
        direction="filter",
        generator=torch.Generator().manual_seed(9),
        curvature=False,
    )
    # Li et al.'s direction, built here independently from the same Gaussian draw: every
    # filter (slice along dim 0) of d has the norm of the matching filter of w; 1-D
    # parameters (biases, BN affine) are zero.
    draw = torch.Generator().manual_seed(9)
    d = []
    for p in model.parameters():
        z = torch.randn(p.shape, generator=draw, dtype=p.dtype)
        if p.dim() <= 1:
            d.append(torch.zeros_like(p))
            continue
        dims = tuple(range(1, p.dim()))
        d.append(
            z
            * torch.linalg.vector_norm(p.detach(), dim=dims, keepdim=True)
            / torch.linalg.vector_norm(z, dim=dims, keepdim=True)
        )
    for p, di in zip(model.parameters(), d):
        if p.dim() > 1:
            for w_filter, d_filter in zip(p.detach(), di):
                assert float(d_filter.norm()) == pytest.approx(float(w_filter.norm()), rel=1e-12)
    # The probe stepped along exactly this d: its losses and gradient changes are those at w - eta d.
    loss = nn.functional.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, list(model.parameters()))
    for eta, probe_loss, probe_diff in zip(sizes, r.losses, r.grad_diffs):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for p, di in zip(moved.parameters(), d):
                p.sub_(eta * di)
        point = nn.functional.cross_entropy(moved(x), y)
        grads = torch.autograd.grad(point, list(moved.parameters()))
        assert probe_loss == pytest.approx(float(point.detach()), rel=1e-12)
        diff = torch.cat([(a - b).flatten() for a, b in zip(grads, g)]).norm()
        assert probe_diff == pytest.approx(float(diff), rel=1e-10)
    assert r.direction_norm == pytest.approx(float(torch.cat([t.flatten() for t in d]).norm()), rel=1e-12)
    assert r.direction == "filter" and r.curvature is None


def test_random_direction_reproducible_and_rng_untouched():
    model = dropout_model()
    x, y = batch()
    rng = torch.get_rng_state()
    a = probe_gradient(model, nn.functional.cross_entropy, x, y, (0.1,), direction="random")
    b = probe_gradient(model, nn.functional.cross_entropy, x, y, (0.1,), direction="random")
    assert a == b  # drawn from the (forked) global RNG at the same state
    assert torch.equal(torch.get_rng_state(), rng)
    c = probe_gradient(
        model, nn.functional.cross_entropy, x, y, (0.1,), direction="random", generator=torch.Generator().manual_seed(1)
    )
    assert c.direction_norm == pytest.approx(c.grad_norm, rel=1e-5)
    assert c.losses != a.losses


def test_works_under_no_grad_and_metrics():
    model = deep_linear(3, 3, seed=2)
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        r = probe_gradient(model, nn.functional.mse_loss, x, y, (0.5, 1.0))
    m = r.metrics()
    assert set(m) == {
        "probe/base_loss",
        "probe/grad_norm",
        "probe/direction_norm",
        "probe/loss",
        "probe/grad_diff",
        "probe/grad_cosine",
        "probe/beta",
        "probe/curvature",
        "probe/loss_min",
        "probe/loss_max",
        "probe/grad_diff_min",
        "probe/grad_diff_max",
    }
    assert m["probe/loss"] == list(r.losses) and m["probe/loss_max"] == max(r.losses)
    assert (
        "probe/curvature" not in probe_gradient(model, nn.functional.mse_loss, x, y, (1.0,), curvature=False).metrics()
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"step_sizes": ()},
        {"step_sizes": (-0.1,)},
        {"step_sizes": (float("nan"),)},
        {"direction": "sideways"},
        {"bn_mode": "frozen"},
        {"method": "magic"},
        {"grad": [torch.zeros(1)]},
        {"grad": {"nope": torch.zeros(1)}},
    ],
)
def test_probe_rejects_bad_arguments(kwargs):
    model = deep_linear(2, 3, seed=0)
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    args = {"step_sizes": (1.0,), **kwargs}
    with pytest.raises(ValueError):
        probe_gradient(model, nn.functional.mse_loss, x, y, args.pop("step_sizes"), **args)


@pytest.mark.parametrize(
    ("text", "values", "relative"),
    [
        ("0.5,1,2,4", (0.5, 1.0, 2.0, 4.0), True),
        (" 0.5, 1e-1 ", (0.5, 0.1), True),
        ("abs:0.05,0.1", (0.05, 0.1), False),
        ("lin:0.5:4:8", tuple(0.5 + 3.5 * i / 7 for i in range(8)), True),
        ("log:0.01:30:6", tuple(0.01 * 3000 ** (i / 5) for i in range(6)), True),
        ("abs:lin:1:2:3", (1.0, 1.5, 2.0), False),
        ("abs:log:0.1:10:3", (0.1, 1.0, 10.0), False),
    ],
)
def test_parse_step_sizes(text, values, relative):
    parsed, rel = parse_step_sizes(text)
    assert parsed == pytest.approx(values, rel=1e-12)
    assert rel is relative
    assert parsed[-1] == values[-1]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abs:",
        "0",
        "-1,2",
        "1,,2",
        "1,a",
        "inf",
        "nan",
        "1e400",
        "lin:0.5:4",
        "lin:0:4:3",
        "log:1:10:1",
        "lin:a:b:3",
        "1,1",
        "abs:abs:1",
    ],
)
def test_parse_step_sizes_errors(text):
    with pytest.raises(ValueError) as info:
        parse_step_sizes(text)
    assert "\n" not in str(info.value)


def test_hook_on_fake_context():
    model = mlp(2, 6, bn=True, dropout=0.0, seed=10)
    del model[-2]
    x, y = batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    hook = every(2, ProbeHook((0.05, 0.1), curvature=False))
    assert hook.events == frozenset({Event.AFTER_BACKWARD})

    def ctx(step: int) -> Context:
        return Context(Event.AFTER_BACKWARD, step, model, nn.functional.cross_entropy, opt, 0.1, (x, y), loss.item())

    before = snapshot(model, opt)
    metrics = hook(ctx(4))
    assert differences(before, snapshot(model, opt)) == []
    assert hook(ctx(3)) is None
    expected = probe_gradient(
        model,
        nn.functional.cross_entropy,
        x,
        y,
        (0.05, 0.1),
        grad=training_grads(model),
        base_loss=loss.item(),
        curvature=False,
    ).metrics()
    assert metrics == expected
    random_hook = ProbeHook((0.1,), direction="random", seed=1)
    assert random_hook(ctx(4)) == random_hook(ctx(4))
    assert random_hook(ctx(4)) != random_hook(ctx(6))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_and_leaves_state_bit_identical():
    cpu_model = mlp(2, 6, bn=True, dropout=0.0, seed=11).double()
    del cpu_model[-2]
    x, y = batch()
    x = x.double()
    device = torch.device("cuda")
    model = copy.deepcopy(cpu_model).to(device)
    xd, yd = x.to(device), y.to(device)
    opt, loss = trained_state(model, xd, yd)
    before = snapshot(model, opt)
    results = {}
    for method in ("loop", "vmap"):
        results[method] = probe_gradient(model, nn.functional.cross_entropy, xd, yd, (0.1, 1.0), method=method)
        probe_gradient(
            model,
            nn.functional.cross_entropy,
            xd,
            yd,
            (0.1,),
            grad=training_grads(model),
            base_loss=loss,
            direction="random",
            generator=torch.Generator(device=device).manual_seed(0),
            method=method,
        )
    assert differences(before, snapshot(model, opt)) == []
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    reference = probe_gradient(cpu_model, nn.functional.cross_entropy, x, y, (0.1, 1.0))
    for result in results.values():
        assert result.losses == pytest.approx(reference.losses, rel=1e-9)
        assert result.grad_diffs == pytest.approx(reference.grad_diffs, rel=1e-9)
        assert result.curvature == pytest.approx(reference.curvature, rel=1e-9)


class LSTMHead(nn.Module):
    """An LSTM (it caches its weights and overrides ``__setattr__``) and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1])


def test_modules_that_cache_their_weights_see_the_probe_point():
    torch.manual_seed(0)
    model = LSTMHead().double()
    x, y = torch.randn(5, 6, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    before = snapshot(model)
    r = probe_gradient(model, nn.functional.mse_loss, x, y, (0.5,), curvature=False)
    assert differences(before, snapshot(model)) == []
    reference = copy.deepcopy(model)
    g = torch.autograd.grad(nn.functional.mse_loss(reference(x), y), list(reference.parameters()))
    with torch.no_grad():
        for p, gi in zip(reference.parameters(), g):
            p -= 0.5 * gi
    moved = torch.autograd.grad(nn.functional.mse_loss(reference(x), y), list(reference.parameters()))
    assert r.losses[0] == pytest.approx(nn.functional.mse_loss(reference(x), y).item(), rel=1e-12)
    diff = torch.cat([(a - b).reshape(-1) for a, b in zip(moved, g)]).norm().item()
    assert r.grad_diffs[0] == pytest.approx(diff, rel=1e-10)


def test_a_failing_loss_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = mlp(depth=2, width=4, bn=True, dropout=0.0, seed=0)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    calls = []

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return nn.functional.mse_loss(out, target)

    real = [id(p) for p in model.parameters()]
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        probe_gradient(model, loss_fn, x, y, (0.1, 0.2, 0.3))
    assert [id(p) for p in model.parameters()] == real  # the real tensors are back in place
    assert differences(before, snapshot(model)) == []
