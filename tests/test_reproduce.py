"""``landscape reproduce``: the figures' experiments at both scales, --list offline,
one small figure end to end (claims.json, figure.json, report), and its resume."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape import paper
from landscape.paper import catalogue, reproduce
from landscape.paper.reproduction import markdown
from landscape_cli.main import cli

_SPEC = importlib.util.spec_from_file_location(
    "reproduction", Path(__file__).parents[1] / "scripts" / "reproduction.py"
)
reproduction_script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reproduction_script)
FIGURE_NAMES = [f"fig{i}" for i in range(1, 14) if i != 7] + ["seed-vgg11", "seed-resnet50", "transformer-norms"]


def test_every_figure_of_the_paper_and_both_seed_review_runs_are_covered():
    assert list(reproduce.FIGURES) == FIGURE_NAMES
    for fig in reproduce.FIGURES.values():
        assert fig.checks and all(c.name in catalogue.GROUPS for c in fig.checks)
        assert all(k in reproduce.EXPERIMENTS for k in fig.all_experiments)
    # A figure writes its claims and report into OUT/FIGURE, an experiment into OUT/KEY.
    assert not set(reproduce.FIGURES) & set(reproduce.EXPERIMENTS)


@pytest.mark.parametrize("key", list(reproduce.EXPERIMENTS))
def test_experiments_at_paper_scale_follow_the_protocol_and_cpu_scale_reduces_vgg_only(key):
    exp = reproduce.EXPERIMENTS[key]
    configs = reproduce.experiment_configs(key, "paper")
    names = [c.name for c in configs]
    assert len(set(names)) == len(names) == len(exp.norms) * max(1, len(exp.lrs))
    protocol = paper.protocol(exp.model)
    for c in configs:
        assert c.model.name == exp.model and c.model.width_mult == 1 and c.data.subset is None
        variant_lr = reproduce.GPT_VARIANTS[c.name][1].get("lr") if exp.model == "gpt" else None
        assert c.train.lr == (exp.lr or variant_lr or (c.train.lr if exp.lrs else protocol.lr))
        assert paper.total_steps(c) == reproduce.paper_steps(key)
    cpu = reproduce.experiment_configs(key, "cpu")
    assert [c.name for c in cpu] == names
    for c in cpu:
        steps = paper.total_steps(c)
        if exp.model == "resnet50":  # a smoke run: too few measurements for a verdict
            assert steps < 0.01 * reproduce.paper_steps(key)
        elif exp.model == "gpt":  # its own protocol at both scales (the GPU scale adds seeds)
            assert c == next(p for p in configs if p.name == c.name)
        elif exp.model == "dln":  # cheap: the paper's protocol itself
            assert c == next(p for p in configs if p.name == c.name)
        else:  # VGG: a quarter of the steps, every test image
            assert steps == reproduce.paper_steps(key) // 4 and c.train.eval_samples is None
        if paper.protocol(exp.model) is paper.PROTOCOLS["vgg"]:
            assert c.model.name == "vgg11" and c.model.width_mult == 0.125
        assert (c.probe is None) == (exp.kind != "probe") and (c.ics is None) == (exp.kind != "ics")


def test_distributions_are_recorded_at_the_papers_layers_mapped_onto_the_model():
    paper_cfg = reproduce.experiment_configs("vgg-noise", "paper")[0]
    cpu_cfg = reproduce.experiment_configs("vgg-noise", "cpu")[0]
    # Fig. 1(c) #3, #11; Fig. 2 and 8 #2, #9, #13: VGG-16's own, VGG-11's round(i * 8 / 13).
    assert paper_cfg.distributions.layers == ("2", "3", "9", "11", "13")
    assert cpu_cfg.distributions.layers == ("1", "2", "6", "7", "8")
    assert reproduce.experiment_configs("dln-depth", "cpu")[0].distributions.layers == ("1", "11", "24")


def test_fig7_is_the_theory_schematic_with_nothing_to_run():
    assert "fig7" not in reproduce.FIGURES
    result = CliRunner().invoke(cli, ["reproduce", "fig7"])
    assert result.exit_code == 2 and "theory's schematic" in result.output and result.output.count("\n") == 1
    listing = CliRunner().invoke(cli, ["reproduce", "--list", "--scale", "cpu"]).output
    assert "fig7" in listing and "nothing to run" in listing and "landscape reproduce fig7" not in listing


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
    assert [c["beyond_paper"] for c in found] == [False, False, False, True]
    assert all(c["verdict"] == "inconclusive" and c["reason"].startswith("too few measurements") for c in found)
    assert all(c["scale"]["steps"] == 100 and c["scale"]["paper_steps"] == 10_000 for c in found)
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
    assert text.count("**inconclusive** (too few measurements") == 4
    assert "## Beyond the paper" in text and "reduced: dln, 100 of 10,000 steps" in text
    written = tmp_path / "REPRODUCTION.md"
    assert reproduction_script.main([str(tmp_path), "-o", str(written)]) == 0 and written.read_text() == text
    assert reproduction_script.main([str(tmp_path / "nothing")]) == 2


def test_a_figure_of_two_networks_keeps_one_networks_panels_alone():
    fig3 = reproduce.figure("fig3")
    assert fig3.networks == ("vgg", "dln") and fig3.folder == "fig3"
    dln = reproduce.figure("fig3", "dln")
    assert dln.all_experiments == ("dln-ics",) and dln.folder == "fig3-dln" and dln.label == "Fig. 3, DLN"
    assert reproduce.figure("fig5", "vgg").all_experiments == ("vgg-lp", "vgg-noise")
    assert reproduce.figure("fig10", "dln") is reproduce.FIGURES["fig10"]  # all its panels: unchanged
    for name, network, message in [
        ("fig9", "vgg", "fig9 has no vgg panel (its networks: dln)"),
        ("fig3", "lstm", "unknown network 'lstm'"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            reproduce.figure(name, network)
    result = CliRunner().invoke(cli, ["reproduce", "fig9", "--network", "vgg", "--scale", "cpu"])
    assert result.exit_code == 2 and result.output == "Error: fig9 has no vgg panel (its networks: dln)\n"
    listing = CliRunner().invoke(cli, ["reproduce", "--list", "--scale", "cpu", "--network", "dln"]).output
    assert "landscape reproduce fig11 --scale cpu --network dln" in listing and "fig4 " not in listing


def test_one_networks_panels_end_to_end_in_their_own_folder(monkeypatch, tmp_path):
    monkeypatch.setitem(reproduce.CPU_SCALE, "dln", dataclasses.replace(reproduce.CPU_SCALE["dln"], fraction=0.01))
    args = [
        "reproduce",
        "fig11",
        "--scale",
        "cpu",
        "--network",
        "dln",
        "--seeds",
        "2",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dln-probe", "fig11-dln"]  # no VGG run started
    meta = json.loads((tmp_path / "fig11-dln" / "figure.json").read_text())
    assert meta["command"] == "landscape reproduce fig11 --scale cpu --seeds 0,1 --network dln"
    assert meta["figure"] == "fig11" and meta["network"] == "dln" and meta["seeds"] == [0, 1]
    found = json.loads((tmp_path / "fig11-dln" / "claims.json").read_text())
    assert [c["id"] for c in found] == [f"fig11b-{m:g}lr" for m in (0.01, 0.1, 1, 10, 30)]  # panel (b) alone
    assert {c["scale"]["model"] for c in found} == {"dln"}
    text = markdown([tmp_path])
    assert "| [Fig. 11, DLN](#fig11-dln-cpu-2seeds)" in text and '<a id="fig11-dln-cpu-2seeds"></a>' in text
    assert (
        text.count("| reduced: dln, 100 of 10,000 steps, 1,000 training images; seeds 0, 1 |") == 5
    )  # every row: its scale and seeds
    notes, written = tmp_path / "notes.md", tmp_path / "REPRODUCTION.md"
    notes.write_text("Fig. 11(b) was judged on one seed before.\n")
    assert reproduction_script.main([str(tmp_path), "-o", str(written), "--notes", str(notes)]) == 0
    page = written.read_text()
    assert page == markdown([tmp_path], notes=notes) and f"--notes {notes}`" in page
    assert page.index("## Summary") < page.index("## What changed\n\nFig. 11(b) was judged") < page.index("## Fig. 11")
    assert reproduction_script.main([str(tmp_path), "-o", str(written), "--notes", str(tmp_path / "none.md")]) == 2


def test_a_subset_keeps_the_scales_steps_even_for_runs_given_in_epochs():
    for key in ("resnet50-20ep", "vgg-probe"):
        full = reproduce.experiment_configs(key, "paper")
        part = reproduce.experiment_configs(key, "paper", subset=8000)
        assert [paper.total_steps(c) for c in part] == [paper.total_steps(c) for c in full]
        assert all(c.data.subset == 8000 for c in part)
    dln = reproduce.experiment_configs("dln-probe", "paper", subset=8000)  # not CIFAR: untouched
    assert all(c.data.subset is None for c in dln)


def test_figure_folders_written_before_intervals_still_render(tmp_path):
    """A figure folder from before the catalogue (claims without intervals, ids or
    scale) renders in REPRODUCTION.md and in the report's claims table, marked."""
    from landscape.report.html import claims_table

    fig = tmp_path / "fig4"
    fig.mkdir()
    old = [
        {
            "figure": "Fig. 4",
            "claim": "BN narrows the loss along the gradient",
            "statistic": "median ratio",
            "values": {"median ratio none/bn": 1.81},
            "verdict": "supports",
            "reason": "",
            "per_seed": {},
        }
    ]
    (fig / "claims.json").write_text(json.dumps(old))
    (fig / "figure.json").write_text(
        json.dumps(
            {
                "figure": "fig4",
                "label": "Fig. 4",
                "title": "t",
                "reading": "r",
                "scale": "cpu",
                "seeds": [0],
                "command": "c",
                "experiments": [],
            }
        )
    )
    text = markdown([tmp_path])
    assert "no interval (made before intervals)" in text and "| 1 | 0 | 0 |" in text
    assert "no interval (made before intervals)" in claims_table(old)


