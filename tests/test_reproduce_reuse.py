"""``landscape reproduce`` reuses a finished run only when it was made with the settings
asked for now: a run of another scale or subset stops the command before anything is
written (exit 2, one line), ``--rerun`` moves it aside and runs it again; --subset runs
get their own default folder; figure.json records what each run actually was."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, invoke

from landscape.config import ICSConfig, ProbeConfig, RunConfig, ScheduleConfig
from landscape.paper import reproduce
from landscape.runner.run_match import config_differences, describe, run_differences
from landscape.runs import RunStore
from landscape_cli.reproduce_cmd import default_out

SMALL = 0.01  # of the paper's steps: the DLN's 10,000 become 100


def _small_dln(monkeypatch) -> None:
    monkeypatch.setitem(reproduce.CPU_SCALE, "dln", dataclasses.replace(reproduce.CPU_SCALE["dln"], fraction=SMALL))


@pytest.fixture(scope="module")
def cpu_fig9(tmp_path_factory) -> Path:
    """fig9 (the DLN's two ics-noise runs) at a CPU scale of 100 steps, made once."""
    out = tmp_path_factory.mktemp("cpu-fig9")
    with pytest.MonkeyPatch.context() as mp:
        _small_dln(mp)
        result = invoke("reproduce", "fig9", "--scale", "cpu", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def fig9(cpu_fig9, tmp_path) -> Path:
    """A copy of the CPU-scale fig9 for one test to change."""
    out = tmp_path / "out"
    shutil.copytree(cpu_fig9, out)
    return out


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` by its content hash, and every folder."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def stored(run_dir: Path) -> dict:
    with RunStore(run_dir, readonly=True) as store:
        return dict(store.config, status=store.status)


# config_differences --------------------------------------------------------------------


def _config(**probe) -> RunConfig:
    """The DLN probe experiment's first run (a probe config of its own with ``probe``)."""
    config = reproduce.experiment_configs("dln-probe", "cpu")[0]
    return dataclasses.replace(config, probe=ProbeConfig(**probe)) if probe else config


def _with(config: dict, section: str, **changes) -> dict:
    return dict(config, **{section: dict(config[section], **changes)})


def test_equal_configs_and_a_stored_config_after_json_differ_in_nothing():
    wanted = _config().to_dict()
    assert config_differences(wanted, wanted) == []
    stored_like = json.loads(json.dumps(wanted))  # tuples are lists now
    assert isinstance(stored_like["probe"]["step_sizes"], list)
    assert config_differences(stored_like, wanted) == []


def test_where_the_data_lives_the_device_versions_and_timestamps_are_ignored():
    wanted = _config().to_dict()
    stored_like = dict(
        _with(
            _with(wanted, "data", data_dir="/elsewhere"),
            "train",
            device="cuda:3",
            eval_every=7,
            log_every=2,
            checkpoint_every=5,
            eval_samples=100,
        ),
        total_steps=100,
        versions={"torch": "0"},
        git_commit="abc",
        device="cuda:3 (H200)",
        host="h",
        created=1.0,
        experiment="x",
        kind="probe",
        name="other",
    )
    assert config_differences(stored_like, wanted) == []


@pytest.mark.parametrize(
    "section, field, value",
    [
        ("model", "name", "vgg11"),
        ("model", "norm", "l2"),
        ("model", "width_mult", 0.125),
        ("model", "depth", 3),
        ("model", "width", 4),
        ("data", "name", "synthetic"),
        ("data", "subset", 100),
        ("train", "steps", 2499),
        ("train", "epochs", 2),
        ("train", "lr", 0.10000001),
        ("train", "batch_size", 64),
        ("train", "dtype", "float32"),
        ("train", "loss_reduction", "mean"),
        ("train", "seed", 1),
    ],
)
def test_each_compared_field_is_named_when_it_differs(section, field, value):
    wanted = _config().to_dict()
    assert wanted[section][field] != value
    assert config_differences(_with(wanted, section, **{field: value}), wanted) == [f"{section}.{field}"]


def test_measurement_configs_are_compared_whole_and_name_their_differing_leaves():
    wanted = _config().to_dict()
    probe = dict(wanted["probe"], step_sizes=[1.0, 2.0], schedule=dict(wanted["probe"]["schedule"], every=3))
    assert config_differences(dict(wanted, probe=probe), wanted) == ["probe.step_sizes", "probe.schedule.every"]
    assert config_differences(dict(wanted, probe=dict(wanted["probe"], curvature=False)), wanted) == ["probe.curvature"]
    # Fields first, measurements after, whatever order the stored file's keys are in.
    both = _with(dict(wanted, probe=probe), "train", steps=7)
    assert config_differences(dict(reversed(list(both.items()))), wanted) == [
        "train.steps",
        "probe.step_sizes",
        "probe.schedule.every",
    ]


def test_a_measurement_config_on_one_side_only_is_named_whole():
    wanted = _config().to_dict()
    assert config_differences(dict(wanted, probe=None), wanted) == ["probe"]
    assert config_differences(wanted, dict(wanted, probe=None)) == ["probe"]
    assert config_differences({k: v for k, v in wanted.items() if k != "probe"}, wanted) == ["probe"]
    ics = RunConfig(ics=ICSConfig()).to_dict()["ics"]
    assert config_differences(dict(wanted, ics=ics), wanted) == ["ics"]
    dist = reproduce.experiment_configs("dln-depth", "cpu")[0].to_dict()["distributions"]
    assert config_differences(wanted, dict(wanted, distributions=dist)) == ["distributions"]


def test_a_field_an_older_config_lacks_counts_as_its_default():
    wanted = _config().to_dict()
    model = {k: v for k, v in wanted["model"].items() if k != "width_mult"}  # before width_mult existed
    assert config_differences(dict(wanted, model=model), wanted) == []
    assert config_differences(dict(wanted, model=model), _with(wanted, "model", width_mult=0.5)) == ["model.width_mult"]
    probe = {k: v for k, v in wanted["probe"].items() if k != "method"}
    assert config_differences(dict(wanted, probe=probe), wanted) == []


def test_describe_gives_stored_and_wanted_values_where_they_are_short():
    wanted = dataclasses.replace(_config(step_sizes=(0.5, 1.0), schedule=ScheduleConfig(every=5)), name="bn")
    w = wanted.to_dict()
    s = _with(dict(w, probe=dict(w["probe"], step_sizes=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0])), "train", steps=7)
    names = config_differences(s, w)
    assert names == ["train.steps", "probe.step_sizes"]
    assert describe(s, w, names) == f"train.steps 7 != {w['train']['steps']}, probe.step_sizes"
    assert describe(s, w, names, most=1) == f"train.steps 7 != {w['train']['steps']}, +1 more"


def test_run_differences_of_no_run_an_unreadable_one_and_a_run(cpu_fig9, tmp_path):
    wanted = reproduce.experiment_configs("dln-depth", "cpu")[0].to_dict()
    assert run_differences(tmp_path / "absent", wanted) is None
    (tmp_path / "empty").mkdir()
    assert run_differences(tmp_path / "empty", wanted) is None  # nothing to lose: started as new
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metrics.sqlite").write_bytes(b"")  # killed before its config.json
    assert run_differences(tmp_path / "half", wanted) == ["unreadable"]
    assert run_differences(cpu_fig9 / "dln-depth" / "none", wanted) == [
        "train.steps",
        "distributions.schedule.every",
        "distributions.schedule.dense_until",
        "distributions.schedule.dense_every",
    ]


def test_the_module_imports_without_torch():
    code = "import sys, landscape.runner.run_match; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# landscape reproduce --------------------------------------------------------------------


def test_a_paper_scale_call_on_cpu_scale_runs_stops_before_writing_anything(fig9, monkeypatch):
    before = snapshot(fig9)
    result = invoke("reproduce", "fig9", "--scale", "paper", "--out", fig9, "--no-progress")
    assert_one_line_error(
        result,
        f"{fig9 / 'dln-depth'} holds runs made with other settings",
        "none, bn: train.steps 100 != 10000",
        "distributions.schedule.every",
        "rerun them with --rerun, or choose another --out",
    )
    assert snapshot(fig9) == before  # byte for byte, and no new files or folders


def test_the_same_call_again_reuses_the_finished_runs(fig9, monkeypatch):
    _small_dln(monkeypatch)
    meta = json.loads((fig9 / "fig9" / "figure.json").read_text())
    assert [
        (r["experiment"], r["run"], r["model"], r["steps"], r["train_images"], r["seed"]) for r in meta["runs"]
    ] == [("dln-depth", "none", "dln", 100, None, 0), ("dln-depth", "bn", "dln", 100, None, 0)]
    assert all(r["width_mult"] == 1.0 and r["eval_samples"] is None for r in meta["runs"])
    result = invoke("reproduce", "fig9", "--scale", "cpu", "--out", fig9, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.output.count("already complete") == 2 and "moved" not in result.output
    assert not (fig9 / "dln-depth" / ".replaced").exists()


def _short_paper(monkeypatch, steps: dict[str, int]) -> None:
    """The "paper" scale as the (small) CPU one with these runs' steps changed."""
    original = reproduce.experiment_configs

    def configs(key, scale, **kwargs):
        found = original(key, "cpu", **kwargs)
        if scale != "paper":
            return found
        return [
            dataclasses.replace(c, train=dataclasses.replace(c.train, steps=steps[c.name])) if c.name in steps else c
            for c in found
        ]

    monkeypatch.setattr(reproduce, "experiment_configs", configs)


def test_rerun_moves_the_mismatched_runs_aside_and_runs_them_again(fig9, monkeypatch):
    _small_dln(monkeypatch)
    _short_paper(monkeypatch, {"none": 120, "bn": 120})
    old = {name: snapshot(fig9 / "dln-depth" / name) for name in ("none", "bn")}
    result = invoke("reproduce", "fig9", "--scale", "paper", "--out", fig9, "--no-progress", "--rerun")
    assert result.exit_code == 0, result.output
    replaced = sorted((fig9 / "dln-depth" / ".replaced").iterdir())
    assert [p.name.split("-")[0] for p in replaced] == ["bn", "none"]
    for path in replaced:
        name = path.name.split("-")[0]
        assert snapshot(path) == old[name] and stored(path)["total_steps"] == 100  # moved, untouched
        assert f"moved {fig9 / 'dln-depth' / name} (made with other settings) to {path}" in result.output
        new = stored(fig9 / "dln-depth" / name)
        assert new["status"] == "finished" and new["total_steps"] == 120
    assert "already complete" not in result.output
    meta = json.loads((fig9 / "fig9" / "figure.json").read_text())
    assert meta["scale"] == "paper" and [r["steps"] for r in meta["runs"]] == [120, 120]
    # The moved runs are not read as the experiment's.
    assert "already complete" in invoke("reproduce", "fig9", "--scale", "paper", "--out", fig9, "--no-progress").output


def test_rerun_keeps_the_runs_that_match(fig9, monkeypatch):
    _small_dln(monkeypatch)
    _short_paper(monkeypatch, {"bn": 110})
    kept = snapshot(fig9 / "dln-depth" / "none")
    plain = invoke("reproduce", "fig9", "--scale", "paper", "--out", fig9, "--no-progress")
    assert_one_line_error(plain, "(bn: train.steps 100 != 110);")
    result = invoke("reproduce", "fig9", "--scale", "paper", "--out", fig9, "--no-progress", "--rerun")
    assert result.exit_code == 0, result.output
    assert f"{fig9 / 'dln-depth' / 'none'}: already complete" in result.output
    assert snapshot(fig9 / "dln-depth" / "none") == kept  # the matching run is reused untouched
    assert [p.name.split("-")[0] for p in (fig9 / "dln-depth" / ".replaced").iterdir()] == ["bn"]
    assert stored(fig9 / "dln-depth" / "bn")["total_steps"] == 110


def test_a_subset_without_out_gets_a_folder_of_its_own(monkeypatch, tmp_path):
    assert default_out("cpu", None) == Path("runs/reproduce/cpu")
    assert default_out("cpu", None, 100) == Path("runs/reproduce/cpu-subset100")
    assert default_out("paper", [0, 1], 100) == Path("runs/reproduce/paper-seeds0-1-subset100")
    # The command uses it: an unreadable run there stops it, naming the folder, before
    # any data is read or anything is written.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LANDSCAPE_DATA", raising=False)
    broken = tmp_path / "runs" / "reproduce" / "cpu-subset100" / "vgg-probe" / "none"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{")
    before = snapshot(tmp_path)
    result = invoke("reproduce", "fig4", "--scale", "cpu", "--subset", 100, "--no-progress")
    assert_one_line_error(
        result, "runs/reproduce/cpu-subset100/vgg-probe holds runs made with other settings (none: unreadable)"
    )
    assert snapshot(tmp_path) == before
