"""One ``plot_*`` per report section: run records -> ``plotly.graph_objects.Figure``.

Figures of Santurkar et al. (2018): loss landscape and gradient predictiveness
bands (Fig. 4a, b), effective beta-smoothness and the Hessian's lambda_max against
2/eta (Fig. 4c), gradient change against step size (Fig. 11), internal covariate
shift per layer (Fig. 3), layer-input distributions and their moments (Fig. 2, 8).
A plot without data returns an empty figure (no traces); the page skips it.

Runs of one variant over several seeds (labels ``VARIANT/seedS``, :func:`data.seed_groups`)
are one legend entry "VARIANT (N seeds)" in the variant's colour: the line is the mean
over seeds and a lighter band spans min to max over seeds, at the steps all seeds
recorded (:func:`data.seed_stats`). Plots that cannot average (histograms, moments,
Fig. 11) show the lowest seed only, labelled "VARIANT (seed S of N)". A single run,
or the only seed of its variant, is drawn as a run of its own.

Every user-controlled string shown by plotly (run names, layer names) is
HTML-escaped first: plotly renders a small HTML subset in legends, titles and
hover labels, and escaping makes it show the text as written.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from landscape.report import data
from landscape.report.data import RunRecord

MAX_POINTS = 2000  # per displayed trace; a long series is decimated (data.downsample)
MAX_HEATMAP_ROWS = 300  # steps per histogram heatmap
FIG11_STEPS = 8  # training steps drawn in the gradient-change-vs-step-size plot
BAND_ALPHA = 0.25  # fill of a band over step sizes or channels
SEED_ALPHA = 0.12  # fill of a band over seeds: lighter, it lies under a line or another band
# 9 significant digits identify every float32 exactly (metrics are float32 measurements).
VALUE = ":.9g"
ICS_ORDER = ("l2", "rel_l2", "cosine")
ICS_LOG = ("l2", "rel_l2", "grad_norm")
ICS_TITLES = {
    "l2": "‖G − G′‖₂",
    "rel_l2": "‖G − G′‖₂ / ‖G‖₂",
    "cosine": "cos(G, G′)",
    "grad_norm": "‖G‖₂",
}

# A small template: plotly's default one repeats ~7 kB in every figure of the page.
_TEMPLATE = go.layout.Template(
    layout=dict(
        font=dict(family="system-ui, sans-serif", size=12, color="#222"),
        paper_bgcolor="white",
        plot_bgcolor="white",
        hovermode="closest",
        hoverlabel=dict(namelength=-1),
        xaxis=dict(gridcolor="#e5e5e5", zeroline=False, showline=True, linecolor="#999"),
        yaxis=dict(gridcolor="#e5e5e5", zeroline=False, showline=True, linecolor="#999", exponentformat="power"),
        legend=dict(groupclick="togglegroup"),
        margin=dict(l=70, r=30, t=60, b=50),
    )
)


def text(value: str) -> str:
    """Escape a user string for plotly's HTML-subset labels (legend, title, hover)."""
    return html.escape(str(value), quote=False)


def template_text(value: str) -> str:
    """Escape a user string placed inside a hovertemplate, where '%{...}' is a substitution."""
    return text(value).replace("%", "&#37;")


def _figure(title: str, height: int = 420, **layout: object) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=_TEMPLATE, title=dict(text=title), height=height, **layout)
    return fig


