"""How a claim's verdict reads: its interval, half-width and scale as text (the
commands' tables, the report pages, REPRODUCTION.md). Claims are the dicts of
``claims.json`` (:mod:`landscape.paper.claims` writes them); nothing here judges."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def scale_label(scale: Mapping[str, Any] | None) -> str:
    """``paper protocol: dln, 10,000 steps`` or ``reduced: vgg11 x1/8, 3,750 of 15,000
    steps, 10,000 test images``."""
    if not scale:
        return "scale unknown"
    parts = [str(scale.get("model"))]
    width = scale.get("width_mult")
    if isinstance(width, (int, float)) and width != 1:
        parts[0] += f" x1/{1 / width:g}" if 1 / width == round(1 / width) else f" x{width:g}"
    steps, paper_steps = scale.get("steps"), scale.get("paper_steps")
    if isinstance(steps, (int, float)):
        of = f" of {paper_steps:,}" if isinstance(paper_steps, (int, float)) and paper_steps != steps else ""
        parts.append(f"{steps:,}{of} steps")
    if isinstance(scale.get("train_images"), int) and scale.get("protocol") is False:
        parts.append(f"{scale['train_images']:,} training images")
    if isinstance(scale.get("test_images"), int):
        parts.append(f"{scale['test_images']:,} test {scale.get('test_unit', 'images')}")
    if scale.get("optimizer"):
        protocol = scale.get("protocol_optimizer")
        parts.append(f"{scale['optimizer']} (the protocol's: {protocol})" if protocol else
                     f"{scale['optimizer']} (the paper's: plain SGD)")  # fmt: skip
    protocol = f"{scale.get('protocol_name', 'paper protocol')}: "
    return (protocol if scale.get("protocol") else "reduced: ") + ", ".join(parts)


def half_width_text(claim: Mapping[str, Any]) -> str:
    """The interval's half-width as the verdict prints it: ``x/ 1.19`` for a ratio
    (a factor either way), ``+- 0.011`` otherwise."""
    interval = claim.get("interval")
    if not interval or not all(isinstance(v, (int, float)) for v in interval):
        return ""
    lo, hi = interval
    if claim.get("ratio"):
        if lo > 0 and hi > 0 and math.isfinite(hi):
            return f"x/ {math.sqrt(hi / lo):.3g}"
        return ""
    return f"+- {(hi - lo) / 2:.3g}"


def estimate_text(claim: Mapping[str, Any]) -> str:
    """``1.81 [1.52, 2.1] (x/ 1.18)``, or ``no interval (REASON)``."""
    est, interval = claim.get("estimate"), claim.get("interval")
    if "interval" not in claim:
        return "no interval (made before intervals)"
    if est is None or not interval:
        return "no interval"  # the verdict's reason says why
    return f"{est:.3g} [{interval[0]:.3g}, {interval[1]:.3g}] ({half_width_text(claim)})"


__all__ = ["estimate_text", "half_width_text", "scale_label"]
