"""landscape: loss-landscape analysis for PyTorch (Santurkar et al. 2018).

The public API is imported lazily, so ``landscape.runs`` and
``landscape.report`` can be used without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

try:  # written from git by setuptools-scm when the package is installed or built
    from landscape._version import __version__
except ImportError:  # a source tree on sys.path that was never installed or built
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("torch-landscape")
    except PackageNotFoundError:
        __version__ = "0+unknown"

_EXPORTS = {
    "build_model": "landscape.models",
    "load_data": "landscape.data",
    "probe_gradient": "landscape.probes",
    "ProbeHook": "landscape.hooks",
    "ProbeResult": "landscape.probes",
    "training_grads": "landscape.probes",
    "measure_ics": "landscape.ics",
    "ICSHook": "landscape.hooks",
    "HessianHook": "landscape.hooks",
    "checkpoint_spectrum": "landscape.spectrum",
    "LayerInputDistributions": "landscape.distributions",
    "activation_sites": "landscape.distributions",
    "train": "landscape.train",
    "paper_config": "landscape.paper",
    "loss_surface": "landscape.surface",
    "hessian_eigs": "landscape.hessian",
    "hessian_trace": "landscape.hessian",
    "hessian_density": "landscape.hessian",
    "EigResult": "landscape.hessian",
    "TraceResult": "landscape.hessian",
    "DensityResult": "landscape.hessian",
    "Surface": "landscape.surface",
    "RunConfig": "landscape.config",
    "ModelConfig": "landscape.config",
    "DataConfig": "landscape.config",
    "TrainConfig": "landscape.config",
    "ProbeConfig": "landscape.config",
    "HessianConfig": "landscape.config",
    "NoiseConfig": "landscape.config",
    "Event": "landscape.hooks",
    "every": "landscape.hooks",
    "RunStore": "landscape.runs",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'landscape' has no attribute {name!r}")
