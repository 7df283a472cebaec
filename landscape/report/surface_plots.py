"""Figures of a run's loss surface (``surface.json`` of :mod:`landscape.runner.surface_run`;
Li et al. 2018, Visualizing the Loss Landscape of Neural Nets, Fig. 1, 5 and 9).

A 2-D surface is drawn as contours and as a 3-D surface, a 1-D one as a line, and
a trajectory as contours over the two PCA directions with the projected training
path on top, each axis titled with its share of the path's variance. Non-finite
losses (null in the JSON) are gaps. Never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from landscape.report.data import RunRecord, load_checked_json
from landscape.report.plots import new_figure, text
from landscape.runs import SURFACE_DIR, SURFACE_JSON

COLORSCALE = "Viridis"
CONTOURS = 30
_DIRECTION_NAMES = {"filter": "filter-normalized", "random": "random"}

Record = Mapping[str, Any]


def load_surface(run_dir: str | Path) -> Record | None:
    """``RUN/surface/surface.json``, or None when there is none (an unreadable one is
    logged and left out: the rest of the report still shows)."""
    return load_checked_json(Path(run_dir) / SURFACE_DIR / SURFACE_JSON, _check, "surface")


def _check(record: Any) -> None:
    """Raise ValueError unless ``record`` holds a surface the figures can draw."""
    if not isinstance(record, dict):
        raise ValueError("not an object")
    try:
        coords = [np.asarray(c, dtype=float) for c in record["coords"]]
        losses = np.asarray(record["losses"], dtype=float)
        step, directions, base = record["checkpoint"]["step"], record["settings"]["directions"], record["base_loss"]
        if record.get("trajectory"):
            path = np.asarray(record["trajectory"]["path"], dtype=float)
            ratios = [float(r) for r in record["trajectory"]["explained_variance_ratio"]]
            steps = list(record["trajectory"]["steps"])
        if record.get("eigen"):
            eigenvalues = [float(v) for v in record["eigen"]["eigenvalues"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"missing or malformed field ({type(e).__name__}: {e})") from None
    if len(coords) not in (1, 2) or any(c.ndim != 1 for c in coords):
        raise ValueError("coords are not one or two series")
    if losses.shape != tuple(len(c) for c in coords):
        raise ValueError(f"losses of shape {losses.shape} do not match the coordinates")
    if (
        not isinstance(step, int)
        or not isinstance(directions, str)
        or not (base is None or isinstance(base, float | int))
    ):
        raise ValueError("checkpoint step, directions or base loss of the wrong type")
    if record.get("trajectory") and (
        path.ndim != 2 or path.shape[1] != 2 or len(ratios) != 2 or len(steps) != len(path)
    ):
        raise ValueError("the trajectory's path, steps and variance ratios do not fit")
    if record.get("eigen") and len(eigenvalues) != len(coords):
        raise ValueError("one eigenvalue per direction expected")


def axis_titles(record: Record) -> list[str]:
    """One title per direction: the kind of direction (eigenvalue, share of variance)."""
    dims = len(record["coords"])
    if record.get("trajectory"):
        ratios = record["trajectory"]["explained_variance_ratio"]
        return [f"PC{k + 1} ({100 * r:.1f}% of variance)" for k, r in enumerate(ratios)]
    if record.get("eigen"):
        return [f"Hessian eigenvector {k + 1} (λ = {v:.4g})" for k, v in enumerate(record["eigen"]["eigenvalues"])]
    kind = _DIRECTION_NAMES.get(record["settings"]["directions"], record["settings"]["directions"])
    return [f"d{k + 1} ({text(kind)})" for k in range(dims)]


def plot_surface_contour(record: Record) -> go.Figure:
    """Contours of a 2-D surface with the checkpoint's weights marked at the centre."""
    fig = new_figure(f"Loss contours — {_name(record)}", height=560)
    if len(record["coords"]) != 2:
        return fig
    fig.add_trace(_contour(record))
    fig.add_trace(_centre(record))
    return _axes(fig, record)


def plot_surface_3d(record: Record) -> go.Figure:
    """A 2-D surface in 3-D (drag to turn)."""
    fig = new_figure(f"Loss surface — {_name(record)}", height=640)
    if len(record["coords"]) != 2:
        return fig
    a, b, z = grid(record)
    fig.add_trace(
        go.Surface(
            x=a,
            y=b,
            z=z.T,
            colorscale=COLORSCALE,
            colorbar=dict(title="loss"),
            hovertemplate="(%{x:.4g}, %{y:.4g})<br>loss %{z:.6g}<extra></extra>",
        )
    )
    x_title, y_title = axis_titles(record)
    fig.update_layout(scene=dict(xaxis_title=x_title, yaxis_title=y_title, zaxis_title="loss"))
    return fig


