import dataclasses
import json
import os
import signal

import pytest
import torch
from click.testing import CliRunner
from conftest import replace_train

from landscape.config import NORMS, ProbeConfig, ScheduleConfig
from landscape.models import MODEL_NAMES, build_model
from landscape.runner.experiments import estimate_passes, run_experiment, variants, with_seeds
from landscape.runner.train import train
from landscape.runs import RunStore
from landscape.training.hooks import Event, hook
from landscape_cli.main import cli

PROBE = ProbeConfig(
    step_sizes=(0.5, 1.0, 2.0), schedule=ScheduleConfig(every=3, dense_until=4, dense_every=1), curvature=True
)


def rows(path, prefix=""):
    with RunStore(path, readonly=True) as store:
        return [r for r in store.rows() if r[1].startswith(prefix)]


def test_probing_does_not_change_the_training_trajectory(tmp_path, tiny):
    plain = train(tiny, run_dir=tmp_path / "plain")
    probed = train(dataclasses.replace(tiny, probe=PROBE), run_dir=tmp_path / "probed")
    trained = [r for r in rows(probed.run_dir) if not r[1].startswith("probe/")]
    assert trained == rows(plain.run_dir)
    steps = sorted({r[0] for r in rows(probed.run_dir, "probe/")})
    assert steps == [0, 1, 2, 3, 6, 9]
    with RunStore(probed.run_dir) as store:
        losses = store.series("probe/loss")[1]
        assert losses.shape == (6, 3) and torch.isfinite(torch.tensor(losses)).all()


def _recorder():
    """hooks_for that records each variant's weights at TRAIN_START and every batch it trains on."""
    seen = {}

    def hooks_for(config):
        @hook(Event.TRAIN_START, Event.AFTER_BACKWARD)
        def record(ctx):
            entry = seen.setdefault(config.name, {"batches": []})
            if ctx.event is Event.TRAIN_START:
                entry["start"] = {k: v.clone() for k, v in ctx.model.state_dict().items()}
            else:
                entry["batches"].append((ctx.batch[0].clone(), ctx.batch[1].clone()))

        return [record]

    return seen, hooks_for


def _standalone(config):
    torch.manual_seed(config.train.seed)
    return build_model(config.model, noise=config.noise).state_dict()


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model,norms", [("vgg_tiny", NORMS), ("resnet18", ("none", "bn", "layer", "group", "rms"))])
def test_experiment_variants_start_as_built_and_see_the_same_batches(tmp_path, tiny, model, norms):
    base = dataclasses.replace(
        tiny,
        model=dataclasses.replace(tiny.model, name=model),
        train=dataclasses.replace(tiny.train, steps=3, eval_every=3),
    )
    configs = variants(base, norms)
    seen, hooks_for = _recorder()
    run_experiment(configs, tmp_path / "exp", kind="probe", hooks_for=hooks_for)
    assert json.loads((tmp_path / "exp" / "experiment.json").read_text())["runs"] == list(norms)
    for config in configs:
        with RunStore(tmp_path / "exp" / config.name) as store:
            assert store.status == "finished" and store.config["model"]["norm"] == config.name
        # Each variant starts exactly as its standalone build from the seed ...
        assert _same_state(seen[config.name]["start"], _standalone(config)), config.name
        # ... and trains on the same batches, in the same order.
        first = seen[norms[0]]["batches"]
        batches = seen[config.name]["batches"]
        assert len(batches) == 3 and all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, batches)
        )
    # The paper's init gives the variants the same conv/linear weights wherever their own
    # init does not zero them (a ResNet without BN zeroes its residual branches' last conv).
    starts = [seen[c.name]["start"] for c in configs]
    weights = [k for k in starts[0] if k.endswith("weight") and starts[0][k].dim() > 1]
    assert weights
    for key in weights:
        tensors = [s[key] for s in starts if key in s and bool(s[key].any())]
        assert all(torch.equal(tensors[0], t) for t in tensors[1:]), key
    if model == "resnet18":
        bn = seen["bn"]["start"]
        assert all(bool(bn[k].any()) for k in bn if k.endswith("conv2.weight"))


