"""``landscape reproduce``: the figures' experiments at both scales, --list offline,
one small figure end to end (claims.json, figure.json, report), and its resume."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape import paper, reproduce
from landscape.report.claims import CHECKS, MIN_FRACTION
from landscape.report.reproduction import markdown
from landscape_cli.main import cli

_SPEC = importlib.util.spec_from_file_location("reproduction", Path(__file__).parents[1] / "scripts" / "reproduction.py")
reproduction_script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reproduction_script)
FIGURE_NAMES = [f"fig{i}" for i in range(1, 14)] + ["seed-vgg11", "seed-resnet50"]


def test_every_figure_of_the_paper_and_both_seed_review_runs_are_covered():
    assert list(reproduce.FIGURES) == FIGURE_NAMES
    for fig in reproduce.FIGURES.values():
        assert fig.checks and all(c.name in CHECKS for c in fig.checks)
        assert all(k in reproduce.EXPERIMENTS for k in fig.all_experiments)
    # A figure writes its claims and report into OUT/FIGURE, an experiment into OUT/KEY.
    assert not set(reproduce.FIGURES) & set(reproduce.EXPERIMENTS)


@pytest.mark.parametrize("key", list(reproduce.EXPERIMENTS))
def test_experiments_at_paper_scale_follow_the_protocol_and_cpu_scale_keeps_a_quarter_of_its_steps(key):
    exp = reproduce.EXPERIMENTS[key]
    configs = reproduce.experiment_configs(key, "paper")
    names = [c.name for c in configs]
    assert len(set(names)) == len(names) == len(exp.norms) * max(1, len(exp.lrs))
    protocol = paper.protocol(exp.model)
    for c in configs:
        assert c.model.name == exp.model and c.model.width_mult == 1 and c.data.subset is None
        assert c.train.lr == (exp.lr or (c.train.lr if exp.lrs else protocol.lr))
        assert paper.total_steps(c) == reproduce.paper_steps(key)
    cpu = reproduce.experiment_configs(key, "cpu")
    assert [c.name for c in cpu] == names
    for c in cpu:
        steps = paper.total_steps(c)
        if exp.model == "resnet50":  # a smoke run: its verdicts are inconclusive by the short-run rule
            assert steps < MIN_FRACTION * reproduce.paper_steps(key)
        else:
            assert MIN_FRACTION * reproduce.paper_steps(key) <= steps <= 0.3 * reproduce.paper_steps(key)
        if paper.protocol(exp.model) is paper.PROTOCOLS["vgg"]:
            assert c.model.name == "vgg11" and c.model.width_mult == 0.125
        assert (c.probe is None) == (exp.kind != "probe") and (c.ics is None) == (exp.kind != "ics")


def test_seeds_name_every_run_by_its_seed():
    configs = reproduce.experiment_configs("dln-probe", "cpu", seeds=(3, 4))
    assert [c.name for c in configs] == ["none/seed3", "bn/seed3", "none/seed4", "bn/seed4"]
    assert [c.train.seed for c in configs] == [3, 3, 4, 4]


def test_list_works_offline_and_names_every_figure_with_its_command_and_time(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LANDSCAPE_DATA", raising=False)
    result = CliRunner().invoke(cli, ["reproduce", "--list", "--scale", "cpu"])
    assert result.exit_code == 0, result.output
    for name in FIGURE_NAMES:
        assert f"landscape reproduce {name} --scale cpu" in result.output
    assert "landscape reproduce all --scale cpu: about" in result.output
    assert not any(tmp_path.iterdir())  # nothing written, no data read


def test_an_unknown_figure_is_a_one_line_error():
    result = CliRunner().invoke(cli, ["reproduce", "fig99"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "unknown figure 'fig99'" in result.output


def test_a_figure_end_to_end_writes_claims_figure_json_and_its_report_and_resumes(monkeypatch, tmp_path):
    # The DLN's CPU scale, cut to 1% of the paper's steps so that the test is quick.
    monkeypatch.setitem(reproduce.CPU_SCALE, "dln", dataclasses.replace(reproduce.CPU_SCALE["dln"], fraction=0.01))
    args = ["reproduce", "fig10", "--scale", "cpu", "--out", str(tmp_path), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "fig10" / "claims.json").read_text())
    assert {c["figure"] for c in found} == {"Fig. 10"} and len(found) == 4  # three smoothness claims + 2/eta
    assert all(c["verdict"] == "inconclusive" and "1.0% of the paper's 10000" in c["reason"] for c in found)
    meta = json.loads((tmp_path / "fig10" / "figure.json").read_text())
    assert meta["command"] == "landscape reproduce fig10 --scale cpu" and meta["experiments"] == ["dln-probe"]
    page = (tmp_path / "fig10" / "report.html").read_text()
    assert "Fig. 10: The optimization landscape" in page and 'id="claims"' in page
    assert page.index('id="landscape"') < page.index('id="training"')  # the figure's panel order
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and again.output.count("already complete") == 2
    # REPRODUCTION.md is written from these files alone.
    text = markdown([tmp_path])
    assert "`landscape reproduce fig10 --scale cpu`" in text and "| [Fig. 10](#fig10-cpu-1seeds)" in text
    assert text.count("**inconclusive** (runs of 100 steps are 1.0% of the paper's 10000") == 4
    written = tmp_path / "REPRODUCTION.md"
    assert reproduction_script.main([str(tmp_path), "-o", str(written)]) == 0 and written.read_text() == text
    assert reproduction_script.main([str(tmp_path / "nothing")]) == 2


def test_a_subset_keeps_the_scales_steps_even_for_runs_given_in_epochs():
    for key in ("resnet50-20ep", "vgg-probe"):
        full = reproduce.experiment_configs(key, "paper")
        part = reproduce.experiment_configs(key, "paper", subset=8000)
        assert [paper.total_steps(c) for c in part] == [paper.total_steps(c) for c in full]
        assert all(c.data.subset == 8000 for c in part)
    dln = reproduce.experiment_configs("dln-probe", "paper", subset=8000)  # not CIFAR: untouched
    assert all(c.data.subset is None for c in dln)
