"""Models built outside the registry: any torchvision classification model by
name (``torchvision:NAME``) and user models by import path (``pkg.module:factory``).

A normalization other than the builder's own BN is passed as ``norm_layer``; a
builder that cannot take one is refused rather than silently left with BN.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torchvision
from torch import nn

from landscape.models.noise import NormFactory

TORCHVISION_PREFIX = "torchvision:"


def _norm_kwargs(norm: str, norm_layer: NormFactory | None) -> dict[str, Any]:
    # "bn" is every builder's default, so it is left to the builder.
    if norm == "bn":
        return {}
    return {"norm_layer": norm_layer or nn.Identity}


def _call(builder: Callable[..., Any], kwargs: dict[str, Any], what: str, norm: str) -> Any:
    try:
        return builder(**kwargs)
    except TypeError as exc:
        if "norm_layer" not in str(exc):
            raise
        raise ValueError(f"{what} takes no norm_layer, so it cannot be built with norm {norm!r}; use norm bn") from exc


def build_torchvision(name: str, num_classes: int, norm: str, norm_layer: NormFactory | None) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=...)``.

    Args:
        name: a torchvision classification model, e.g. ``"resnet34"``.
        num_classes: outputs of the head.
        norm: the configured norm name; anything but ``"bn"`` is passed as ``norm_layer``.
        norm_layer: the factory for ``norm`` (None: no normalization, ``nn.Identity``).

    Raises:
        ValueError: unknown name, or a builder without ``norm_layer`` and norm != "bn".
    """
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"unknown torchvision classification model {name!r}; "
            "see torchvision.models.list_models(module=torchvision.models)"
        )
    kwargs = {"weights": None, "num_classes": num_classes, **_norm_kwargs(norm, norm_layer)}
    return _call(functools.partial(torchvision.models.get_model, name), kwargs, f"torchvision model {name!r}", norm)


def _accepts(fn: Callable[..., Any], parameter: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return parameter in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def build_from_path(path: str, num_classes: int, norm: str, norm_layer: NormFactory | None) -> nn.Module:
    """Import ``pkg.module:factory`` and call ``factory(num_classes=...)`` if it takes
    ``num_classes``, else ``factory()``; a norm other than ``"bn"`` goes in as ``norm_layer``.

    Raises:
        ValueError: malformed path, import failure, missing or non-callable factory,
            a factory without ``norm_layer`` and norm != "bn", or a result that is
            not an ``nn.Module``.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model {path!r} is not of the form package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for model {path!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"model {path!r}: {module_name!r} has no callable {attr!r}")
    kwargs = {"num_classes": num_classes} if _accepts(factory, "num_classes") else {}
    extra = _norm_kwargs(norm, norm_layer)
    if extra and not _accepts(factory, "norm_layer"):
        raise ValueError(f"model {path!r} takes no norm_layer, so it cannot be built with norm {norm!r}; use norm bn")
    model = _call(factory, {**kwargs, **extra}, f"model {path!r}", norm)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {path!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model