def _xy(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps, values = data.downsample(np.asarray(steps), data.finite_or_nan(values), MAX_POINTS)
    return steps.astype(np.int32), values  # int32 steps halve the encoded x arrays


def _line(steps: np.ndarray, values: np.ndarray, name: str, color: str, quantity: str, **kwargs: object) -> go.Scatter:
    x, y = _xy(steps, values)
    return go.Scatter(
        x=x,
        y=y,
        name=text(name),
        mode="lines",
        line=dict(color=color, width=kwargs.pop("width", 1.5), dash=kwargs.pop("dash", None)),
        hovertemplate=f"step %{{x}}<br>{quantity} %{{y{VALUE}}}",
        **kwargs,
    )


def _band_traces(
    steps: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    name: str,
    color: str,
    quantity: str,
    alpha: float = BAND_ALPHA,
    edge_width: float = 0.8,
    **kwargs: object,
) -> list[go.Scatter]:
    """A shaded band: the lower edge, then the upper edge filled down to it (tonexty)."""
    steps, lo, hi = data.downsample_band(steps, lo, hi, MAX_POINTS)
    x = np.asarray(steps).astype(np.int32)
    showlegend = kwargs.pop("showlegend", True)
    common = dict(x=x, mode="lines", legendgroup=kwargs.pop("legendgroup", text(name)), **kwargs)
    return [
        go.Scatter(
            y=lo,
            name=text(name),
            showlegend=False,
            line=dict(color=color, width=edge_width),
            hovertemplate=f"step %{{x}}<br>min {quantity} %{{y{VALUE}}}",
            **common,
        ),
        go.Scatter(
            y=hi,
            name=text(name),
            fill="tonexty",
            fillcolor=data.rgba(color, alpha),
            line=dict(color=color, width=edge_width),
            hovertemplate=f"step %{{x}}<br>max {quantity} %{{y{VALUE}}}",
            showlegend=showlegend,
            **common,
        ),
    ]


def mark_divergence(fig: go.Figure, runs: Sequence[RunRecord], colors: Sequence[str], subplots: bool = False) -> None:
    """A dotted vertical line and label at each diverged run's divergence step."""
    where = dict(row="all", col="all") if subplots else {}
    for i, (run, color) in enumerate(zip(runs, colors)):
        if run.diverged_step is None:
            continue
        fig.add_vline(
            x=run.diverged_step,
            line=dict(color=color, dash="dot", width=1.5),
            annotation=dict(
                text=f"{text(run.label)} diverged @ {run.diverged_step}",
                font=dict(color=color, size=11),
                yshift=-14 * i,
            ),
            annotation_position="top right",
            **where,
        )


def _colors(runs: Sequence[RunRecord]) -> list[str]:
    return data.run_colors([r.norm for r in runs])


def _groups(runs: Sequence[RunRecord]) -> tuple[list[data.SeedGroup], list[str]]:
    """The plot's entries (:func:`data.seed_groups`) and one colour each: a seed group
    takes its variant's colour, so single runs keep the colours they had."""
    groups = data.seed_groups(runs)
    return groups, data.run_colors([g.norm for g in groups])


def _members(groups: Sequence[data.SeedGroup], colors: Sequence[str]) -> tuple[list[RunRecord], list[str]]:
    """Every run with its group's colour (each diverged seed keeps its own marker)."""
    pairs = [(run, color) for group, color in zip(groups, colors) for run in group.records]
    return [run for run, _ in pairs], [color for _, color in pairs]


def _seed_traces(
    group: data.SeedGroup, metric: str, name: str, color: str, quantity: str, **kwargs: object
) -> list[go.Scatter]:
    """A seed group's scalar ``metric``: min-max band over seeds under the mean line; the
    band shares the line's legend entry. ``kwargs`` go to the line (and its legendgroup,
    visibility to the band)."""
    series = [run.series[metric] for run in group.records if metric in run.series]
    steps, mean, lo, hi = data.seed_stats(series)
    seeds = f"over {len(series)} seeds"
    legendgroup = kwargs.pop("legendgroup", text(name))
    keep = np.isfinite(lo) & np.isfinite(hi)
    shared = {k: kwargs[k] for k in ("visible",) if k in kwargs}
    band = _band_traces(
        steps[keep],
        lo[keep],
        hi[keep],
        name,
        color,
        f"{quantity} {seeds}",
        alpha=SEED_ALPHA,
        edge_width=0.5,
        showlegend=False,
        legendgroup=legendgroup,
        **shared,
    )
    line = _line(steps, mean, name, color, f"mean {quantity} {seeds}", legendgroup=legendgroup, **kwargs)
    return [*band, line]


def plot_training(runs: Sequence[RunRecord]) -> go.Figure:
    """Training and test loss (log) and accuracy over steps, runs overlaid; a seed group
    is its mean line over a min-max band over seeds."""
    groups, colors = _groups(runs)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.08)
    curves = (
        ("train/loss", "train loss", dict(width=2)),
        ("test/loss", "test loss", dict(width=2, dash="dash")),
        ("train/acc", "train accuracy", dict(width=2)),
        ("test/acc", "test accuracy", dict(width=2, dash="dash")),
    )
    for group, color in zip(groups, colors):
        for name, kind, style in curves:
            if not any(name in run.series for run in group.records):
                continue
            col = 2 if name.endswith("/acc") else 1
            common = dict(
                name=f"{group.label} — {kind}",
                color=color,
                quantity=name,
                legendgroup=text(group.label),
                legendgrouptitle_text=text(group.label),
                **style,
            )
            if group.seeded:
                traces = _seed_traces(group, name, **common)
            else:
                traces = [_line(*group.records[0].series[name], **common)]
            for trace in traces:
                fig.add_trace(trace, row=1, col=col)
    if not fig.data:
        return go.Figure()
    fig.update_layout(
        template=_TEMPLATE, height=460, title=dict(text="Training and test loss and accuracy"), margin=dict(t=90)
    )
    fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1], row=1, col=2)
    fig.update_xaxes(title_text="step")
    mark_divergence(fig, *_members(groups, colors), subplots=True)
    return fig


