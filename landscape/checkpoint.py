"""Atomic training checkpoints: model, optimizer, RNG states and loop position.

Written to a temp file, fsynced and renamed over ``checkpoints/last.pt``, so a
crash leaves the previous checkpoint or the new one, never half of one. Loaded
with ``torch.load(weights_only=True)``: only tensors and plain containers.

A run trained with ``keep_checkpoints`` also keeps the weights of every
checkpoint (model state and the model's own generators, no optimizer state) as
``checkpoints/weights-STEP.pt``: the points of Li et al.'s trajectory plot.
Each is written after ``last.pt``, so none lies beyond it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from landscape.runs import StoreError, write_atomic

LAST = Path("checkpoints") / "last.pt"
_WEIGHTS = re.compile(r"weights-(\d+)\.pt")


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    path = Path(run_dir) / LAST
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Raises:
    StoreError: there is no checkpoint, or it cannot be read."""
    path = Path(run_dir) / LAST
    if not path.is_file():
        raise StoreError(f"{run_dir}: no checkpoint to resume from ({LAST})")
    return _load(path, map_location)


def weights_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / LAST.parent / f"weights-{step:08d}.pt"


def save_weights(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Keep the weights of checkpoint ``state`` (its step, model and generators)."""
    kept = {k: state[k] for k in ("step", "model", "generators")}
    return write_atomic(weights_path(run_dir, int(state["step"])), lambda f: torch.save(kept, f))


def kept_steps(run_dir: str | Path) -> list[int]:
    """The steps whose weights the run kept, ascending (empty without ``keep_checkpoints``)."""
    folder = Path(run_dir) / LAST.parent
    if not folder.is_dir():
        return []
    return sorted(int(m[1]) for p in folder.iterdir() if (m := _WEIGHTS.fullmatch(p.name)))


def load_weights(
    run_dir: str | Path, step: int | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """The ``step``, ``model`` state and ``generators`` of the last checkpoint (``step``
    None) or of the kept checkpoint at ``step``.

    Raises:
        StoreError: no such checkpoint, or it cannot be read.
    """
    if step is None:
        state = load_checkpoint(run_dir, map_location)
    else:
        path = weights_path(run_dir, step)
        if not path.is_file():
            steps = kept_steps(run_dir)
            kept = (f"kept steps: {', '.join(map(str, steps))}" if steps
                    else "it kept none (train with --keep-checkpoints)")
            raise StoreError(f"{run_dir}: no checkpoint at step {step} ({kept})")
        state = _load(path, map_location)
    return {"step": int(state["step"]), "model": state["model"], "generators": state.get("generators", [])}


def _load(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        raise StoreError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None
