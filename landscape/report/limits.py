"""Full-batch stability limits of the optimizers a run trains with (numpy only, no torch).

On a quadratic f(x) = λx²/2 each optimizer's update is a linear recursion; it is stable
iff the roots of its characteristic polynomial lie inside the unit circle (Jury's test).
The limits below are those of the FULL-BATCH update: gradient descent with the same
rule on the whole training set, where λ_max(H) settles at the limit ("edge of
stability", Cohen et al. 2021). With weight decay wd coupled into the gradient
(torch's SGD and Adam: g + wd·w), the curvature the update sees is λ + wd.

=============================  ==================================  ========================
optimizer (torch)              limit on the sharpness              drawn over
=============================  ==================================  ========================
SGD                            2/η − wd                            λ_max(H), β_eff, gᵀHg/‖g‖²
SGD, momentum β, dampening d   2(1+β)/((1−d)η) − wd                the same
SGD, Nesterov momentum β       (2+2β)/((1+2β)η) − wd               the same
Adam, AdamW                    (2+2β₁)/((1−β₁)η), 38/η at β₁ 0.9   λ_max(P⁻¹H), β_eff^P
=============================  ==================================  ========================

Heavy ball (torch: v ← βv + (1−d)g, w ← w − ηv) on (w, ηv) has the characteristic
polynomial z² − (1+β−a)z + β with a = (1−d)η(λ+wd): stable iff 0 < a < 2(1+β).
PyTorch's Nesterov (w ← w − η(g + βv)) has z² − (1+β)(1−a)z + β(1−a) with
a = η(λ+wd): stable iff 0 < a < (2+2β)/(1+2β).

torch ignores the dampening when the momentum is 0 (the step is then -η g), and so do
these limits. Adam with its preconditioner P = diag(√v̂) + ε frozen (β₂ → 1) and the
bias correction over is heavy-ball momentum with β = d = β₁ on P⁻¹H (Cohen et al.
2022): its limit holds for the PRECONDITIONED sharpness λ_max(P⁻¹H) and
β_eff^P = ‖P^{-1/2}(∇L(w − ηu) − g)‖ / ‖P^{1/2}ηu‖, never for the raw λ_max(H) or β_eff of
an Adam run. Weight decay is left out of Adam's limit: coupled Adam's wd enters as
P⁻¹·wd (a per-coordinate shift, not one number), AdamW's decoupled decay multiplies w
by (1 − η·wd) before the step (it only damps).

At mini-batch sizes below the full batch another sharpness equilibrates: the "batch
sharpness" (the expected curvature of the mini-batch Hessians along their own
gradients) settles at 2/η under SGD (Andreyev & Beneventano 2024, "Edge of Stochastic
Stability: Revisiting the Edge of Stability for SGD"), while the full-batch λ_max
typically stays below it. References: Cohen et al. 2021, "Gradient Descent on Neural Networks
Typically Occurs at the Edge of Stability"; Cohen et al. 2022, "Adaptive Gradient
Methods at the Edge of Stability".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

SGD_SERIES = ("hessian/lambda_max", "probe/beta", "probe/curvature")
ADAM_SERIES = ("hessian/lambda_max_precond", "probe/beta_precond")
LR_SERIES = "train/lr"  # the lr of every step: a step function, written where it changes
NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
DEFAULT_BETAS = (0.9, 0.999)


@dataclass(frozen=True)
class Limit:
    """A run's full-batch stability limit: ``scale / η − shift`` at step size η.

    ``series``: the metrics it bounds (:data:`SGD_SERIES` or :data:`ADAM_SERIES`);
    ``formula``: the limit in symbols, e.g. "2(1+β)/η − wd"; ``settings``: the
    optimizer and the hyperparameters in it, e.g. "SGD, momentum 0.9"."""

    optimizer: str  # "sgd", "adam" or "adamw"
    lr: float
    scale: float
    shift: float
    formula: str
    settings: str
    series: tuple[str, ...]

    def at(self, lr: Any) -> Any:
        """The limit at step size(s) ``lr`` (a float or an array: a schedule)."""
        return self.scale / np.asarray(lr, dtype=float) - self.shift

    @property
    def value(self) -> float:
        """The limit at the run's lr."""
        return float(self.at(self.lr))

    @property
    def label(self) -> str:
        """E.g. "full-batch limit 2(1+β)/η = 38 (SGD, momentum 0.9, η = 0.1)"."""
        return f"full-batch limit {self.formula} = {self.value:.6g} ({self.settings}, η = {self.lr:.6g})"

    @property
    def schedule_label(self) -> str:
        """The label of the limit drawn over a varying lr (no single value)."""
        return f"full-batch limit {self.formula} ({self.settings}, η from {LR_SERIES})"

    def with_lr(self, lr: float) -> Limit:
        return replace(self, lr=_positive(lr, "lr"))


def _number(train: Mapping[str, Any], key: str, default: float) -> float:
    value = train.get(key)
    return default if value is None else _finite(value, key)


