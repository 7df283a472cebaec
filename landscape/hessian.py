"""Deprecated: ``landscape.hessian`` moved (to :mod:`landscape.curvature.hessian`).
Kept for one minor release; import from the new place."""

import warnings

from landscape.curvature.hessian import *  # noqa: F403

warnings.warn(
    "landscape.hessian moved: import from landscape.curvature.hessian instead "
    "(landscape.hessian goes in the next minor release)",
    DeprecationWarning,
    stacklevel=2,
)
