"""Internal covariate shift (Definition 2.1) against a hand-derived closed form,
and the guarantee that measuring it changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from landscape.config import NoiseConfig
from landscape.measure.ics import measure_ics, optimizer_update
from landscape.models.noise import make_norm_layer
from landscape.runner.adapters import ICSHook
from landscape.state import differences, snapshot
from landscape.training.hooks import Context, Event

N, DIMS = 6, (4, 3, 3, 2)  # batch and widths d0 -> d1 -> d2 -> d3


def half_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - target).square().sum() / out.shape[0]


def linear_problem(seed: int = 0):
    """A 3-layer linear network (no biases, float64) and one batch."""
    torch.manual_seed(seed)
    model = nn.Sequential(*(nn.Linear(DIMS[i], DIMS[i + 1], bias=False) for i in range(3))).double()
    x = torch.randn(N, DIMS[0], dtype=torch.float64)
    y = torch.randn(N, DIMS[3], dtype=torch.float64)
    return model, x, y


def closed_form(ws, x, y, update):
    """G_i and G'_i of L = 1/(2n) ||W3 W2 W1 X - Y||_F^2 (X: d0 x n, columns = samples).

    With R = (W3 W2 W1 X - Y) / n:
        G1 = (W3 W2)^T R X^T,   G2 = W3^T R (W1 X)^T,   G3 = R (W2 W1 X)^T.
    G'_2 is G2 with W1 -> W1', G'_3 is G3 with W1 -> W1', W2 -> W2'
    (W' = update(i, W_i, G_i)); G'_1 = G1.
    """
    w1, w2, w3 = ws
    X, Y = x.T, y.T

    def residual(a, b, c):
        return (c @ b @ a @ X - Y) / N

    r = residual(w1, w2, w3)
    g = [(w3 @ w2).T @ r @ X.T, w3.T @ r @ (w1 @ X).T, r @ (w2 @ w1 @ X).T]
    w1n, w2n = update(0, w1, g[0]), update(1, w2, g[1])
    g2s = w3.T @ residual(w1n, w2, w3) @ (w1n @ X).T
    g3s = residual(w1n, w2n, w3) @ (w2n @ w1n @ X).T
    return g, [g[0], g2s, g3s]


def expected_ics(g, gs):
    out = {}
    for i, (a, b) in enumerate(zip(g, gs)):
        a, b = a.ravel(), b.ravel()
        l2 = np.linalg.norm(a - b)
        out[str(i)] = {
            "l2": l2,
            "rel_l2": l2 / np.linalg.norm(a),
            "cosine": a @ b / (np.linalg.norm(a) * np.linalg.norm(b)),
            "grad_norm": np.linalg.norm(a),
        }
    return out


def assert_matches(result, expected, tol=1e-10):
    assert list(result) == list(expected)
    for layer, values in expected.items():
        for key, value in values.items():
            assert result[layer][key] == pytest.approx(value, abs=tol), (layer, key)


def weights(model):
    return [m.weight.detach().numpy().copy() for m in model]


def test_plain_sgd_matches_closed_form():
    model, x, y = linear_problem()
    lr = 0.3
    g, gs = closed_form(weights(model), x.numpy(), y.numpy(), lambda i, w, gi: w - lr * gi)
    result = measure_ics(model, half_mse, x, y, lr=lr)
    assert_matches(result, expected_ics(g, gs))
    assert result["1"]["l2"] > 1e-3 and result["2"]["l2"] > 1e-3  # the check is not vacuous


def test_first_layer_is_exactly_zero_and_lr_zero_gives_zero():
    model, x, y = linear_problem(1)
    assert measure_ics(model, half_mse, x, y, lr=0.5)["0"]["l2"] == 0.0
    for values in measure_ics(model, half_mse, x, y, lr=0.0).values():
        assert values["l2"] == 0.0 and values["rel_l2"] == 0.0
        assert values["cosine"] == pytest.approx(1.0, abs=1e-15)  # <G, G> / ||G||^2 rounds


def momentum_optimizer(model, x, y, lr=0.2, momentum=0.9, weight_decay=0.01):
    """SGD with momentum that already holds a momentum buffer (one real step taken
    on a different batch), with ``.grad`` left from a fresh backward on (x, y)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    half_mse(model(x + 1.0), y).backward()
    opt.step()
    opt.zero_grad()
    half_mse(model(x), y).backward()
    return opt


def test_momentum_optimizer_dry_run_matches_closed_form():
    model, x, y = linear_problem(2)
    opt = momentum_optimizer(model, x, y)
    buffers = [opt.state[m.weight]["momentum_buffer"].numpy().copy() for m in model]

    def update(i, w, gi):  # torch's SGD: d = g + wd w; b = mu b + d; w -= lr b
        return w - 0.2 * (0.9 * buffers[i] + gi + 0.01 * w)

    g, gs = closed_form(weights(model), x.numpy(), y.numpy(), update)
    assert_matches(measure_ics(model, half_mse, x, y, optimizer=opt), expected_ics(g, gs))


def test_optimizer_update_matches_manual_sgd_momentum():
    model, x, y = linear_problem(3)
    opt = momentum_optimizer(model, x, y)
    grads = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    stepped = optimizer_update(model, opt, grads)
    for name, p in model.named_parameters():
        buffer = opt.state[p]["momentum_buffer"]
        manual = p.detach() - 0.2 * (0.9 * buffer + grads[name] + 0.01 * p.detach())
        torch.testing.assert_close(stepped[name], manual, rtol=0, atol=1e-14)


def test_plain_sgd_optimizer_equals_lr():
    model, x, y = linear_problem(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.25)
    assert_matches(
        measure_ics(model, half_mse, x, y, optimizer=opt), measure_ics(model, half_mse, x, y, lr=0.25), 1e-13
    )


class Reversed(nn.Module):
    """Registers its layers in the opposite order to the one it calls them in."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(5, 2)
        self.early = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(torch.tanh(self.early(x)))


def test_forward_order_decides_which_layers_come_earlier():
    torch.manual_seed(0)
    model = Reversed().double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    result = measure_ics(model, half_mse, x, y, lr=0.5)
    assert list(result) == ["early", "late"]
    assert result["early"]["l2"] == 0.0 and result["late"]["l2"] > 1e-4


def test_earlier_bn_parameters_and_biases_count():
    # Layer 2's only earlier parameters are BN's gamma and beta: moving them alone
    # must shift layer 2's gradient.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double().train()
    model[0].weight.requires_grad_(False)
    model[0].bias.requires_grad_(False)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    result = measure_ics(model, half_mse, x, y, lr=0.5)
    assert list(result) == ["3"]  # the frozen first layer has no gradient to compare
    # Against Definition 2.1 done by hand: a real SGD step on BN's gamma and beta alone.
    expected = brute_force_ics(model, half_mse, x, y, 0.5, lambda layer: ["1.weight", "1.bias"])
    assert result["3"]["l2"] == pytest.approx(expected["3"]["l2"], rel=1e-9)
    assert result["3"]["cosine"] == pytest.approx(expected["3"]["cosine"], rel=1e-12)
    assert result["3"]["l2"] > 1e-4  # and the shift is real


def build_net(kind: str, norm: str, depth: int, width: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    factory = make_norm_layer(norm, 2 if kind == "conv" else 1, NoiseConfig(seed=seed))
    layers: list[nn.Module] = []
    channels = 2
    for _ in range(depth):
        layers.append(nn.Conv2d(channels, width, 3, padding=1) if kind == "conv" else nn.Linear(channels, width))
        if factory is not None:
            layers.append(factory(width))
        layers.append(nn.ReLU())
        channels = width
    if kind == "conv":
        layers.append(nn.Flatten())
        channels = width * 3 * 3
    layers.append(nn.Linear(channels, 3))
    return nn.Sequential(*layers)


@settings(max_examples=10, deadline=None)
@given(
    kind=st.sampled_from(["conv", "linear"]),
    norm=st.sampled_from(["bn", "noisy_bn", "l2", "none"]),
    depth=st.integers(1, 2),
    width=st.integers(2, 4),
    momentum=st.sampled_from([0.0, 0.9]),
    training=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_measurement_leaves_everything_unchanged(kind, norm, depth, width, momentum, training, seed):
    model = build_net(kind, norm, depth, width, seed)
    x = torch.randn(4, 2, 3, 3) if kind == "conv" else torch.randn(4, 2)
    y = torch.randint(0, 3, (4,))
    loss_fn = nn.functional.cross_entropy
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    loss_fn(model(x), y).backward()
    opt.step()  # momentum buffers and moved BN statistics exist
    opt.zero_grad()
    loss_fn(model(x), y).backward()  # .grad as at AFTER_BACKWARD
    model.train(training)
    before = snapshot(model, opt)
    by_optimizer = measure_ics(model, loss_fn, x, y, optimizer=opt)
    by_lr = measure_ics(model, loss_fn, x, y, lr=0.1)
    assert differences(before, snapshot(model, opt)) == []
    assert set(by_optimizer) == set(by_lr) and len(by_lr) == depth + 1
    assert all(math.isfinite(v["l2"]) for v in by_lr.values())


def test_noisy_bn_evaluations_see_one_draw():
    # A tiny step barely moves G'; a redrawn noise per evaluation would move it
    # by O(||G||).
    model = build_net("conv", "noisy_bn", 2, 3, 0).double().train()
    x, y = torch.randn(4, 2, 3, 3, dtype=torch.float64), torch.randint(0, 3, (4,))
    tiny = measure_ics(model, nn.functional.cross_entropy, x, y, lr=1e-7)
    assert all(v["rel_l2"] < 1e-4 for v in tiny.values())
    assert any(v["rel_l2"] > 0 for v in tiny.values())
    shifted = measure_ics(model, nn.functional.cross_entropy, x, y, lr=1.0)
    assert all(shifted[k]["rel_l2"] > tiny[k]["rel_l2"] for k in list(shifted)[1:])


def test_hook_reports_metrics():
    model, x, y = linear_problem(5)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    ctx = Context(Event.AFTER_BACKWARD, step=0, model=model, loss_fn=half_mse, optimizer=opt, lr=0.3, batch=(x, y))
    metrics = ICSHook()(ctx)
    expected = measure_ics(model, half_mse, x, y, lr=0.3)
    # keyed by forward position: module "2" of the Sequential is the third layer
    assert list(expected) == ["0", "1", "2"]
    assert metrics["ics/l2/#3"] == pytest.approx(expected["2"]["l2"], rel=1e-12)
    assert {k.rsplit("/", 1)[0] for k in metrics} == {"ics/l2", "ics/rel_l2", "ics/cosine", "ics/grad_norm"}
    assert ICSHook.events == frozenset({Event.AFTER_BACKWARD})
    assert ICSHook(lr=0.3)(ctx)["ics/cosine/#2"] == pytest.approx(expected["1"]["cosine"], rel=1e-12)
    with pytest.raises(ValueError):
        measure_ics(model, half_mse, x, y)


@pytest.mark.parametrize("sharing", ["module", "weight"])
def test_shared_weights_leave_the_model_intact(sharing):
    # torch.func.functional_call's default weight tying turns the Parameters of a module
    # used twice into plain tensors; the measurement must not.
    torch.manual_seed(0)
    first = nn.Linear(3, 3).double()
    second = first if sharing == "module" else nn.Linear(3, 3).double()
    if sharing == "weight":
        second.weight = first.weight
    model = nn.Sequential(first, nn.Tanh(), second)
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    before = snapshot(model)
    result = measure_ics(model, nn.functional.mse_loss, x, y, lr=0.1)
    assert differences(before, snapshot(model)) == []
    assert all(isinstance(m.weight, nn.Parameter) for m in (first, second))
    assert result and all(math.isfinite(v["l2"]) for v in result.values())


def brute_force_ics(model, loss_fn, x, y, lr, earlier_of):
    """Definition 2.1 the long way, per layer: a deep copy of the model, a real backward
    for G, a real ``optimizer.step()`` on the earlier layers' parameters only, then a
    second backward for G'. ``earlier_of(layer name) -> parameter names``."""
    import copy

    result = {}
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        twin = copy.deepcopy(model)
        params = dict(twin.named_parameters())
        loss_fn(twin(x), y).backward()
        own = [n for n in params if n.rpartition(".")[0] == layer and params[n].requires_grad]
        if not own:
            continue  # a frozen layer
        g = torch.cat([params[n].grad.flatten() for n in own]).clone()
        earlier = [params[n] for n in earlier_of(layer)]
        if earlier:
            torch.optim.SGD(earlier, lr=lr).step()
        twin.zero_grad()
        loss_fn(twin(x), y).backward()
        g2 = torch.cat([params[n].grad.flatten() for n in own])
        result[layer] = {"l2": float((g - g2).norm()), "cosine": float(g @ g2 / (g.norm() * g2.norm()))}
    return result


def test_definition_2_1_on_a_conv_network_with_bn_matches_brute_force():
    model = build_net("conv", "bn", 3, 4, 0).double().train()
    x, y = torch.randn(6, 2, 3, 3, dtype=torch.float64), torch.randint(0, 3, (6,))
    loss_fn = nn.functional.cross_entropy
    names = [n for n, _ in model.named_parameters()]

    def earlier_of(layer):  # a chain: every parameter of a module before the layer
        return [n for n in names if int(n.split(".")[0]) < int(layer)]

    expected = brute_force_ics(model, loss_fn, x, y, 0.5, earlier_of)
    result = measure_ics(model, loss_fn, x, y, lr=0.5)
    assert list(result) == list(expected)
    for layer, values in expected.items():
        for key, value in values.items():
            assert result[layer][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (layer, key)
    assert all(result[n]["l2"] > 1e-4 for n in list(result)[1:])  # not vacuous


class ResidualNet(nn.Module):
    """A stem, then one torchvision BasicBlock whose shortcut is a strided conv + BN:
    the block calls conv1, bn1, conv2, bn2 and only then ``downsample``, whose input is
    the stem's output."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.stem = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU())
        shortcut = nn.Sequential(nn.Conv2d(3, 4, 1, stride=2, bias=False), nn.BatchNorm2d(4))
        self.block = BasicBlock(3, 4, stride=2, downsample=shortcut)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)).mean((2, 3)))


def test_earlier_layers_are_the_graph_ancestors_in_a_residual_block():
    torch.manual_seed(0)
    model = ResidualNet().double().train()
    x, y = torch.randn(6, 2, 4, 4, dtype=torch.float64), torch.randint(0, 3, (6,))
    loss_fn = nn.functional.cross_entropy
    names = [n for n, _ in model.named_parameters()]
    stem = [n for n in names if n.startswith("stem.")]
    block = [n for n in names if n.startswith("block.") and not n.startswith("block.downsample.")]
    shortcut = [n for n in names if n.startswith("block.downsample.")]
    earlier = {
        "stem.0": [],
        "block.conv1": stem,
        "block.conv2": stem + [n for n in block if n.startswith("block.conv1") or n.startswith("block.bn1")],
        "block.downsample.0": stem,  # not conv1/conv2: they run first but do not feed it
        "head": stem + block + shortcut,
    }
    expected = brute_force_ics(model, loss_fn, x, y, 0.5, lambda layer: earlier[layer])
    result = measure_ics(model, loss_fn, x, y, lr=0.5)
    assert list(result) == ["stem.0", "block.conv1", "block.conv2", "block.downsample.0", "head"]  # call order
    for layer, values in expected.items():
        for key, value in values.items():
            assert result[layer][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (layer, key)
    # Counting the block's own convs as earlier (forward order) would give another G'.
    forward_order = brute_force_ics(
        model, loss_fn, x, y, 0.5, lambda layer: stem + block if layer == "block.downsample.0" else earlier[layer]
    )
    assert abs(forward_order["block.downsample.0"]["l2"] - result["block.downsample.0"]["l2"]) > 1e-6
