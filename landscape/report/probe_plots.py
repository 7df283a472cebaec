"""The probe figures (Fig. 4, 10, 11, 12, 13): the loss band along the gradient, the
gradient's predictiveness and cosine, the effective beta-smoothness under each run's
full-batch stability limit (and Adam's preconditioned sharpness under its own), and
the gradient change against the step size."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from landscape.report import arrays, data, limits
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

log = logging.getLogger(__name__)

# The report section's note (HTML) for plot_beta_smoothness and plot_preconditioned_sharpness.
SMOOTHNESS_NOTE = (
    "Largest gradient change per unit of movement along the gradient (paper Fig. 4c). "
    "Dotted: the curvature along the gradient, gᵀHg/‖g‖² (positive values; the log axis cannot show the rest). "
    "Dash-dot, for runs that tracked the Hessian: its largest eigenvalue λ<sub>max</sub> on the training batch. "
    "Several seeds: β line = mean, band = min–max over seeds; curvature = mean over seeds. "
    "Dashed: each run's <em>full-batch</em> stability limit, the sharpness above which its optimizer's update on "
    "the whole training set diverges along an eigenvector of a quadratic, labelled with its formula (a step line "
    "over the steps where the lr is scheduled): 2/η − wd for SGD (wd: weight decay, added to the gradient), "
    "2(1+β)/((1−d)η) − wd with momentum β and dampening d, (2+2β)/((1+2β)η) − wd with PyTorch's Nesterov. "
    "Full-batch gradient descent drives λ<sub>max</sub> up to it and hovers there (the edge of stability; "
    "Cohen et al. 2021, Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability). "
    "Adam and AdamW runs get no limit over their raw β or λ<sub>max</sub>: theirs, (2+2β₁)/((1−β₁)η) "
    "(38/η at β₁ = 0.9, weight decay not in it), bounds the preconditioned sharpness λ<sub>max</sub>(P⁻¹H) and "
    "β<sup>P</sup>, drawn in the second figure (Cohen et al. 2022, Adaptive Gradient Methods at the Edge of "
    "Stability). On mini-batches smaller than the training set another sharpness equilibrates: the batch "
    "sharpness (the mini-batch Hessians' curvature along their own gradients) settles at 2/η under SGD, and "
    "λ<sub>max</sub> typically stays below the full-batch limit (Andreyev &amp; Beneventano 2024, Edge of "
    "Stochastic Stability: Revisiting the Edge of Stability for SGD)."
)

FIG11_STEPS = 8  # training steps drawn in the gradient-change-vs-step-size plot
LIMIT_COLOR = "#444"  # the stability limits' lines and labels


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


@dataclass(frozen=True)
class _Curve:
    """A per-step series of the sharpness figures: its metric, legend suffix, hover quantity, dash."""

    metric: str
    suffix: str
    quantity: str
    dash: str | None = None


def run_limit(run: RunRecord) -> limits.Limit | None:
    """The run's full-batch stability limit (:func:`limits.stability_limit`); None, with a
    warning, where its configuration makes no sense (the rest of the figure still shows)."""
    try:
        return limits.stability_limit(data.nested_get(run.config, "train"))
    except ValueError as e:
        log.warning("%s: no stability limit drawn (%s)", run.label, e)
        return None


def _draw_limits(fig: go.Figure, limited: Sequence[tuple[str, str, RunRecord, limits.Limit]]) -> None:
    """Each (group label, colour, run, limit): one dashed horizontal line per distinct
    value, labelled with the formula and settings of every limit at it; a run whose
    ``train/lr`` varies draws its limit at each step's lr instead, a dashed step line in
    its group's colour (one per group)."""
    at: dict[float, list[str]] = {}
    scheduled: set[str] = set()
    for label, color, run, limit in limited:
        schedule = limits.lr_schedule(run.series)
        if schedule is None:
            if limit.value > 0:  # a log axis
                labels = at.setdefault(float(f"{limit.value:.12g}"), [])
                labels.extend([limit.label] if limit.label not in labels else [])
            continue
        if label in scheduled:
            continue
        scheduled.add(label)
        steps, lrs = schedule
        end = data.last_step(run)
        if end is not None and end > steps[-1]:  # the last lr holds to the run's last step
            steps, lrs = np.append(steps, end), np.append(lrs, lrs[-1])
        values = limit.at(lrs)
        fig.add_trace(
            series_line(
                steps,
                np.where(values > 0, values, np.nan),
                name=f"{label} — {limit.schedule_label}",
                color=color,
                quantity=f"limit {limit.formula}",
                dash="dash",
                width=1,
                line_shape="hv",
            )
        )
    for value, labels in sorted(at.items()):
        fig.add_hline(y=value, line=dict(color=LIMIT_COLOR, dash="dash", width=1))
        # Annotations on a log axis take log10 positions (shapes take data values).
        fig.add_annotation(
            x=1,
            xref="paper",
            xanchor="right",
            y=float(np.log10(value)),
            yref="y",
            yanchor="bottom",
            text="<br>".join(text(label) for label in labels),
            showarrow=False,
            font=dict(size=11, color=LIMIT_COLOR),
        )


