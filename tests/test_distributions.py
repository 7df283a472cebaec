"""Layer-input distributions: sites, hook output against a manual forward, and
state preservation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape.config import NoiseConfig
from landscape.measure.distributions import activation_sites, layer_inputs
from landscape.models.noise import make_norm_layer
from landscape.runner.adapters import LayerInputDistributions
from landscape.state import differences, snapshot
from landscape.training.hooks import Context, Event

B, HW = 5, 6


def tiny_net(norm: str = "bn") -> nn.Sequential:
    """conv-norm-relu, conv-norm-relu, conv-relu (no norm), pool, head; an
    Identity stands in for the norm with ``norm="none"``."""
    torch.manual_seed(0)
    factory = make_norm_layer(norm, 2, NoiseConfig(seed=1)) or (lambda channels: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        factory(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        factory(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).train()


def test_activation_sites():
    assert activation_sites(tiny_net()) == ["1", "4", "6"]
    assert activation_sites(tiny_net("noisy_bn")) == ["1", "4", "6"]  # noisy BN is one site, not its child
    assert activation_sites(tiny_net("noise")) == ["1", "4", "6"]
    for norm in ("layer", "group", "rms"):  # the per-sample norms are sites as BN is
        assert activation_sites(tiny_net(norm)) == ["1", "4", "6"], norm
    plain = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    assert activation_sites(plain) == ["0", "2"]
    nested = nn.Sequential()
    nested.add_module("features", nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Tanh()))
    nested.add_module("classifier", nn.Linear(3, 2))
    assert activation_sites(nested) == ["features.1"]


@pytest.mark.parametrize(("name", "norms"), [("vgg16", ("layer", "group", "rms")), ("dln", ("layer", "rms"))])
def test_the_paper_layer_numbers_are_the_same_with_layer_group_and_rms_norms(name, norms):
    from landscape.models import build_model
    from landscape.models.noise import NORM_LAYER_TYPES

    bn = activation_sites(build_model(name, norm="bn"))
    assert len(bn) == (13 if name == "vgg16" else 24)  # the 13 convs; 24 of the 25 linears (not the last)
    for norm in norms:
        model = build_model(name, norm=norm)
        sites = activation_sites(model)
        assert sites == bn, norm  # #2, #9, #13 name the same modules as with BN, and they are norm layers
        modules = dict(model.named_modules())
        assert all(isinstance(modules[s], NORM_LAYER_TYPES) for s in sites), norm


@pytest.mark.parametrize("channels", [1, 3])
def test_measurement_matches_manual_forward(channels):
    model = tiny_net()
    x = torch.randn(B, 3, HW, HW)
    hook = LayerInputDistributions(layers=(1, "4", 3), channels=channels, bins=12, seed=2)
    metrics = hook.measure(model, x)
    manual = copy.deepcopy(model)
    # layers given by position are keyed "#k", by name keyed by the name
    for name, upto in (("#1", 2), ("4", 5), ("#3", 7)):
        out = manual[:upto](x).detach().double()  # train-mode BN: batch statistics, as in the hook
        chosen = [int(c) for c in metrics[f"dist/channels/{name}"]]
        assert len(chosen) == channels and chosen == sorted(set(chosen))
        values = out[:, chosen]
        np.testing.assert_allclose(
            metrics[f"dist/mean/{name}"], values.mean(dim=(0, 2, 3)).numpy(), rtol=1e-12, atol=1e-12
        )
        np.testing.assert_allclose(
            metrics[f"dist/var/{name}"], values.var(dim=(0, 2, 3), correction=0).numpy(), rtol=1e-12, atol=1e-12
        )
        hist, edges = metrics[f"dist/hist/{name}"], metrics[f"dist/edges/{name}"]
        assert len(hist) == 12 and len(edges) == 13
        # The first measurement fixes edges around its own range: nothing outside.
        assert sum(hist) == channels * B * HW * HW
        assert metrics[f"dist/under/{name}"] == 0 and metrics[f"dist/over/{name}"] == 0
        reference, _ = np.histogram(values.numpy().ravel(), bins=np.asarray(edges))
        np.testing.assert_array_equal(hist, reference)
        assert metrics[f"dist/mean_drift/{name}"] == [0.0] * channels
        assert f"dist/mean_change/{name}" not in metrics


def test_second_measurement_tracks_change_and_drift_on_fixed_edges():
    model = tiny_net()
    hook = LayerInputDistributions(layers=(2,), channels=2, bins=8)
    x0, x1 = torch.randn(B, 3, HW, HW), 3.0 * torch.randn(B, 3, HW, HW) + 1.0
    first = hook.measure(model, x0)
    with torch.no_grad():
        model[4].bias.add_(5.0)  # shift layer #2's output: some values leave the first range
    second = hook.measure(model, x1)
    assert second["dist/edges/#2"] == first["dist/edges/#2"]
    assert second["dist/channels/#2"] == first["dist/channels/#2"]
    total = sum(second["dist/hist/#2"]) + second["dist/under/#2"] + second["dist/over/#2"]
    assert total == 2 * B * HW * HW and second["dist/over/#2"] > 0
    change = np.abs(np.subtract(second["dist/mean/#2"], first["dist/mean/#2"]))
    np.testing.assert_allclose(second["dist/mean_change/#2"], change, rtol=1e-12)
    np.testing.assert_allclose(second["dist/mean_drift/#2"], np.subtract(second["dist/mean/#2"], first["dist/mean/#2"]))
    np.testing.assert_allclose(second["dist/mean_drift/#2"], [5.0, 5.0], atol=1e-6)  # BN output mean is beta
    var_change = np.abs(np.subtract(second["dist/var/#2"], first["dist/var/#2"]))
    np.testing.assert_allclose(second["dist/var_change/#2"], var_change, rtol=1e-12)


@pytest.mark.parametrize("norm", ["bn", "noisy_bn", "none"])
def test_hook_leaves_model_state_unchanged(norm):
    model = tiny_net(norm)
    x = torch.randn(B, 3, HW, HW)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    nn.functional.cross_entropy(model(x), torch.zeros(B, dtype=torch.long)).backward()
    before = snapshot(model, opt)
    ctx = Context(
        Event.AFTER_BACKWARD,
        step=0,
        model=model,
        loss_fn=nn.functional.cross_entropy,
        optimizer=opt,
        lr=0.1,
        batch=(x, None),
    )
    hook = LayerInputDistributions(layers=(1, 2), channels=2)
    metrics = hook(ctx)
    assert differences(before, snapshot(model, opt)) == []
    assert len(metrics["dist/mean/#1"]) == 2
    assert LayerInputDistributions.events == frozenset({Event.AFTER_BACKWARD})


def test_fixed_range_and_errors():
    model = tiny_net()
    x = torch.randn(B, 3, HW, HW)
    metrics = LayerInputDistributions(layers=(1,), channels=6, bins=4, value_range=(-0.5, 0.5)).measure(model, x)
    assert metrics["dist/edges/#1"] == [-0.5, -0.25, 0.0, 0.25, 0.5]
    inside = sum(metrics["dist/hist/#1"])
    assert inside + metrics["dist/under/#1"] + metrics["dist/over/#1"] == 6 * B * HW * HW
    assert metrics["dist/under/#1"] > 0 and metrics["dist/over/#1"] > 0
    with pytest.raises(ValueError, match="3 activation sites"):
        LayerInputDistributions(layers=(4,)).measure(model, x)
    with pytest.raises(ValueError, match="no module"):
        LayerInputDistributions(layers=("nope",)).measure(model, x)


def test_layer_inputs_of_linear_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).train()
    x = torch.randn(7, 3)
    out = layer_inputs(model, x, activation_sites(model))["1"]
    torch.testing.assert_close(out, copy.deepcopy(model)[:2](x).detach())
    assert model[1].num_batches_tracked.item() == 0


def test_layer_inputs_of_a_model_that_reuses_a_module_leave_it_intact():
    torch.manual_seed(0)
    layer = nn.Linear(3, 3)
    model = nn.Sequential(layer, nn.Tanh(), layer)
    x = torch.randn(4, 3)
    before = snapshot(model)
    outputs = layer_inputs(model, x, ["1"])
    assert differences(before, snapshot(model)) == []
    assert isinstance(layer.weight, nn.Parameter)
    assert torch.equal(outputs["1"], torch.tanh(layer(x)).detach())
