"""Tracking the Hessian's top eigenvalues during training (HessianHook, --hessian-every),
after training (landscape hessian RUN), and in the report's beta-smoothness plot."""

import copy
import dataclasses
import json
import math
import os
import re

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error, tiny_config, torchrun
from torch.func import functional_call

import landscape.curvature.hessian
import landscape.runner.spectrum
from landscape.config import ConfigError, HessianConfig, RunConfig, ScheduleConfig
from landscape.curvature.hessian import hessian_eigs
from landscape.data import batches, load_data, objective
from landscape.report.data import load_runs
from landscape.report.probe_plots import plot_beta_smoothness
from landscape.runner.assembly import build_run_model
from landscape.runner.train import train
from landscape.runs import RunStore
from landscape.training.hooks import Event, at_steps, hook
from landscape_cli.main import cli

TRACKED = HessianConfig(schedule=ScheduleConfig(every=4, dense_until=0), k=2, trace=True)
PROBE = [
    "probe",
    "--model",
    "tiny",
    "--width-mult",
    "0.25",
    "--dataset",
    "synthetic",
    "--steps",
    "20",
    "--hessian-every",
    "10",
    "--norm",
    "bn",
    "--batch-size",
    "16",
    "--subset",
    "64",
    "--eval-samples",
    "32",
    "--device",
    "cpu",
    "--no-progress",
]  # a 310-parameter VGG: its dense Hessian is cheap


def dense_spectrum(model, loss_fn, pairs) -> torch.Tensor:
    """The eigenvalues, largest first, of the mean Hessian over ``pairs`` of the
    model's loss, computed independently of landscape's operator: a float64 copy,
    BN in train mode (batch statistics), torch.autograd.functional.hessian over the
    flat trainable parameters, torch.linalg.eigvalsh."""
    m = copy.deepcopy(model).double().train()
    params = {n: p.detach() for n, p in m.named_parameters() if p.requires_grad}
    sizes = [p.numel() for p in params.values()]

    def loss(flat):
        pieces = {n: c.view_as(p) for (n, p), c in zip(params.items(), flat.split(sizes))}
        total = 0.0
        for x, y in pairs:
            buffers = {n: b.clone() for n, b in m.named_buffers()}
            total = total + loss_fn(functional_call(m, (pieces, buffers), (x.double(),)), y)
        return total / len(pairs)

    flat = torch.cat([p.reshape(-1) for p in params.values()])
    return torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flat, vectorize=False)).flip(0)


def first_batches(config: RunConfig, count: int) -> tuple[object, list]:
    """The run's data and its first ``count`` training batches (the loop's order)."""
    data = load_data(config.data)
    order = batches(data, config.train.batch_size, torch.Generator().manual_seed(config.train.seed))
    return data, [next(order) for _ in range(count)]


def assert_step_0_is_lambda_max(run_dir) -> None:
    """The λ_max recorded at step 0 is the dense Hessian's at the initial weights on
    the first batch, within the tolerance its convergence claims."""
    with RunStore(run_dir, readonly=True) as store:
        config = RunConfig.from_dict(store.config)
        steps, values = store.series("hessian/lambda_max")
        converged = store.series("hessian/converged")[1]
    assert steps[0] == 0 and converged[0] == 1.0
    data, [first] = first_batches(config, 1)
    top = float(dense_spectrum(build_run_model(config), objective(data), [first])[0])
    assert float(values[0]) == pytest.approx(top, rel=config.hessian.tol)


def rows(run_dir, skip=("hessian/",)):
    with RunStore(run_dir, readonly=True) as store:
        return [r for r in store.rows() if not r[1].startswith(skip)]


def final_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    exp = tmp_path_factory.mktemp("probe") / "exp"
    result = CliRunner().invoke(cli, [*PROBE, "--run-dir", str(exp)])
    assert result.exit_code == 0, result.output
    return exp


def test_hook_measures_the_hessian_of_that_step(tmp_path):
    # At steps 4 and 8 a second hook computes the dense Hessian of the model it is
    # handed (w_t) on that step's batch, in float64: the recorded top two are its top two.
    small = dataclasses.replace(tiny_config().model, width_mult=0.25)
    config = dataclasses.replace(tiny_config(), model=small, hessian=dataclasses.replace(TRACKED, max_hvps=40))

    @hook(Event.AFTER_BACKWARD)
    def direct(ctx):
        return {"dense/eigs": dense_spectrum(ctx.model, ctx.loss_fn, [ctx.batch])[:2].tolist()}

    result = train(config, run_dir=tmp_path / "r", hooks=[at_steps([4, 8], direct)])
    with RunStore(result.run_dir, readonly=True) as store:
        steps, lambda_max = store.series("hessian/lambda_max")
        assert steps.tolist() == [0, 4, 8]
        _, eigs = store.series("hessian/eigs")
        _, dense_eigs = store.series("dense/eigs")
        assert store.series("hessian/converged")[1].tolist() == [1.0, 1.0, 1.0]
        torch.testing.assert_close(torch.as_tensor(eigs[1:]), torch.as_tensor(dense_eigs), rtol=TRACKED.tol, atol=0)
        assert lambda_max.tolist() == eigs[:, 0].tolist()
        trace, stderr = store.series("hessian/trace")[1], store.series("hessian/trace_stderr")[1]
        assert torch.isfinite(torch.as_tensor(trace)).all() and (stderr > 0).all()


