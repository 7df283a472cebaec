"""The probe figures (Fig. 4, 10, 11, 12, 13): the loss band along the gradient, the
gradient's predictiveness and cosine, the effective beta-smoothness, and the gradient
change against the step size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from landscape.report import arrays, data
from landscape.report.data import RunRecord
from landscape.report.plots import (
    SEED_ALPHA,
    VALUE,
    band_traces,
    grid,
    group_members,
    mark_divergence,
    new_figure,
    seed_traces,
    series_line,
    text,
    variant_groups,
)

FIG11_STEPS = 8  # training steps drawn in the gradient-change-vs-step-size plot


def _plot_bands(runs: Sequence[RunRecord], metric: str, title: str, quantity: str, log_y: bool | None) -> go.Figure:
    """``log_y=None``: a log axis where the values span decades (:func:`arrays.spans_decades`).

    A seed group draws two bands: the darker one spans the mean over seeds of each
    step's min and of its max over step sizes; the lighter one the min of the minima
    to the max of the maxima over seeds (the band over step sizes pooled over seeds).
    """
    groups, colors = variant_groups(runs)
    bands = {id(run): arrays.band_of(run, metric, f"{metric}_min", f"{metric}_max") for run in runs}
    if log_y is None:
        log_y = arrays.spans_decades([b for _, lo, hi in bands.values() for b in (lo, hi)])
    fig = new_figure(title, xaxis_title="step", yaxis_title=quantity, yaxis_type="log" if log_y else "linear")
    for group, color in zip(groups, colors):
        if not group.seeded:
            steps, lo, hi = bands[id(group.records[0])]
            if len(steps):
                fig.add_traces(band_traces(steps, lo, hi, group.label, color, quantity))
            continue
        per_seed = [bands[id(run)] for run in group.records if len(bands[id(run)][0])]
        if not per_seed:
            continue
        steps, mean_lo, pooled_lo, _ = data.seed_stats([(s, lo) for s, lo, _ in per_seed])
        _, mean_hi, _, pooled_hi = data.seed_stats([(s, hi) for s, _, hi in per_seed])
        keep = np.isfinite(mean_lo) & np.isfinite(mean_hi)
        if not keep.any():
            continue
        seeds = len(per_seed)
        fig.add_traces(
            band_traces(
                steps[keep],
                pooled_lo[keep],
                pooled_hi[keep],
                group.label,
                color,
                f"{quantity} over {seeds} seeds",
                alpha=SEED_ALPHA,
                edge_width=0.5,
                showlegend=False,
            )
        )
        fig.add_traces(
            band_traces(
                steps[keep], mean_lo[keep], mean_hi[keep], group.label, color, f"{quantity}, mean over {seeds} seeds"
            )
        )
    if not fig.data:
        return go.Figure()
    mark_divergence(fig, *group_members(groups, colors))
    return fig


def plot_loss_landscape(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 4a: band of the loss along the gradient over the probe step sizes, per run."""
    title = "Loss landscape: loss along the gradient (min–max over step sizes)"
    return _plot_bands(runs, "probe/loss", title, "loss", True)


def plot_gradient_cosine(runs: Sequence[RunRecord]) -> go.Figure:
    """Band over the step sizes of cos(grad L(w - eta g), g): 1 where the gradient
    keeps its direction along the step."""
    return _plot_bands(
        runs, "probe/grad_cosine", "Gradient direction: cos(∇L(w − ηg), g) (min–max over step sizes)", "cosine", False
    )


