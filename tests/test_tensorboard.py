"""TensorBoard and JSON Lines: `landscape runs export --format tensorboard|jsonl` and the
live mirror (`train(..., tensorboard=DIR)`, `--tensorboard DIR`), read back with
TensorBoard's own EventAccumulator and compared with the run store."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from landscape.config import DistributionConfig, HessianConfig, ProbeConfig, ScheduleConfig
from landscape.integrations.tensorboard import TensorBoardMirror, export_run
from landscape.runner.experiments import run_experiment, variants
from landscape.runner.train import train
from landscape.runs import RunStore
from landscape_cli.main import cli

SIZES = ("eta=0.025", "eta=0.05", "eta=0.1", "eta=0.2")  # (0.5, 1, 2, 4) x lr 0.05


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run with a probe, layer-input histograms and two Hessian eigenvalues,
    mirrored live to TensorBoard."""
    root = tmp_path_factory.mktemp("tb")
    every = ScheduleConfig(every=4)
    config = dataclasses.replace(
        tiny_config(steps=8, checkpoint_every=100),
        probe=ProbeConfig(schedule=every, curvature=False),
        distributions=DistributionConfig(schedule=every, channels=2, bins=6),
        hessian=HessianConfig(schedule=ScheduleConfig(every=8), k=2, max_hvps=6),
    )
    result = train(config, run_dir=root / "run", tensorboard=root / "live")
    assert result.status == "finished"
    return root


def events(path) -> EventAccumulator:
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def assert_matches_store(run_dir, tb_dir) -> None:
    """Every scalar series is a tag, every probe column a tag per step size, with the
    store's steps and (float32) values."""
    acc = events(tb_dir)
    scalars = set(acc.Tags()["scalars"])
    with RunStore(run_dir, readonly=True) as store:
        names = store.names()
        expected = set()
        for name in names:
            steps, values = store.series(name)
            if values.ndim == 1:
                columns = {name: values}
            elif name.startswith("probe/"):
                columns = {f"{name}/{label}": values[:, k] for k, label in enumerate(SIZES)}
            elif name.startswith(("dist/hist/", "dist/edges/", "dist/channels/")):
                continue
            else:
                columns = {f"{name}/{k}": values[:, k] for k in range(values.shape[1])}
            for tag, column in columns.items():
                expected.add(tag)
                recorded = acc.Scalars(tag)
                assert [e.step for e in recorded] == steps.tolist(), tag
                np.testing.assert_array_equal([e.value for e in recorded], column.astype(np.float32), err_msg=tag)
        hist_steps, counts = store.series(next(n for n in names if n.startswith("dist/hist/")))
    assert scalars == expected
    assert {"train/loss", "test/acc", "probe/beta", "probe/loss/eta=0.1", "hessian/eigs/1"} <= scalars
    histograms = [t for t in acc.Tags()["histograms"] if t.startswith("dist/hist/")]
    assert histograms
    first = acc.Histograms(histograms[0])
    assert [h.step for h in first] == hist_steps.tolist()
    assert first[0].histogram_value.bucket == pytest.approx(counts[0].tolist())


def test_the_live_mirror_writes_what_the_store_records(run):
    assert_matches_store(run / "run", run / "live")


def test_export_writes_every_series_as_tags(run, tmp_path):
    out = tmp_path / "exported"
    result = CliRunner().invoke(cli, ["runs", "export", str(run / "run"), "--format", "tensorboard", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert_matches_store(run / "run", out)
    again = CliRunner().invoke(cli, ["runs", "export", str(run / "run"), "--format", "tensorboard", "-o", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_an_experiment_exports_one_folder_per_run(run, tmp_path):
    out = tmp_path / "exported"
    result = CliRunner().invoke(cli, ["runs", "export", str(run), "--format", "tensorboard", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "train/loss" in events(out / "run").Tags()["scalars"]


def test_jsonl_holds_every_record(run, tmp_path):
    out = tmp_path / "run.jsonl"
    result = CliRunner().invoke(cli, ["runs", "export", str(run / "run"), "--format", "jsonl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    with RunStore(run / "run", readonly=True) as store:
        rows = list(store.rows())
    assert [(r["step"], r["name"]) for r in lines] == [(step, name) for step, name, _ in rows]
    for line, (_, _, value) in zip(lines, rows):
        finite = [None if math.isnan(v) else v for v in value] if isinstance(value, list) else value
        assert line["value"] == finite


def test_a_missing_tensorboard_is_one_clear_line(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    result = CliRunner().invoke(
        cli, ["runs", "export", str(run / "run"), "--format", "tensorboard", "-o", str(tmp_path / "tb")]
    )
    assert result.exit_code == 2
    assert (
        result.output.strip() == "Error: TensorBoard needs the tensorboard package: "
        "pip install 'torch-landscape[tensorboard]'"
    )
    assert not (tmp_path / "tb").exists()
    needs = CliRunner().invoke(cli, ["runs", "export", str(run / "run"), "--format", "tensorboard"])
    assert needs.exit_code == 2 and "needs -o DIR" in needs.output


def test_truncation_hides_the_events_after_it(tmp_path):
    """A resume (or a divergence) truncates the store; TensorBoard must not keep the
    dropped steps beside the new ones."""
    store = RunStore.create(tmp_path / "run", {"name": "x"})
    mirror = TensorBoardMirror(store, tmp_path / "tb")
    mirror.log_many([(s, {"train/loss": float(s)}) for s in range(6)])
    mirror.truncate_after(2)
    mirror.log_many([(s, {"train/loss": 10.0 + s}) for s in (3, 4)])
    mirror.close()
    recorded = [(e.step, e.value) for e in events(tmp_path / "tb").Scalars("train/loss")]
    assert recorded == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]


def test_export_of_a_store_without_probe_uses_indices(tmp_path):
    with RunStore.create(tmp_path / "run", {"name": "x"}) as store:
        store.log(0, {"probe/loss": [1.0, 2.0], "a": 3.0})
    export_run(tmp_path / "run", tmp_path / "tb")
    assert set(events(tmp_path / "tb").Tags()["scalars"]) == {"probe/loss/0", "probe/loss/1", "a"}


def test_the_commands_mirror_each_run(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "tiny",
            "--dataset",
            "synthetic",
            "--steps",
            "2",
            "--no-progress",
            "--run-dir",
            str(tmp_path / "run"),
            "--tensorboard",
            str(tmp_path / "tb"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [e.step for e in events(tmp_path / "tb").Scalars("train/loss")] == [0, 1]

    configs = variants(tiny_config(steps=2, checkpoint_every=100), ["none", "bn"])
    run_experiment(configs, tmp_path / "exp", kind="probe", tensorboard=tmp_path / "exp-tb")
    for name in ("none", "bn"):
        assert_same_losses(tmp_path / "exp" / name, tmp_path / "exp-tb" / name)


def assert_same_losses(run_dir, tb_dir) -> None:
    with RunStore(run_dir, readonly=True) as store:
        steps, losses = store.series("train/loss")
    recorded = events(tb_dir).Scalars("train/loss")
    assert [e.step for e in recorded] == steps.tolist()
    assert [e.value for e in recorded] == losses.astype(np.float32).tolist()
