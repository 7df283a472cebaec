"""Reports built from short real runs of `landscape probe`, `ics` and `ics-noise`:
every series the loop and hooks write is drawn under the key they write it, and a
series a run's configuration asks for but that is absent is said, not skipped."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape.report import data, ics_plots, probe_plots, training_plots
from landscape.report.data import RunRecord
from landscape.report.html import SECTIONS, render_page
from landscape_cli.main import cli

TINY = [
    "--model",
    "vgg_tiny",
    "--dataset",
    "synthetic",
    "--batch-size",
    "16",
    "--steps",
    "6",
    "--eval-every",
    "3",
    "--log-every",
    "2",
    "--device",
    "cpu",
    "--no-progress",
]
COMMANDS = {
    "probe": ["probe", *TINY, "--probe-every", "2", "--dense-until", "0"],
    "ics": ["ics", *TINY, "--lrs", "0.05", "--ics-every", "2"],
    "ics-noise": ["ics-noise", *TINY, "--dist-every", "2"],
}
# Sections each experiment's report must draw, with at least this many figures.
SHOWN = {
    "probe": {"training": 1, "landscape": 1, "predictiveness": 2, "smoothness": 1, "step-size": 1},
    "ics": {"training": 1, "ics": 1},
    "ics-noise": {"training": 1, "distributions": 2},
}


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real")
    out = {}
    for kind, args in COMMANDS.items():
        result = CliRunner().invoke(cli, [*args, "--run-dir", str(root / kind)])
        assert result.exit_code == 0, result.output
        assert "claims (see README" in result.output
        out[kind] = root / kind
    return out


def sections_drawn(page: str) -> dict[str, int]:
    """Section anchor -> number of plotly figures in it."""
    counts = {}
    for match in re.finditer(r'<section id="([\w-]+)">(.*?)</section>', page, re.S):
        counts[match.group(1)] = match.group(2).count('class="plotly-graph-div"')
    return counts


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_every_expected_section_is_drawn_from_a_real_run(experiments, kind):
    page = (experiments[kind] / "report.html").read_text(encoding="utf-8")
    drawn = sections_drawn(page)
    for anchor, figures in SHOWN[kind].items():
        assert drawn.get(anchor, 0) >= figures, (anchor, drawn)
    assert 'class="missing"' not in page  # everything the configs ask for was recorded


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_figures_have_data_under_the_keys_the_hooks_write(experiments, kind):
    runs = data.load_runs([experiments[kind]])
    assert runs and all("train/loss" in r.series for r in runs)
    assert training_plots.plot_training(runs).data
    if kind == "probe":
        for plot in (
            probe_plots.plot_loss_landscape,
            probe_plots.plot_gradient_predictiveness,
            probe_plots.plot_gradient_cosine,
            probe_plots.plot_beta_smoothness,
            probe_plots.plot_gradient_vs_step_size,
        ):
            assert plot(runs).data, plot.__name__
        names = {t.name for t in probe_plots.plot_beta_smoothness(runs).data}
        assert any("curvature" in n for n in names)  # the probe computes it by default: it is drawn
    if kind == "ics":
        assert any(name.startswith("ics/l2/#") for name in runs[0].series)
        assert ics_plots.plot_ics(runs).data
    if kind == "ics-noise":
        assert any(name.startswith("dist/hist/#") for name in runs[0].series)
        assert ics_plots.plot_histograms(runs).data and ics_plots.plot_moments(runs).data


def test_a_missing_series_is_said_not_silently_skipped(experiments):
    runs = data.load_runs([experiments["probe"]])
    stripped = [
        RunRecord(
            r.path,
            r.label,
            r.config,
            r.status,
            r.meta,
            {k: v for k, v in r.series.items() if not k.startswith("probe/")},
        )
        for r in runs
    ]
    page = render_page(stripped, "t")
    smoothness = next(s for s in SECTIONS if s.anchor == "smoothness")
    assert data.missing_series(stripped, smoothness.expects)
    assert page.count('class="missing"') >= 3 * len(runs)  # landscape, predictiveness, smoothness
    assert f"{runs[0].label}: nothing recorded yet for probe/loss" in page
    assert '<section id="smoothness">' in page  # shown, with the note, although nothing is drawn


CLAIMED = {
    "probe": "BN narrows the loss band along the gradient (a smoother loss)",
    "ics": "ICS with BN is not smaller than without (||G - G'||, layer #10) at lr 0.05",
    "ics-noise": "noisy BN trains better than the standard network (training accuracy with the noise on, last 10%)",
}


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_every_experiment_writes_its_claims_and_the_report_shows_them_first(experiments, kind):
    import json

    written = json.loads((experiments[kind] / "claims.json").read_text())
    assert {"figure", "claim", "statistic", "values", "verdict"} <= set(written[0])
    claim = next(c for c in written if c["claim"] == CLAIMED[kind])
    # 6 steps: too few measurements for a verdict, and the scale says how far from the paper's.
    assert claim["verdict"] == "inconclusive" and claim["reason"].startswith("too few measurements")
    assert claim["scale"]["steps"] == 6 and claim["scale"]["protocol"] is False
    page = (experiments[kind] / "report.html").read_text(encoding="utf-8")
    assert page.index('<section id="claims">') < page.index('<section id="runs">')
    assert html.escape(CLAIMED[kind]) in page


def test_every_normalization_has_its_own_colour_and_label():
    from landscape.config import NORMS
    from landscape.report import arrays

    assert set(data.NORM_COLORS) == set(NORMS) == set(data.NORM_LABELS)
    assert len(set(data.NORM_COLORS.values()) - {arrays.UNKNOWN_COLOR}) == len(NORMS)  # grey: a norm not listed
    assert len(set(data.NORM_LABELS.values())) == len(NORMS)
