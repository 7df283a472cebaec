"""l_p normalization layers against a float64 numpy reference."""

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
