"""Training curves: loss and accuracy over the steps, train and test, with seed bands."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from landscape.report.data import RunRecord
from landscape.report.plots import (
    TEMPLATE,
    group_members,
    mark_divergence,
    seed_traces,
    series_line,
    text,
    variant_groups,
)


def plot_training(runs: Sequence[RunRecord]) -> go.Figure:
    """Training and test loss (log) and accuracy over steps, runs overlaid; a seed group
    is its mean line over a min-max band over seeds."""
    groups, colors = variant_groups(runs)
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
                traces = seed_traces(group, name, **common)
            else:
                traces = [series_line(*group.records[0].series[name], **common)]
            for trace in traces:
                fig.add_trace(trace, row=1, col=col)
    if not fig.data:
        return go.Figure()
    fig.update_layout(
        template=TEMPLATE, height=460, title=dict(text="Training and test loss and accuracy"), margin=dict(t=90)
    )
    fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1], row=1, col=2)
    fig.update_xaxes(title_text="step")
    mark_divergence(fig, *group_members(groups, colors), subplots=True)
    return fig