def _sharpness_figure(runs: Sequence[RunRecord], title: str, beta: _Curve, lines: Sequence[_Curve]) -> go.Figure:
    """``beta`` per group (mean line over the min-max band over seeds), each of ``lines``
    as its mean over seeds (values <= 0 left out: a log axis), and each run's full-batch
    limit where it bounds one of the series the run has drawn here."""
    groups, colors = variant_groups(runs)
    curves = (beta, *lines)
    shown = [beta] + [c for c in lines if any(c.metric in run.series for run in runs)]
    fig = new_figure(title, xaxis_title="step", yaxis_title=", ".join(c.quantity for c in shown), yaxis_type="log")
    limited = []
    for group, color in zip(groups, colors):
        with_beta = [run for run in group.records if beta.metric in run.series]
        name = f"{group.label} — {beta.suffix}"
        if with_beta and group.seeded:
            fig.add_traces(seed_traces(group, beta.metric, name=name, color=color, quantity=beta.quantity))
        elif with_beta:
            fig.add_trace(
                series_line(*with_beta[0].series[beta.metric], name=name, color=color, quantity=beta.quantity)
            )
        for c in lines:
            line = _positive_mean_line(group, c.metric, f"{group.label} — {c.suffix}", color, c.quantity, c.dash)
            fig.add_traces([line] if line is not None else [])
        for run in group.records:
            limit = run_limit(run)
            if limit is not None and any(c.metric in limit.series and c.metric in run.series for c in curves):
                limited.append((group.label, color, run, limit))
    if not fig.data:
        return go.Figure()
    _draw_limits(fig, limited)
    mark_divergence(fig, *group_members(groups, colors))
    return fig


def plot_beta_smoothness(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 4c: effective beta-smoothness per run, (dotted) the curvature along the
    gradient g^T H g / ||g||^2 where the probe recorded it, and (dash-dot) the Hessian's
    largest eigenvalue lambda_max where the run tracked it, under the full-batch
    stability limit of each SGD run's optimizer (:mod:`landscape.report.limits`: 2/eta
    for plain SGD, 2(1+beta)/((1-d)eta) - wd with momentum, ...): its full-batch update
    is unstable along g once the curvature exceeds it, and somewhere once lambda_max
    does (the edge of stability). An Adam run's beta and lambda_max are drawn without a
    limit (its limit bounds the preconditioned sharpness:
    :func:`plot_preconditioned_sharpness`). The log axis leaves out values <= 0.

    A seed group draws beta's mean over seeds over its min-max band over seeds, and the
    curvature's and lambda_max's means over seeds only (a second band would hide beta's)."""
    return _sharpness_figure(
        runs,
        "Effective β-smoothness and curvature along the gradient",
        _Curve("probe/beta", "β", "β"),
        [
            _Curve("probe/curvature", "curvature", "gᵀHg / ‖g‖²", "dot"),
            _Curve("hessian/lambda_max", "λ_max", "λ_max", "dashdot"),
        ],
    )


def plot_preconditioned_sharpness(runs: Sequence[RunRecord]) -> go.Figure:
    """Adam's and AdamW's preconditioned sharpness (Cohen et al. 2022): beta_eff^P =
    ||P^-1/2 (grad L(w - eta u) - g)|| / ||P^1/2 eta u|| per run and (dash-dot)
    lambda_max(P^-1 H) where tracked, under each Adam run's full-batch limit
    (2 + 2 beta1) / ((1 - beta1) eta). Empty where no run recorded them."""
    return _sharpness_figure(
        runs,
        "Preconditioned sharpness (Adam, AdamW)",
        _Curve("probe/beta_precond", "β^P", "β^P"),
        [_Curve("hessian/lambda_max_precond", "λ_max(P⁻¹H)", "λ_max(P⁻¹H)", "dashdot")],
    )


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