def _finite(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"train.{key} must be a finite number, got {value!r}")
    return float(value)


def _positive(value: float, what: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"train.{what} must be a positive finite number, got {value!r}")
    return float(value)


def _unit(value: float, what: str) -> float:
    if not 0 <= value < 1:
        raise ValueError(f"train.{what} must lie in [0, 1), got {value!r}")
    return value


def stability_limit(train: Mapping[str, Any] | None) -> Limit | None:
    """The full-batch stability limit of a run's config.json "train" section.

    Missing fields take TrainConfig's defaults (old runs: plain SGD, momentum 0,
    dampening 0, no Nesterov, wd 0, betas (0.9, 0.999)); the optimizer's name is
    compared lowercased ("SGD", "AdamW" from the Lightning integration).

    Returns:
        None for an optimizer other than SGD, Adam and AdamW, a run without an lr, and
        SGD with momentum and dampening 1 (its step stops following the gradient).

    Raises:
        ValueError: an lr that is not positive and finite, a momentum or beta outside
            [0, 1), a negative weight decay, a dampening outside [0, 1], or Nesterov
            without momentum or with dampening (torch refuses both).
    """
    if not isinstance(train, Mapping):
        return None
    name = str(train.get("optimizer") or "sgd").lower()
    if name not in NAMES or train.get("lr") is None:
        return None
    lr = _positive(train["lr"], "lr")
    wd = _number(train, "weight_decay", 0.0)
    if wd < 0:
        raise ValueError(f"train.weight_decay must be non-negative, got {wd!r}")
    if name != "sgd":
        betas = train.get("betas") or DEFAULT_BETAS
        if not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise ValueError(f"train.betas must be two numbers, got {betas!r}")
        b1, _ = (_unit(_finite(b, "betas"), "betas") for b in betas)
        return Limit(
            name,
            lr,
            (2 + 2 * b1) / (1 - b1),
            0.0,
            "(2+2β₁)/((1−β₁)η)",
            f"{NAMES[name]}, β₁ {b1:g}" + (f", wd {wd:g} (not in the limit)" if wd else ""),
            ADAM_SERIES,
        )
    momentum = _unit(_number(train, "momentum", 0.0), "momentum")
    dampening = _number(train, "dampening", 0.0)
    if not 0 <= dampening <= 1:
        raise ValueError(f"train.dampening must lie in [0, 1], got {dampening!r}")
    nesterov = bool(train.get("nesterov") or False)
    if nesterov and (momentum == 0 or dampening != 0):
        raise ValueError("train.nesterov needs a momentum > 0 and dampening 0 (as torch.optim.SGD)")
    settings = ["SGD"]
    if momentum == 0:  # torch ignores the dampening without momentum: the step is -lr g
        scale, formula = 2.0, "2/η"
    elif nesterov:
        scale, formula = (2 + 2 * momentum) / (1 + 2 * momentum), "(2+2β)/((1+2β)η)"
        settings.append(f"Nesterov momentum {momentum:g}")
    elif dampening == 1:
        return None
    else:
        scale = 2 * (1 + momentum) / (1 - dampening)
        formula = "2(1+β)/((1−d)η)" if dampening else "2(1+β)/η"
        settings.append(f"momentum {momentum:g}" + (f", dampening {dampening:g}" if dampening else ""))
    if wd:
        formula += " − wd"
        settings.append(f"wd {wd:g}")
    return Limit(name, lr, scale, wd, formula, ", ".join(settings), SGD_SERIES)


def lr_schedule(series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's ``train/lr`` (the steps where the lr changes, the lr from each on) where it
    takes more than one value; None where it is absent or constant."""
    if LR_SERIES not in series:
        return None
    steps, values = series[LR_SERIES]
    steps, values = np.asarray(steps, dtype=np.int64).ravel(), np.asarray(values, dtype=float).ravel()
    keep = np.isfinite(values) & (values > 0)
    steps, values = steps[keep], values[keep]
    if len(np.unique(values)) < 2:
        return None
    order = np.argsort(steps, kind="stable")
    return steps[order], values[order]


def lr_at(steps: np.ndarray, schedule: tuple[np.ndarray, np.ndarray], lr: float) -> np.ndarray:
    """The lr in effect at each of ``steps`` under a step-function ``schedule``; ``lr``
    (the configured one) before its first step."""
    changes, values = schedule
    index = np.searchsorted(changes, np.asarray(steps), side="right") - 1
    return np.where(index >= 0, values[np.clip(index, 0, None)], lr)


def limit_at_steps(limit: Limit, series: Mapping[str, tuple[np.ndarray, np.ndarray]], steps: np.ndarray) -> np.ndarray:
    """``limit`` at each of ``steps``, at that step's lr where the run's ``train/lr``
    varies (:func:`lr_schedule`), else at the configured lr."""
    schedule = lr_schedule(series)
    return limit.at(lr_at(steps, schedule, limit.lr) if schedule is not None else limit.lr)
