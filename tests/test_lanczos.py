"""Lanczos (landscape.curvature.lanczos) and the estimators built on it, against independent
calculations: closed-form Hessians of quadratic models (H = A), float64 products
of the same operator, and the exact spectral measure of a known matrix. Each test
names the break it catches (issue 21)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import Quadratic
from torch import nn

import landscape.curvature.hessian
import landscape.curvature.lanczos
from landscape.curvature.hessian import check_lanczos_memory, hessian_density, hessian_eigs
from landscape.curvature.lanczos import (
    BLOCK,
    KW_CONSTANT,
    MIN_PRODUCTS,
    basis_bytes,
    lanczos,
    random_start_epsilon,
)
from landscape.runner.adapters import HessianHook
from landscape.training.hooks import Context, Event

ce = nn.functional.cross_entropy
NOTHING = torch.zeros(1)  # the quadratic models ignore their input


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def value(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return out


def rotated(spectrum: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A = U diag(spectrum) U^T for a fixed random orthogonal U, and U (float64)."""
    n = len(spectrum)
    u = torch.linalg.qr(torch.randn(n, n, generator=gen(seed), dtype=torch.float64)).Q
    return u @ torch.diag(spectrum.double()) @ u.T, u


def swapped_pair(n: int = 50) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two Hessians with the same eigenvectors: before, 10 along e2 and 9 along e1;
    after, 10 along e1 and 9 along e2; the rest U(-1, 1) in both (indefinite)."""
    bulk = 2 * torch.rand(n - 2, generator=gen(1), dtype=torch.float64) - 1
    before, u = rotated(torch.cat([torch.tensor([9.0, 10.0], dtype=torch.float64), bulk]))
    after, _ = rotated(torch.cat([torch.tensor([10.0, 9.0], dtype=torch.float64), bulk]))
    return before, after, u[:, 0], u[:, 1]


SEEDS = range(200)


@pytest.mark.parametrize("tol", [1e-2, 1e-3])
def test_a_start_at_the_second_eigenvector_never_certifies_it_as_lambda_max(tol):
    # The old start (the vector plus a 1e-3 Gaussian) claimed 9, converged, after 1-2
    # products on every seed; lambda_max is 10 (the closed form: H = A).
    _, after, _, e2 = swapped_pair()
    model = Quadratic(after)
    for seed in SEEDS:
        r = hessian_eigs(model, value, NOTHING, NOTHING, start=e2, tol=tol, generator=gen(seed))
        assert r.converged and r.hvps >= MIN_PRODUCTS, seed
        assert abs(float(r.eigenvalues[0]) - 10.0) <= tol * 10.0, (seed, r)


@pytest.mark.parametrize("tol", [1e-2, 1e-3])
def test_a_warm_start_after_the_top_eigenvalues_swap_finds_lambda_max(tol):
    before, after, _, _ = swapped_pair()
    for seed in SEEDS:
        model = Quadratic(before)
        ctx = Context(Event.AFTER_BACKWARD, 0, model, value, None, 0.1, batch=(NOTHING, NOTHING))
        hook = HessianHook(start="warm", tol=tol, max_hvps=100, seed=seed)
        first = hook(ctx)  # lambda_max 10 along e2: the hook keeps e2 for its next start
        assert first["hessian/lambda_max"] == pytest.approx(10.0, rel=tol)
        with torch.no_grad():
            model.a.copy_(after)
        second = hook(ctx)
        assert second["hessian/converged"] == 1.0, seed
        assert second["hessian/lambda_max"] == pytest.approx(10.0, rel=tol), (seed, second)


def rayleigh(a: torch.Tensor, q: torch.Tensor) -> float:
    return float(q @ a @ q / (q @ q))


def mixed(v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return (v / v.norm() + z / z.norm()) / math.sqrt(2)


def test_every_vector_start_is_mixed_half_and_half_with_a_gaussian():
    # After one product the Ritz value is the start's Rayleigh quotient, recomputed
    # here from the generator's first Gaussian z: (v/||v|| + z/||z||)/sqrt(2) for a
    # given vector, the gradient and a warm start (the old given/warm start was
    # v + 1e-3 z/||z||).
    before, _, _, e2 = swapped_pair()
    n = len(e2)
    z = [torch.randn(n, generator=gen(seed), dtype=torch.float64) for seed in range(3)]
    given = hessian_eigs(Quadratic(before), value, NOTHING, NOTHING, start=e2, max_hvps=1, generator=gen(0))
    assert float(given.eigenvalues[0]) == pytest.approx(rayleigh(before, mixed(e2, z[0])), rel=1e-12)
    model = Quadratic(before)
    with torch.no_grad():
        model.w.copy_(torch.linspace(-1, 1, n))
    gradient = hessian_eigs(model, value, NOTHING, NOTHING, max_hvps=1, generator=gen(1))
    expected = rayleigh(before, mixed(before @ model.w.detach(), z[1]))
    assert float(gradient.eigenvalues[0]) == pytest.approx(expected, rel=1e-12)
    # Warm: the first measurement (w = 0: no gradient, z alone) keeps its Ritz vector,
    # which after one product is the start z_1 / ||z_1|| itself; the second mixes it.
    hook = HessianHook(start="warm", max_hvps=1, seed=1)
    steps = [
        Context(Event.AFTER_BACKWARD, step, Quadratic(before), value, None, 0.1, batch=(NOTHING, NOTHING))
        for step in (0, 1)
    ]
    assert hook(steps[0])["hessian/lambda_max"] == pytest.approx(rayleigh(before, z[1]), rel=1e-12)
    expected = rayleigh(before, mixed(z[1], z[2]))
    assert hook(steps[1])["hessian/lambda_max"] == pytest.approx(expected, rel=1e-12)


def test_convergence_is_claimed_only_after_the_minimum_of_products():
    # lambda_max 2 well apart from a bulk in [0, 1], started from its eigenvector: the
    # residual meets tol within a few products, the claim waits for MIN_PRODUCTS.
    a, u = rotated(torch.cat([torch.tensor([2.0], dtype=torch.float64), torch.linspace(0, 1, 39)]))
    model = Quadratic(a)
    r = hessian_eigs(model, value, NOTHING, NOTHING, start=u[:, 0], generator=gen())
    assert r.converged and r.hvps == MIN_PRODUCTS
    assert float(r.eigenvalues[0]) == pytest.approx(2.0, rel=1e-12)
    short = hessian_eigs(model, value, NOTHING, NOTHING, start=u[:, 0], max_hvps=MIN_PRODUCTS - 1, generator=gen())
    assert short.error_bound <= 1e-3 * 2.0 and float(short.eigenvalues[0]) == pytest.approx(2.0, rel=1e-6)
    assert not short.converged and short.hvps == MIN_PRODUCTS - 1


def test_the_documented_epsilons_solve_the_bound():
    # Kuczynski-Wozniakowski: P[fail] <= C sqrt(n) exp(-sqrt(eps) (2m - 1)); the module
    # docstring's table quotes eps at P = 1 %.
    for n, m in [(63, 10), (579_098, 30), (15_000_000, 100)]:
        eps = random_start_epsilon(n, m)
        assert KW_CONSTANT * math.sqrt(n) * math.exp(-math.sqrt(eps) * (2 * m - 1)) == pytest.approx(0.01)
    table = {(579_098, 10): "0.43", (579_098, 30): "0.044", (579_098, 100): "0.0039"}
    for (n, m), quoted in table.items():
        assert f"{random_start_epsilon(n, m):.2g}" == quoted
        assert quoted in landscape.curvature.lanczos.__doc__ and quoted in hessian_eigs.__doc__


def test_the_second_dgks_pass_keeps_a_float32_basis_orthogonal():
    # diag over 1e-8..1 in float32: breakdowns after ~60 steps, then restarts whose
    # random vectors lie mostly in the basis; one Gram-Schmidt pass leaves them
    # 2e-5..1e-4 off orthogonal, the second pass 2e-7.
    d = torch.logspace(-8, 0, 100)
    for seed in range(2):
        g = gen(seed)
        krylov = lanczos(
            lambda v: d * v, torch.randn(100, generator=g), 100, restart=lambda g=g: torch.randn(100, generator=g)
        )
        assert len(krylov.alphas) == 100 and krylov.betas.count(0.0) > 20  # restarted
        q = torch.cat(krylov.basis.filled()).double()
        assert float((q @ q.T - torch.eye(100, dtype=torch.float64)).abs().max()) < 1e-6


def test_the_basis_grows_by_blocks_and_is_never_reallocated():
    n = 1000
    d = torch.linspace(0, 1, n, dtype=torch.float64)
    for m in (1, BLOCK, BLOCK + 1, 3 * BLOCK + 5):
        seen: list[int] = []

        def stop(krylov, seen=seen, m=m):
            seen.append(krylov.basis.blocks[0].data_ptr())
            return len(krylov.alphas) == m

        krylov = lanczos(lambda v: d * v, torch.randn(n, generator=gen(), dtype=torch.float64), 400, stop)
        assert len(krylov.alphas) == m
        assert len(krylov.basis.blocks) == math.ceil(m / BLOCK)
        assert all(block.shape == (BLOCK, n) for block in krylov.basis.blocks)
        assert len(set(seen)) == 1  # the first block stays where it was
    assert basis_bytes(500_000, 400, torch.float32) == 400 * 500_000 * 4  # 25 whole blocks
    assert basis_bytes(500_000, 30, torch.float32) == 32 * 500_000 * 4
    assert basis_bytes(10, 400, torch.float64) == 16 * 10 * 8  # never more than n steps


def test_hessian_eigs_allocates_blocks_for_the_products_it_takes(monkeypatch):
    kept = []

    def spy(*args, **kwargs):
        kept.append(landscape.curvature.lanczos.lanczos(*args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(landscape.curvature.hessian, "lanczos", spy)
    a, _ = rotated(torch.cat([torch.tensor([5.0]), torch.linspace(0, 1, 299)]))
    r = hessian_eigs(Quadratic(a), value, NOTHING, NOTHING, max_hvps=300, generator=gen())
    assert r.converged and r.hvps < 2 * BLOCK
    assert len(kept[0].basis.blocks) == math.ceil(r.hvps / BLOCK)


def test_a_basis_that_cannot_fit_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(landscape.curvature.hessian, "available_memory", lambda device: 10**9)
    assert check_lanczos_memory(1_000_000, 100, torch.float32, "cpu") == 112 * 4 * 10**6
    with pytest.raises(ValueError, match=r"lower --max-hvps \(at most 240 fit\)") as info:
        check_lanczos_memory(1_000_000, 400, torch.float32, "cpu")
    assert "\n" not in str(info.value) and "1.49 GiB" in str(info.value)


def test_a_nan_weight_gives_nan_and_not_converged():
    # The old code raised LinAlgError from eigh on a NaN tridiagonal.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 5))
    with torch.no_grad():
        net[0].weight[0, 0] = math.nan
    x, y = torch.randn(32, 10, generator=gen()), torch.randint(0, 5, (32,), generator=gen())
    r = hessian_eigs(net, ce, x, y, k=2, return_eigenvectors=True, generator=gen())
    assert not r.converged and r.hvps == 1
    assert torch.isnan(r.eigenvalues).all() and torch.isnan(r.residuals).all() and math.isnan(r.error_bound)
    assert len(r.eigenvalues) == 2 and len(r.eigenvectors) == 2
    d = hessian_density(net, ce, x, y, runs=3, steps=10, generator=gen())
    assert not d.finite and d.hvps == 1 and torch.isnan(d.density).all() and math.isnan(d.mean)


def test_an_overflowing_product_is_not_converged():
    # The last weight scaled by 1e37: the float32 product's norm overflows. The old
    # code reported eigenvalue -1e35, residual inf and converged=True after 1 product.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 5))
    with torch.no_grad():
        net[2].weight.mul_(1e37)
    x, y = torch.randn(32, 10, generator=gen()), torch.randint(0, 5, (32,), generator=gen())
    r = hessian_eigs(net, ce, x, y, generator=gen())
    assert not r.converged and torch.isnan(r.eigenvalues).all() and math.isnan(r.error_bound)
    assert not hessian_density(net, ce, x, y, runs=2, steps=10, generator=gen()).finite


def test_reported_residuals_bound_the_true_residuals_in_float32():
    # After eigh deflates a converged pair its |beta_m s_m| is exactly 0, while the
    # float32 Ritz vector's true residual (float64 products with the exact A) is about
    # 1e-6: the old code reported 0, an error bound that is not one.
    n = 200
    a, _ = rotated(
        torch.cat(
            [torch.tensor([10.0, 9.0], dtype=torch.float64), torch.rand(n - 2, generator=gen(2), dtype=torch.float64)]
        )
    )
    r = hessian_eigs(
        Quadratic(a.float()), value, NOTHING, NOTHING, k=3, tol=1e-6, return_eigenvectors=True, generator=gen(1)
    )
    assert r.converged and r.hvps > 2 * MIN_PRODUCTS
    for theta, residual, vector in zip(r.eigenvalues.tolist(), r.residuals.tolist(), r.eigenvectors):
        y = vector["w"].double()
        true = float((a @ y - theta * y).norm() / y.norm())
        assert true > 0 and residual >= true, (theta, residual, true)
    assert r.error_bound == max(r.residuals.tolist())


def exact_measure(a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectral measure of a at the unit vector v: eigenvalues and (u_i^T v)^2."""
    values, vectors = torch.linalg.eigh(a)
    return values, (vectors.T @ (v / v.norm())) ** 2


