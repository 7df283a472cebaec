"""Figures of a run's Hessian eigenvalue density (``spectrum/density.json`` of
:mod:`landscape.runner.spectrum`; stochastic Lanczos quadrature, Ghorbani et al. 2019, Fig. 1-3).

The density phi(t) is drawn against the eigenvalue t on a log axis, as Ghorbani et
al. and PyHessian draw it: a few outliers carry densities decades below the bulk's.
Values below :data:`FLOOR` times the figure's highest density (the Gaussian tails
underflow to 0 between far nodes) are drawn at that floor, so the log axis keeps
them. One figure compares the runs at their last measured checkpoint, in the
runs' colours; a run measured at several checkpoints also gets a figure of its own,
one line per checkpoint coloured by step. Never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from landscape.report import arrays, data
from landscape.report.data import RunRecord
from landscape.report.plots import new_figure, template_text, text
from landscape.runs import DENSITY_JSON, SPECTRUM_DIR

FLOOR = 1e-8  # relative to the figure's highest density: the log axis spans 8 decades at most
COLORSCALE = "Viridis"

Record = Mapping[str, Any]


def load_density(run_dir: str | Path) -> Record | None:
    """``RUN/spectrum/density.json``, or None when there is none (an unreadable or
    malformed one is logged and left out: the rest of the report still shows)."""
    return data.load_checked_json(Path(run_dir) / SPECTRUM_DIR / DENSITY_JSON, _check, "Hessian density")


def _check(record: Any) -> None:
    """Raise ValueError unless ``record`` holds densities the figures can draw."""
    if not isinstance(record, dict) or not isinstance(record.get("densities"), list) or not record["densities"]:
        raise ValueError("no list of densities")
    for entry in record["densities"]:
        if not isinstance(entry, dict):
            raise ValueError("a density is not an object")
        try:
            grid = np.asarray(entry["grid"], dtype=float)
            density = np.asarray(entry["density"], dtype=float)
            step = entry["step"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"a density lacks grid, density or step ({type(e).__name__}: {e})") from None
        if grid.ndim != 1 or grid.shape != density.shape or len(grid) < 2:
            raise ValueError("grid and density are not two equal series of at least 2 points")
        if not (np.isfinite(grid).all() and np.isfinite(density).all()) or not isinstance(step, int):
            raise ValueError("non-finite values or a step that is not an integer")


def _curve(entry: Record) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(entry["grid"], dtype=float), np.asarray(entry["density"], dtype=float)


def _peak(entries: Sequence[Record]) -> float:
    """The highest density of the entries (1 when none is positive: a flat floor)."""
    peak = max(float(np.max(_curve(e)[1])) for e in entries)
    return peak if peak > 0 else 1.0


def _trace(entry: Record, name: str, color: str, floor: float) -> go.Scatter:
    grid, density = _curve(entry)
    mean = entry.get("mean")
    hover = f"{template_text(name)}<br>λ %{{x:.4g}}<br>density %{{y:.3g}}"
    if isinstance(mean, (int, float)) and math.isfinite(mean):
        hover += f"<br>mean (tr H / n) {mean:.4g}"
    return go.Scatter(
        x=grid,
        y=np.maximum(density, floor),
        mode="lines",
        name=text(name),
        line=dict(color=color),
        hovertemplate=hover + "<extra></extra>",
    )


def _axes(fig: go.Figure, peak: float) -> go.Figure:
    top = math.log10(peak)
    fig.update_layout(
        xaxis_title="eigenvalue λ of H",
        legend=dict(orientation="h", y=-0.2),
        yaxis=dict(title="density", type="log", range=[top + math.log10(FLOOR), top + 0.3]),
    )
    return fig


def plot_density(labelled: Sequence[tuple[str, str, Record]]) -> go.Figure:
    """The runs' densities at their last measured checkpoint, one line each.

    Args:
        labelled: (run label, colour, density record) per run.

    Returns:
        The figure; without runs, an empty one.
    """
    fig = new_figure("Hessian eigenvalue density (last measured checkpoint)", height=460)
    if not labelled:
        return fig
    last = [record["densities"][-1] for _, _, record in labelled]
    peak = _peak(last)
    for (label, color, _), entry in zip(labelled, last):
        fig.add_trace(_trace(entry, f"{label} (step {entry['step']})", color, FLOOR * peak))
    return _axes(fig, peak)


def plot_density_over_training(label: str, record: Record) -> go.Figure:
    """One run's densities at each measured checkpoint, coloured by step (a colour bar
    gives the scale).

    Returns:
        The figure; with fewer than two checkpoints, an empty one.
    """
    entries = record["densities"]
    fig = new_figure(f"Hessian eigenvalue density over training — {text(label)}", height=460)
    if len(entries) < 2:
        return fig
    steps = [int(e["step"]) for e in entries]
    first, span = min(steps), max(max(steps) - min(steps), 1)
    peak = _peak(entries)
    for entry, step in zip(entries, steps):
        color = sample_colorscale(COLORSCALE, [(step - first) / span])[0]
        fig.add_trace(_trace(entry, f"step {step}", color, FLOOR * peak))
    fig.add_trace(
        go.Scatter(  # carries the colour bar of the step scale; draws nothing
            x=[entries[0]["grid"][0]],
            y=[None],
            mode="markers",
            hoverinfo="skip",
            showlegend=False,
            marker=dict(
                colorscale=COLORSCALE,
                cmin=first,
                cmax=first + span,
                color=[first],
                showscale=True,
                colorbar=dict(title=dict(text="step")),
            ),
        )
    )
    return _axes(fig, peak)


def plot_run_densities(runs: Sequence[RunRecord]) -> list[go.Figure]:
    """The runs that have ``spectrum/density.json``: the comparison at the last measured
    checkpoints, then each run measured at several checkpoints on its own (a single run
    measured at several is shown by its own figure alone)."""
    colors = arrays.run_colors([r.norm for r in runs])
    labelled = [
        (run.label, color, record) for run, color in zip(runs, colors) if (record := load_density(run.path)) is not None
    ]
    over_training = [
        plot_density_over_training(label, record) for label, _, record in labelled if len(record["densities"]) > 1
    ]
    if len(labelled) == 1 and over_training:
        return over_training
    return [plot_density(labelled), *over_training]
