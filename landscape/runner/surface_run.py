"""The loss surface of a recorded run (Li et al. 2018, Visualizing the Loss Landscape
of Neural Nets, Sec. 4 and 7), written as ``surface.json``.

The network is rebuilt at one checkpoint by :func:`landscape.runner.run_model.load_run_model`.
The loss is the mean over the run's first ``batches`` training batches: the global
batches of steps 0, 1, ... (epoch 0's order from the run's seed, no augmentation),
the same for every checkpoint, so surfaces of one run compare.
:func:`landscape.curvature.surface.loss_surface` evaluates the grid:

    filter / random   Li et al.'s Gaussian directions, drawn from ``seed``
    eigen             the top ``dims`` unit Hessian eigenvectors of the same loss
                      (:func:`landscape.curvature.hessian.hessian_eigs`): ``span`` is then a
                      distance in weight space
    trajectory        the two PCA directions of w_i - w_final over the kept
                      checkpoints (:func:`landscape.curvature.surface.trajectory_directions`),
                      the grid covering the projected path times ``span`` and a margin

A trajectory needs the weights of several checkpoints: a run trained with
``keep_checkpoints`` keeps them (``checkpoints/weights-STEP.pt``); otherwise only
``last.pt`` exists and there is no path to draw.

Under torchrun every process loads the run and its batches and evaluates its share of
the grid points (:class:`landscape.curvature.surface.Shard`); every process ends with the whole
record, and only rank 0 should write it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch

from landscape import distributed
from landscape.config import SurfaceConfig
from landscape.curvature.hessian import hessian_eigs
from landscape.curvature.surface import Direction, Shard, loss_surface, trajectory_directions
from landscape.runner.run_model import RunModel, load_checkpoint_weights, load_run_model
from landscape.runs import SURFACE_DIR, SURFACE_JSON, StoreError, write_json_atomic
from landscape.state import has_filters, trainable_params
from landscape.training.checkpoint import kept_steps, load_weights

log = logging.getLogger(__name__)

FORMAT = 1
TRAJECTORY_MARGIN = 1.25  # the grid reaches 25% beyond the path's farthest point along each direction
MIN_TRAJECTORY = 4  # checkpoints: 3 before the final one give two centered PCA directions


def default_output(run_dir: str | Path) -> Path:
    """``RUN/surface``: the surface lives beside the run it shows."""
    return Path(run_dir) / SURFACE_DIR


def run_surface(run_dir: str | Path, settings: SurfaceConfig, *, points_per_forward: int = 1) -> dict[str, Any]:
    """The loss surface of a run at one checkpoint, as the record ``surface.json`` holds.

    Under torchrun (a process group of W processes) each process evaluates about 1/W
    of the grid points on the same batches, and every process returns the whole record.

    Args:
        run_dir: The run directory.
        settings: What to compute (:class:`landscape.config.SurfaceConfig`).
        points_per_forward: Grid points per forward pass: 1 (the loop) or N > 1
            (``torch.func.vmap``; see :func:`landscape.curvature.surface.loss_surface`). How the
            surface is computed, not what: left out of the record's settings.

    Returns:
        A JSON-ready dict: ``coords`` (one list per direction; for a trajectory in PCA
        units), ``losses`` (nested lists, null where not finite), ``base_loss`` (the
        loss at the checkpoint's weights, at ``center_index``), ``settings``,
        ``checkpoint``, ``data``, ``run`` and, by kind, ``eigen`` or ``trajectory``.

    Raises:
        StoreError: Not a run, no such checkpoint, or too few kept checkpoints for a
            trajectory (one-line messages).
        DataError, ValueError: Bad data or settings.
    """
    if settings.trajectory:
        _check_trajectory(run_dir, settings.checkpoint)
    run = load_run_model(run_dir, settings.checkpoint, settings.batches)
    generator = torch.Generator().manual_seed(settings.seed)
    extra: dict[str, Any] = {}
    directions: str | list[Direction] = settings.directions
    scales = [1.0] * settings.dims
    if settings.trajectory:
        directions, scales, extra["trajectory"] = _trajectory(run_dir, run, settings)
    elif settings.directions == "eigen":
        directions, extra["eigen"] = _eigen(run, settings, generator)
    span = 1.0 if settings.trajectory else settings.span  # a trajectory's span is in its directions' scales
    surface = loss_surface(
        run.model,
        run.loss_fn,
        None,
        None,
        directions=directions,
        steps=settings.steps,
        span=span,
        dims=settings.dims,
        bn_mode=settings.bn_mode,
        include_bias_and_bn=settings.include_bias_and_bn,
        generator=generator,
        batches=run.batches,
        points_per_forward=points_per_forward,
        shard=_shard(),
    )
    return {
        "format": FORMAT,
        "run": str(Path(run_dir).resolve()),
        "label": run.config.name or Path(run_dir).resolve().name,
        "checkpoint": {"which": settings.checkpoint, "step": run.step},
        "settings": dataclasses.asdict(settings),
        "data": {
            "batches": len(run.batches),
            "batch_size": len(run.batches[0][1]),
            "order": f"the run's first {len(run.batches)} training batches (epoch 0, seed "
            f"{run.config.train.seed}), no augmentation",
        },
        "coords": [(c * s).tolist() for c, s in zip(surface.coords, scales)],
        "losses": _finite_or_none(surface.losses.tolist()),
        "base_loss": surface.base_loss if math.isfinite(surface.base_loss) else None,
        "center_index": list(surface.center_index),
        **extra,
    }


def _shard() -> Shard | None:
    """This process's share of the grid under torchrun; None for one process."""
    if distributed.world_size() == 1:
        return None
    return Shard(rank=distributed.rank(), world=distributed.world_size(), sum=distributed.all_reduce_sum)


def save_surface(out_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as ``out_dir/surface.json`` (atomically; the folder is made)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SURFACE_JSON
    write_json_atomic(path, record)
    return path


def _earlier_steps(run_dir: str | Path, final_step: int) -> list[int]:
    return [s for s in kept_steps(run_dir) if s < final_step]


def _check_trajectory(run_dir: str | Path, checkpoint: str) -> None:
    """Fail before any work when the run kept too few checkpoints for a path."""
    final = load_checkpoint_weights(run_dir, checkpoint, torch.device("cpu"))["step"]
    earlier = _earlier_steps(run_dir, final)
    if len(earlier) + 1 < MIN_TRAJECTORY:
        kept = "only checkpoints/last.pt" if not kept_steps(run_dir) else f"{len(earlier) + 1} up to step {final}"
        raise StoreError(
            f"{run_dir}: --trajectory needs at least {MIN_TRAJECTORY} checkpoints and the run has {kept}; "
            "train with --keep-checkpoints and a --checkpoint-every that gives several"
        )


def _trajectory(
    run_dir: str | Path, run: RunModel, settings: SurfaceConfig
) -> tuple[list[Direction], list[float], dict[str, Any]]:
    """The PCA directions scaled to cover the path, the scales, and the path's record."""
    _, params = trainable_params(run.model)
    steps = _earlier_steps(run_dir, run.step)
    device = next(iter(params.values())).device
    weights = []
    for step in steps:
        state = load_weights(run_dir, step, map_location=device)["model"]
        weights.append([state[name].to(p.dtype) for name, p in params.items()])
    final = [p.detach() for p in params.values()]
    traj = trajectory_directions(weights, final, include_bias_and_bn=settings.include_bias_and_bn)
    scales = [settings.span * TRAJECTORY_MARGIN * float(traj.path[:, k].abs().max()) for k in range(2)]
    directions = [[t * s for t in d] for d, s in zip(traj.directions, scales)]
    record = {
        "steps": [*steps, run.step],
        "path": traj.path.tolist(),
        "explained_variance_ratio": traj.explained_variance_ratio.tolist(),
    }
    return directions, scales, record


def _eigen(
    run: RunModel, settings: SurfaceConfig, generator: torch.Generator
) -> tuple[list[Direction], dict[str, Any]]:
    """The top ``dims`` Hessian eigenvectors as directions, in the trainable parameters'
    order; 1-D parameters are left out of H unless ``include_bias_and_bn``."""
    block = None if settings.include_bias_and_bn else (lambda name, p: has_filters(p))
    result = hessian_eigs(
        run.model,
        run.loss_fn,
        k=settings.dims,
        bn_mode=settings.bn_mode,
        return_eigenvectors=True,
        block=block,
        batches=run.batches,
        generator=generator,
    )
    if not result.converged:
        log.warning(
            "the Hessian eigenvectors did not converge (residuals %s); the directions are approximate",
            ", ".join(f"{r:.3g}" for r in result.residuals.tolist()),
        )
    _, params = trainable_params(run.model)
    directions = [
        [vec[name] if name in vec else torch.zeros_like(p) for name, p in params.items()] for vec in result.eigenvectors
    ]
    record = {
        "eigenvalues": result.eigenvalues.tolist(),
        "residuals": result.residuals.tolist(),
        "converged": result.converged,
    }
    return directions, record


def _finite_or_none(values: Any) -> Any:
    if isinstance(values, list):
        return [_finite_or_none(v) for v in values]
    return values if math.isfinite(values) else None
