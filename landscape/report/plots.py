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
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from landscape.report import arrays, data
from landscape.report.data import RunRecord

MAX_POINTS = 2000  # per displayed trace; a long series is decimated (arrays.downsample)
MAX_HEATMAP_ROWS = 300  # steps per histogram heatmap
BAND_ALPHA = 0.25  # fill of a band over step sizes or channels
SEED_ALPHA = 0.12  # fill of a band over seeds: lighter, it lies under a line or another band
# 9 significant digits identify every float32 exactly (metrics are float32 measurements).
VALUE = ":.9g"

# A small template: plotly's default one repeats ~7 kB in every figure of the page.
TEMPLATE = go.layout.Template(
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


def new_figure(title: str, height: int = 420, **layout: object) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, title=dict(text=title), height=height, **layout)
    return fig


def _xy(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps, values = arrays.downsample(np.asarray(steps), data.finite_or_nan(values), MAX_POINTS)
    return steps.astype(np.int32), values  # int32 steps halve the encoded x arrays


def series_line(
    steps: np.ndarray, values: np.ndarray, name: str, color: str, quantity: str, **kwargs: object
) -> go.Scatter:
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


def band_traces(
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
    steps, lo, hi = arrays.downsample_band(steps, lo, hi, MAX_POINTS)
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
            fillcolor=arrays.rgba(color, alpha),
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


def colors_for(runs: Sequence[RunRecord]) -> list[str]:
    return arrays.run_colors([r.norm for r in runs])


def variant_groups(runs: Sequence[RunRecord]) -> tuple[list[data.SeedGroup], list[str]]:
    """The plot's entries (:func:`data.seed_groups`) and one colour each: a seed group
    takes its variant's colour, so single runs keep the colours they had."""
    groups = data.seed_groups(runs)
    return groups, arrays.run_colors([g.norm for g in groups])


def group_members(groups: Sequence[data.SeedGroup], colors: Sequence[str]) -> tuple[list[RunRecord], list[str]]:
    """Every run with its group's colour (each diverged seed keeps its own marker)."""
    pairs = [(run, color) for group, color in zip(groups, colors) for run in group.records]
    return [run for run, _ in pairs], [color for _, color in pairs]


def seed_traces(
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
    band = band_traces(
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
    line = series_line(steps, mean, name, color, f"mean {quantity} {seeds}", legendgroup=legendgroup, **kwargs)
    return [*band, line]


def grid(titles: Sequence[str], cols: int, height: int, **kwargs: object) -> go.Figure:
    """Subplots side by side, ``cols`` per row, one per title."""
    cols = max(min(cols, len(titles)), 1)
    rows = -(-len(titles) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), **kwargs)
    fig.update_layout(template=TEMPLATE, height=height * rows + 120)
    return fig
