import csv
import io
import json

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error

from landscape.runs import RunStore
from landscape_cli.main import cli

TINY = [
    "--model",
    "vgg_tiny",
    "--dataset",
    "synthetic",
    "--steps",
    "6",
    "--batch-size",
    "16",
    "--eval-every",
    "3",
    "--device",
    "cpu",
    "--no-progress",
]


def run(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--norm", "weird"], "unknown norm"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--steps", "0"], "--steps"),
        (["--steps", "abc"], "--steps"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_train_bad_input_is_one_line_exit_2(args, fragment):
    base = [a for a in TINY]
    for i in range(0, len(args), 2):
        if args[i] in base:
            base[base.index(args[i]) + 1] = args[i + 1]
        else:
            base += args[i : i + 2]
    assert_one_line_error(run("train", *base), fragment)


def test_missing_cifar_names_the_way_out(tmp_path, monkeypatch):
    import landscape.data

    monkeypatch.setattr(landscape.data, "_read_cifar", _offline)
    result = run(
        "train",
        "--model",
        "vgg_tiny",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(tmp_path / "none"),
        "--steps",
        "2",
        "--device",
        "cpu",
    )
    assert_one_line_error(result, "--data-dir", "--dataset synthetic")


def _offline(*args, **kwargs):
    raise RuntimeError("Error downloading: no network")


def test_train_ls_export(tmp_path):
    run_dir = tmp_path / "runs" / "a"
    result = run("train", *TINY, "--run-dir", str(run_dir))
    assert result.exit_code == 0, result.output
    assert "finished 6 steps" in result.output
    listing = run("runs", "ls", str(tmp_path / "runs"))
    assert listing.exit_code == 0 and "finished" in listing.output and "6/6" in listing.output
    exported = run("runs", "export", str(run_dir))
    table = list(csv.reader(io.StringIO(exported.output)))
    assert table[0] == ["step", "name", "value"]
    names = {r[1] for r in table[1:]}
    assert {"train/loss", "train/acc", "test/loss", "test/acc"} <= names
    assert sum(r[1] == "train/loss" for r in table[1:]) == 6
    out = tmp_path / "m.csv"
    assert run("runs", "export", str(run_dir), "-o", str(out)).exit_code == 0
    assert out.read_text().splitlines()[1:] == exported.output.splitlines()[1:]


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run_dir = tmp_path / "a"
    assert run("train", *TINY, "--run-dir", str(run_dir)).exit_code == 0
    before = (run_dir / "metrics.sqlite").read_bytes()
    assert_one_line_error(run("train", *TINY, "--run-dir", str(run_dir)), "not empty")
    assert (run_dir / "metrics.sqlite").read_bytes() == before


def test_not_a_run(tmp_path):
    assert_one_line_error(run("runs", "export", str(tmp_path)), "not a run")
    assert_one_line_error(run("train", "--resume", str(tmp_path)), "not a run")
    assert_one_line_error(run("runs", "ls", str(tmp_path / "missing")), "no such directory")


def test_help_shows_defaults():
    result = run("train", "--help")
    text = " ".join(result.output.split())  # help wraps its lines
    assert result.exit_code == 0 and "[default: 128; 32 for the GPT]" in text
    assert "[default: 1000]" in text and "plain sgd, the paper's" in text


def test_corrupt_checkpoint_is_one_line_and_keeps_the_store(tmp_path):
    run_dir = tmp_path / "a"
    assert run("train", *TINY, "--run-dir", str(run_dir)).exit_code == 0
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"\x00garbage" * 10)
    before = list(RunStore(run_dir, readonly=True).rows())
    assert_one_line_error(run("train", "--resume", str(run_dir)), "unreadable checkpoint")
    assert list(RunStore(run_dir, readonly=True).rows()) == before


@pytest.mark.parametrize("command", ["probe", "train"])
def test_a_model_that_does_not_fit_the_data_is_one_line_before_training(tmp_path, command):
    result = run(
        command,
        "--model",
        "resnet50",
        "--dataset",
        "gaussian-linear",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--no-progress",
        "--run-dir",
        str(tmp_path / "e"),
    )
    assert_one_line_error(result, "--model resnet50 does not fit --dataset gaussian-linear")
    assert not (tmp_path / "e").exists()


def test_dtype_and_loss_reduction_options_reach_the_config(tmp_path):
    result = run("train", *TINY, "--dtype", "float64", "--loss-reduction", "sum", "--run-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    with RunStore(tmp_path / "r", readonly=True) as store:
        assert store.config["train"]["dtype"] == "float64" and store.config["train"]["loss_reduction"] == "sum"
    assert_one_line_error(run("train", *TINY, "--bf16", "--dtype", "float64"), "--bf16")


def test_the_init_and_its_gain_reach_the_runs_config(tmp_path):
    from conftest import invoke

    result = invoke(
        "train",
        "--model",
        "dln",
        "--steps",
        1,
        "--init",
        "glorot-normal",
        "--init-gain",
        1.5,
        "--no-progress",
        "--run-dir",
        tmp_path / "r",
    )
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "r" / "config.json").read_text())["model"]
    assert (model["init"], model["init_gain"]) == ("glorot-normal", 1.5)
    assert_one_line_error(
        invoke("train", "--model", "dln", "--init-gain", -1, "--run-dir", tmp_path / "bad"),
        "--init-gain must be a positive number",
    )


@pytest.mark.parametrize("norm", ["layer", "group", "rms"])
def test_train_with_the_layer_group_and_rms_norms(tmp_path, norm):
    import math

    args = ["--model", "vgg_tiny", "--dataset", "synthetic", "--norm", norm, "--steps", "20", "--batch-size", "16"]
    result = run("train", *args, "--eval-every", "10", "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    with RunStore(tmp_path, readonly=True) as store:
        assert store.status == "finished" and store.config["model"]["norm"] == norm
        steps, losses = store.series("train/loss")
        assert steps[-1] == 19 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("command, norm", [("train", "group"), ("probe", "none,group")])
def test_group_norm_on_the_dln_is_one_line_before_anything_runs(tmp_path, command, norm):
    result = run(
        command, "--model", "dln", "--norm", norm, "--steps", "2", "--no-progress", "--run-dir", str(tmp_path / "e")
    )
    assert_one_line_error(result, "--norm group", "--model dln is fully connected")
    assert not (tmp_path / "e").exists()
