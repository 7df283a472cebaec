"""Normalization layers against float64 numpy references: the l_p norms, and the
per-sample layer, group and RMS norms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape.models.noise import make_norm_layer
from landscape.models.norms import LpNorm

SHAPES = {1: (7, 3), 2: (5, 3, 4, 2)}


def reference(y, p, center_first, gamma, beta, eps, mean=None, norm=None):
    """z = gamma (y - mu) / (N_p + eps) + beta per channel; batch statistics
    unless ``mean``/``norm`` (the running ones) are given."""
    axes = (0,) + tuple(range(2, y.ndim))
    shape = (1, -1) + (1,) * (y.ndim - 2)
    if mean is None:
        mean = y.mean(axis=axes)
        base = y - mean.reshape(shape) if center_first else y
        base = np.moveaxis(base, 1, 0).reshape(y.shape[1], -1)
        if p == math.inf:
            norm = np.abs(base).max(axis=1)
        else:
            norm = (np.abs(base) ** p).mean(axis=1) ** (1 / p)
    z = gamma.reshape(shape) * (y - mean.reshape(shape)) / (norm.reshape(shape) + eps) + beta.reshape(shape)
    return z, mean, norm


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("center_first", [False, True])
def test_train_and_eval_match_reference(p, dims, center_first):
    rng = np.random.default_rng(0)
    layer = LpNorm(3, p=p, dims=dims, center_first=center_first, eps=1e-3).double()
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    running_mean, running_norm = np.zeros(3), np.ones(3)
    layer.train()
    for _ in range(3):
        y = rng.normal(loc=0.7, scale=2.0, size=SHAPES[dims])  # off-center, so the centering flag matters
        z, mean, norm = reference(y, p, center_first, gamma, beta, 1e-3)
        np.testing.assert_allclose(layer(torch.from_numpy(y)).detach().numpy(), z, rtol=1e-12, atol=1e-12)
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_norm = 0.9 * running_norm + 0.1 * norm
    np.testing.assert_allclose(layer.running_mean.numpy(), running_mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_norm.numpy(), running_norm, rtol=1e-12)
    layer.eval()
    y = rng.normal(size=SHAPES[dims])
    z, _, _ = reference(y, p, center_first, gamma, beta, 1e-3, running_mean, running_norm)
    np.testing.assert_allclose(layer(torch.from_numpy(y)).detach().numpy(), z, rtol=1e-12, atol=1e-12)


def test_norm_is_taken_before_centering_by_default():
    # A constant shift: un-centered l2 norm of y = 3 + x grows with the shift.
    y = torch.tensor([[2.0], [4.0]], dtype=torch.float64)  # mean 3, |y| rms sqrt(10), centered rms 1
    plain = LpNorm(1, p=2, dims=1, eps=0.0).double()
    centered = LpNorm(1, p=2, dims=1, eps=0.0, center_first=True).double()
    assert plain(y)[:, 0].tolist() == pytest.approx([-1 / math.sqrt(10), 1 / math.sqrt(10)], rel=1e-12)
    assert centered(y)[:, 0].tolist() == pytest.approx([-1.0, 1.0], rel=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_gradient_matches_finite_differences(p):
    torch.manual_seed(0)
    layer = LpNorm(2, p=p, dims=2).double().train()
    y = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (y,))


def test_factory_and_validation():
    layer = make_norm_layer("linf", 1)(4)
    assert isinstance(layer, LpNorm) and layer.p == math.inf
    assert layer(torch.randn(3, 4)).shape == (3, 4)
    with pytest.raises(ValueError):
        layer(torch.randn(3, 4, 2, 2))
    with pytest.raises(ValueError):
        LpNorm(4, p=3, dims=1)


# The per-sample norms (layer, group, RMS) against float64 numpy formulas written out here.


def per_sample_reference(y, groups, gamma, beta, eps):
    """(y - mean) / sqrt(var + eps) per example over each group's (C/G, H, W), biased
    variance, then gamma_c z + beta_c; groups=1 is layer norm."""
    b, c = y.shape[:2]
    split = y.reshape(b, groups, -1)
    z = (split - split.mean(axis=2, keepdims=True)) / np.sqrt(split.var(axis=2, keepdims=True) + eps)
    shape = (1, c) + (1,) * (y.ndim - 2)
    return z.reshape(y.shape) * gamma.reshape(shape) + beta.reshape(shape)


def rms_reference(y, gamma, eps):
    """y / sqrt(mean(y^2) + eps) per example over (C, H, W), times gamma_c."""
    mean_square = (y.reshape(y.shape[0], -1) ** 2).mean(axis=1).reshape((-1,) + (1,) * (y.ndim - 1))
    return y / np.sqrt(mean_square + eps) * gamma.reshape((1, -1) + (1,) * (y.ndim - 2))


def _with_affine(layer, rng, shift=True):
    """The layer in float64 with a random per-channel scale (and shift), returned as numpy."""
    layer = layer.double()
    gamma = rng.normal(size=layer.weight.shape)
    beta = rng.normal(size=layer.weight.shape)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        if shift:
            layer.bias.copy_(torch.from_numpy(beta))
    return layer, gamma, beta


@pytest.mark.parametrize(
    ("channels", "groups"), [(48, 24), (64, 32), (8, 8), (6, 6), (100, 25), (1, 1), (37, 1), (33, 11), (512, 32)]
)
def test_group_count_is_the_largest_divisor_up_to_32(channels, groups):
    from landscape.models.norms import group_count

    assert group_count(channels) == groups
    assert make_norm_layer("group", 2)(channels).num_groups == groups


@pytest.mark.parametrize("hw", [(4, 5), (1, 1), (7, 3)])
def test_layer_norm_normalizes_each_example_over_c_h_w(hw):
    rng = np.random.default_rng(1)
    layer, gamma, beta = _with_affine(make_norm_layer("layer", 2)(6), rng)
    assert isinstance(layer, torch.nn.GroupNorm) and layer.num_groups == 1 and layer.weight.shape == (6,)
    y = rng.normal(loc=1.5, scale=3.0, size=(3, 6, *hw))
    expected = per_sample_reference(y, 1, gamma, beta, 1e-5)
    np.testing.assert_allclose(layer(torch.from_numpy(y)).detach().numpy(), expected, rtol=1e-10, atol=1e-10)


def test_group_norm_normalizes_each_group_of_channels():
    rng = np.random.default_rng(2)
    layer, gamma, beta = _with_affine(make_norm_layer("group", 2)(48), rng)
    y = rng.normal(loc=-0.5, scale=2.0, size=(2, 48, 3, 3)) + np.arange(48).reshape(1, 48, 1, 1)  # groups differ
    expected = per_sample_reference(y, 24, gamma, beta, 1e-5)
    np.testing.assert_allclose(layer(torch.from_numpy(y)).detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    # Not layer norm: one group over all 48 channels gives another output.
    assert not np.allclose(per_sample_reference(y, 1, gamma, beta, 1e-5), expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rms_norm_divides_by_the_root_mean_square_over_c_h_w(dtype):
    from landscape.models.norms import ChannelRMSNorm

    rng = np.random.default_rng(3)
    layer, gamma, _ = _with_affine(make_norm_layer("rms", 2)(5), rng, shift=False)
    assert isinstance(layer, ChannelRMSNorm) and layer.weight.shape == (5,) and layer.bias is None
    y = rng.normal(loc=2.0, scale=1.5, size=(4, 5, 3, 2))  # off-centre: RMS is not the standard deviation
    out = layer.to(dtype)(torch.from_numpy(y).to(dtype)).detach().double().numpy()
    # eps: the dtype's machine epsilon, as nn.RMSNorm's default
    expected = rms_reference(y, gamma, torch.finfo(dtype).eps)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    assert not np.allclose(out, per_sample_reference(y, 1, gamma, np.zeros(5), 1e-5), atol=1e-3)
    # A given eps is used as given (visible on a tiny input).
    small = np.full((1, 5, 1, 1), 1e-3)
    explicit = ChannelRMSNorm(5, eps=1e-6).double()
    np.testing.assert_allclose(
        explicit(torch.from_numpy(small)).detach().numpy(), rms_reference(small, np.ones(5), 1e-6), rtol=1e-12
    )


def test_the_dln_layer_and_rms_norms_normalize_the_features_and_group_is_refused():
    rng = np.random.default_rng(4)
    y = rng.normal(loc=1.0, scale=2.0, size=(7, 10))
    layer = make_norm_layer("layer", 1)(10).double()
    assert isinstance(layer, torch.nn.LayerNorm) and layer.normalized_shape == (10,)
    expected = (y - y.mean(axis=1, keepdims=True)) / np.sqrt(y.var(axis=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(layer(torch.from_numpy(y)).detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    rms = make_norm_layer("rms", 1)(10).double()
    assert isinstance(rms, torch.nn.RMSNorm) and rms.normalized_shape == (10,)
    expected = y / np.sqrt((y**2).mean(axis=1, keepdims=True) + torch.finfo(torch.float64).eps)
    np.testing.assert_allclose(rms(torch.from_numpy(y)).detach().numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="conv feature maps"):
        make_norm_layer("group", 1)


@pytest.mark.parametrize(("norm", "dims"), [("layer", 2), ("group", 2), ("rms", 2), ("layer", 1), ("rms", 1)])
def test_per_sample_norms_keep_no_statistics_and_ignore_the_mode(norm, dims):
    from landscape.models.noise import NORM_LAYER_TYPES, switches_with_mode

    layer = make_norm_layer(norm, dims)(8).double()
    assert list(layer.buffers()) == []
    assert isinstance(layer, NORM_LAYER_TYPES) and not switches_with_mode(layer)
    assert switches_with_mode(make_norm_layer("bn", dims)(8)) and switches_with_mode(make_norm_layer("l2", dims)(8))
    y = torch.randn((6, 8, 3, 3) if dims == 2 else (6, 8), dtype=torch.float64)
    train = layer.train()(y)
    assert torch.equal(layer.eval()(y), train)
    # Each example alone: its output does not depend on the rest of the batch.
    assert torch.equal(layer(y[:2]), train[:2])


def test_rms_gradient_matches_finite_differences():
    torch.manual_seed(0)
    layer = make_norm_layer("rms", 2)(3).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
    y = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (y,))
    assert torch.autograd.gradgradcheck(layer, (y,))  # the probe's curvature takes a double backward
