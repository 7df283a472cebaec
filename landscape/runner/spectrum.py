"""The Hessian spectrum of a recorded run at its checkpoints: lambda_max (and tr H)
of the training loss, and its eigenvalue density, measured after training by
:mod:`landscape.curvature.hessian`.

The run's model and its first ``batches`` training batches come from
:func:`landscape.runner.run_model.load_run_model` (the data loaded once); each checkpoint's
weights and noise generators are installed in turn, and H is the mean of the Hessians
of those batches: the same batches at every checkpoint, so values along a run
compare. Random vectors come from a generator seeded with the run's seed.

The density phi(t) = 1/n sum_i delta(t - lambda_i) is estimated by stochastic
Lanczos quadrature (Ghorbani et al. 2019, Sec. 3) and written to
``RUN/spectrum/density.json``, one entry per checkpoint measured, for the report.

A checkpoint whose weights are not finite, or whose Hessian-vector products are not
(an overflow), has no curvature: its result says why (``nonfinite``) and carries
NaN, the other checkpoints are measured as usual.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.config import DensityConfig
from landscape.curvature.hessian import (
    available_memory,
    check_lanczos_memory,
    hessian_density,
    hessian_eigs,
    hessian_trace,
    products_that_fit,
)
from landscape.curvature.lanczos import basis_bytes
from landscape.runner.assembly import build_run_model
from landscape.runner.run_model import install_weights, load_run_config, load_run_model
from landscape.runs import DENSITY_JSON, SPECTRUM_DIR, write_json_atomic
from landscape.state import trainable_count
from landscape.training.checkpoint import kept_steps, load_weights

CHECKPOINTS = ("last", "all")
DENSITY_FORMAT = 1
NONFINITE_PRODUCT = "a Hessian-vector product is not finite: an overflow, or a NaN in the loss"


@dataclass(frozen=True)
class CheckpointDensity:
    """The eigenvalue density at one checkpoint (:func:`landscape.curvature.hessian.hessian_density`),
    as plain lists: one entry of ``density.json``."""

    step: int
    grid: list[float]  # (G,)
    density: list[float]  # (G,) integrates to 1 over grid (trapezoid)
    nodes: list[list[float]]  # per run: Ritz values, ascending
    weights: list[list[float]]  # per run: quadrature weights, summing to 1
    mean: float  # mean of the quadrature measures: an estimate of tr H / n
    hvps: int
    parameters: int  # n, the dimension of H
    runs: int
    steps: int
    bn_mode: str
    batches: int


@dataclass(frozen=True)
class CheckpointSpectrum:
    """What :func:`checkpoint_spectrum` measured at one checkpoint."""

    run: str
    step: int  # completed training steps at the checkpoint
    eigenvalues: list[float]  # the k largest, largest first
    residual: float  # largest Ritz residual: each value is within it of an eigenvalue of H
    converged: bool
    hvps: int
    batches: int
    trace: float | None = None
    trace_stderr: float | None = None
    density: CheckpointDensity | None = None
    nonfinite: str | None = None  # why there is no curvature (the values are NaN); None: measured

    @property
    def lambda_max(self) -> float:
        return self.eigenvalues[0]

    def to_dict(self) -> dict[str, Any]:
        """The values, without the density (:func:`density_record` holds it); NaN as None
        (JSON has no NaN)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "density"}
        return {k: _json_value(v) for k, v in dict(values, lambda_max=self.lambda_max).items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return [_json_value(v) for v in value] if isinstance(value, list) else value


def checkpoint_spectrum(
    run_dir: str | Path,
    *,
    checkpoint: str = "last",
    k: int = 1,
    trace: bool = False,
    bn_mode: str = "train",
    batches: int = 4,
    tol: float = 1e-3,
    max_hvps: int = 100,
    device: str | torch.device = "cpu",
    density: DensityConfig | None = None,
) -> list[CheckpointSpectrum]:
    """The k largest Hessian eigenvalues (and tr H, and the eigenvalue density) of a
    run's training loss at its checkpoints.

    Args:
        run_dir: A run directory.
        checkpoint: ``"last"`` (``checkpoints/last.pt``) or ``"all"`` (also every
            checkpoint a run with ``keep_checkpoints`` kept).
        k: How many of the largest eigenvalues.
        trace: Also tr H by Hutch++ (at most ``max_hvps`` products).
        bn_mode: ``"train"`` (batch statistics) or ``"eval"`` (running statistics).
        batches: H is the mean over the first this many training batches.
        tol: Relative tolerance on the Lanczos residuals.
        max_hvps: At most this many Hessian-vector products per estimate.
        device: Where to measure.
        density: Also the eigenvalue density by stochastic Lanczos quadrature
            (``runs * steps`` more products per checkpoint), from a generator seeded
            like the eigenvalues'.

    Returns:
        One :class:`CheckpointSpectrum` per checkpoint, in step order; one whose
        weights or Hessian-vector products are not finite has NaN values and says
        why in ``nonfinite``.

    Raises:
        StoreError: not a run, no checkpoint, or an unreadable or unfitting one.
        ValueError: an unknown ``checkpoint``/``bn_mode``, ``batches`` below 1 or
            beyond one epoch, or bad k.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {checkpoint!r}; choose from {', '.join(CHECKPOINTS)}")
    if batches < 1:
        raise ValueError("batches must be at least 1")
    device = torch.device(device)
    run = load_run_model(run_dir, "last", batches, device)  # the data once, for every checkpoint
    check_lanczos_memory(
        trainable_count(run.model), _longest(max_hvps, density), getattr(torch, run.config.train.dtype), device
    )

    def measure(step: int) -> CheckpointSpectrum:
        nothing = CheckpointSpectrum(
            run=str(run_dir),
            step=step,
            eigenvalues=[math.nan] * k,
            residual=math.nan,
            converged=False,
            hvps=0,
            batches=len(run.batches),
        )
        weights = nonfinite_weights(run.model)
        if weights is not None:
            return replace(nothing, nonfinite=f"the weights are not finite: {weights}")
        common = dict(
            bn_mode=bn_mode,
            batches=run.batches,
            generator=torch.Generator(device=device).manual_seed(run.config.train.seed),
        )
        try:
            eigs = hessian_eigs(run.model, run.loss_fn, k=k, tol=tol, max_hvps=max_hvps, **common)
            if not eigs.finite:
                return replace(nothing, hvps=eigs.hvps, nonfinite=NONFINITE_PRODUCT)
            tr = hessian_trace(run.model, run.loss_fn, max_hvps=max_hvps, **common) if trace else None
            found = None if density is None else measure_density(step)
        except torch.linalg.LinAlgError:  # eigh or QR of a matrix holding NaN, where the library raises
            return replace(nothing, nonfinite=NONFINITE_PRODUCT)
        if tr is not None and not (math.isfinite(tr.trace) and math.isfinite(tr.stderr)):
            return replace(nothing, hvps=eigs.hvps, nonfinite=NONFINITE_PRODUCT)
        if found is not None and not all(map(math.isfinite, [found.mean, *found.density])):
            return replace(nothing, hvps=eigs.hvps, nonfinite=NONFINITE_PRODUCT)
        return CheckpointSpectrum(
            run=str(run_dir),
            step=step,
            eigenvalues=eigs.eigenvalues.tolist(),
            residual=eigs.error_bound,
            converged=eigs.converged,
            hvps=eigs.hvps,
            batches=len(run.batches),
            trace=None if tr is None else tr.trace,
            trace_stderr=None if tr is None else tr.stderr,
            density=found,
        )

    def measure_density(step: int) -> CheckpointDensity:
        generator = torch.Generator(device=device).manual_seed(run.config.train.seed)
        result = hessian_density(
            run.model,
            run.loss_fn,
            runs=density.runs,
            steps=density.steps,
            grid_size=density.grid_size,
            bn_mode=bn_mode,
            batches=run.batches,
            generator=generator,
        )
        return CheckpointDensity(
            step=step,
            grid=result.grid.tolist(),
            density=result.density.tolist(),
            nodes=[t.tolist() for t in result.nodes],
            weights=[w.tolist() for w in result.weights],
            mean=result.mean,
            hvps=result.hvps,
            parameters=trainable_count(run.model),
            runs=density.runs,
            steps=density.steps,
            bn_mode=bn_mode,
            batches=len(run.batches),
        )

    results = [measure(run.step)]
    # Kept checkpoints all lie before the last: each is loaded when it is measured, into
    # the same model (measuring leaves it unchanged), and the list is put in step order.
    earlier = [s for s in kept_steps(run_dir) if s < run.step] if checkpoint == "all" else []
    for step in earlier:
        install_weights(run.model, load_weights(run_dir, step, map_location=device))
        results.append(measure(step))
    return sorted(results, key=lambda r: r.step)


def nonfinite_weights(model: nn.Module) -> str | None:
    """The first parameter of ``model`` holding a NaN or an inf (``"features.0.weight
    holds NaN"``); None where every one is finite. Buffers are left to the products:
    BN's running statistics enter H only in ``bn_mode="eval"``."""
    for name, value in model.named_parameters():
        if not bool(torch.isfinite(value).all()):
            return f"{name} holds {'NaN' if bool(value.isnan().any()) else 'inf'}"
    return None


def density_record(run_dir: str | Path, results: list[CheckpointSpectrum]) -> dict[str, Any]:
    """The record ``density.json`` holds: the run and one density per checkpoint, in
    step order (``densities``, each a :class:`CheckpointDensity` as a dict).

    Raises:
        ValueError: no result carries a density.
    """
    densities = [asdict(r.density) for r in results if r.density is not None]
    if not densities:
        raise ValueError("no density was measured (pass density= to checkpoint_spectrum)")
    return {"format": DENSITY_FORMAT, "run": str(Path(run_dir).resolve()), "densities": densities}


def save_density(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as ``RUN/spectrum/density.json`` (atomically; the folder is made)."""
    folder = Path(run_dir) / SPECTRUM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DENSITY_JSON
    write_json_atomic(path, record)
    return path


@dataclass(frozen=True)
class BasisMemory:
    """The most memory a Lanczos basis takes on a run's Hessian (``landscape hessian
    --dry-run``), and what the device has."""

    parameters: int  # n, the dimension of H
    products: int  # the longest Lanczos run: max_hvps, or the density's steps
    dtype: str
    bytes: int  # :func:`landscape.curvature.lanczos.basis_bytes`
    device: str
    available: int | None  # :func:`landscape.curvature.hessian.available_memory`; None: unknown
    most: int | None  # the most products whose basis fits (:func:`landscape.curvature.hessian.products_that_fit`)

    @property
    def fits(self) -> bool:
        return self.available is None or self.bytes <= self.available


def basis_memory(
    run_dir: str | Path,
    *,
    max_hvps: int = 100,
    density: DensityConfig | None = None,
    device: str | torch.device = "cpu",
) -> BasisMemory:
    """What :func:`checkpoint_spectrum` with these settings would need for its Lanczos
    basis, from the run's config alone (the model built on the CPU, no data or
    checkpoint loaded, the global RNG untouched).

    Raises:
        StoreError: not a run.
    """
    config = load_run_config(run_dir)
    with torch.random.fork_rng():
        model = build_run_model(config)
    n, products, dtype = trainable_count(model), _longest(max_hvps, density), getattr(torch, config.train.dtype)
    free = available_memory(device)
    return BasisMemory(
        n,
        products,
        config.train.dtype,
        basis_bytes(n, products, dtype),
        str(torch.device(device)),
        free,
        None if free is None else products_that_fit(n, dtype, free),
    )


def _longest(max_hvps: int, density: DensityConfig | None) -> int:
    return max(max_hvps, 0 if density is None else density.steps)
