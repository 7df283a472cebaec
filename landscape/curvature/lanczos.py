"""Lanczos with full reorthogonalization for a symmetric operator v -> A v on flat
vectors, and the error estimates of its Ritz pairs.

After m steps from a unit vector q_1, the orthonormal basis Q = (q_1 ... q_m) of the
Krylov space and the tridiagonal T = Q^T A Q satisfy A Q = Q T + beta_m q_{m+1} e_m^T.
A Ritz pair (theta, y = Q s), T s = theta s, ||s|| = 1, then has the residual

    ||A y - theta y|| = |beta_m s_m| =: r,

and some eigenvalue of A lies within r of theta (a certificate). In floating point
the identity holds only to the rounding of the basis and the products: a residual is
reported as max(|beta_m s_m|, :meth:`Krylov.roundoff`), the floor being

    ROUNDOFF * eps * ||T|| * sqrt(m),  ROUNDOFF = 10,

eps that of the basis's dtype and ||T|| bounded above by max |alpha_j| + 2 max beta_j
(Gershgorin): each product's rounding error, of order eps ||H||, reaches y = Q s
through m coefficients. After ``eigh`` deflates a converged pair, s_m is exactly 0
while the true residual of the float32 vector y is not: measured against float64
products, up to 1.2 eps ||T|| sqrt(m) on a float32 VGG's Hessian and 0.5 on
float32 MLPs and matrices, so the floor holds with a margin of 8 or more.

When the eigenvalue lambda is separated from the rest of the spectrum by delta, the
error is quadratic in r (Kato-Temple; Parlett, The Symmetric Eigenvalue Problem,
Sec. 11.7):

    |lambda - theta| <= r^2 / delta.

delta is estimated from the other Ritz values, each less its own residual:
delta ~ min_j (|theta - theta_j| - r_j). That is an estimate, not a certificate: an
eigenvalue no Ritz value has found yet (a start vector nearly orthogonal to its
eigenvector) would make the true delta smaller. Every single-vector Krylov method
shares the weakness for the extreme eigenvalue itself: the certificate bounds the
distance to *some* eigenvalue, not to lambda_max.

That the largest Ritz value theta_1 approaches lambda_max rests on the start vector.
For A positive semi-definite and q_1 uniform on the unit sphere, m products give,
whatever the spectrum (Kuczynski and Wozniakowski, SIAM J. Matrix Anal. Appl. 13,
1992, Thm. 4.2),

    P[lambda_max - theta_1 > eps lambda_max] <= 1.648 sqrt(n) exp(-sqrt(eps) (2m - 1)).

Lanczos is shift invariant, so for an indefinite A the bound holds for
A - lambda_min I: the error is then eps (lambda_max - lambda_min). A start built
from a vector v (the gradient, a warm start, a given vector) is mixed with a Gaussian
z drawn after v is fixed, q_1 = (v/||v|| + z/||z||)/sqrt(2). The bound's failure
event is a start with too little weight on the eigenvectors near lambda_max (the
Chebyshev argument behind it); with P the projection on them, the mixed start's
weight ||P q_1|| >= ||P (v/||v|| + z/||z||)|| / 2 falls below c at most as often as
a uniform start's falls below 2c (Anderson's inequality: z/||z||'s projection has a
symmetric log-concave density), which for one eigenvector is at most twice as often
as below c. So the bound is quoted with the constant doubled, 3.3
(:data:`KW_CONSTANT`; our adaptation, not KW's theorem).
:func:`random_start_epsilon` gives the eps at a failure probability of 1 %:

    n            m = 10    m = 30    m = 100
    63           0.17      0.018     0.0016
    579,098      0.43      0.044     0.0039
    15,000,000   0.55      0.057     0.0050

The few-product regime carries no such guarantee: after 10 products on a network of
half a million weights, theta_1 is only known to be within 43 % of the spectrum's
spread of lambda_max, whatever its residual. Convergence is therefore claimed only
after :data:`MIN_PRODUCTS` products (or n, where the Krylov space can be everything),
so that a start that already is an eigenvector (a warm start after the top two
eigenvalues swapped places) cannot certify the second after one product; beyond
that the label lambda_max is the bound's, with the probability it states. It is
no more: with lambda_max = 10 and 9 separated from a bulk in [-1, 1] (n = 50), a
start at 9's eigenvector never claimed 9 over 200 seeds (tests/test_lanczos.py),
but with the bulk dense up to 8.5 (n = 200; eps = 0.20 at m = 10) it claimed 9,
converged, in 7 of 200 seeds at tol 1e-2 and 2 of 200 at 1e-3.

A non-finite product (a NaN weight, an overflow; also a finite product whose norm
overflows) ends the iteration: :attr:`Krylov.finite` is False, and the Ritz values,
residuals and bounds are NaN, never converged.

The basis is kept in blocks of :data:`BLOCK` vectors, allocated as the steps fill
them: the memory grows with the products taken, at most :func:`basis_bytes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

BOUNDS = ("gap", "residual")
ROUNDOFF = 10.0  # the residual floor, in eps * ||T|| * sqrt(m): rounding, not convergence, below it
MIN_PRODUCTS = 10  # no convergence claimed before this many products (or n): module docstring
BLOCK = 16  # basis vectors per allocation
KW_CONSTANT = 2 * 1.648  # Kuczynski-Wozniakowski's constant, doubled for the mixed start

Operator = Callable[[torch.Tensor], torch.Tensor]


def random_start_epsilon(n: int, m: int, failure: float = 0.01) -> float:
    """The relative error eps at which m products from a random (or mixed) start find
    lambda_max with probability at least 1 - ``failure``: the eps solving
    KW_CONSTANT sqrt(n) exp(-sqrt(eps) (2m - 1)) = failure (module docstring); the
    error is eps (lambda_max - lambda_min). Above 1 the bound says nothing."""
    return (math.log(KW_CONSTANT * math.sqrt(n) / failure) / (2 * m - 1)) ** 2


def basis_bytes(n: int, max_products: int, dtype: torch.dtype) -> int:
    """The most memory a Lanczos basis of at most ``max_products`` steps (never more
    than n) on n-vectors of ``dtype`` takes: whole blocks of :data:`BLOCK` vectors.
    The iteration needs a few more n-vectors (the product, its projections)."""
    steps = min(max_products, n)
    return math.ceil(steps / BLOCK) * BLOCK * n * torch.empty((), dtype=dtype).element_size()


class Basis:
    """Orthonormal vectors q_1 ... q_m, in blocks of :data:`BLOCK` allocated as they
    fill (never steps x n up front, never reallocated)."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        self.n, self.dtype, self.device = n, dtype, device
        self.blocks: list[torch.Tensor] = []  # each (BLOCK, n)
        self.m = 0

    def __len__(self) -> int:
        return self.m

    def __getitem__(self, j: int) -> torch.Tensor:
        return self.blocks[j // BLOCK][j % BLOCK]

    def append(self, q: torch.Tensor) -> None:
        if self.m % BLOCK == 0:
            self.blocks.append(torch.empty(BLOCK, self.n, dtype=self.dtype, device=self.device))
        self.blocks[-1][self.m % BLOCK] = q
        self.m += 1

    def filled(self) -> list[torch.Tensor]:
        """The blocks' rows in use: (BLOCK, n) views, the last (m mod BLOCK, n)."""
        return [block[: self.m - i * BLOCK] for i, block in enumerate(self.blocks)]

    def project(self, w: torch.Tensor) -> torch.Tensor:
        """Q w: the coefficients of w along the basis, (m,)."""
        return torch.cat([block @ w for block in self.filled()])

    def combine(self, c: torch.Tensor) -> torch.Tensor:
        """Q^T c: the vector with coefficients c, (n,)."""
        total = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        for block, part in zip(self.filled(), c.split(BLOCK)):
            total.addmv_(block.T, part)
        return total


@dataclass(frozen=True)
class Krylov:
    """m Lanczos steps: the orthonormal basis Q, and T's diagonal and off-diagonal, the
    last beta being the norm of the residual after the m-th step (zero where a
    breakdown was restarted). ``finite`` is False where a product (or its norm) was
    not finite: the iteration stopped there and nothing it found is reported."""

    basis: Basis
    alphas: list[float]
    betas: list[float]
    finite: bool = True

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ritz values (ascending) and T's eigenvectors (columns), in float64; NaN
        where the iteration met a non-finite product."""
        m = len(self.alphas)
        if not self.finite:
            return torch.full((m,), math.nan, dtype=torch.float64), torch.full((m, m), math.nan, dtype=torch.float64)
        alphas = torch.tensor(self.alphas, dtype=torch.float64)
        off = torch.tensor(self.betas[:-1], dtype=torch.float64)
        return torch.linalg.eigh(torch.diag(alphas) + torch.diag(off, 1) + torch.diag(off, -1))

    def roundoff(self) -> float:
        """The residual floor ROUNDOFF * eps * ||T|| * sqrt(m) (module docstring), ||T||
        bounded by max |alpha_j| + 2 max beta_j, eps the basis's: no residual is
        reported below it, and a beta below it is a breakdown."""
        scale = max(map(abs, self.alphas)) + 2 * max(self.betas)
        return ROUNDOFF * torch.finfo(self.basis.dtype).eps * scale * math.sqrt(len(self.alphas))


def lanczos(
    op: Operator,
    start: torch.Tensor,
    steps: int,
    stop: Callable[[Krylov], bool] | None = None,
    restart: Callable[[], torch.Tensor] | None = None,
) -> Krylov:
    """Lanczos with full reorthogonalization, for at most ``steps`` products or until
    ``stop``. Each step subtracts the three-term recurrence (alpha q_j, beta q_{j-1}),
    then projects out the basis by classical Gram-Schmidt, a second time only where
    the first pass removed more than 1 - 1/sqrt(2) of the norm (Daniel-Gragg-Kaufman-
    Stewart; twice is enough, Kahan-Parlett): after the recurrence the components
    left along the basis are at rounding level, so one pass over the basis
    usually does, half the cost of two. On a breakdown (an invariant subspace found)
    it goes on from ``restart()``, made orthogonal to the basis, or stops when
    ``restart`` is None. A non-finite alpha or beta (a NaN or overflowing product)
    stops it, with ``finite`` False. The basis grows in blocks (:class:`Basis`)."""
    basis = Basis(start.numel(), start.dtype, start.device)
    alphas: list[float] = []
    betas: list[float] = []
    q = start / torch.linalg.vector_norm(start)
    for j in range(steps):
        basis.append(q)
        w = op(q)
        alphas.append(float(torch.dot(q, w)))
        w -= alphas[-1] * q
        if j > 0 and betas[-1] != 0.0:
            w -= betas[-1] * basis[j - 1]
        w = orthogonalized(w, basis)
        betas.append(float(torch.linalg.vector_norm(w)))
        if not (math.isfinite(alphas[-1]) and math.isfinite(betas[-1])):
            return Krylov(basis, alphas, betas, finite=False)
        krylov = Krylov(basis, alphas, betas)
        breakdown = betas[-1] <= krylov.roundoff()
        if j + 1 == steps or (stop is not None and stop(krylov)) or (breakdown and restart is None):
            break
        if breakdown:
            w = orthogonalized(restart(), basis)
            betas[-1] = 0.0  # T splits into blocks: the new vector is not coupled to the old ones
        q = w / torch.linalg.vector_norm(w)
    return krylov


def orthogonalized(w: torch.Tensor, basis: Basis) -> torch.Tensor:
    """w minus its projection on the orthonormal ``basis``: classical Gram-Schmidt,
    repeated once where a pass cancelled most of w (the DGKS test, eta = 1/sqrt(2))."""
    for _ in range(2):
        before = torch.linalg.vector_norm(w)
        w = w - basis.combine(basis.project(w))
        if torch.linalg.vector_norm(w) > before / math.sqrt(2):
            break
    return w


@dataclass(frozen=True)
class Ritz:
    """The k wanted Ritz pairs of a Krylov basis, largest first."""

    values: torch.Tensor  # (k,)
    coefficients: torch.Tensor  # (m, k): Ritz vector i is basis.combine(coefficients[:, i])
    residuals: torch.Tensor  # (k,) max(|beta_m s_m|, roundoff): certificates
    error_bounds: torch.Tensor  # (k,) max(min(r, r^2 / gap), roundoff) with "gap", else r
    converged: bool  # at least MIN_PRODUCTS (or n) products, every error bound <= tol * |value| or at the floor


def ritz(krylov: Krylov, k: int, which: str, tol: float, bound: str = "residual") -> Ritz:
    """The k largest Ritz pairs (algebraically, or in magnitude for ``which="magnitude"``)
    with their residuals and error bounds (module docstring); all NaN and not
    converged where the iteration met a non-finite product."""
    m = len(krylov.alphas)
    if not krylov.finite:
        nan = torch.full((k,), math.nan, dtype=torch.float64)
        return Ritz(nan, torch.full((m, k), math.nan, dtype=torch.float64), nan, nan, False)
    theta, s = krylov.ritz()
    floor = krylov.roundoff()
    residuals = (krylov.betas[-1] * s[-1]).abs().clamp(min=floor)  # (m,) one per Ritz value
    wanted = torch.argsort(theta if which == "largest" else theta.abs(), descending=True)[:k]
    errors = residuals[wanted]
    if bound == "gap" and len(theta) > 1:
        gaps = (theta[wanted, None] - theta[None, :]).abs() - residuals[None, :]
        gaps[torch.arange(len(wanted)), wanted] = math.inf  # not its own gap
        gap = gaps.min(dim=1).values
        quadratic = torch.where(gap > 0, errors**2 / gap.clamp(min=torch.finfo(gap.dtype).tiny), math.inf)
        errors = torch.minimum(errors, quadratic).clamp(min=floor)
    limit = torch.clamp(tol * theta[wanted].abs(), min=floor)
    enough = m >= min(MIN_PRODUCTS, krylov.basis.n)
    converged = enough and bool((errors <= limit).all())
    return Ritz(theta[wanted], s[:, wanted], residuals[wanted], errors, converged)
