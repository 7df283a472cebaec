"""Assemble one self-contained HTML page comparing runs (Santurkar et al. 2018, Fig. 2-11).

Sections join ``fig.to_html(full_html=False, include_plotlyjs=False)`` fragments
around one inlined plotly.js, so the page opens offline from ``file://`` and makes
no network request (no CDN, no MathJax, no web fonts). Every user string that
reaches the HTML goes through :func:`html.escape`; plotly's JSON escapes ``<``,
``>`` and ``/`` inside its ``<script>`` blocks, so a run name cannot close them.
"""

from __future__ import annotations

import datetime
import html
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.offline

from landscape import __version__
from landscape.report import arrays, data, density_plots, ics_plots, plots, probe_plots, surface_plots, training_plots
from landscape.report.data import RunRecord
from landscape.report.verdicts import estimate_text, scale_label
from landscape.runs import write_atomic

log = logging.getLogger(__name__)

DEFAULT_NAME = "report.html"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 0 24px 48px; color: #222; }
header { border-bottom: 1px solid #ddd; margin-bottom: 12px; }
nav a { margin-right: 14px; }
section { margin: 28px 0; }
.note { color: #555; font-size: 0.9em; max-width: 70em; }
.intro { font-size: 1.05em; max-width: 70em; }
.figure { margin: 8px 0 20px; }
table.runs { border-collapse: collapse; font-size: 0.9em; }
table.runs th, table.runs td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
table.runs th[scope=row] { background: #f6f6f6; white-space: nowrap; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; margin-right: 6px;
          vertical-align: -1px; }
.status-diverged, .status-failed { color: #b00; font-weight: 600; }
.status-interrupted, .status-running { color: #a60; }
p.missing { color: #a60; }
.verdict-supports { color: #070; font-weight: 600; }
.verdict-contradicts { color: #b00; font-weight: 600; }
.verdict-inconclusive { color: #a60; }
footer { color: #777; font-size: 0.85em; border-top: 1px solid #ddd; padding-top: 8px; }
"""


@dataclass(frozen=True)
class Section:
    """One part of the page: its anchor, heading, a note and the figures that show it."""

    anchor: str
    title: str
    note: str
    figures: Callable[[Sequence[RunRecord]], list[go.Figure]]
    expects: Callable[[RunRecord], list[str]] = lambda run: []  # series a run's config asks for


SECTIONS = (
    Section(
        "training",
        "Training",
        "Training loss (every logged step) and test loss on a log axis; accuracy in [0, 1]. "
        "Several seeds of a variant: line = mean, band = min–max over seeds (at the steps all seeds recorded).",
        lambda runs: [training_plots.plot_training(runs)],
        lambda run: ["train/loss"],
    ),
    Section(
        "landscape",
        "Loss landscape",
        "At each probe step t the band spans min and max over the probe step sizes η of "
        "L(w<sub>t</sub> − η∇L(w<sub>t</sub>)) (paper Fig. 4a). A narrow band is a smooth landscape. "
        "Several seeds: dark band = mean over seeds of that min and max, light band = min–max pooled over seeds.",
        lambda runs: [probe_plots.plot_loss_landscape(runs)],
        data.expected_probe_series,
    ),
    Section(
        "predictiveness",
        "Gradient predictiveness",
        "Band over η of ‖∇L(w<sub>t</sub>) − ∇L(w<sub>t</sub> − η∇L(w<sub>t</sub>))‖ (paper Fig. 4b): "
        "how much the gradient changes along its own direction; below it, the cosine between the two gradients. "
        "Several seeds: dark band = mean over seeds of the min and max over η, light band = min–max pooled over seeds.",
        lambda runs: [probe_plots.plot_gradient_predictiveness(runs), probe_plots.plot_gradient_cosine(runs)],
        data.expected_probe_series,
    ),
    Section(
        "smoothness",
        "Effective β-smoothness",
        probe_plots.SMOOTHNESS_NOTE,
        lambda runs: [probe_plots.plot_beta_smoothness(runs), probe_plots.plot_preconditioned_sharpness(runs)],
        data.expected_smoothness_series,
    ),
    Section(
        "step-size",
        "Gradient change against step size",
        "Gradient change as a function of the step size at selected training steps, coloured by step (paper Fig. 11). "
        "Several seeds: the lowest seed only.",
        lambda runs: [probe_plots.plot_gradient_vs_step_size(runs)],
    ),
    Section(
        "ics",
        "Internal covariate shift",
        "Difference between a layer's gradient before and after the previous layers' update "
        "(paper Fig. 3): l2 distance on a log axis and cosine similarity. Pick the layer in the menu. "
        "Several seeds: line = mean, band = min–max over seeds.",
        lambda runs: [ics_plots.plot_ics(runs)],
        lambda run: ["ics/l2/"] if run.config.get("ics") else [],
    ),
    Section(
        "distributions",
        "Layer-input distributions",
        "Histogram of each layer's inputs over steps (paper Fig. 2), and per-channel moment statistics "
        "(paper Fig. 8): band = min–max over channels, line = channel mean. Pick the layer in the menu. "
        "Several seeds: the lowest seed only.",
        lambda runs: [ics_plots.plot_histograms(runs), ics_plots.plot_moments(runs)],
        lambda run: ["dist/hist/", "dist/mean/"] if run.config.get("distributions") else [],
    ),
    Section(
        "surface",
        "Loss surface",
        "The loss around a checkpoint's weights on a grid of two (or one) directions (Li et al. 2018), "
        "from each run's surface/surface.json (written by <code>landscape surface</code>): contours with the "
        "weights marked at the centre and the same surface in 3-D. With <code>--trajectory</code> the directions "
        "are the two PCA directions of the kept checkpoints and the training path is drawn over the contours.",
        surface_plots.plot_run_surfaces,
    ),
    Section(
        "density",
        "Hessian density",
        "Density of the Hessian's eigenvalues by stochastic Lanczos quadrature (Ghorbani et al. 2019), from each "
        "run's spectrum/density.json (written by <code>landscape hessian --density</code>), on a log axis: the "
        f"bulk near 0 and the few outliers decades below it. Values under {density_plots.FLOOR:g} times the "
        "highest are drawn at that floor. Runs measured with <code>--checkpoint all</code> also get a figure of "
        "their own, one line per checkpoint coloured by step.",
        density_plots.plot_run_densities,
    ),
)


def plotly_js() -> str:
    """plotly.js to inline; a ``</script`` inside it (none today) could not end our tag."""
    return plotly.offline.get_plotlyjs().replace("</script", "<\\/script")


def figure_html(fig: go.Figure, div_id: str) -> str:
    """One figure's ``<div>`` and ``<script>``, relying on the page's inlined plotly.js.

    Raises:
        ValueError: the fragment holds more than its own script tag, i.e. a string in
            the figure's JSON would end the script early (plotly escapes ``<`` and
            ``/`` in its JSON today; this fails closed if a version stops doing so).
    """
    height = fig.layout.height
    fragment = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        config=PLOTLY_CONFIG,
        div_id=div_id,
        default_width="100%",
        default_height=f"{height}px" if height else "450px",
    )
    lower = fragment.lower()
    if lower.count("<script") != 1 or lower.count("</script") != 1 or "<!--" in lower:
        raise ValueError("a figure's JSON would break out of its <script> tag")
    return fragment


def runs_table(runs: Sequence[RunRecord]) -> str:
    """Run configurations side by side, one column per run; every cell escaped."""
    colors = arrays.run_colors([r.norm for r in runs])
    head = "".join(
        f'<th scope="col"><span class="swatch" style="background:{c}"></span>{html.escape(r.label)}</th>'
        for r, c in zip(runs, colors)
    )
    body = []
    for field, values in data.config_rows(runs)[1:]:  # the run names are the header
        if field == "status":
            cells = "".join(
                f'<td class="status-{html.escape(r.status)}">{html.escape(v)}</td>' for r, v in zip(runs, values)
            )
        else:
            cells = "".join(f"<td>{html.escape(v)}</td>" for v in values)
        body.append(f'<tr><th scope="row">{html.escape(field)}</th>{cells}</tr>')
    return f'<table class="runs"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def claims_table(claims: Sequence[Mapping[str, Any]]) -> str:
    """The paper's claims with their verdicts, intervals, scale and the paper's words;
    every cell escaped."""
    rows = []
    for c in claims:
        verdict = str(c.get("verdict", ""))
        label = f"{c.get('figure', '')}({c['panel']})" if c.get("panel") else str(c.get("figure", ""))
        numbers = "; ".join(
            f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in (c.get("values") or {}).items()
        )
        reason = f'<br><span class="note">{html.escape(str(c["reason"]))}</span>' if c.get("reason") else ""
        quote = (
            (
                f'<br><span class="note">the paper ({html.escape(str(c.get("quote_source", "")))}): '
                f"&ldquo;{html.escape(str(c['quote']))}&rdquo;</span>"
            )
            if c.get("quote")
            else ""
        )
        scale = html.escape(scale_label(c.get("scale"))) if c.get("scale") else "scale not recorded"
        method = (
            f'<br><span class="note">{html.escape(str(c["interval_method"]))}</span>'
            if c.get("interval_method")
            else ""
        )
        rows.append(
            f"<tr><td>{html.escape(label)}</td>"
            f'<td class="verdict-{html.escape(verdict)}">{html.escape(verdict)}</td>'
            f"<td>{html.escape(str(c.get('claim', '')))}{quote}{reason}</td>"
            f"<td>{html.escape(estimate_text(c))}{method}<br>{html.escape(str(c.get('statistic', '')))}"
            f'<br><span class="note">{html.escape(numbers)}</span></td>'
            f"<td>{scale}</td></tr>"
        )
    head = (
        "<tr><th>figure</th><th>verdict</th><th>claim</th><th>statistic [95% interval] (half-width)</th>"
        "<th>scale</th></tr>"
    )
    return f'<table class="runs claims"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def select_sections(anchors: Sequence[str] | None = None) -> tuple[Section, ...]:
    """The sections with these anchors, in this order (default: all of :data:`SECTIONS`).

    Raises:
        ValueError: an unknown anchor.
    """
    if anchors is None:
        return SECTIONS
    by_anchor = {s.anchor: s for s in SECTIONS}
    unknown = [a for a in anchors if a not in by_anchor]
    if unknown:
        raise ValueError(f"unknown report section {unknown[0]!r}; choose from {', '.join(by_anchor)}")
    return tuple(by_anchor[a] for a in anchors)


def section_figures(
    runs: Sequence[RunRecord], sections: Sequence[Section] = SECTIONS
) -> list[tuple[Section, list[go.Figure], list[str]]]:
    """(section, its non-empty figures, its missing-series lines) for every section that
    has either, in order."""
    out = []
    for section in sections:
        figures = [f for f in section.figures(runs) if f.data]
        missing = data.missing_series(runs, section.expects)
        if figures or missing:
            out.append((section, figures, missing))
    return out


def sections_html(
    runs: Sequence[RunRecord], sections: Sequence[Section] = SECTIONS, id_prefix: str = "fig"
) -> list[tuple[Section, str]]:
    """(section, its ``<section>`` element) for every section with data; figure divs are
    numbered ``<id_prefix>-1``, ``-2``, ... (unique ids when several fragments share a page)."""
    parts = []
    count = 0
    for section, figures, missing in section_figures(runs, sections):
        divs = [f'<p class="missing">{html.escape(line)}</p>' for line in missing]
        for fig in figures:
            count += 1
            divs.append(f'<div class="figure">{figure_html(fig, f"{id_prefix}-{count}")}</div>')
        parts.append(
            (
                section,
                f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>'
                f'<p class="note">{section.note}</p>{"".join(divs)}</section>',
            )
        )
    return parts


def render_page(
    runs: Sequence[RunRecord],
    title: str,
    claims: Sequence[Mapping[str, Any]] = (),
    sections: Sequence[str] | None = None,
    intro: str = "",
) -> str:
    """The whole page as a string; ``claims`` (from claims.json) make its first section.

    ``sections``: the anchors of the sections to show, in this order (a figure's
    panels; default: every section with data, in :data:`SECTIONS` order); ``intro``: a
    paragraph under the title (plain text)."""
    chosen = select_sections(sections)
    nav = ['<a href="#runs">Runs</a>']
    first = ""
    if claims:
        nav.insert(0, '<a href="#claims">Claims</a>')
        paper = [c for c in claims if not c.get("beyond_paper")]
        beyond = [c for c in claims if c.get("beyond_paper")]
        first = (
            '<section id="claims"><h2>Claims of the paper</h2><p class="note">Each claim as a statistic of these '
            "runs, with its 95% interval and the verdict read from it (README, 'Claims and verdicts').</p>"
            f"{claims_table(paper)}"
            + (
                '<h3>Beyond the paper</h3><p class="note">Our observations, not claims of the paper: never '
                f"counted among them.</p>{claims_table(beyond)}"
                if beyond
                else ""
            )
            + "</section>"
        )
    rendered = sections_html(runs, chosen)
    nav += [f'<a href="#{section.anchor}">{html.escape(section.title)}</a>' for section, _ in rendered]
    parts = [part for _, part in rendered]
    intro_html = f'<p class="intro">{html.escape(intro)}</p>' if intro else ""
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{plotly_js()}</script>
</head>
<body>
<header><h1>{html.escape(title)}</h1><nav>{"".join(nav)}</nav></header>
{intro_html}
{first}
<section id="runs"><h2>Runs</h2>{runs_table(runs)}</section>
{"".join(parts)}
<footer>landscape {html.escape(__version__)} · generated {html.escape(generated)} ·
{len(runs)} run(s) · series longer than {plots.MAX_POINTS} points are shown decimated
(lines keep each bucket's min and max, bands the bucket's extremes); the run store keeps every record.</footer>
</body>
</html>
"""


def default_title(run_dirs: Iterable[str | Path]) -> str:
    return "landscape report — " + ", ".join(Path(p).resolve().name for p in run_dirs)


def build_report(run_dirs: Sequence[str | Path], output_path: str | Path, title: str | None = None) -> Path:
    """Read runs (or experiment directories) and write one HTML page comparing them.

    Args:
        run_dirs: run or experiment directories; runs still training are read as they are.
        output_path: the HTML file to write (parent directories are created).
        title: page title; default names the given directories.

    Returns:
        The written path.

    Raises:
        landscape.runs.StoreError: a path is missing, holds no run, or a store is unreadable.
        OSError: the output cannot be written.
    """
    runs = data.load_runs(run_dirs)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    page = render_page(runs, title or default_title(run_dirs), data.load_claims(run_dirs)).encode("utf-8")
    # A report written at Ctrl-C or while a browser reloads is either old or complete.
    write_atomic(output_path, lambda f: f.write(page), mode=0o644)
    log.info("wrote report of %d run(s) to %s", len(runs), output_path)
    return output_path


def write_page(
    runs: Sequence[RunRecord],
    output_path: str | Path,
    title: str,
    claims: Sequence[Mapping[str, Any]] = (),
    sections: Sequence[str] | None = None,
    intro: str = "",
) -> Path:
    """Write the page of runs already loaded (see :func:`render_page`); atomically."""
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    page = render_page(runs, title, claims, sections, intro).encode("utf-8")
    write_atomic(output_path, lambda f: f.write(page), mode=0o644)
    return output_path


def write_surface_page(record: Mapping[str, Any], output_path: str | Path, title: str) -> Path:
    """Write one surface's figures (:func:`surface_plots.surface_figures`) as a
    self-contained page; atomically."""
    divs = "".join(
        f'<div class="figure">{figure_html(fig, f"fig-{i}")}</div>'
        for i, fig in enumerate(surface_plots.surface_figures(record), 1)
    )
    settings = ", ".join(f"{k} {v}" for k, v in record["settings"].items())
    note = (
        f"{record['run']} at step {record['checkpoint']['step']}; loss at the centre {record['base_loss']}; "
        f"{record['data']['order']}; {settings}"
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{plotly_js()}</script>
</head>
<body>
<header><h1>{html.escape(title)}</h1></header>
<p class="note">{html.escape(note)}</p>
{divs}
<footer>landscape {html.escape(__version__)}</footer>
</body>
</html>
""".encode()
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(output_path, lambda f: f.write(page), mode=0o644)


def default_output(run_dirs: Sequence[str | Path]) -> Path:
    """``<first directory>/report.html``: the report lives beside the data it shows."""
    return Path(run_dirs[0]) / DEFAULT_NAME


def write_report(run_dirs: Sequence[str | Path], output: str | Path | None = None, title: str | None = None) -> Path:
    """Write the report at the end of a command (or on Ctrl-C); ``output`` defaults to
    :func:`default_output`. Same errors as :func:`build_report`."""
    return build_report(run_dirs, output if output is not None else default_output(run_dirs), title)