def _plot_bands(runs: Sequence[RunRecord], metric: str, title: str, quantity: str, log_y: bool | None) -> go.Figure:
    """``log_y=None``: a log axis where the values span decades (:func:`data.spans_decades`).

    A seed group draws two bands: the darker one spans the mean over seeds of each
    step's min and of its max over step sizes; the lighter one the min of the minima
    to the max of the maxima over seeds (the band over step sizes pooled over seeds).
    """
    groups, colors = _groups(runs)
    bands = {id(run): data.band_of(run, metric, f"{metric}_min", f"{metric}_max") for run in runs}
    if log_y is None:
        log_y = data.spans_decades([b for _, lo, hi in bands.values() for b in (lo, hi)])
    fig = _figure(title, xaxis_title="step", yaxis_title=quantity, yaxis_type="log" if log_y else "linear")
    for group, color in zip(groups, colors):
        if not group.seeded:
            steps, lo, hi = bands[id(group.records[0])]
            if len(steps):
                fig.add_traces(_band_traces(steps, lo, hi, group.label, color, quantity))
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
            _band_traces(
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
            _band_traces(
                steps[keep], mean_lo[keep], mean_hi[keep], group.label, color, f"{quantity}, mean over {seeds} seeds"
            )
        )
    if not fig.data:
        return go.Figure()
    mark_divergence(fig, *_members(groups, colors))
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
    return _line(steps, positive, name=name, color=color, quantity=quantity, dash=dash, width=1.5)