def test_a_figure_whose_runs_follow_the_papers_protocol_says_so_in_its_rows(tmp_path):
    claim = {
        "id": "fig10a",
        "figure": "Fig. 10",
        "panel": "a",
        "claim": "c",
        "statistic": "s",
        "verdict": "contradicts",
        "estimate": 0.5,
        "interval": [0.4, 0.6],
        "ratio": True,
        "seeds": [0, 1],
        "scale": {"model": "dln", "steps": 10_000, "paper_steps": 10_000, "protocol": True},
    }
    for name, protocol in (("fig10", True), ("fig4", False)):
        folder = tmp_path / name
        folder.mkdir()
        scale = dict(claim["scale"], protocol=protocol)
        (folder / "claims.json").write_text(json.dumps([dict(claim, scale=scale)]))
        (folder / "figure.json").write_text(
            json.dumps(
                {
                    "figure": name,
                    "label": name,
                    "title": "t",
                    "scale": "cpu",
                    "seeds": [0, 1],
                    "command": "c",
                    "experiments": [],
                }
            )
        )
    text = markdown([tmp_path])
    assert (
        "| [fig10](#fig10-cpu-2seeds) t | paper protocol | 2 |" in text and "## fig10: t (paper protocol scale" in text
    )
    assert "| [fig4](#fig4-cpu-2seeds) t | cpu | 2 |" in text and "## fig4: t (cpu scale, 2 seeds)" in text
