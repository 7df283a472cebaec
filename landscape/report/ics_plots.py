"""Internal covariate shift and layer-input distributions (Fig. 1-3, 5, 6, 8, 9): the
gradient-based ICS per layer, the histograms of the layer inputs and their moments."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from landscape.report import arrays, data
from landscape.report.data import RunRecord
from landscape.report.plots import (
    MAX_HEATMAP_ROWS,
    TEMPLATE,
    VALUE,
    band_traces,
    colors_for,
    grid,
    group_members,
    mark_divergence,
    seed_traces,
    series_line,
    template_text,
    text,
    variant_groups,
)

ICS_ORDER = ("l2", "rel_l2", "cosine")


ICS_LOG = ("l2", "rel_l2", "grad_norm")


ICS_TITLES = {
    "l2": "‖G − G′‖₂",
    "rel_l2": "‖G − G′‖₂ / ‖G‖₂",
    "cosine": "cos(G, G′)",
    "grad_norm": "‖G‖₂",
}


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
    groups, colors = variant_groups(runs)
    families: dict[str, set[str]] = {}
    for run in runs:
        for family, layers in arrays.metric_families(run.series, "ics").items():
            families.setdefault(family, set()).update(layers)
    if not families:
        return go.Figure()
    measures = arrays.order_families(families, ICS_ORDER)
    layers = sorted(set().union(*families.values()), key=arrays.natural_key)
    shown = arrays.ics_default_layers(runs, layers)
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
                    traces = seed_traces(group, name, **common)
                else:
                    traces = [series_line(*group.records[0].series[name], **common)]
                for trace in traces:
                    fig.add_trace(trace, row=row, col=1)
                    trace_layers.append(layer)
                in_legend.add((group.label, layer))
    for row, measure in enumerate(measures, start=1):
        fig.update_yaxes(title_text=text(measure), type="log" if measure in ICS_LOG else "linear", row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(measures), col=1)
    fig.update_layout(
        template=TEMPLATE,
        height=260 * len(measures) + 120,
        title=dict(text="Internal covariate shift per layer"),
        updatemenus=_layer_menu(layers, trace_layers, shown),
    )
    mark_divergence(fig, *group_members(groups, colors), subplots=True)
    return fig


def plot_histograms(runs: Sequence[RunRecord]) -> go.Figure:
    """Fig. 2: a layer's input histogram over steps as a heatmap (step x value), one panel
    per run on one colour scale; the layer is picked in a dropdown. Of several seeds only
    the lowest is drawn (panel "VARIANT (seed S of N)", :func:`data.first_seeds`)."""
    with_hist = [r for r in data.first_seeds(runs) if arrays.metric_families(r.series, "dist").get("hist")]
    if not with_hist:
        return go.Figure()
    layers = sorted(
        {layer for r in with_hist for layer in arrays.metric_families(r.series, "dist")["hist"]}, key=arrays.natural_key
    )
    fig = grid([text(r.label) for r in with_hist], cols=3, height=380)
    trace_layers: list[str] = []
    for layer in layers:
        for k, run in enumerate(with_hist):
            steps, edges, counts = arrays.histogram_grid(run, layer, MAX_HEATMAP_ROWS)
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
    mark_divergence(fig, with_hist, colors_for(with_hist), subplots=True)
    return fig


def distribution_families(runs: Sequence[RunRecord]) -> list[str]:
    """The dist/<family> statistics other than histograms found in any run."""
    families: set[str] = set()
    for run in runs:
        families.update(arrays.metric_families(run.series, "dist"))
    order = ("mean", "var", "mean_drift", "var_drift", "mean_change", "var_change", "mean_shift", "var_shift")
    return [f for f in arrays.order_families(families, order) if f not in arrays.HISTOGRAM_FAMILIES]


def _moment_traces(run: RunRecord, name: str, label: str, color: str, quantity: str) -> list[go.Scatter]:
    """Band over channels (min-max) and the channel mean; a scalar statistic is one line."""
    steps, values = run.series[name]
    values = data.finite_or_nan(values)
    traces = []
    if values.ndim == 2:
        traces += band_traces(*arrays.band(steps, values), label, color, f"{quantity} over channels", showlegend=False)
        with warnings.catch_warnings():  # all-NaN rows (a diverged step) give NaN: a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmean(values, axis=1)
    line = series_line(steps, values, label, color, f"channel-mean {quantity}", legendgroup=text(label), width=2)
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
    colors = colors_for(runs)
    by_family = {
        f: {layer for r in runs for layer in arrays.metric_families(r.series, "dist").get(f, [])} for f in families
    }
    layers = sorted(set().union(*by_family.values()), key=arrays.natural_key)
    fig = grid([text(f.replace("_", " ")) for f in families], cols=2, height=320)
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