def test_training_is_bit_identical_with_and_without_the_hook(tmp_path):
    plain = train(tiny_config(), run_dir=tmp_path / "plain")
    tracked = train(dataclasses.replace(tiny_config(), hessian=TRACKED), run_dir=tmp_path / "tracked")
    assert rows(plain.run_dir) == rows(tracked.run_dir)
    assert len(rows(tracked.run_dir, skip=())) > len(rows(plain.run_dir))
    a, b = final_weights(plain.run_dir), final_weights(tracked.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_probe_records_lambda_max_on_schedule_and_reports_it(probed):
    with RunStore(probed / "bn", readonly=True) as store:
        steps, _ = store.series("hessian/lambda_max")
        assert store.config["hessian"]["schedule"]["every"] == 10
    assert steps.tolist() == [0, 10]
    assert_step_0_is_lambda_max(probed / "bn")
    traces = {t.name: t for t in plot_beta_smoothness(load_runs([probed / "bn"])).data}
    assert traces["bn — λ_max"].line.dash == "dashdot" and list(traces["bn — λ_max"].x) == [0, 10]
    page = (probed / "report.html").read_text()
    assert '"name":"bn \\u2014 \\u03bb_max"' in page and "λ<sub>max</sub>" in page


def test_hessian_command_measures_the_checkpoints_dense_hessian(probed, tmp_path):
    # H is the mean over the run's first 2 batches at the last checkpoint: the dense
    # float64 Hessian of those, computed independently, has the printed λ_max.
    run_dir = probed / "bn"
    out = tmp_path / "h.json"
    result = CliRunner().invoke(cli, ["hessian", str(run_dir), "--batches", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = float(re.search(r"step 20: lambda_max (\S+)", result.output)[1])

    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    model = build_run_model(config)
    model.load_state_dict(final_weights(run_dir))
    data, first = first_batches(config, 2)
    top = float(dense_spectrum(model, objective(data), first)[0])
    [written] = json.loads(out.read_text())
    assert written["step"] == 20 and written["batches"] == 2 and written["converged"]
    assert written["lambda_max"] == pytest.approx(top, rel=1e-3)
    assert math.isclose(printed, written["lambda_max"], rel_tol=1e-5)


def test_hessian_command_measures_every_kept_checkpoint(tmp_path):
    train_args = [
        "train",
        "--model",
        "tiny",
        "--dataset",
        "synthetic",
        "--steps",
        "8",
        "--checkpoint-every",
        "4",
        "--keep-checkpoints",
        "--batch-size",
        "16",
        "--subset",
        "64",
        "--eval-samples",
        "32",
        "--device",
        "cpu",
        "--no-progress",
        "--run-dir",
        str(tmp_path / "r"),
    ]
    assert CliRunner().invoke(cli, train_args).exit_code == 0
    out = tmp_path / "all.json"
    result = CliRunner().invoke(
        cli,
        [
            "hessian",
            str(tmp_path / "r"),
            "--checkpoint",
            "all",
            "--k",
            "2",
            "--trace",
            "--batches",
            "2",
            "--max-hvps",
            "20",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert [w["step"] for w in written] == [0, 4, 8] and all(w["batches"] == 2 for w in written)
    assert all(len(w["eigenvalues"]) == 2 and math.isfinite(w["trace"]) for w in written)
    assert result.output.count("lambda_max") == 3


def test_hessian_command_bad_input_is_one_line_exit_2(probed, tmp_path):
    assert_one_line_error(CliRunner().invoke(cli, ["hessian", str(tmp_path / "nope")]), "not a run directory")
    assert_one_line_error(CliRunner().invoke(cli, ["hessian", str(probed)]), "not a run directory")
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "metrics.sqlite"):
        (broken / name).write_bytes((probed / "bn" / name).read_bytes())
    assert_one_line_error(CliRunner().invoke(cli, ["hessian", str(broken)]), "no checkpoint")
    (broken / "checkpoints" / "last.pt").write_bytes(b"\x00garbage" * 10)
    assert_one_line_error(CliRunner().invoke(cli, ["hessian", str(broken)]), "unreadable checkpoint")


def test_hessian_dry_run_prints_the_basis_memory_and_a_basis_too_big_is_refused(probed, tmp_path, monkeypatch):
    run_dir = probed / "bn"
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    n = sum(p.numel() for p in build_run_model(config).parameters())
    result = CliRunner().invoke(cli, ["hessian", str(run_dir), "--dry-run", "--max-hvps", "40"])
    assert result.exit_code == 0, result.output
    assert f"at most {48 * n * 4 / 2**20:.3g} MiB (40 products on {n:,} float32 parameters" in result.output  # 3 blocks
    # A device with room for 100 vectors: 96 (6 blocks) fit, 200 products are refused
    # by the command, its dry run and a training run's --hessian-every, before anything.
    for module in (landscape.curvature.hessian, landscape.runner.spectrum):
        monkeypatch.setattr(module, "available_memory", lambda device: 100 * n * 4)
    refused = CliRunner().invoke(cli, ["hessian", str(run_dir), "--max-hvps", "200"])
    assert_one_line_error(refused, "lower --max-hvps (at most 96 fit)")
    dry = CliRunner().invoke(cli, ["hessian", str(run_dir), "--dry-run", "--max-hvps", "200"])
    assert dry.exit_code == 2 and "lower --max-hvps (at most 96 fit)" in dry.output.splitlines()[-1]
    # --hessian-every's 20 products take 2 blocks (32 vectors): room for 20 is refused.
    monkeypatch.setattr(landscape.curvature.hessian, "available_memory", lambda device: 20 * n * 4)
    args = [a for a in PROBE if a != "probe"]
    train = CliRunner().invoke(cli, ["train", *args, "--run-dir", str(tmp_path / "r")])
    assert_one_line_error(train, "hessian.max_hvps (at most 16 fit)")
    assert not (tmp_path / "r").exists()


def test_hessian_command_batches_beyond_one_epoch_is_one_line_exit_2(probed):
    # 64 examples in batches of 16: one epoch has 4 batches, as `landscape surface` checks
    result = CliRunner().invoke(cli, ["hessian", str(probed / "bn"), "--batches", "5"])
    assert_one_line_error(result, "--batches 5 exceeds the 4 batches of one epoch")


def test_old_config_without_hessian_loads_and_new_one_round_trips():
    old = tiny_config().to_dict()
    del old["hessian"]
    assert RunConfig.from_dict(old).hessian is None
    config = dataclasses.replace(tiny_config(), hessian=TRACKED)
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "changes", [dict(k=0), dict(bn_mode="x"), dict(tol=0.0), dict(k=3, max_hvps=2), dict(start="previous")]
)
def test_bad_hessian_config_is_a_config_error(changes):
    with pytest.raises(ConfigError):
        HessianConfig(**changes)


def test_hessian_start_option_reaches_the_run(probed, tmp_path):
    # The same run as the fixture's (training does not see the hook), measured from
    # warm starts: at step 10 from step 0's eigenvector, a start unlike the fixture's
    # gradient, the same λ_max within tol (step 0's is the dense one: test above).
    result = CliRunner().invoke(cli, [*PROBE, "--hessian-start", "warm", "--run-dir", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    series = []
    for run in (tmp_path / "exp" / "bn", probed / "bn"):
        with RunStore(run, readonly=True) as store:
            series.append(
                (
                    store.config["hessian"]["start"],
                    *store.series("hessian/lambda_max"),
                    store.series("hessian/converged")[1].tolist(),
                )
            )
    (warm, steps, values, converged), (gradient, fixture_steps, fixture_values, _) = series
    assert (warm, gradient) == ("warm", "gradient") and steps.tolist() == fixture_steps.tolist() == [0, 10]
    assert converged == [1.0, 1.0]
    torch.testing.assert_close(torch.as_tensor(values), torch.as_tensor(fixture_values), rtol=1e-3, atol=0)
    bad = CliRunner().invoke(cli, [*PROBE, "--hessian-start", "previous", "--run-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "previous" in bad.output


def test_reduce_needs_a_generator():
    model = build_run_model(tiny_config())
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="generator"):
        hessian_eigs(model, torch.nn.functional.cross_entropy, x, y, reduce=lambda ts: ts)


@pytest.mark.slow
def test_two_ranks_measure_the_global_batch_hessian(tmp_path):
    args = [
        "train",
        "--model",
        "dln",
        "--depth",
        "4",
        "--norm",
        "none",
        "--steps",
        "3",
        "--lr",
        "1e-4",
        "--hessian-every",
        "2",
        "--eval-every",
        "3",
        "--device",
        "cpu",
        "--no-progress",
    ]
    one = CliRunner().invoke(cli, [*args, "--run-dir", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    env = dict(os.environ, OMP_NUM_THREADS="1", LANDSCAPE_DIST_TIMEOUT="30")
    two = torchrun(["-m", "landscape_cli", *args, "--run-dir", str(tmp_path / "two")], env, timeout=120)
    assert two.returncode == 0, two.stderr[-3000:]
    series = []
    for name in ("one", "two"):
        with RunStore(tmp_path / name, readonly=True) as store:
            series.append(store.series("hessian/lambda_max"))
    (steps_1, values_1), (steps_2, values_2) = series
    assert steps_1.tolist() == steps_2.tolist() == [0, 2]
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(values_1, values_2)), (values_1, values_2)
