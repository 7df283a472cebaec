"""The preconditioned Hessian P^{-1/2} H P^{-1/2} of a diagonal preconditioner P, as
an operator on flat vectors, for :func:`landscape.curvature.hessian.hessian_eigs`.

P^{-1} H is not symmetric, but it is similar to the symmetric S H S, S = P^{-1/2}
(P^{-1} H = S (S H S) S^{-1}): both have the same eigenvalues, and u an eigenvector
of S H S gives S u one of P^{-1} H. Lanczos runs on v -> s * H (s * v), s the
diagonal of S flattened over the operator's parameters; each application is one
Hessian-vector product. The gradient start becomes s * g, the gradient in the
coordinates x = P^{1/2} w where the operator is the Hessian.

P is an Adam or AdamW optimizer, read as its state stands
(:func:`landscape.measure.preconditioner.adam_diagonal`: the preconditioner of its
last step, the first moment's bias correction folded in, as Cohen et al. 2022 do), or
diag(P) by parameter name.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from landscape.curvature.hvp import HessianOperator, Problem
from landscape.measure.preconditioner import adam_diagonal, check_preconditioner
from landscape.state import flatten

__all__ = ["Preconditioner", "PreconditionedOperator", "inverse_sqrt"]

Preconditioner = torch.optim.Optimizer | Mapping[str, torch.Tensor]


def inverse_sqrt(preconditioner: Preconditioner, problem: Problem) -> list[torch.Tensor]:
    """diag(P)^{-1/2} for each of the problem's (selected) parameters, in its order, in
    float64 on the parameter's device.

    Raises:
        ValueError: (one line) neither an optimizer nor a mapping, an optimizer other
            than Adam/AdamW, one with no state yet (before its first step) or none for
            a selected parameter, or an entry :func:`check_preconditioner` rejects
            (missing, of the wrong shape, not positive and finite).
    """
    params = {name: problem.params[name] for name in problem.names}
    if isinstance(preconditioner, torch.optim.Optimizer):
        diagonal = adam_diagonal(preconditioner, params)
        kind = type(preconditioner).__name__
        if diagonal is None:
            raise ValueError(f"the {kind} optimizer has no state yet (before its first step): no preconditioner")
        if missing := [name for name in params if name not in diagonal]:
            raise ValueError(
                f"the {kind} optimizer holds no state for parameter {missing[0]!r} "
                "(not among its parameters, or never stepped with a gradient)"
            )
    elif isinstance(preconditioner, Mapping):
        diagonal = preconditioner
    else:
        raise ValueError(
            f"preconditioner must be an Adam/AdamW optimizer or diag(P) by parameter name, "
            f"not {type(preconditioner).__name__}"
        )
    check_preconditioner(diagonal, params)
    return [diagonal[name].detach().to(device=p.device, dtype=torch.float64).rsqrt() for name, p in params.items()]


class PreconditionedOperator:
    """v -> s * H (s * v), s = diag(P)^{-1/2} flat: the symmetric P^{-1/2} H P^{-1/2}.

    It stands in for the :class:`~landscape.curvature.hvp.HessianOperator` it wraps
    (``names``, ``n``, ``dtype``, ``device``, ``hvps``, ``named``, ``random``,
    ``gradient``), each product one of H.
    """

    def __init__(self, op: HessianOperator, scales: list[torch.Tensor]) -> None:
        self.op = op
        self.names, self.n, self.dtype, self.device = op.names, op.n, op.dtype, op.device
        self.scale = flatten([s.to(device=op.device, dtype=op.dtype) for s in scales])

    @property
    def hvps(self) -> int:
        """Products with H so far."""
        return self.op.hvps

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.scale * self.op(self.scale * v)

    def gradient(self) -> torch.Tensor:
        """s * g: the gradient in the coordinates x = P^{1/2} w."""
        return self.scale * self.op.gradient()

    def random(self, kind: str, generator: torch.Generator | None) -> torch.Tensor:
        """A Rademacher or Gaussian vector (:meth:`HessianOperator.random`)."""
        return self.op.random(kind, generator)

    def named(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector by parameter name."""
        return self.op.named(v)
