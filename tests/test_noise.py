"""Noisy BatchNorm (Algorithm 1) and the norm-layer factory."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

from landscape.config import NoiseConfig
from landscape.models.noise import Noise, NoisyBatchNorm, make_norm_layer
from landscape.models.norms import LpNorm
from landscape.state import module_generators

ZERO = NoiseConfig(mean_range=0.0, scale_low=1.0, scale_high=1.0, mean_jitter=0.0, scale_jitter_std=0.0)


def replayed_noise(noise: Noise, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, m) of ONE step, recovered through the forward: rewinding the generator
    replays the step, so forward(0) = m and forward(1) - forward(0) = s."""
    state = noise.generator.get_state()
    m = noise(torch.zeros(shape))
    noise.generator.set_state(state)
    s = noise(torch.ones(shape)) - m
    return s, m


def test_one_step_matches_algorithm_1_per_element():
    # 4 channels, 50k elements each: per-element draws around per-channel parameters.
    noise = Noise(4, NoiseConfig(seed=3)).train()
    s, m = replayed_noise(noise, (200, 4, 16, 16))
    m_c = m.transpose(0, 1).reshape(4, -1).double()
    s_c = s.transpose(0, 1).reshape(4, -1).double()
    mu = (m_c.amax(1) + m_c.amin(1)) / 2  # midpoint of U(mu - 0.1, mu + 0.1)
    assert torch.all(mu.abs() <= 0.5)
    # m is uniform on a width-0.2 interval: its range and variance say so.
    assert torch.allclose(m_c.amax(1) - m_c.amin(1), torch.full((4,), 0.2, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(m_c.var(1), torch.full((4,), 0.2**2 / 12, dtype=torch.float64), rtol=0.03)
    assert torch.allclose(m_c.mean(1), mu, atol=2e-3)
    # s is normal around sigma_j in [1, 1.25] with std 0.1.
    sigma = s_c.mean(1)
    assert torch.all((sigma > 1 - 2e-3) & (sigma < 1.25 + 2e-3))
    assert torch.allclose(s_c.std(1), torch.full((4,), 0.1, dtype=torch.float64), rtol=0.02)
    skew = ((s_c - sigma[:, None]) ** 3).mean(1) / 0.1**3
    assert torch.all(skew.abs() < 0.05)


def test_per_channel_parameters_over_many_steps_are_uniform():
    noise = Noise(16, NoiseConfig(seed=5)).train()
    mus, sigmas = [], []
    for _ in range(300):
        s, m = replayed_noise(noise, (400, 16))
        mus.append(m.double().mean(0))
        sigmas.append(s.double().mean(0))
    mu, sigma = torch.cat(mus), torch.cat(sigmas)  # 4800 per-channel draws each
    # U(-0.5, 0.5): mean 0, variance 1/12, support reached at both ends.
    assert abs(mu.mean().item()) < 0.015
    assert mu.var().item() == pytest.approx(1 / 12, rel=0.06)
    assert mu.min().item() == pytest.approx(-0.5, abs=0.02) and mu.max().item() == pytest.approx(0.5, abs=0.02)
    # U(1, 1.25): mean 1.125, variance 0.25^2 / 12.
    assert sigma.mean().item() == pytest.approx(1.125, abs=0.004)
    assert sigma.var().item() == pytest.approx(0.25**2 / 12, rel=0.08)
    assert sigma.min().item() == pytest.approx(1.0, abs=0.02) and sigma.max().item() == pytest.approx(1.25, abs=0.02)


def test_fresh_parameters_every_step():
    noise = Noise(8, NoiseConfig(seed=0)).train()
    first = noise(torch.zeros(500, 8)).mean(0)
    second = noise(torch.zeros(500, 8)).mean(0)
    assert (first - second).abs().max() > 0.1  # per-channel shifts were redrawn


def test_eval_mode_is_plain_and_draws_nothing():
    layer = NoisyBatchNorm(3, dims=2, cfg=NoiseConfig(seed=1))
    bn = nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5)
    layer.train()(x)
    bn.train()(x)  # same running statistics in both
    state = layer.noise.generator.get_state()
    layer.eval()
    bn.eval()
    assert torch.equal(layer(x), bn(x))
    assert torch.equal(layer.noise.generator.get_state(), state)
    assert torch.equal(Noise(3, NoiseConfig()).eval()(x), x)


@pytest.mark.parametrize("dims,shape", [(2, (6, 4, 3, 3)), (1, (6, 4))])
def test_zero_noise_equals_plain_bn(dims, shape):
    torch.manual_seed(0)
    noisy = make_norm_layer("noisy_bn", dims, ZERO)(4)
    bn = make_norm_layer("bn", dims)(4)
    with torch.no_grad():
        for layer in (noisy, bn):
            layer.weight.copy_(torch.linspace(0.5, 2.0, 4))
            layer.bias.copy_(torch.linspace(-1.0, 1.0, 4))
    for _ in range(2):
        x = torch.randn(shape)
        assert torch.equal(noisy.train()(x), bn.train()(x))
    assert torch.equal(noisy.running_mean, bn.running_mean) and torch.equal(noisy.running_var, bn.running_var)
    assert torch.equal(noisy.eval()(x), bn.eval()(x))
    assert set(noisy.state_dict()) == set(bn.state_dict())  # BatchNorm's keys: checkpoints interchange


def test_reproducible_from_seed():
    def outputs(seed: int) -> list[torch.Tensor]:
        factory = make_norm_layer("noisy_bn", 2, NoiseConfig(seed=seed))
        model = nn.Sequential(factory(3), nn.ReLU(), factory(3)).train()
        x = torch.ones(2, 3, 4, 4)
        return [model(x) for _ in range(3)]

    assert all(torch.equal(a, b) for a, b in zip(outputs(7), outputs(7)))
    assert not torch.equal(outputs(7)[0], outputs(8)[0])


def test_gradient_is_s_times_upstream():
    noise = Noise(3, NoiseConfig(seed=2)).train()
    a = torch.randn(5, 3, 2, 2, requires_grad=True)
    upstream = torch.randn(5, 3, 2, 2)
    state = noise.generator.get_state()
    noise(a).backward(upstream)
    noise.generator.set_state(state)
    s, _ = noise.draw(a.detach())  # the same step's draw
    assert torch.equal(a.grad, s * upstream)


def test_one_shared_generator_per_model_found_by_state():
    factory = make_norm_layer("noisy_bn", 2, NoiseConfig(seed=4))
    model = nn.Sequential(nn.Conv2d(3, 3, 1), factory(3), nn.Conv2d(3, 3, 1), factory(3))
    generators = module_generators(model)
    assert len(generators) == 1  # shared by both layers, listed once
    assert all(m.noise.generator is generators[0] for m in (model[1], model[3]))
    assert generators[0].device.type == "cpu"
    # Before any forward: the snapshot sees the seeded state.
    assert torch.equal(generators[0].get_state(), torch.Generator().manual_seed(4).get_state())
    clone = copy.deepcopy(model)
    cloned = module_generators(clone)
    assert len(cloned) == 1 and cloned[0] is not generators[0]
    assert clone[1].noise.generator is clone[3].noise.generator


def test_noise_alone_is_the_control():
    layer = make_norm_layer("noise", 1, NoiseConfig())(5)
    assert isinstance(layer, Noise) and not list(layer.parameters())


def test_works_under_torch_func_grad_with_cloned_buffers():
    # What probes and ICS do: functional_call inside grad, buffers passed in.
    model = nn.Sequential(nn.Linear(3, 4), make_norm_layer("noisy_bn", 1, NoiseConfig())(4)).train()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    def loss(p, b):
        return functional_call(model, (p, b), (torch.randn(6, 3),)).square().sum()

    grads = grad(loss)(params, buffers)
    assert grads["0.weight"].shape == (4, 3) and torch.isfinite(grads["0.weight"]).all()
    assert model[1].num_batches_tracked.item() == 0


def test_factory_choices():
    assert make_norm_layer("none", 2) is None
    assert make_norm_layer("bn", 2) is nn.BatchNorm2d and make_norm_layer("bn", 1) is nn.BatchNorm1d
    for name, p in (("l1", 1.0), ("l2", 2.0), ("linf", math.inf)):
        layer = make_norm_layer(name, 2)(3)
        assert isinstance(layer, LpNorm) and layer.p == p and layer.dims == 2
    with pytest.raises(ValueError):  # "group" was the unknown name here before it became a norm (#23)
        make_norm_layer("batch_renorm", 2)
    with pytest.raises(ValueError):  # group norm on fully connected activations
        make_norm_layer("group", 1)
    with pytest.raises(ValueError):
        make_norm_layer("bn", 3)
    with pytest.raises(ValueError):
        NoisyBatchNorm(3, dims=2, cfg=NoiseConfig())(torch.zeros(2, 3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_on_device_and_replays():
    factory = make_norm_layer("noisy_bn", 2, NoiseConfig(seed=0))
    layer = factory(8).cuda().train()
    assert layer.noise.generator.device.type == "cpu"
    x = torch.randn(16, 8, 8, 8, device="cuda")
    state = layer.noise.generator.get_state()
    first = layer(x)
    layer.noise.generator.set_state(state)
    assert first.device.type == "cuda" and torch.equal(layer(x), first)


def test_noisy_bn_adds_the_noise_after_the_affine():
    # Algorithm 1 perturbs the BN output after gamma and beta: out = s * (gamma x_hat + beta) + m.
    torch.manual_seed(0)
    layer = NoisyBatchNorm(3, dims=2, cfg=NoiseConfig(seed=11)).train()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([2.0, 0.5, -1.5]))
        layer.bias.copy_(torch.tensor([0.3, -0.7, 1.1]))
    plain = nn.BatchNorm2d(3).train()
    plain.load_state_dict({k: v for k, v in layer.state_dict().items()})
    x = torch.randn(4, 3, 5, 5)
    state = layer.noise.generator.get_state()
    out = layer(x)
    layer.noise.generator.set_state(state)
    s, m = layer.noise.draw(x)  # the same draw, replayed
    torch.testing.assert_close(out, s * plain(x) + m, rtol=1e-6, atol=1e-6)
    # Noise before the affine would give gamma * (s x_hat + m) + beta: a different function.
    x_hat = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
    before = layer.weight.view(1, 3, 1, 1) * (s * x_hat + m) + layer.bias.view(1, 3, 1, 1)
    assert (out - before).abs().max() > 0.1


def test_one_draw_per_noisy_layer_per_training_step(tmp_path):
    # Inside the loop, with probes and ICS measured on the way: the shared generator
    # advances by exactly one draw per noisy layer per training step (measurements rewind it).
    import dataclasses

    from conftest import replace_train, tiny_config

    from landscape.config import ICSConfig, ProbeConfig, ScheduleConfig
    from landscape.runner.train import train
    from landscape.training.hooks import Event, hook

    steps = 5
    config = replace_train(tiny_config(), steps=steps)
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, norm="noisy_bn"),
        noise=NoiseConfig(seed=21),
        probe=ProbeConfig(step_sizes=(0.5, 1.0), schedule=ScheduleConfig(every=1)),
        ics=ICSConfig(schedule=ScheduleConfig(every=2)),
    )
    seen = {}

    @hook(Event.TRAIN_END)
    def grab(ctx):
        layers = [m for m in ctx.model.modules() if isinstance(m, Noise)]
        seen["layers"] = len(layers)
        seen["state"] = layers[0].generator.get_state().clone()

    train(config, run_dir=tmp_path / "r", hooks=[grab])
    expected = torch.Generator().manual_seed(21)
    for _ in range(seen["layers"] * steps):
        torch.randint(0, 2**63 - 1, (1,), generator=expected)
    assert seen["layers"] >= 2 and torch.equal(seen["state"], expected.get_state())