@pytest.mark.parametrize("seeds", [None, (0, 1)])
def test_interrupted_experiment_resumes_to_the_same_result(tmp_path, tiny, seeds):
    configs = variants(dataclasses.replace(tiny, probe=PROBE), ["none", "bn"])
    if seeds is not None:  # --seeds: every variant per seed, VARIANT/seedS
        configs = with_seeds(configs, seeds)
        assert [c.name for c in configs] == ["none/seed0", "bn/seed0", "none/seed1", "bn/seed1"]
        assert [c.train.seed for c in configs] == [0, 0, 1, 1] and configs[2].noise.seed == 1
    run_experiment(configs, tmp_path / "full", kind="probe")

    @hook(Event.AFTER_STEP)
    def ctrl_c(ctx):
        if (
            ctx.step == 5
            and ctx.model.training
            and any(isinstance(m, torch.nn.BatchNorm2d) for m in ctx.model.modules())
        ):
            os.kill(os.getpid(), signal.SIGINT)

    first = run_experiment(configs, tmp_path / "part", kind="probe", hooks_for=lambda c: [ctrl_c])
    assert [r.status for r in first] == ["finished", "interrupted"]
    again = run_experiment(configs, tmp_path / "part", kind="probe")
    assert again[0] is None and all(r.status == "finished" for r in again[1:]) and len(again) == len(configs)
    for config in configs:
        assert rows(tmp_path / "part" / config.name) == rows(tmp_path / "full" / config.name), config.name


def test_estimate_counts_k_passes_per_probe(tiny):
    config = dataclasses.replace(tiny, probe=dataclasses.replace(PROBE, curvature=False))
    p = estimate_passes(config, 12)
    assert p["probes"] == 6 and p["probe_passes"] == 18
    # evaluations after steps 5, 10 and 12, each 32 test images = 2 batches of 16 at ~1/3 pass
    assert p["eval_passes"] == 2 and p["total"] == 12 + 18 + 2


TINY = [
    "--model",
    "vgg_tiny",
    "--dataset",
    "synthetic",
    "--steps",
    "8",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--no-progress",
    "--no-report",
]


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_probe_command_records_both_variants(tmp_path):
    result = invoke("probe", *TINY, "--run-dir", str(tmp_path / "e"), "--step-sizes", "lin:0.5:2:3")
    assert result.exit_code == 0, result.output
    assert "forward+backward passes" in result.output and "estimate:" in result.output
    for name in ("none", "bn"):
        with RunStore(tmp_path / "e" / name) as store:
            assert store.config["probe"]["step_sizes"] == [0.5, 1.25, 2.0]
            assert store.series("probe/loss")[1].shape[1] == 3
    exported = invoke("runs", "export", str(tmp_path / "e" / "bn"))
    assert "probe/grad_diff[2]" in exported.output


def test_dry_run_writes_nothing(tmp_path):
    result = invoke("probe", *TINY, "--run-dir", str(tmp_path / "e"), "--dry-run")
    assert result.exit_code == 0 and "forward+backward passes" in result.output
    assert not (tmp_path / "e").exists()


def test_a_diverging_variant_is_recorded_and_the_others_go_on(tmp_path):
    result = invoke(
        "probe",
        "--model",
        "dln",
        "--depth",
        "4",
        "--norm",
        "none,bn",
        "--lr",
        "1e-3",
        "--steps",
        "20",
        "--device",
        "cpu",
        "--no-progress",
        "--no-report",
        "--run-dir",
        str(tmp_path / "e"),
    )
    assert result.exit_code == 0, result.output
    assert "none: diverged at step" in result.output
    assert "bn: finished 20 steps" in result.output  # BN keeps the same step size stable
    with RunStore(tmp_path / "e" / "none") as store:
        n = store.meta["diverged_step"]
        assert store.status == "diverged" and store.series("train/loss")[0].tolist() == list(range(n + 1))


@pytest.mark.parametrize("sizes", ["", "0,1", "1,nan", "-1", "abc", "lin:1:2", "abs:"])
def test_bad_step_sizes_one_line(tmp_path, sizes):
    result = invoke("probe", *TINY, "--run-dir", str(tmp_path / "e"), "--step-sizes", sizes)
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: --step-sizes"), result.output
    assert not (tmp_path / "e").exists()


