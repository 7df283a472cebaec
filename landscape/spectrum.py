"""The Hessian spectrum of a recorded run at its checkpoints: lambda_max (and tr H)
of the training loss, and its eigenvalue density, measured after training by
:mod:`landscape.hessian`.

The run's model and its first ``batches`` training batches come from
:func:`landscape.run_model.load_run_model` (the data loaded once); each checkpoint's
weights and noise generators are installed in turn, and H is the mean of the Hessians
of those batches: the same batches at every checkpoint, so values along a run
compare. Random vectors come from a generator seeded with the run's seed.

The density phi(t) = 1/n sum_i delta(t - lambda_i) is estimated by stochastic
Lanczos quadrature (Ghorbani et al. 2019, Sec. 3) and written to
``RUN/spectrum/density.json``, one entry per checkpoint measured, for the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from landscape.checkpoint import kept_steps, load_weights
from landscape.config import DensityConfig
from landscape.hessian import hessian_density, hessian_eigs, hessian_trace
from landscape.run_model import install_weights, load_run_model
from landscape.runs import DENSITY_JSON, SPECTRUM_DIR, write_json_atomic
from landscape.state import trainable_params

CHECKPOINTS = ("last", "all")
DENSITY_FORMAT = 1


@dataclass(frozen=True)
class CheckpointDensity:
    """The eigenvalue density at one checkpoint (:func:`landscape.hessian.hessian_density`),
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

    @property
    def lambda_max(self) -> float:
        return self.eigenvalues[0]

    def to_dict(self) -> dict[str, Any]:
        """The values, without the density (:func:`density_record` holds it)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "density"}
        return dict(values, lambda_max=self.lambda_max)


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
        One :class:`CheckpointSpectrum` per checkpoint, in step order.

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

    def measure(step: int) -> CheckpointSpectrum:
        common = dict(bn_mode=bn_mode, batches=run.batches,
                      generator=torch.Generator(device=device).manual_seed(run.config.train.seed))
        eigs = hessian_eigs(run.model, run.loss_fn, k=k, tol=tol, max_hvps=max_hvps, **common)
        tr = hessian_trace(run.model, run.loss_fn, max_hvps=max_hvps, **common) if trace else None
        return CheckpointSpectrum(
            run=str(run_dir), step=step, eigenvalues=eigs.eigenvalues.tolist(),
            residual=eigs.error_bound, converged=eigs.converged, hvps=eigs.hvps, batches=len(run.batches),
            trace=None if tr is None else tr.trace, trace_stderr=None if tr is None else tr.stderr,
            density=None if density is None else measure_density(step),
        )

    def measure_density(step: int) -> CheckpointDensity:
        generator = torch.Generator(device=device).manual_seed(run.config.train.seed)
        _, params = trainable_params(run.model)
        result = hessian_density(run.model, run.loss_fn, runs=density.runs, steps=density.steps,
                                 grid_size=density.grid_size, bn_mode=bn_mode, batches=run.batches,
                                 generator=generator)
        return CheckpointDensity(
            step=step, grid=result.grid.tolist(), density=result.density.tolist(),
            nodes=[t.tolist() for t in result.nodes], weights=[w.tolist() for w in result.weights],
            mean=result.mean, hvps=result.hvps, parameters=sum(p.numel() for p in params.values()),
            runs=density.runs, steps=density.steps, bn_mode=bn_mode, batches=len(run.batches),
        )

    results = [measure(run.step)]
    # Kept checkpoints all lie before the last: each is loaded when it is measured, into
    # the same model (measuring leaves it unchanged), and the list is put in step order.
    earlier = [s for s in kept_steps(run_dir) if s < run.step] if checkpoint == "all" else []
    for step in earlier:
        install_weights(run.model, load_weights(run_dir, step, map_location=device))
        results.append(measure(step))
    return sorted(results, key=lambda r: r.step)


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