def plot_surface_1d(record: Record) -> go.Figure:
    """The loss along one direction, with the checkpoint's weights marked at 0."""
    fig = new_figure(f"Loss along a direction — {_name(record)}")
    if len(record["coords"]) != 1:
        return fig
    a = np.asarray(record["coords"][0], dtype=float)
    losses = np.asarray(record["losses"], dtype=float)
    fig.add_trace(
        go.Scatter(
            x=a, y=losses, mode="lines+markers", name="loss", hovertemplate="%{x:.4g}: loss %{y:.6g}<extra></extra>"
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[0.0],
            y=[_base(record)],
            mode="markers",
            marker=dict(size=11, symbol="star"),
            name=f"checkpoint (step {record['checkpoint']['step']})",
        )
    )
    fig.update_layout(xaxis_title=axis_titles(record)[0], yaxis_title="loss")
    return fig


def plot_trajectory(record: Record) -> go.Figure:
    """Li et al.'s trajectory plot: contours over the two PCA directions of the kept
    checkpoints and the training path projected onto them (the final weights at 0)."""
    fig = new_figure(f"Training path over the loss contours — {_name(record)}", height=560)
    trajectory = record.get("trajectory")
    if not trajectory or len(record["coords"]) != 2:
        return fig
    path = np.asarray(trajectory["path"], dtype=float)  # (checkpoints, 2)
    fig.add_trace(_contour(record))
    fig.add_trace(
        go.Scatter(
            x=path[:, 0],
            y=path[:, 1],
            mode="lines+markers",
            name="training path",
            line=dict(color="#d62728"),
            marker=dict(size=7),
            customdata=trajectory["steps"],
            hovertemplate="step %{customdata}<br>(%{x:.4g}, %{y:.4g})<extra></extra>",
        )
    )
    fig.add_trace(_centre(record))
    return _axes(fig, record)


def surface_figures(record: Record) -> list[go.Figure]:
    """The figures of one surface: trajectory and 3-D, contours and 3-D, or a line."""
    if len(record["coords"]) == 1:
        return [plot_surface_1d(record)]
    first = plot_trajectory(record) if record.get("trajectory") else plot_surface_contour(record)
    return [first, plot_surface_3d(record)]


def plot_run_surfaces(runs: Sequence[RunRecord]) -> list[go.Figure]:
    """The figures of every run that has ``surface/surface.json``, run by run."""
    figures: list[go.Figure] = []
    for run in runs:
        record = load_surface(run.path)
        if record is not None:
            figures.extend(surface_figures(dict(record, label=run.label)))
    return figures


def _name(record: Record) -> str:
    return f"{text(record.get('label', ''))}, step {record['checkpoint']['step']}"


def grid(record: Record) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = (np.asarray(c, dtype=float) for c in record["coords"])
    return a, b, np.asarray(record["losses"], dtype=float)  # losses[i, j] at (a[i], b[j])


def _base(record: Record) -> float:
    return float("nan") if record["base_loss"] is None else float(record["base_loss"])


def _contour(record: Record) -> go.Contour:
    a, b, z = grid(record)
    return go.Contour(
        x=a,
        y=b,
        z=z.T,
        colorscale=COLORSCALE,
        ncontours=CONTOURS,
        name="loss",
        colorbar=dict(title="loss"),
        contours=dict(showlabels=True),
        hovertemplate="(%{x:.4g}, %{y:.4g})<br>loss %{z:.6g}<extra></extra>",
    )


def _centre(record: Record) -> go.Scatter:
    return go.Scatter(
        x=[0.0],
        y=[0.0],
        mode="markers",
        marker=dict(size=13, symbol="star", color="white", line=dict(color="black", width=1)),
        name=f"checkpoint (step {record['checkpoint']['step']}), loss {_base(record):.6g}",
    )


def _axes(fig: go.Figure, record: Record) -> go.Figure:
    x_title, y_title = axis_titles(record)
    fig.update_layout(xaxis_title=x_title, yaxis_title=y_title, legend=dict(orientation="h", y=-0.15))
    return fig
