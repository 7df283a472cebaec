"""The Hessian eigenvalue density of a recorded run: ``landscape hessian --density`` writes
``spectrum/density.json`` (the measure of :func:`hessian_density` on the run's batches, bit
for bit), and the report draws it on a log axis, skipping an unreadable file with a warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, invoke

import landscape.report
from landscape.config import ConfigError, DensityConfig, RunConfig
from landscape.curvature.hessian import hessian_density
from landscape.data import batches, load_data, objective
from landscape.report.data import load_runs
from landscape.report.density_plots import FLOOR, load_density, plot_density, plot_run_densities
from landscape.runner.assembly import build_run_model

TRAIN = [
    "train",
    "--model",
    "tiny",
    "--dataset",
    "synthetic",
    "--subset",
    "64",
    "--batch-size",
    "16",
    "--steps",
    "8",
    "--checkpoint-every",
    "4",
    "--keep-checkpoints",
    "--eval-samples",
    "32",
    "--device",
    "cpu",
    "--no-progress",
]
DENSITY = ["--density", "--density-runs", "2", "--density-steps", "10", "--batches", "2", "--max-hvps", "20"]


def density_file(run_dir: Path) -> Path:
    return run_dir / "spectrum" / "density.json"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny run that kept its checkpoints at steps 0, 4 and 8; no density yet."""
    path = tmp_path_factory.mktemp("density") / "run"
    result = invoke(*TRAIN, "--run-dir", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def measured(trained, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the run with the density at its last checkpoint, and the command's output."""
    path = tmp_path_factory.mktemp("density") / "measured"
    shutil.copytree(trained, path)
    result = invoke("hessian", path, *DENSITY)
    assert result.exit_code == 0, result.output
    return path, result.output


def test_density_json_is_a_normalized_density_at_the_last_checkpoint(measured):
    run_dir, output = measured
    record = json.loads(density_file(run_dir).read_text())
    assert record["run"] == str(run_dir.resolve())
    [entry] = record["densities"]
    assert entry["step"] == 8 and entry["runs"] == 2 and entry["steps"] == 10 and entry["bn_mode"] == "train"
    assert entry["batches"] == 2 and entry["hvps"] == 2 * 10
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    model = build_run_model(config)
    assert entry["parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    grid, density = np.array(entry["grid"]), np.array(entry["density"])
    assert grid.shape == density.shape == (DensityConfig().grid_size,) and (np.diff(grid) > 0).all()
    assert (density >= 0).all() and np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-9)
    nodes = np.concatenate(entry["nodes"])
    assert all(sum(w) == pytest.approx(1.0) for w in entry["weights"])
    mean = np.mean([np.dot(t, w) for t, w in zip(entry["nodes"], entry["weights"])])
    assert entry["mean"] == pytest.approx(mean) and nodes.min() <= entry["mean"] <= nodes.max()
    line = next(line for line in output.splitlines() if "density nodes in" in line and "step 8" in line)
    assert f"{entry['mean']:.6g}" in line and "20 HVPs" in line and f"n = {entry['parameters']}" in line


def test_density_json_is_hessian_density_on_the_runs_batches_with_its_seed(measured):
    run_dir, _ = measured
    [entry] = json.loads(density_file(run_dir).read_text())["densities"]
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    model = build_run_model(config)
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"])
    data = load_data(config.data)
    first = list(batches(data, config.train.batch_size, torch.Generator().manual_seed(config.train.seed)))[:2]
    expected = hessian_density(
        model,
        objective(data),
        runs=2,
        steps=10,
        batches=first,
        generator=torch.Generator().manual_seed(config.train.seed),
    )
    assert entry["grid"] == expected.grid.tolist() and entry["density"] == expected.density.tolist()
    assert entry["nodes"] == [t.tolist() for t in expected.nodes]


def test_every_checkpoint_gets_a_density_and_the_report_colours_them_by_step(trained, tmp_path):
    run_dir = tmp_path / "all"
    shutil.copytree(trained, run_dir)
    result = invoke("hessian", run_dir, *DENSITY, "--checkpoint", "all")
    assert result.exit_code == 0, result.output
    record = load_density(run_dir)
    assert [e["step"] for e in record["densities"]] == [0, 4, 8]
    assert sum("density nodes in" in line for line in result.output.splitlines()) == 3
    [figure] = plot_run_densities(load_runs([run_dir]))  # one run: its figure over training alone
    assert [t.name for t in figure.data if t.name] == ["step 0", "step 4", "step 8"]
    assert figure.layout.yaxis.type == "log"


def test_report_draws_the_density_on_a_log_axis_with_a_floor(measured, trained, tmp_path):
    run_dir, _ = measured
    result = invoke("report", run_dir, trained, "-o", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert 'id="density"' in page and "Hessian eigenvalue density" in page and '"type":"log"' in page
    [figure] = plot_run_densities(load_runs([run_dir, trained]))  # the run without a density has no line
    [trace] = figure.data
    density = np.array(json.loads(density_file(run_dir).read_text())["densities"][0]["density"])
    assert (np.asarray(trace.y) >= FLOOR * density.max()).all() and np.asarray(trace.y).max() == density.max()
    assert list(landscape.report.figures(run_dir, sections=["density"])) == ["density"]

    without = invoke("report", trained, "-o", tmp_path / "without.html")
    assert without.exit_code == 0 and 'id="density"' not in (tmp_path / "without.html").read_text()
    assert not plot_density([]).data


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"densities": [{"grid": [0, 1], "step": 8}]}',
        "[1, 2]",
        '{"densities": [{"grid": [0, 1], "density": [1, "x"], "step": 8}]}',
    ],
)
def test_unreadable_density_is_a_warning_and_the_report_still_writes(measured, tmp_path, content):
    run_dir = tmp_path / "corrupt"
    shutil.copytree(measured[0], run_dir)
    density_file(run_dir).write_text(content)
    result = invoke("report", run_dir, "-o", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "density.json: unreadable Hessian density" in warning
    page = (tmp_path / "report.html").read_text()
    assert 'id="training"' in page and 'id="density"' not in page


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--density-steps", "0"], "--density-steps"),
        (["--density-runs", "0"], "--density-runs"),
        (["--density-runs", "two"], "--density-runs"),
    ],
)
def test_bad_density_options_are_one_line_exit_2(trained, args, fragment):
    assert_one_line_error(invoke("hessian", trained, "--density", *args), fragment)
    assert not density_file(trained).exists()


@pytest.mark.parametrize("option", ["--density-runs", "--density-steps"])
def test_density_settings_without_density_are_one_line_exit_2(trained, option):
    assert_one_line_error(invoke("hessian", trained, option, "3"), option, "add --density")
    assert not density_file(trained).exists()


def test_density_config_validates():
    with pytest.raises(ConfigError, match="--density-steps"):
        DensityConfig(steps=0)
    with pytest.raises(ConfigError, match="grid"):
        DensityConfig(grid_size=1)