def rademacher_starts(n: int, runs: int, seed: int) -> list[torch.Tensor]:
    """The start vectors hessian_density draws from ``gen(seed)``."""
    g = gen(seed)
    return [torch.randint(0, 2, (n,), generator=g).double() * 2 - 1 for _ in range(runs)]


def test_density_weights_and_density_are_the_exact_spectral_measure():
    # With steps = n, Gauss quadrature is the measure itself: nodes lambda_i, weights
    # (u_i^T v)^2 (~1/n each). Weights from the last Ritz-vector row are off by O(1/n).
    n, runs = 30, 3
    spectrum = torch.linspace(-1, 4, n, dtype=torch.float64) + 0.05 * torch.rand(n, generator=gen(3))
    a, _ = rotated(spectrum)
    r = hessian_density(Quadratic(a), value, NOTHING, NOTHING, runs=runs, steps=n, sigma=0.1, generator=gen(7))
    grid = r.grid
    expected = torch.zeros_like(grid)
    for v, nodes, weights in zip(rademacher_starts(n, runs, 7), r.nodes, r.weights):
        exact_nodes, exact_weights = exact_measure(a, v)
        torch.testing.assert_close(nodes, exact_nodes, rtol=0, atol=1e-10)
        torch.testing.assert_close(weights, exact_weights, rtol=0, atol=1e-10)  # the weights are ~3e-2
        expected += torch.exp(-0.5 * ((grid[:, None] - exact_nodes) / 0.1) ** 2) @ exact_weights
    expected /= torch.trapezoid(expected, grid)
    torch.testing.assert_close(r.density, expected, rtol=1e-8, atol=1e-10)


def test_density_quadrature_matches_the_moments_of_the_measure():
    # m Lanczos steps give the m-node Gauss quadrature of the measure at v: exact for
    # polynomials up to degree 2m - 1, so sum_j w_j theta_j^p = v^T A^p v / ||v||^2.
    n, m = 60, 5
    a, _ = rotated(torch.rand(n, generator=gen(4), dtype=torch.float64) * 3 - 1)
    r = hessian_density(Quadratic(a), value, NOTHING, NOTHING, runs=2, steps=m, generator=gen(9))
    for v, nodes, weights in zip(rademacher_starts(n, 2, 9), r.nodes, r.weights):
        moments = [float(v @ torch.linalg.matrix_power(a, p) @ v) / n for p in range(2 * m)]
        quadrature = [float(weights @ nodes**p) for p in range(2 * m)]
        assert quadrature == pytest.approx(moments, rel=1e-9, abs=1e-12)
