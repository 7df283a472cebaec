"""Santurkar et al. 2018 as software: the paper's defaults (:mod:`~landscape.paper.defaults`,
re-exported here: ``landscape.paper.paper_config``), its claims as data
(:mod:`~landscape.paper.catalogue`), how they are measured and judged
(:mod:`~landscape.paper.measures`, :mod:`~landscape.paper.intervals`,
:mod:`~landscape.paper.claims`), its figures as experiments
(:mod:`~landscape.paper.reproduce`) and the REPRODUCTION.md writer
(:mod:`~landscape.paper.reproduction`). Imported lazily: ``landscape.paper.catalogue``
alone costs nothing."""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("catalogue", "claims", "defaults", "figures", "intervals", "measures", "reproduce", "reproduction")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"landscape.paper.{name}")
    defaults = importlib.import_module("landscape.paper.defaults")
    if hasattr(defaults, name):
        return getattr(defaults, name)
    raise AttributeError(f"module 'landscape.paper' has no attribute {name!r}")
