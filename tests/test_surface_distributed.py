"""Two processes on Gloo through the real launcher (torch.distributed.run): a surface
sharded over them equals the one-process surface, every rank holds the whole grid
and evaluated only its half of the points, and `landscape surface` under two
processes writes the one-process surface.

Run as a script (by the launcher), this file is the worker: every rank computes the
sharded surfaces and, in the same process, the one-process ones, and saves them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import run_session
from conftest import torchrun as launch
from test_surface import CE, Counted, batch, conv_net

pytestmark = pytest.mark.slow

# name -> loss_surface arguments; float64, with dropout, so that a point only matches
# when every rank replays the same random draw.
CASES = {
    "loop": dict(steps=5),
    "eval-1d": dict(steps=7, dims=1, bn_mode="eval"),
    "batched": dict(steps=5, points_per_forward=4),
}
# Forwards per rank and batch (25 points: rank 0 owns 0, 2, ..., 24, the centre 12
# among them; rank 1 owns 1, 3, ..., 23); batched: the centre by the loop, 4 points a call.
CALLS = {"loop": (13, 12), "eval-1d": (4, 3), "batched": (1 + 3, 3)}


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", LANDSCAPE_DIST_TIMEOUT="30")


def torchrun(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return launch(list(args), env(), timeout)


def worker(out: Path) -> None:
    """One rank: every case sharded (rank 1 seeded differently: the directions are rank
    0's), with the forwards counted, and on this process alone with rank 0's seed and
    with its own."""
    from landscape import distributed
    from landscape.curvature.surface import Shard, loss_surface
    from landscape.training import processes

    processes.setup()
    torch.set_num_threads(1)
    rank = distributed.rank()
    shard = Shard(rank=rank, world=distributed.world_size(), sum=distributed.all_reduce_sum)
    model = Counted(conv_net(dropout=0.3))
    pairs = [batch(1), batch(2)]
    results = {}
    for name, kwargs in CASES.items():
        model.calls = 0
        seed = 0 if rank == 0 else 99
        sharded = loss_surface(
            model, CE, None, None, batches=pairs, shard=shard, generator=torch.Generator().manual_seed(seed), **kwargs
        )
        calls = model.calls
        single, own = (
            loss_surface(model, CE, None, None, batches=pairs, generator=torch.Generator().manual_seed(s), **kwargs)
            for s in (0, seed)
        )
        results[name] = dict(
            losses=sharded.losses,
            base_loss=sharded.base_loss,
            directions=sharded.directions,
            calls=calls,
            single=single.losses,
            single_base=single.base_loss,
            single_directions=single.directions,
            own=own.losses,
        )
    torch.save(results, out / f"rank{rank}.pt")
    processes.teardown()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("sharded")
    done = torchrun(__file__, str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("name", list(CASES))
def test_sharded_surface_equals_one_process_on_every_rank(ranks, name):
    rank0, rank1 = ranks[0][name], ranks[1][name]
    for mine in (rank0, rank1):
        assert torch.equal(mine["losses"], rank0["losses"])  # every rank holds the whole grid, the same bits
        assert mine["base_loss"] == rank0["single_base"]  # L(w) bit for bit
        assert all(
            torch.equal(a, b) for d, e in zip(mine["directions"], rank0["single_directions"]) for a, b in zip(d, e)
        )  # rank 0's draw, whatever rank 1's generator
    if "points_per_forward" in CASES[name]:  # other points share a vmapped call: other rounding
        torch.testing.assert_close(rank0["losses"], rank0["single"], rtol=1e-12, atol=0)
    else:  # each point is the same computation as on one process
        assert torch.equal(rank0["losses"], rank0["single"])
    assert torch.isfinite(rank0["losses"]).all() and rank0["losses"].std() > 0.01
    assert not torch.equal(rank1["own"], rank0["losses"])  # a negative control: rank 1's own draw differs


@pytest.mark.parametrize("name", list(CASES))
def test_each_rank_evaluates_its_share_of_the_points(ranks, name):
    assert (ranks[0][name]["calls"], ranks[1][name]["calls"]) == tuple(2 * c for c in CALLS[name])  # two batches


TRAIN = [
    "train",
    "--model",
    "tiny",
    "--dataset",
    "synthetic",
    "--subset",
    "128",
    "--batch-size",
    "32",
    "--steps",
    "10",
    "--checkpoint-every",
    "10",
    "--device",
    "cpu",
    "--no-progress",
]


def test_surface_command_with_two_processes_writes_the_one_process_surface(tmp_path):
    from landscape_cli.main import cli

    run = tmp_path / "run"
    trained = CliRunner().invoke(cli, [*TRAIN, "--run-dir", str(run)])
    assert trained.exit_code == 0, trained.output
    args = ["surface", str(run), "--steps", "5", "--batches", "2"]
    one = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    two = run_session(["-m", "landscape_cli", *args, "--out", str(tmp_path / "two"), "--nproc", "2"], env(), 120)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.splitlines() == [str(tmp_path / "two" / "surface.html")]  # rank 0 alone speaks
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["surface.html", "surface.json"]
    a, b = (json.loads((tmp_path / name / "surface.json").read_text()) for name in ("one", "two"))
    assert a.keys() == b.keys() and a["settings"] == b["settings"] and a["coords"] == b["coords"]
    # Another process, another allocation history: the kernels may round differently.
    torch.testing.assert_close(torch.tensor(b["losses"]), torch.tensor(a["losses"]), rtol=1e-6, atol=0)
    assert b["base_loss"] == b["losses"][2][2]


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