def plot_beta_smoothness(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 4c: effective beta-smoothness per run, with the 2/eta line of each training
    lr, (dotted) the curvature along the gradient g^T H g / ||g||^2 where the probe
    recorded it, and (dash-dot) the Hessian's largest eigenvalue lambda_max where the
    run tracked it: gradient descent at step size eta is unstable along g once the
    curvature exceeds 2/eta, and somewhere once lambda_max does (the edge of
    stability). The log axis leaves out values <= 0.

    A seed group draws beta's mean over seeds over its min-max band over seeds, and the
    curvature's and lambda_max's means over seeds only (a second band would hide beta's)."""
    groups, colors = _groups(runs)
    tracked = any("hessian/lambda_max" in run.series for run in runs)
    fig = _figure(
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
                fig.add_traces(_seed_traces(group, "probe/beta", name=name, color=color, quantity="β"))
            else:
                fig.add_trace(_line(*with_beta[0].series["probe/beta"], name=name, color=color, quantity="β"))
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
        ref = data.beta_reference(lr)
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
    mark_divergence(fig, *_members(groups, colors))
    return fig


def _grid(titles: Sequence[str], cols: int, height: int, **kwargs: object) -> go.Figure:
    """Subplots side by side, ``cols`` per row, one per title."""
    cols = max(min(cols, len(titles)), 1)
    rows = -(-len(titles) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), **kwargs)
    fig.update_layout(template=_TEMPLATE, height=height * rows + 120)
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
    chosen = rows[data.select_steps(len(rows), FIG11_STEPS)]
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
    fig = _grid([text(run.label) for run, _ in curves], cols=3, height=380)
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


def _layer_menu(layers: Sequence[str], trace_layers: Sequence[str], shown: Sequence[str]) -> list[dict]:
    """A dropdown that shows one layer's traces (or several, or all) by toggling visibility;
    ``shown`` are the layers visible at first (a preset entry when there are several)."""

    def button(label: str, selected: Sequence[str]) -> dict:
        return dict(label=label, method="restyle", args=[{"visible": [t in selected for t in trace_layers]}])

    presets = [button("highlighted: " + ", ".join(text(label) for label in shown), shown)] if len(shown) > 1 else []
    buttons = presets + [button(text(layer), [layer]) for layer in layers] + [button("all layers", layers)]
    active = 0 if presets else list(layers).index(shown[0])
    return [dict(buttons=buttons, active=active, x=0, xanchor="left", y=1.12, yanchor="bottom", showactive=True)]


def plot_ics(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 3: internal covariate shift per layer over steps (l2 on a log axis, cosine),
    one layer at a time through a dropdown; a seed group is, per layer and measure, its
    mean over seeds over a min-max band over seeds."""
    groups, colors = _groups(runs)
    families: dict[str, set[str]] = {}
    for run in runs:
        for family, layers in data.metric_families(run.series, "ics").items():
            families.setdefault(family, set()).update(layers)
    if not families:
        return go.Figure()
    measures = data.order_families(families, ICS_ORDER)
    layers = sorted(set().union(*families.values()), key=data.natural_key)
    shown = data.ics_default_layers(runs, layers)
    fig = make_subplots(
        rows=len(measures),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=[ICS_TITLES.get(m, m) for m in measures],
    )
    trace_layers: list[str] = []
    in_legend: set[tuple[str, str]] = set()
    for layer in layers:
        for row, measure in enumerate(measures, start=1):
            for group, color in zip(groups, colors):
                name = f"ics/{measure}/{layer}"
                if not any(name in run.series for run in group.records):
                    continue
                common = dict(
                    name=f"{group.label} — {layer}",
                    color=color,
                    quantity=f"{template_text(measure)} {template_text(layer)}",
                    legendgroup=text(f"{group.label} — {layer}"),
                    showlegend=(group.label, layer) not in in_legend,
                    visible=layer in shown,
                )
                if group.seeded:
                    traces = _seed_traces(group, name, **common)
                else:
                    traces = [_line(*group.records[0].series[name], **common)]
                for trace in traces:
                    fig.add_trace(trace, row=row, col=1)
                    trace_layers.append(layer)
                in_legend.add((group.label, layer))
    for row, measure in enumerate(measures, start=1):
        fig.update_yaxes(title_text=text(measure), type="log" if measure in ICS_LOG else "linear", row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(measures), col=1)
    fig.update_layout(
        template=_TEMPLATE,
        height=260 * len(measures) + 120,
        title=dict(text="Internal covariate shift per layer"),
        updatemenus=_layer_menu(layers, trace_layers, shown),
    )
    mark_divergence(fig, *_members(groups, colors), subplots=True)
    return fig


def plot_histograms(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 2: a layer's input histogram over steps as a heatmap (step x value), one panel
    per run on one colour scale; the layer is picked in a dropdown. Of several seeds only
    the lowest is drawn (panel "VARIANT (seed S of N)", :func:`data.first_seeds`)."""
    with_hist = [r for r in data.first_seeds(runs) if data.metric_families(r.series, "dist").get("hist")]
    if not with_hist:
        return go.Figure()
    layers = sorted(
        {layer for r in with_hist for layer in data.metric_families(r.series, "dist")["hist"]}, key=data.natural_key
    )
    fig = _grid([text(r.label) for r in with_hist], cols=3, height=380)
    trace_layers: list[str] = []
    for layer in layers:
        for k, run in enumerate(with_hist):
            steps, edges, counts = data.histogram_grid(run, layer, MAX_HEATMAP_ROWS)
            if not len(steps) or not counts.size:
                continue
            y_name = "value" if edges is not None else "bin"
            fig.add_trace(
                go.Heatmap(
                    x=np.asarray(steps).astype(np.int32),
                    y=(edges[:-1] + edges[1:]) / 2 if edges is not None else np.arange(counts.shape[1]),
                    z=data.finite_or_nan(counts).T.astype(np.float32),  # counts: exact in float32 below 2**24
                    coloraxis="coloraxis",
                    name=text(f"{run.label} — {layer}"),
                    visible=layer == layers[0],
                    hovertemplate=f"{template_text(layer)}<br>step %{{x}}<br>{y_name} %{{y{VALUE}}}"
                    f"<br>count %{{z{VALUE}}}<extra></extra>",
                ),
                row=k // 3 + 1,
                col=k % 3 + 1,
            )
            trace_layers.append(layer)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="layer input (bin centre)", col=1)
    fig.update_layout(
        title=dict(text="Layer-input histograms over steps"),
        coloraxis=dict(colorscale="Viridis", colorbar=dict(title=dict(text="count"))),
        updatemenus=_layer_menu(layers, trace_layers, [layers[0]]),
    )
    mark_divergence(fig, with_hist, _colors(with_hist), subplots=True)
    return fig


def distribution_families(runs: Sequence[RunRecord]) -> list[str]:
    """The dist/<family> statistics other than histograms found in any run."""
    families: set[str] = set()
    for run in runs:
        families.update(data.metric_families(run.series, "dist"))
    order = ("mean", "var", "mean_drift", "var_drift", "mean_change", "var_change", "mean_shift", "var_shift")
    return [f for f in data.order_families(families, order) if f not in data.HISTOGRAM_FAMILIES]


def _moment_traces(run: RunRecord, name: str, label: str, color: str, quantity: str) -> list[go.Scatter]:
    """Band over channels (min-max) and the channel mean; a scalar statistic is one line."""
    steps, values = run.series[name]
    values = data.finite_or_nan(values)
    traces = []
    if values.ndim == 2:
        traces += _band_traces(*data.band(steps, values), label, color, f"{quantity} over channels", showlegend=False)
        with warnings.catch_warnings():  # all-NaN rows (a diverged step) give NaN: a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmean(values, axis=1)
    line = _line(steps, values, label, color, f"channel-mean {quantity}", legendgroup=text(label), width=2)
    return traces + [line]


def plot_moments(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 8: per-channel moment statistics of the layer inputs over steps, one panel per
    statistic (a new ``dist/<family>`` adds a panel): min-max band over channels and the
    channel mean, per run; the layer is picked in a dropdown. Of several seeds only the
    lowest is drawn (legend "VARIANT (seed S of N)", :func:`data.first_seeds`)."""
    runs = data.first_seeds(runs)
    families = distribution_families(runs)
    if not families:
        return go.Figure()
    colors = _colors(runs)
    by_family = {
        f: {layer for r in runs for layer in data.metric_families(r.series, "dist").get(f, [])} for f in families
    }
    layers = sorted(set().union(*by_family.values()), key=data.natural_key)
    fig = _grid([text(f.replace("_", " ")) for f in families], cols=2, height=320)
    trace_layers: list[str] = []
    in_legend: set[str] = set()
    for layer in layers:
        for k, family in enumerate(families):
            for run, color in zip(runs, colors):
                name = f"dist/{family}/{layer}"
                if name not in run.series:
                    continue
                label = f"{run.label} — {layer}"
                for trace in _moment_traces(run, name, label, color, template_text(family.replace("_", " "))):
                    trace.visible = layer == layers[0]
                    if trace.showlegend is not False:  # the mean line carries the legend entry
                        trace.showlegend = label not in in_legend
                    fig.add_trace(trace, row=k // 2 + 1, col=k % 2 + 1)
                    trace_layers.append(layer)
                in_legend.add(label)
    fig.update_xaxes(title_text="step")
    fig.update_layout(
        title=dict(text="Layer-input moments per channel"),
        updatemenus=_layer_menu(layers, trace_layers, [layers[0]]),
    )
    mark_divergence(fig, runs, colors, subplots=True)
    return fig
