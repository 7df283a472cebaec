"""Does a stored run match the run asked for? The settings that make a run's numbers
what they are, compared between a run's stored ``config.json`` and a wanted
:meth:`landscape.config.RunConfig.to_dict`.

``landscape reproduce`` reuses finished runs; a run made at another scale (a
CPU-scale run copied into a paper-scale folder, a ``--subset`` run) must not be
taken for the one asked for. This module does not import torch (it reads stores
with :mod:`landscape.runs`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from landscape.config import DistributionConfig, ICSConfig, ProbeConfig, RunConfig

# The leaves compared, by section; everything else (data_dir, device, versions, commit,
# timestamps, eval and logging cadence, ...) may differ.
COMPARED: dict[str, tuple[str, ...]] = {
    "model": ("name", "norm", "width_mult", "depth", "width", "init", "init_gain"),
    "data": ("name", "subset"),
    "train": ("steps", "epochs", "lr", "batch_size", "dtype", "loss_reduction", "seed"),
}
# Measurement configs compared as a whole (their differing leaves are named).
MEASUREMENTS = ("probe", "ics", "distributions")

UNREADABLE = "unreadable"

_DEFAULTS: dict[str, Any] = RunConfig().to_dict()  # a key missing from an older config.json: its default
_MEASUREMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "probe": RunConfig(probe=ProbeConfig()).to_dict()["probe"],
    "ics": RunConfig(ics=ICSConfig()).to_dict()["ics"],
    "distributions": RunConfig(distributions=DistributionConfig()).to_dict()["distributions"],
}
_MISSING = object()


def _plain(value: Any) -> Any:
    """``value`` after a JSON round trip (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, default=str))


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = config.get(name)
    return section if isinstance(section, Mapping) else {}


def _leaf_differences(stored: Any, wanted: Any, defaults: Any, prefix: str) -> list[str]:
    """Dotted names of the leaves where two JSON values differ (a leaf one lacks
    takes its default when there is one)."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        keys = list(dict.fromkeys([*defaults, *wanted, *stored]))
        found: list[str] = []
        for key in keys:
            default = defaults.get(key, _MISSING)
            s, w = stored.get(key, default), wanted.get(key, default)
            if s is _MISSING or w is _MISSING:
                found.append(f"{prefix}.{key}")
            else:
                found += _leaf_differences(s, w, default, f"{prefix}.{key}")
        return found
    return [] if stored == wanted else [prefix]


def config_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The dotted names of the fields that differ between a run's stored config and a
    wanted one (both shaped as :meth:`RunConfig.to_dict`; the stored one may hold more
    keys: ``total_steps``, ``versions``, ...), in a fixed order: the model's name, norm,
    width_mult, depth and width; the data's name and subset; the training's steps,
    epochs, lr, batch_size, dtype, loss_reduction and seed; then the leaves of the
    probe, ics and distributions configs (``probe.step_sizes``,
    ``probe.schedule.every``), or the config's name alone (``probe``) when one side
    has it and the other has not. Values are compared after a JSON round trip (a
    tuple equals a list; floats exactly); a field missing from a side counts as its
    default. Nothing else is compared.
    """
    stored, wanted = _plain(dict(stored)), _plain(dict(wanted))
    found: list[str] = []
    for section, fields in COMPARED.items():
        s, w, d = _section(stored, section), _section(wanted, section), _DEFAULTS[section]
        found += [f"{section}.{f}" for f in fields if s.get(f, d[f]) != w.get(f, d[f])]
    for name in MEASUREMENTS:
        s, w = stored.get(name), wanted.get(name)
        if s is None and w is None:
            continue
        if s is None or w is None:
            found.append(name)
        else:
            found += _leaf_differences(s, w, _MEASUREMENT_DEFAULTS[name], name)
    return found


def field_value(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted name of a config, as :func:`config_differences` reads it
    (a missing field: its default; a missing measurement config: None)."""
    value: Any = _plain(dict(config))
    default: Any = {k: _DEFAULTS[k] for k in COMPARED}
    for i, part in enumerate(dotted.split(".")):
        if i == 0 and part in MEASUREMENTS:
            value, default = value.get(part), _MEASUREMENT_DEFAULTS[part]
            continue
        default = default.get(part) if isinstance(default, dict) else None
        value = value.get(part, default) if isinstance(value, dict) else None
    return value


def describe(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], names: list[str], width: int = 24, most: int = 6
) -> str:
    """``train.steps 2500 != 10000, probe.step_sizes`` (stored value first): each
    differing field, with both values where they are short; past ``most`` fields,
    ``+N more``."""
    parts = []
    for name in names[:most]:
        s, w = (json.dumps(field_value(c, name), separators=(",", ":")) for c in (stored, wanted))
        parts.append(f"{name} {s} != {w}" if len(s) + len(w) <= width else name)
    if len(names) > most:
        parts.append(f"+{len(names) - most} more")
    return ", ".join(parts)


def stored_config(run_dir: str | Path) -> dict[str, Any] | None:
    """A run directory's stored config; None when it does not exist or is empty.

    Raises:
        StoreError: it exists but is not a run store that reads.
    """
    from landscape.runs import RunStore

    run_dir = Path(run_dir)
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return None
    with RunStore(run_dir, readonly=True) as store:
        return dict(store.config)


def _stored(run_dir: str | Path) -> dict[str, Any] | str | None:
    """:func:`stored_config`, or :data:`UNREADABLE` where a run directory exists but its
    store does not read."""
    from landscape.runs import StoreError

    try:
        return stored_config(run_dir)
    except StoreError:
        return UNREADABLE


def run_differences(run_dir: str | Path, wanted: Mapping[str, Any]) -> list[str] | None:
    """:func:`config_differences` of the run in ``run_dir`` against ``wanted``; None
    when there is no run there yet; ``["unreadable"]`` when a run directory exists but
    its store does not read."""
    stored = _stored(run_dir)
    if stored is None or stored == UNREADABLE:
        return None if stored is None else [UNREADABLE]
    return config_differences(stored, wanted)


def run_mismatch(run_dir: str | Path, wanted: Mapping[str, Any]) -> str | None:
    """How the run in ``run_dir`` differs from ``wanted``, as :func:`describe` says it
    (``unreadable`` for a store that does not read); None when there is no run there
    or it matches."""
    stored = _stored(run_dir)
    if stored is None or stored == UNREADABLE:
        return stored
    names = config_differences(stored, wanted)
    return describe(stored, wanted, names) if names else None


__all__ = [
    "COMPARED",
    "MEASUREMENTS",
    "UNREADABLE",
    "config_differences",
    "describe",
    "field_value",
    "run_differences",
    "run_mismatch",
    "stored_config",
]