def test_unknown_norm_in_list(tmp_path):
    result = invoke("probe", *TINY, "--norm", "none,bogus")
    assert result.exit_code == 2 and "bogus" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_run_killed_before_training_is_moved_aside_not_deleted(tmp_path, tiny):
    configs = variants(dataclasses.replace(tiny, probe=PROBE), ["none", "bn"])
    run_experiment(configs, tmp_path / "full", kind="probe")
    run_experiment(configs[:1], tmp_path / "e", kind="probe")
    # "bn" died during set-up: a store, no checkpoint
    RunStore.create(tmp_path / "e" / "bn", {"name": "bn"}).close()
    results = run_experiment(configs, tmp_path / "e", kind="probe")
    assert results[0] is None and results[1].status == "finished"
    assert [p.name.split("-")[0] for p in (tmp_path / "e" / ".incomplete").iterdir()] == ["bn"]
    assert rows(tmp_path / "e" / "bn") == rows(tmp_path / "full" / "bn")


def test_every_run_is_resumable_from_step_zero(tmp_path, tiny):
    """A crash before the first periodic checkpoint resumes from the step-0 one."""
    config = replace_train(tiny, checkpoint_every=100)

    @hook(Event.AFTER_STEP)
    def crash(ctx):
        if ctx.step == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated"):
        train(config, run_dir=tmp_path / "r", hooks=[crash])
    assert torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)["step"] == 0
    full = train(config, run_dir=tmp_path / "full")
    assert train(run_dir=tmp_path / "r", resume=True).status == "finished"
    assert rows(tmp_path / "r") == rows(full.run_dir)


def test_choose_layout():
    from landscape.runner.experiments import choose_layout

    assert choose_layout("auto", 2, 1) == "ddp"  # one process: plain training
    assert choose_layout("spread", 2, 1) == "ddp"
    assert choose_layout("auto", 2, 2) == "spread"
    assert choose_layout("auto", 4, 2) == "spread"
    assert choose_layout("auto", 3, 2) == "ddp"  # a process would idle
    assert choose_layout("auto", 1, 4) == "ddp"
    assert choose_layout("spread", 3, 2) == "spread"
    assert choose_layout("ddp", 2, 2) == "ddp"
    with pytest.raises(ValueError, match="unknown layout"):
        choose_layout("ring", 2, 2)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_registry_variant_starts_as_its_standalone_build_sharing_what_its_init_shares(name, tmp_path):
    # What train() builds for each variant at step 0 (run_experiment adds nothing to it) equals
    # the standalone build from the seed, and the variants' conv/linear weights are equal
    # wherever their own init leaves them nonzero.
    from landscape.config import CONV_ONLY_NORMS, FULLY_CONNECTED_MODELS, SEQUENCE_MODELS, SEQUENCE_NORMS
    from landscape.paper.defaults import paper_config
    from landscape.runner.assembly import build_run_model

    starts = {}
    norms = [n for n in NORMS if not (name in FULLY_CONNECTED_MODELS and n in CONV_ONLY_NORMS)]
    norms = list(SEQUENCE_NORMS) if name in SEQUENCE_MODELS else norms
    base = paper_config(name, "train")
    if name in SEQUENCE_MODELS:  # a text of 10 characters: the model's 10 classes
        (tmp_path / "t.txt").write_text("abcdefghij" * 50)
        base = dataclasses.replace(base, data=dataclasses.replace(base.data, name=f"text:{tmp_path / 't.txt'}"))
    for config in variants(base, norms):  # no data is loaded
        model = build_run_model(config)
        torch.manual_seed(config.train.seed)
        alone = build_model(config.model, noise=config.noise)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), alone.state_dict().values()))
        starts[config.name] = {k: v for k, v in model.state_dict().items() if k.endswith("weight") and v.dim() > 1}
    reference = starts["layer" if name in SEQUENCE_MODELS else "bn"]
    for norm, weights in starts.items():
        assert len(weights) == len(reference), norm  # the same weight layers
        for (key, w), r in zip(weights.items(), reference.values()):
            if bool(w.any()):
                assert torch.equal(w, r), (norm, key)
