"""landscape.paper.defaults is the one home of the paper's defaults: the commands run exactly
the RunConfig that paper_config returns, and store the paper's step sizes."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from landscape.config import SEQUENCE_MODELS, RunConfig
from landscape.data import total_steps
from landscape.models import MODEL_NAMES
from landscape.paper.defaults import paper_config, paper_schedule, protocol, scaled_probe_schedule
from landscape.runs import RunStore
from landscape_cli.main import cli

FIRST_NORM = {"train": "bn", "probe": "none", "ics": "none", "ics-noise": "none"}


class Captured(Exception):
    pass


def cli_config(monkeypatch, kind: str, model: str, *args: str) -> RunConfig:
    """The first RunConfig ``landscape KIND --model MODEL`` would run (nothing is trained)."""
    import landscape.runner.experiments  # noqa: F401 (imported now, it keeps the real train when that is patched)
    import landscape.runner.train
    from landscape_cli import experiment

    monkeypatch.delenv("LANDSCAPE_DATA", raising=False)

    def capture(config, **_):
        raise Captured(config)

    def capture_experiment(kind, build, **_):
        raise Captured(build()[0])

    monkeypatch.setattr(landscape.runner.train, "train", capture)
    monkeypatch.setattr(experiment, "execute", capture_experiment)
    result = CliRunner().invoke(cli, [kind, "--model", model, *args])
    assert isinstance(result.exception, Captured), result.output
    return result.exception.args[0]


@pytest.mark.parametrize("kind", ["train", "probe", "ics", "ics-noise"])
@pytest.mark.parametrize("model", [m for m in MODEL_NAMES if m not in SEQUENCE_MODELS])
def test_the_commands_run_paper_config(monkeypatch, kind, model):
    expected = paper_config(model, kind, norm=FIRST_NORM[kind])
    actual = cli_config(monkeypatch, kind, model)
    assert dataclasses.replace(actual, name=expected.name) == expected


@pytest.mark.parametrize("kind", ["train", "probe", "ics", "ics-noise"])
def test_the_commands_run_the_gpts_own_protocol(monkeypatch, tmp_path, kind):
    """The GPT's protocol (AdamW, batch 32, 2,000 steps, 640 test blocks), its LayerNorm
    where the paper's networks take BN, and the vocabulary of the text it reads."""
    (tmp_path / "shakespeare").mkdir()
    (tmp_path / "shakespeare" / "input.txt").write_text("to be, or not to be: that is the question. " * 40)
    first = {"train": "layer", "probe": "none", "ics": "none", "ics-noise": "none"}[kind]
    expected = paper_config("gpt", kind, norm=first)
    vocab = len(set("to be, or not to be: that is the question. "))
    expected = dataclasses.replace(
        expected,
        model=dataclasses.replace(expected.model, num_classes=vocab),
        data=dataclasses.replace(expected.data, num_classes=vocab, data_dir=str(tmp_path)),
    )
    actual = cli_config(monkeypatch, kind, "gpt", "--data-dir", str(tmp_path))
    assert dataclasses.replace(actual, name=expected.name) == expected
    assert (actual.train.optimizer, actual.train.batch_size, actual.train.eval_samples) == ("adamw", 32, 640)


def test_paper_config_is_the_paper_protocol():
    dln = paper_config("dln")
    assert (dln.data.name, dln.train.lr, dln.train.steps, dln.train.full_batch) == (
        "gaussian-linear",
        1e-6,
        10_000,
        True,
    )
    assert (dln.train.dtype, dln.train.loss_reduction) == ("float64", "sample-sum")
    assert dln.probe.step_sizes == (0.01, 0.1, 1.0, 10.0, 30.0)
    vgg = paper_config("vgg16")
    assert (vgg.data.name, vgg.train.lr, vgg.train.steps, vgg.probe.step_sizes) == (
        "cifar10",
        0.1,
        15_000,
        (0.5, 1, 2, 4),
    )
    assert vgg.probe.schedule == paper_schedule(15_000)  # every 100, every 10 before 1,000
    assert (vgg.probe.schedule.every, vgg.probe.schedule.dense_until, vgg.probe.schedule.dense_every) == (100, 1000, 10)
    resnet = paper_config("resnet50")
    assert (resnet.train.lr, resnet.train.epochs, total_steps(resnet)) == (0.01, 20, 20 * (50_000 // 128))
    assert paper_config("dln", "ics").ics.highlight == (9, 17) and paper_config("dln", "ics").train.lr == 1e-6
    assert protocol("vgg11").ics_lrs == (0.1, 0.01)
    assert paper_config("vgg16", "ics-noise").train.eval_every == 15_000 // 5
    with pytest.raises(ValueError, match="unknown kind"):
        paper_config("vgg16", "nope")


def test_scaled_probe_schedule_costs_at_most_half_the_training():
    from landscape.training.hooks import count_steps

    assert scaled_probe_schedule(15_000, 6) == paper_schedule(15_000)
    small = scaled_probe_schedule(300, 6)
    assert small.dense_until == 20 and small.every > 2
    assert 15 <= count_steps(small, 300) and count_steps(small, 300) * 6 <= 150


@pytest.mark.parametrize(
    "model,extra,sizes",
    [
        ("dln", ["--depth", "3"], [0.01, 0.1, 1.0, 10.0, 30.0]),
        ("vgg_tiny", ["--dataset", "synthetic", "--batch-size", "16"], [0.5, 1.0, 2.0, 4.0]),
    ],
)
def test_probe_stores_the_paper_step_sizes(tmp_path, model, extra, sizes):
    result = CliRunner().invoke(
        cli,
        [
            "probe",
            "--model",
            model,
            *extra,
            "--norm",
            "bn",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--no-progress",
            "--no-report",
            "--run-dir",
            str(tmp_path / "e"),
        ],
    )
    assert result.exit_code == 0, result.output
    with RunStore(tmp_path / "e" / "bn", readonly=True) as store:
        assert store.config["probe"]["step_sizes"] == sizes and store.config["probe"]["relative"] is True


def test_a_config_json_from_before_the_nested_schedule_still_loads():
    old = paper_config("vgg11").to_dict()
    schedule = old["probe"].pop("schedule")
    old["probe"].update(schedule)  # every, dense_until, dense_every flat, as config.json had them
    old["probe"].pop("method"), old["probe"].pop("chunk_size")
    old["train"].pop("dtype"), old["train"].pop("loss_reduction")
    loaded = RunConfig.from_dict(old)
    assert loaded.probe.schedule == paper_schedule(15_000) and loaded.probe.method == "loop"
    assert (loaded.train.dtype, loaded.train.loss_reduction) == ("float32", "mean")  # what those runs used
