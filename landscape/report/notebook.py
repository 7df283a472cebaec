"""The report in a notebook: its plotly figures by section (:func:`figures`), and an
:class:`Experiment` that Jupyter renders inline as the report's HTML (runs table and
sections), read from the stores each time it is shown, so a cell shows a run's
progress while it trains.

plotly.js goes into the fragment once: inlined by default (``include_plotlyjs=True``,
about 3.5 MB, works offline and in exported notebooks), or as a ``<script src>`` from
plotly's CDN with ``include_plotlyjs="cdn"`` (small notebooks; the browser needs the
network), or left out with ``False`` when the page already has it.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go
import plotly.offline

from landscape.report import data
from landscape.report.data import RunRecord
from landscape.report.html import plotly_js, runs_table, section_figures, sections_html, select_sections

PlotlyJs = bool | str

# The page's styles for what a fragment holds, scoped to it: a notebook's own page keeps its look.
_CSS = """
.landscape-report .note { color: #555; font-size: 0.9em; max-width: 70em; }
.landscape-report .figure { margin: 8px 0 20px; }
.landscape-report table.runs { border-collapse: collapse; font-size: 0.9em; }
.landscape-report table.runs th, .landscape-report table.runs td { border: 1px solid #ddd; padding: 4px 10px;
    text-align: left; vertical-align: top; }
.landscape-report .swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;
    margin-right: 6px; vertical-align: -1px; }
.landscape-report .status-diverged, .landscape-report .status-failed { color: #b00; font-weight: 600; }
.landscape-report p.missing { color: #a60; }
"""


def figures(*paths: str | Path, sections: Sequence[str] | None = None) -> dict[str, list[go.Figure]]:
    """The report's figures of runs or experiment directories, by section.

    Args:
        paths: run or experiment directories (as for ``landscape report``).
        sections: the anchors to include (``training``, ``landscape``,
            ``predictiveness``, ``smoothness``, ``step-size``, ``ics``,
            ``distributions``, ``surface``, ``density``); default: every section with data.

    Returns:
        ``{section anchor: [go.Figure, ...]}`` in report order, sections without a
        figure left out. Show one with ``fig.show()``.

    Raises:
        landscape.runs.StoreError: a path is missing or holds no run.
        ValueError: an unknown section.
    """
    runs = data.load_runs(paths)
    return {section.anchor: found for section, found, _ in section_figures(runs, select_sections(sections)) if found}


def plotly_script(include_plotlyjs: PlotlyJs) -> str:
    """The ``<script>`` that provides plotly.js: inline (True), from the CDN ("cdn") or none (False)."""
    if include_plotlyjs is True:
        return (
            '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>'
            f'<script type="text/javascript">{plotly_js()}</script>'
        )
    if include_plotlyjs == "cdn":
        version = plotly.offline.get_plotlyjs_version()
        return f'<script src="https://cdn.plot.ly/plotly-{version}.min.js" charset="utf-8"></script>'
    if include_plotlyjs is False:
        return ""
    raise ValueError(f"include_plotlyjs must be True, False or 'cdn', not {include_plotlyjs!r}")


class Experiment:
    """Runs or experiment directories, shown inline by Jupyter as the report's HTML.

    Args:
        paths: run or experiment directories.
        include_plotlyjs: ``True`` (inline, offline), ``"cdn"`` or ``False`` (see the module doc).
        sections: the anchors to show; default: every section with data.

    Raises:
        ValueError: a bad ``include_plotlyjs`` or section.
    """

    def __init__(
        self, *paths: str | Path, include_plotlyjs: PlotlyJs = True, sections: Sequence[str] | None = None
    ) -> None:
        if not paths:
            raise ValueError("Experiment needs at least one run or experiment directory")
        plotly_script(include_plotlyjs)  # checks the value now rather than at display
        self.paths = tuple(Path(p) for p in paths)
        self.include_plotlyjs = include_plotlyjs
        self.sections = select_sections(sections)

    def runs(self) -> list[RunRecord]:
        """The runs as stored now."""
        return data.load_runs(self.paths)

    def figures(self) -> dict[str, list[go.Figure]]:
        """See :func:`figures`."""
        return {section.anchor: found for section, found, _ in section_figures(self.runs(), self.sections) if found}

    def _repr_html_(self) -> str:
        runs = self.runs()
        prefix = f"landscape-{uuid.uuid4().hex[:8]}"  # unique figure ids when shown several times
        parts = "".join(part for _, part in sections_html(runs, self.sections, id_prefix=prefix))
        names = html.escape(", ".join(p.name for p in self.paths))
        return (
            f'<div class="landscape-report"><style>{_CSS}</style>{plotly_script(self.include_plotlyjs)}'
            f'<h3>landscape: {names}</h3><section id="runs">{runs_table(runs)}</section>{parts}</div>'
        )

    def __repr__(self) -> str:
        return f"Experiment({', '.join(repr(str(p)) for p in self.paths)})"
