"""The example notebook runs top to bottom in a real kernel (nbclient + ipykernel), and
the notebook API of the report: figures by section, and inline HTML for Jupyter."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import landscape.report
from landscape.report.html import SECTIONS
from landscape.runs import RunStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "probe_torchvision.ipynb"


def outputs(cell) -> str:
    text = []
    for out in cell.get("outputs", []):
        text.append(out.get("text", ""))
        text.extend(str(v) for v in out.get("data", {}).values())
        if out.get("output_type") == "error":
            text.append(f"{out['ename']}: {out['evalue']}")
    return "\n".join(text)


def test_the_example_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: the cores are shared
    notebook = nbformat.read(EXAMPLE, as_version=4)
    NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "step 2: loss" in outputs(code[1])  # the loop probed at steps 0 and 2
    assert "'landscape': 1" in outputs(code[2]) and "'smoothness': 1" in outputs(code[2])
    inline = code[-1]["outputs"][0]["data"]["text/html"]
    for anchor in ("training", "landscape", "predictiveness", "smoothness"):
        assert f'<section id="{anchor}">' in inline
    assert "nothing recorded yet" not in inline


@pytest.fixture
def run_dir(tmp_path):
    """A store as the probe writes it, two steps, with a probe at each."""
    path = tmp_path / "run"
    config = {
        "name": "tiny",
        "model": {"name": "m", "norm": "bn"},
        "train": {"lr": 0.1},
        "probe": {"step_sizes": [1.0, 2.0], "relative": True},
    }
    with RunStore.create(path, config) as store:
        for step in (0, 1):
            store.log(
                step,
                {
                    "train/loss": 1.0 - step / 4,
                    "probe/loss": [0.9, 1.1],
                    "probe/grad_diff": [0.1, 0.3],
                    "probe/grad_cosine": [0.9, 0.8],
                    "probe/beta": 3.0,
                    "probe/curvature": 2.0,
                },
            )
    return path


def test_figures_by_section(run_dir):
    figures = landscape.report.figures(run_dir)
    assert list(figures) == ["training", "landscape", "predictiveness", "smoothness", "step-size"]
    assert [len(f) for f in figures.values()] == [1, 1, 2, 1, 1]
    assert list(landscape.report.figures(run_dir, sections=["smoothness"])) == ["smoothness"]
    with pytest.raises(ValueError, match="unknown report section"):
        landscape.report.figures(run_dir, sections=["nope"])


def test_inline_html_includes_plotly_once_and_reads_the_store_when_shown(run_dir):
    inline = landscape.report.Experiment(run_dir)._repr_html_()
    assert inline.count("window.PlotlyConfig") == 1 and len(inline) > 1_000_000
    cdn = landscape.report.Experiment(run_dir, include_plotlyjs="cdn")
    page = cdn._repr_html_()
    assert "https://cdn.plot.ly/plotly-" in page and len(page) < 200_000
    assert '<section id="ics">' not in page
    with RunStore(run_dir) as store:
        store.log(2, {"ics/l2/#1": 0.5, "ics/cosine/#1": 0.9})
    assert '<section id="ics">' in cdn._repr_html_()  # shown again: the new records are there
    with pytest.raises(ValueError, match="include_plotlyjs"):
        landscape.report.Experiment(run_dir, include_plotlyjs="yes")
    assert {s.anchor for s in SECTIONS} >= set(landscape.report.figures(run_dir))


def test_figure_ids_differ_between_displays(run_dir):
    first = landscape.report.Experiment(run_dir, include_plotlyjs=False)._repr_html_()
    second = landscape.report.Experiment(run_dir, include_plotlyjs=False)._repr_html_()
    ids = [part.split('"')[0] for part in first.split('<div id="')[1:]]
    assert ids and not any(i in second for i in ids)
    assert os.path.basename(str(run_dir)) in first
