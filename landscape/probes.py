"""Deprecated: ``landscape.probes`` moved (to :mod:`landscape.measure.probes`).
Kept for one minor release; import from the new place."""

import warnings

from landscape.measure.probes import *  # noqa: F403

warnings.warn(
    "landscape.probes moved: import from landscape.measure.probes instead "
    "(landscape.probes goes in the next minor release)",
    DeprecationWarning,
    stacklevel=2,
)
