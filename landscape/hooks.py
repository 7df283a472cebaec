"""Deprecated: ``landscape.hooks`` moved (the hook protocol and schedules to
:mod:`landscape.training.hooks`, the measurement hooks (ProbeHook, ICSHook, HessianHook,
LayerInputDistributions) to :mod:`landscape.runner.adapters`).
Kept for one minor release; import from the new place."""

import warnings

from landscape.runner.adapters import *  # noqa: F403
from landscape.training.hooks import *  # noqa: F403

warnings.warn(
    "landscape.hooks moved: import from landscape.training.hooks and landscape.runner.adapters instead "
    "(landscape.hooks goes in the next minor release)",
    DeprecationWarning,
    stacklevel=2,
)
