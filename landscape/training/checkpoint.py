"""Atomic training checkpoints: model, optimizer, RNG states and loop position.

Written to a temp file, fsynced and renamed over ``checkpoints/last.pt``, so a
crash leaves the previous checkpoint or the new one, never half of one. Loaded
with ``torch.load(weights_only=True)``: only tensors and plain containers.

A run trained with ``keep_checkpoints`` also keeps the weights of every
checkpoint (model state and the model's own generators, no optimizer state) as
``checkpoints/weights-STEP.pt``: the points of Li et al.'s trajectory plot.
Each is written after ``last.pt``, so none lies beyond it.

Every reader goes through :func:`check_checkpoint`: a file that loads but holds
something else (a bare tensor, a Lightning checkpoint, a dict without ``step`` or
``model``, objects that ``weights_only`` refuses) is one line naming what it holds,
never an IndexError or KeyError further on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from landscape.runs import StoreError, write_atomic

LAST = Path("checkpoints") / "last.pt"
_WEIGHTS = re.compile(r"weights-(\d+)\.pt")
# What each reader needs, and the type each entry must have where it is present.
WEIGHTS_KEYS = ("step", "model")
RESUME_KEYS = ("step", "model", "optimizer", "epoch_start_state", "augment_state", "cpu_rng", "cuda_rng", "generators")
_TYPES: dict[str, type] = {
    "step": int,
    "model": dict,
    "optimizer": dict,
    "generators": list,
    "epoch_start_state": torch.Tensor,
    "augment_state": torch.Tensor,
    "cpu_rng": torch.Tensor,
    "cuda_rng": torch.Tensor,
}


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    path = Path(run_dir) / LAST
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Raises:
    StoreError: there is no checkpoint, it cannot be read, or it holds no checkpoint
    to resume from (:func:`check_checkpoint`)."""
    return _load(_last(run_dir), map_location, RESUME_KEYS)


def _last(run_dir: str | Path) -> Path:
    path = Path(run_dir) / LAST
    if not path.is_file():
        raise StoreError(f"{run_dir}: no checkpoint to resume from ({LAST})")
    return path


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
        StoreError: no such checkpoint, it cannot be read, or it holds no weights
            (:func:`check_checkpoint`).
    """
    if step is None:
        state = _load(_last(run_dir), map_location, WEIGHTS_KEYS)
    else:
        path = weights_path(run_dir, step)
        if not path.is_file():
            steps = kept_steps(run_dir)
            kept = (
                f"kept steps: {', '.join(map(str, steps))}" if steps else "it kept none (train with --keep-checkpoints)"
            )
            raise StoreError(f"{run_dir}: no checkpoint at step {step} ({kept})")
        state = _load(path, map_location, WEIGHTS_KEYS)
    return {"step": int(state["step"]), "model": state["model"], "generators": state.get("generators", [])}


def check_checkpoint(state: Any, path: str | Path, keys: tuple[str, ...] = WEIGHTS_KEYS) -> dict[str, Any]:
    """``state`` (what ``torch.load`` read from ``path``) if it is a landscape checkpoint
    holding ``keys``, each of the type the readers expect.

    Raises:
        StoreError: one line naming what the file holds instead.
    """
    found = _not_a_checkpoint(state, keys)
    if found is not None:
        raise StoreError(f"{path}: not a landscape checkpoint: it holds {found}")
    return state


def _not_a_checkpoint(state: Any, keys: tuple[str, ...]) -> str | None:
    """What ``state`` is, where it is not a checkpoint with ``keys``; None where it is."""
    if isinstance(state, torch.Tensor):
        return f"a bare tensor ({str(state.dtype).removeprefix('torch.')}, shape {tuple(state.shape)})"
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a dict"
    if "state_dict" in state and ("global_step" in state or "pytorch-lightning_version" in state):
        return (
            f"a PyTorch Lightning checkpoint (global_step {state.get('global_step', '?')}, "
            f"pytorch-lightning {state.get('pytorch-lightning_version', '?')})"
        )
    missing = [k for k in keys if k not in state]
    if missing:
        shown = sorted(map(str, state))
        listed = ", ".join(shown[:8]) + (", ..." if len(shown) > 8 else "") if shown else "none"
        return f"a dict without {', '.join(map(repr, missing))} (its keys: {listed})"
    wrong = next((k for k in keys if k in _TYPES and not isinstance(state[k], _TYPES[k])), None)
    if wrong is not None:
        return f"a dict whose {wrong!r} is a {type(state[wrong]).__name__}"
    return None


def _load(path: Path, map_location: str | torch.device, keys: tuple[str, ...]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        refused = _unsafe_globals(path)
        if refused:
            raise StoreError(
                f"{path}: not a landscape checkpoint: it holds objects torch.load(weights_only=True) "
                f"refuses ({', '.join(refused[:3])}{', ...' if len(refused) > 3 else ''})"
            ) from None
        raise StoreError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None
    return check_checkpoint(state, path, keys)


def _unsafe_globals(path: Path) -> list[str]:
    """The classes and functions a well-formed checkpoint names that ``weights_only``
    refuses to load; empty for damaged bytes."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # damaged bytes: not a zip archive, or a broken one
        return []
