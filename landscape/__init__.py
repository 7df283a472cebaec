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
    "probe_gradient": "landscape.measure.probes",
    "ProbeHook": "landscape.runner.adapters",
    "ProbeResult": "landscape.measure.probes",
    "training_grads": "landscape.measure.probes",
    "measure_ics": "landscape.measure.ics",
    "ICSHook": "landscape.runner.adapters",
    "HessianHook": "landscape.runner.adapters",
    "checkpoint_spectrum": "landscape.runner.spectrum",
    "LayerInputDistributions": "landscape.runner.adapters",
    "activation_sites": "landscape.measure.distributions",
    "train": "landscape.runner.train",
    "paper_config": "landscape.paper.defaults",
    "loss_surface": "landscape.curvature.surface",
    "hessian_eigs": "landscape.curvature.hessian",
    "hessian_trace": "landscape.curvature.hessian",
    "hessian_density": "landscape.curvature.hessian",
    "EigResult": "landscape.curvature.hessian",
    "TraceResult": "landscape.curvature.hessian",
    "DensityResult": "landscape.curvature.hessian",
    "Surface": "landscape.curvature.surface",
    "RunConfig": "landscape.config",
    "ModelConfig": "landscape.config",
    "DataConfig": "landscape.config",
    "TrainConfig": "landscape.config",
    "ProbeConfig": "landscape.config",
    "HessianConfig": "landscape.config",
    "NoiseConfig": "landscape.config",
    "Event": "landscape.training.hooks",
    "every": "landscape.training.hooks",
    "RunStore": "landscape.runs",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'landscape' has no attribute {name!r}")
