"""A tqdm progress bar with ETA and the live loss, fed by the training loop."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:  # the command line starts (and completes words) without importing torch
    from landscape.training.loop import Progress


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Progress]:
    bar: tqdm | None = None

    def update(step: int, total: int, postfix: dict[str, float] | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(
                total=total,
                initial=step - 1,
                desc=description,
                unit="step",
                dynamic_ncols=True,
                disable=not enabled,
                leave=True,
            )
        bar.update(step - bar.n)
        if postfix:
            bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
