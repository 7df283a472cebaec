"""Non-finite curvature at the entry points: `landscape hessian` says which checkpoint
has none and measures the others; a diverging run with --hessian-every records NaN
and ends as it would without the hook; under DDP every rank records the same."""

import copy
import json
import math
import shutil
import threading

import pytest
import torch
from conftest import assert_one_line_error, invoke, train_tiny
from torch import nn

from landscape.runner.adapters import HessianHook
from landscape.runs import RunStore
from landscape.training.hooks import Context, Event

HESSIAN = ["--max-hvps", "12", "--batches", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory, "nonfinite")


def _spoil(path, how):
    """Give the checkpoint at ``path`` a NaN weight, or a last layer that overflows."""
    state = torch.load(path, weights_only=True)
    weights = [k for k, v in state["model"].items() if k.endswith("weight")]
    if how == "nan":
        state["model"][weights[0]].view(-1)[0] = math.nan
    else:
        state["model"][weights[-1]].mul_(1e37)
    torch.save(state, path)
    return weights[0] if how == "nan" else weights[-1]


@pytest.mark.parametrize(
    "how, words",
    [("nan", "the weights are not finite: {} holds NaN"), ("overflow", "a Hessian-vector product is not finite")],
)
def test_hessian_on_a_last_checkpoint_without_finite_curvature_is_one_line(trained, tmp_path, how, words):
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    name = _spoil(run / "checkpoints" / "last.pt", how)
    assert_one_line_error(
        invoke("hessian", run, "--trace", *HESSIAN), f"{run}: no finite curvature at step 2 ({words.format(name)}"
    )


def test_hessian_measures_the_good_checkpoints_and_names_the_bad_one(trained, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    name = _spoil(run / "checkpoints" / "weights-00000001.pt", "nan")
    out = tmp_path / "h.json"
    result = invoke("hessian", run, "--checkpoint", "all", "--trace", *HESSIAN, "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [f"{run} step {s}" for s in (0, 1, 2)]
    assert lines[1] == f"{run} step 1: no curvature (the weights are not finite: {name} holds NaN)"
    assert "lambda_max" in lines[0] and "lambda_max" in lines[2]
    written = {w["step"]: w for w in json.loads(out.read_text())}  # strict JSON: no NaN
    assert written[1]["lambda_max"] is None and written[1]["converged"] is False and written[1]["nonfinite"]
    assert all(math.isfinite(written[s]["lambda_max"]) and written[s]["nonfinite"] is None for s in (0, 2))


def test_a_diverging_run_with_the_hook_ends_as_it_would_without(tmp_path):
    # The command: step size 1e8 makes the weights overflow the Hessian's products.
    args = [
        "train",
        "--model",
        "tiny",
        "--dataset",
        "synthetic",
        "--lr",
        "1e8",
        "--steps",
        "5",
        "--device",
        "cpu",
        "--no-progress",
    ]
    plain = invoke(*args, "--run-dir", tmp_path / "plain")
    tracked = invoke(*args, "--hessian-every", "1", "--run-dir", tmp_path / "tracked")
    assert tracked.exit_code == plain.exit_code and "Traceback" not in tracked.output, tracked.output
    with RunStore(tmp_path / "plain", readonly=True) as a, RunStore(tmp_path / "tracked", readonly=True) as b:
        assert b.status == a.status
        assert [r for r in b.rows() if not r[1].startswith("hessian/")] == list(a.rows())
        steps, values = b.series("hessian/lambda_max")
        _, converged = b.series("hessian/converged")
    assert steps.tolist() == [0, 1, 2, 3, 4]
    unmeasured = [math.isnan(v) for v in values.tolist()]
    assert any(unmeasured) and all(c == 0 for c, bad in zip(converged.tolist(), unmeasured) if bad)


class _TwoRanks:
    """Two threads standing in for two DDP ranks: ``reduce(rank)`` averages a tensor
    list over both, each thread waiting for the other as an all-reduce does."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=20)
        self.slots: list = [None, None]

    def reduce(self, rank: int):
        def all_reduce_mean(tensors):
            self.slots[rank] = [t.clone() for t in tensors]
            self.barrier.wait()
            mean = [(a + b) / 2 for a, b in zip(*self.slots)]
            self.barrier.wait()  # neither overwrites its slot before both have read
            return mean

        return all_reduce_mean


def test_under_ddp_every_rank_records_the_same_nan():
    # Rank 0's shard holds a NaN: its own products are NaN, the other rank's finite. The
    # decision to record NaN must be taken on the all-reduced products: a rank deciding
    # on its own shard would skip a collective the other waits in (a broken barrier here).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    shards = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(2)]
    shards[0][0][0, 0] = math.nan
    ranks, found = _TwoRanks(), [None, None]

    def rank(r):
        replica = model if r == 0 else copy.deepcopy(model)
        hook = HessianHook(k=2, trace=True, max_hvps=12, reduce=ranks.reduce(r))
        ctx = Context(
            Event.AFTER_BACKWARD,
            3,
            replica,
            nn.functional.cross_entropy,
            torch.optim.SGD(replica.parameters(), lr=0.1),
            0.1,
            batch=shards[r],
        )
        try:
            found[r] = hook(ctx)
        except Exception as e:  # reported below, in the test's thread
            found[r] = e

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(isinstance(f, BaseException) for f in found), found
    assert json.dumps(found[0]) == json.dumps(found[1])  # the same on both ranks (NaN == NaN as text)
    metrics = found[0]
    assert math.isnan(metrics["hessian/lambda_max"]) and metrics["hessian/converged"] == 0.0
    assert math.isnan(metrics["hessian/trace"]) and all(map(math.isnan, metrics["hessian/eigs"]))


def test_the_hook_records_nan_where_the_library_raises_on_a_nan_product(monkeypatch):
    # A Lanczos that meets NaN may raise (eigh of a tridiagonal holding NaN) rather than
    # return NaN: the hook records the same NaN either way.
    def raising(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr("landscape.runner.adapters.hessian_eigs", raising)
    model = nn.Linear(4, 3)
    ctx = Context(
        Event.AFTER_BACKWARD,
        0,
        model,
        nn.functional.cross_entropy,
        torch.optim.SGD(model.parameters(), lr=0.1),
        0.1,
        batch=(torch.randn(8, 4), torch.zeros(8).long()),
    )
    metrics = HessianHook(trace=True)(ctx)
    assert math.isnan(metrics["hessian/lambda_max"]) and math.isnan(metrics["hessian/trace"])
    assert metrics["hessian/converged"] == 0.0
