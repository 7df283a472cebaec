import dataclasses
import os
import signal

import pytest
from click.testing import CliRunner
from conftest import replace_train, tiny_config

from landscape.config import DistributionConfig, ICSConfig, ScheduleConfig
from landscape.runner.train import train
from landscape.runs import RunStore
from landscape.training.hooks import Event, hook
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
    "--device",
    "cpu",
    "--no-progress",
    "--no-report",
]


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def names(path):
    with RunStore(path, readonly=True) as store:
        return store.names()


def test_ics_noise_trains_the_paper_variants_and_the_control(tmp_path):
    result = invoke("ics-noise", *TINY, "--control", "--run-dir", str(tmp_path / "e"))
    assert result.exit_code == 0, result.output
    for name in ("none", "bn", "noisy_bn", "noise"):
        recorded = names(tmp_path / "e" / name)
        assert {"train/acc", "test/acc"} <= set(recorded)
        assert any(n.startswith("dist/hist/") for n in recorded)
        assert any(n.startswith("dist/mean_drift/") for n in recorded)
    # the same layers under the same names with and without BN, so the report lines them up
    dist = {name: {n for n in names(tmp_path / "e" / name) if n.startswith("dist/")} for name in ("none", "bn")}
    assert dist["none"] == dist["bn"] and "dist/hist/#2" in dist["bn"]
    with RunStore(tmp_path / "e" / "noisy_bn") as store:
        assert store.config["model"]["norm"] == "noisy_bn"
        assert len(store.series("test/acc")[0]) >= 2  # accuracy along the run, not only at the end


def test_ics_on_the_dln_records_every_layer(tmp_path):
    result = invoke(
        "ics",
        "--model",
        "dln",
        "--depth",
        "5",
        "--steps",
        "12",
        "--device",
        "cpu",
        "--no-progress",
        "--no-report",
        "--run-dir",
        str(tmp_path / "e"),
    )
    assert result.exit_code == 0, result.output
    runs = sorted(p.name for p in (tmp_path / "e").iterdir() if p.is_dir())
    assert runs == ["bn-lr1e-06", "bn-lr1e-07", "none-lr1e-06", "none-lr1e-07"]
    with RunStore(tmp_path / "e" / "none-lr1e-06") as store:
        l2 = [n for n in store.names() if n.startswith("ics/l2/")]
        assert sorted(l2) == [f"ics/l2/#{k}" for k in range(1, 6)]
    assert {n for n in names(tmp_path / "e" / "bn-lr1e-06") if n.startswith("ics/")} == {
        n for n in names(tmp_path / "e" / "none-lr1e-06") if n.startswith("ics/")
    }
    with RunStore(tmp_path / "e" / "none-lr1e-06") as store:
        assert store.config["ics"]["highlight"] == [9, 17]
        first = store.series(sorted(l2)[0])[1]
        assert (first == 0).all()  # layer 1: nothing before it moves


def test_distribution_hook_state_survives_resume(tmp_path):
    dist = DistributionConfig(schedule=ScheduleConfig(every=2, dense_until=0), bins=8)
    config = dataclasses.replace(
        replace_train(tiny_config(), steps=10, checkpoint_every=100),
        distributions=dist,
        ics=ICSConfig(schedule=ScheduleConfig(every=3)),
    )
    full = train(config, run_dir=tmp_path / "full")

    @hook(Event.AFTER_STEP)
    def ctrl_c(ctx):
        if ctx.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    assert train(config, run_dir=tmp_path / "part", hooks=[ctrl_c]).status == "interrupted"
    assert train(run_dir=tmp_path / "part", resume=True).status == "finished"
    with RunStore(full.run_dir) as a, RunStore(tmp_path / "part") as b:
        assert list(a.rows()) == list(b.rows())


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["ics-noise", "--dist-layers", "99"], "layer #99"),
        (["ics-noise", "--norm", "bn,zzz"], "zzz"),
        (["ics", "--lrs", "0.1,abc"], "--lrs"),
        (["ics", "--lrs", "-1"], "--lr"),
        (["ics-noise", "--resume", "nowhere"], "not a ics-noise experiment"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, fragment):
    result = invoke(*args[:1], *TINY, *args[1:], "--run-dir", str(tmp_path / "e"))
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and fragment in lines[0], result.output
