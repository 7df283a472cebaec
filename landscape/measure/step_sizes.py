"""Step sizes of a probe as the command line and configs give them: a list, or a range
``lin:A:B:N`` / ``log:A:B:N``, relative to the learning rate or absolute."""

from __future__ import annotations

import math
import re

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


_RANGE = re.compile(rf"^(lin|log):({_NUMBER}):({_NUMBER}):(\d+)$")


def parse_step_sizes(text: str) -> tuple[tuple[float, ...], bool]:
    """Parse a step-size specification.

    Forms (``abs:`` in front makes the values absolute instead of multiples of
    the training step size): ``0.5,1,2,4``; ``lin:START:STOP:COUNT`` (linearly
    spaced, endpoints included); ``log:START:STOP:COUNT`` (geometric).

    Args:
        text: The specification, e.g. ``"0.5,1,2,4"``, ``"abs:0.05,0.1"`` or ``"abs:log:0.01:30:6"``.

    Returns:
        ``(values, relative)``: the positive step sizes in the given order, and
        whether they are multiples of the training step size.

    Raises:
        ValueError: Empty, malformed, duplicated, non-positive or non-finite values (one-line message).
    """

    def fail(why: str) -> ValueError:
        return ValueError(f"invalid step sizes {text!r}: {why}")

    spec = text.strip().replace(" ", "")
    relative = not spec.startswith("abs:")
    if not relative:
        spec = spec[len("abs:") :]
    if not spec:
        raise fail("no values given")
    match = _RANGE.match(spec)
    if match:
        kind, start, stop, count = match.group(1), float(match.group(2)), float(match.group(3)), int(match.group(4))
        if count < 2:
            raise fail("a range needs a COUNT of at least 2")
        if not (math.isfinite(start) and math.isfinite(stop) and start > 0 and stop > 0):
            raise fail("range ends must be positive finite numbers")
        if kind == "lin":
            values = [start + (stop - start) * i / (count - 1) for i in range(count)]
        else:
            values = [start * (stop / start) ** (i / (count - 1)) for i in range(count)]
        values[-1] = stop  # exact endpoint despite rounding
    elif spec.startswith(("lin:", "log:")):
        raise fail("expected lin:START:STOP:COUNT or log:START:STOP:COUNT")
    else:
        items = spec.split(",")
        if any(not re.fullmatch(_NUMBER, item) for item in items):
            raise fail("expected comma-separated numbers")
        values = [float(item) for item in items]
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise fail("step sizes must be positive finite numbers")
    if len(set(values)) != len(values):
        raise fail("step sizes must be distinct")
    return tuple(values), relative
