"""Lanczos with full reorthogonalization for a symmetric operator v -> A v on flat
vectors, and the error estimates of its Ritz pairs.

After m steps from a unit vector q_1, the orthonormal basis Q = (q_1 ... q_m) of the
Krylov space and the tridiagonal T = Q^T A Q satisfy A Q = Q T + beta_m q_{m+1} e_m^T.
A Ritz pair (theta, y = Q s), T s = theta s, ||s|| = 1, then has the residual

    ||A y - theta y|| = |beta_m s_m| =: r,

and some eigenvalue of A lies within r of theta (a certificate). When that eigenvalue
lambda is separated from the rest of the spectrum by delta, the error is quadratic in
r (Kato-Temple; Parlett, The Symmetric Eigenvalue Problem, Sec. 11.7):

    |lambda - theta| <= r^2 / delta.

delta is estimated from the other Ritz values, each less its own residual:
delta ~ min_j (|theta - theta_j| - r_j). That is an estimate, not a certificate: an
eigenvalue no Ritz value has found yet (a start vector nearly orthogonal to its
eigenvector) would make the true delta smaller. Every single-vector Krylov method
shares the weakness for the extreme eigenvalue itself: the certificate bounds the
distance to *some* eigenvalue, not to lambda_max.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

BOUNDS = ("gap", "residual")
_ROUNDOFF = 100.0  # a residual below this many eps * ||T|| is rounding: exact

Operator = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Krylov:
    """m Lanczos steps: orthonormal rows Q, and T's diagonal and off-diagonal, the last
    beta being the norm of the residual after the m-th step (zero where a breakdown
    was restarted)."""

    basis: torch.Tensor  # (m, n)
    alphas: list[float]
    betas: list[float]

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ritz values (ascending) and T's eigenvectors (columns), in float64."""
        alphas = torch.tensor(self.alphas, dtype=torch.float64)
        off = torch.tensor(self.betas[:-1], dtype=torch.float64)
        return torch.linalg.eigh(torch.diag(alphas) + torch.diag(off, 1) + torch.diag(off, -1))

    def roundoff(self) -> float:
        """A residual at rounding level: ||T|| estimate times a small multiple of eps."""
        scale = max(max(map(abs, self.alphas)), max(self.betas))
        return _ROUNDOFF * torch.finfo(self.basis.dtype).eps * scale


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
    left along the basis are at rounding level, so one pass over the (j, n) basis
    usually does, half the cost of two. On a breakdown (an invariant subspace found)
    it goes on from ``restart()``, made orthogonal to the basis, or stops when
    ``restart`` is None."""
    n = start.numel()
    basis = start.new_zeros(steps, n)
    alphas: list[float] = []
    betas: list[float] = []
    q = start / torch.linalg.vector_norm(start)
    for j in range(steps):
        basis[j] = q
        w = op(q)
        alphas.append(float(torch.dot(q, w)))
        w -= alphas[-1] * q
        if j > 0 and betas[-1] != 0.0:
            w -= betas[-1] * basis[j - 1]
        done = basis[: j + 1]
        w = orthogonalized(w, done)
        betas.append(float(torch.linalg.vector_norm(w)))
        krylov = Krylov(done, alphas, betas)
        breakdown = betas[-1] <= krylov.roundoff()
        if j + 1 == steps or (stop is not None and stop(krylov)) or (breakdown and restart is None):
            break
        if breakdown:
            w = orthogonalized(restart(), done)
            betas[-1] = 0.0  # T splits into blocks: the new vector is not coupled to the old ones
        q = w / torch.linalg.vector_norm(w)
    return krylov


def orthogonalized(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """w minus its projection on the orthonormal rows of ``basis``: classical Gram-Schmidt,
    repeated once where a pass cancelled most of w (the DGKS test, eta = 1/sqrt(2))."""
    for _ in range(2):
        before = torch.linalg.vector_norm(w)
        w = w - basis.T @ (basis @ w)
        if torch.linalg.vector_norm(w) > before / math.sqrt(2):
            break
    return w


@dataclass(frozen=True)
class Ritz:
    """The k wanted Ritz pairs of a Krylov basis, largest first."""

    values: torch.Tensor  # (k,)
    coefficients: torch.Tensor  # (m, k): Ritz vector i is basis.T @ coefficients[:, i]
    residuals: torch.Tensor  # (k,) |beta_m s_m|: certificates
    error_bounds: torch.Tensor  # (k,) min(r, r^2 / gap) with "gap", else r
    converged: bool  # every error bound <= tol * |value|, or at rounding level


def ritz(krylov: Krylov, k: int, which: str, tol: float, bound: str = "residual") -> Ritz:
    """The k largest Ritz pairs (algebraically, or in magnitude for ``which="magnitude"``)
    with their residuals and error bounds (module docstring)."""
    theta, s = krylov.ritz()
    residuals = (krylov.betas[-1] * s[-1]).abs()  # (m,) one per Ritz value
    wanted = torch.argsort(theta if which == "largest" else theta.abs(), descending=True)[:k]
    errors = residuals[wanted]
    if bound == "gap" and len(theta) > 1:
        gaps = (theta[wanted, None] - theta[None, :]).abs() - residuals[None, :]
        gaps[torch.arange(len(wanted)), wanted] = math.inf  # not its own gap
        gap = gaps.min(dim=1).values
        quadratic = torch.where(gap > 0, errors**2 / gap.clamp(min=torch.finfo(gap.dtype).tiny), math.inf)
        errors = torch.minimum(errors, quadratic)
    limit = torch.clamp(tol * theta[wanted].abs(), min=krylov.roundoff())
    converged = bool((errors <= limit).all())
    return Ritz(theta[wanted], s[:, wanted], residuals[wanted], errors, converged)