def plot_gradient_predictiveness(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 4b / 10b: band of ||g(w) - g(w - eta g)|| over the probe step sizes, per run;
    on a log axis where it spans decades (the deep linear network's does)."""
    return _plot_bands(
        runs,
        "probe/grad_diff",
        "Gradient predictiveness: ‖g(w) − g(w − ηg)‖ (min–max over step sizes)",
        "gradient change",
        None,
    )


def _positive_mean_line(
    group: data.SeedGroup, metric: str, name: str, color: str, quantity: str, dash: str
) -> go.Scatter | None:
    """A group's ``metric`` (its mean over seeds), values <= 0 left out (a log axis);
    None where no run recorded it."""
    series = [run.series[metric] for run in group.records if metric in run.series]
    if not series:
        return None
    if group.seeded:
        steps, values, _, _ = data.seed_stats(series)
        quantity = f"mean {quantity} over {len(series)} seeds"
    else:
        steps, values = series[0]
    positive = np.where(np.asarray(values, dtype=float) > 0, values, np.nan)
    return series_line(steps, positive, name=name, color=color, quantity=quantity, dash=dash, width=1.5)


def plot_beta_smoothness(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 4c: effective beta-smoothness per run, with the 2/eta line of each training
    lr, (dotted) the curvature along the gradient g^T H g / ||g||^2 where the probe
    recorded it, and (dash-dot) the Hessian's largest eigenvalue lambda_max where the
    run tracked it: gradient descent at step size eta is unstable along g once the
    curvature exceeds 2/eta, and somewhere once lambda_max does (the edge of
    stability). The log axis leaves out values <= 0.

    A seed group draws beta's mean over seeds over its min-max band over seeds, and the
    curvature's and lambda_max's means over seeds only (a second band would hide beta's)."""
    groups, colors = variant_groups(runs)
    tracked = any("hessian/lambda_max" in run.series for run in runs)
    fig = new_figure(
        "Effective β-smoothness and curvature along the gradient",
        xaxis_title="step",
        yaxis_title="β, gᵀHg / ‖g‖²" + (", λ_max" if tracked else ""),
        yaxis_type="log",
    )
    lrs = set()
    for group, color in zip(groups, colors):
        with_beta = [run for run in group.records if "probe/beta" in run.series]
        if with_beta:
            name = f"{group.label} — β"
            if group.seeded:
                fig.add_traces(seed_traces(group, "probe/beta", name=name, color=color, quantity="β"))
            else:
                fig.add_trace(series_line(*with_beta[0].series["probe/beta"], name=name, color=color, quantity="β"))
            lrs.update(run.lr for run in with_beta if run.lr is not None)
        curvature = _positive_mean_line(
            group, "probe/curvature", f"{group.label} — curvature", color, "gᵀHg / ‖g‖²", "dot"
        )
        lambda_max = _positive_mean_line(
            group, "hessian/lambda_max", f"{group.label} — λ_max", color, "λ_max", "dashdot"
        )
        fig.add_traces([t for t in (curvature, lambda_max) if t is not None])
        if lambda_max is not None:
            lrs.update(run.lr for run in group.records if "hessian/lambda_max" in run.series and run.lr is not None)
    if not fig.data:
        return go.Figure()
    for lr in sorted(lrs):
        ref = arrays.beta_reference(lr)
        fig.add_hline(y=ref, line=dict(color="#444", dash="dash", width=1))
        # Annotations on a log axis take log10 positions (shapes take data values).
        fig.add_annotation(
            x=1,
            xref="paper",
            xanchor="right",
            y=float(np.log10(ref)),
            yref="y",
            yanchor="bottom",
            text=f"2/η = {ref:.6g} (η = {lr:.6g})",
            showarrow=False,
            font=dict(size=11, color="#444"),
        )
    mark_divergence(fig, *group_members(groups, colors))
    return fig


def _step_size_curves(run: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None:
    """(absolute step sizes or indices, probe steps, grad_diff rows with a finite value, sizes known)."""
    if "probe/grad_diff" not in run.series:
        return None
    steps, values = run.series["probe/grad_diff"]
    values = data.finite_or_nan(values)
    if values.ndim != 2:
        return None
    rows = np.flatnonzero(np.isfinite(values).any(axis=1))
    if not len(rows):
        return None
    sizes = data.absolute_step_sizes(run.config)
    known = sizes is not None and len(sizes) == values.shape[1]
    if not known:
        sizes = np.arange(1, values.shape[1] + 1, dtype=float)
    chosen = rows[arrays.select_steps(len(rows), FIG11_STEPS)]
    return sizes, np.asarray(steps)[chosen], values[chosen], known


def plot_gradient_vs_step_size(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 11: gradient change against step size at selected training steps, coloured by
    step on one scale shared by all runs; one panel per run, side by side. Of several
    seeds only the lowest is drawn (panel "VARIANT (seed S of N)", :func:`data.first_seeds`)."""
    curves = [(run, c) for run in data.first_seeds(runs) if (c := _step_size_curves(run)) is not None]
    if not curves:
        return go.Figure()
    first = min(int(c[1][0]) for _, c in curves)
    last = max(int(c[1][-1]) for _, c in curves)
    span = max(last - first, 1)
    colorscale = "Viridis"
    fig = grid([text(run.label) for run, _ in curves], cols=3, height=380)
    fig.update_layout(title=dict(text="Gradient change ‖g(w) − g(w − ηg)‖ vs step size η"), showlegend=False)
    for k, (_run, (sizes, steps, values, known)) in enumerate(curves):
        row, col = k // 3 + 1, k % 3 + 1
        for step, y in zip(steps, values):
            fig.add_trace(
                go.Scatter(
                    x=sizes,
                    y=y,
                    name=f"step {step}",
                    mode="lines+markers",
                    line=dict(color=sample_colorscale(colorscale, [(int(step) - first) / span])[0]),
                    hovertemplate=f"step {step}<br>η %{{x{VALUE}}}<br>gradient change %{{y{VALUE}}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
        log_x = bool(known and sizes.max() >= 8 * sizes.min())
        fig.update_xaxes(
            type="log" if log_x else "linear",
            tickvals=sizes,
            ticktext=[f"{s:.6g}" for s in sizes],
            title_text="step size η" if known else "step size (index)",
            row=row,
            col=col,
        )
    fig.update_yaxes(title_text="gradient change", col=1)
    fig.add_trace(  # carries the colour bar of the step scale; draws nothing
        go.Scatter(
            x=[curves[0][1][0][0]],
            y=[None],
            mode="markers",
            hoverinfo="skip",
            marker=dict(
                colorscale=colorscale,
                cmin=first,
                cmax=first + span,
                color=[first],
                showscale=True,
                colorbar=dict(title=dict(text="step")),
            ),
        ),
        row=1,
        col=1,
    )
    return fig
