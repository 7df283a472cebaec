"""Atomic training checkpoints: model, optimizer, RNG states and loop position.

Written to a temp file, fsynced and renamed over ``checkpoints/last.pt``, so a
crash leaves the previous checkpoint or the new one, never half of one. Loaded
with ``torch.load(weights_only=True)``: only tensors and plain containers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from landscape.runs import StoreError, write_atomic

LAST = Path("checkpoints") / "last.pt"


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
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        raise StoreError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None
