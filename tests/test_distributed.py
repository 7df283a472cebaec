"""Two processes on Gloo through the real launcher (torch.distributed.run): probe
metrics over the global batch equal a single-process run on the same global batch,
and a dead rank ends the job cleanly so that --resume completes it."""

import math
import os
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from conftest import torchrun as launch

from landscape.runs import RunStore
from landscape_cli.main import cli

pytestmark = pytest.mark.slow

COMMON = [
    "--probe-every",
    "2",
    "--dense-until",
    "0",
    "--eval-every",
    "3",
    "--log-every",
    "2",
    "--checkpoint-every",
    "2",
    "--device",
    "cpu",
    "--no-progress",
    "--no-report",
]
# lr and step sizes large enough that ||grad L(w - eta g) - g|| is well above rounding
# of g; at tiny steps it is rounding noise in any two runs that sum differently. The CNN
# runs in float64: in float32 its curvature (a double backward) differed by 1.6e-6.
DLN = [
    "--model",
    "dln",
    "--depth",
    "4",
    "--norm",
    "none",
    "--steps",
    "6",
    "--lr",
    "1e-4",
    "--step-sizes",
    "4,8,16",
    *COMMON,
]
CNN = [
    "--model",
    "vgg_tiny",
    "--dataset",
    "synthetic",
    "--batch-size",
    "32",
    "--steps",
    "6",
    "--lr",
    "0.05",
    "--dtype",
    "float64",
    "--step-sizes",
    "1,2,4",
    "--norm",
    "bn",
    "--sync-bn",
    "--eval-samples",
    "64",
    *COMMON,
]
RTOL = 1e-6


INJECT = os.path.join(os.path.dirname(__file__), "inject")  # sitecustomize.py: the kill switch
KILLED = "landscape test: rank 1 killed after step 3"  # what the kill switch writes when it fires


def env(**extra):
    path = os.pathsep.join([INJECT, *filter(None, [os.environ.get("PYTHONPATH")])])
    return dict(os.environ, OMP_NUM_THREADS="1", LANDSCAPE_DIST_TIMEOUT="30", PYTHONPATH=path, **extra)


def torchrun(*args, timeout=120, command="probe", **extra_env):
    return launch(["-m", "landscape_cli", command, *args], env(**extra_env), timeout)


def single(*args, command="probe"):
    result = CliRunner().invoke(cli, [command, *args])
    assert result.exit_code == 0, result.output
    return result


def rows(run_dir):
    with RunStore(run_dir, readonly=True) as store:
        return {(step, name): value for step, name, value in store.rows()}


def assert_close(expected, actual, must=("train/loss", "probe/loss", "probe/grad_diff"), abs_tol=1e-12, skip=()):
    assert expected.keys() == actual.keys()
    names = {name for _, name in expected}
    assert all(any(n.startswith(m) for n in names) for m in must), sorted(names)
    for key, a in expected.items():
        if key[1].startswith(skip):
            continue
        b = actual[key]
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert math.isclose(x, y, rel_tol=RTOL, abs_tol=abs_tol), (key, x, y)


@pytest.fixture(scope="module")
def cnn_two(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn2") / "exp"
    done = torchrun(*CNN, "--run-dir", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_dln_two_processes_equal_one_on_the_global_batch(tmp_path):
    # Full batch of 1000: each rank holds 500.
    single(*DLN, "--run-dir", str(tmp_path / "one"))
    done = torchrun(*DLN, "--run-dir", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished 6 steps" in done.stdout and done.stdout.count("finished") == 1  # rank 0 prints
    assert_close(rows(tmp_path / "one" / "none"), rows(tmp_path / "two" / "none"))
    with RunStore(tmp_path / "two" / "none", readonly=True) as store:
        assert store.config["distributed"] == {"world_size": 2, "backend": "gloo", "sync_bn": False}


def test_cnn_with_sync_bn_two_processes_equal_one(tmp_path, cnn_two):
    single(*CNN, "--run-dir", str(tmp_path / "one"))
    assert_close(rows(tmp_path / "one" / "bn"), rows(cnn_two / "bn"))


def test_dead_rank_fails_the_job_and_resume_completes_it(tmp_path, cnn_two):
    exp = tmp_path / "exp"
    start = time.monotonic()
    done = torchrun(*CNN, "--run-dir", str(exp), LANDSCAPE_TEST_KILL_RANK1_AT_STEP="3")
    assert done.returncode != 0 and time.monotonic() - start < 60
    assert KILLED in done.stderr
    assert "another process of the job failed" in done.stderr
    with RunStore(exp / "bn", readonly=True) as store:
        assert store.status == "interrupted"
        assert store.last_step() is not None and store.last_step() >= 2  # checkpointed at 2
    # --nproc re-launches through torch.distributed.run.
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "landscape_cli",
            "probe",
            "--nproc",
            "2",
            "--resume",
            str(exp),
            "--no-progress",
            "--no-report",
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows(exp / "bn") == rows(cnn_two / "bn")


# One rank (a store on a port the OS picks and keeps, nothing to race for) in a fresh
# interpreter, where torch.distributed.nn is not imported yet: a DDP step as training takes
# one, then teardown. Native threads are counted, as Gloo's are not Python threads. The
# automatic collector is off: a DDP wrapper's reference cycles then hold the group until
# teardown collects them itself, every time, instead of whenever a collection happens to
# run first.
TEARDOWN = """
import gc
import os
import weakref
import torch
import torch.distributed as dist
from landscape import distributed
from landscape.training import processes

gc.disable()

def threads():
    return len(os.listdir("/proc/self/task"))

def ddp_step():
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
    model(torch.randn(4, 3)).sum().backward()
    return model

before = threads()
processes.setup()
ddp_step()
group = weakref.ref(dist.group.WORLD)
during = threads()
processes.teardown()
print(before, during, threads(), group() is None)
processes.setup()
held = ddp_step()
processes.teardown()  # warns: the model holds the group
del held
gc.collect()  # the group's last holder: its threads end here, not during the exit
print(threads())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_teardown_ends_the_gloo_threads_before_the_interpreter_ends():
    # A Gloo thread still alive at exit aborts a finished rank ("terminate called without
    # an active exception") when it releases a collective's tensors during finalization.
    done = subprocess.run(
        [sys.executable, "-c", TEARDOWN],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(env(), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="0"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    before, during, after, gone, released = done.stdout.split()
    before, during, after, released = map(int, (before, during, after, released))
    assert during > before and after == before  # no Gloo thread left alive
    assert gone == "True"  # and nothing holds the group any more
    # A group that something still holds (here the model) cannot end; teardown says so.
    assert done.stderr.count("the process group outlives teardown") == 1, done.stderr[-3000:]
    assert released == before


def test_batch_that_does_not_split_is_a_one_line_error(tmp_path):
    done = torchrun(*[a if a != "32" else "33" for a in CNN], "--run-dir", str(tmp_path / "x"))
    assert done.returncode != 0
    assert "Error: the global batch of 33 does not split evenly over 2 processes" in done.stderr


ICS_COMMON = [
    "--eval-every",
    "3",
    "--log-every",
    "2",
    "--checkpoint-every",
    "2",
    "--device",
    "cpu",
    "--no-progress",
    "--no-report",
]


def test_ics_two_processes_equal_one_on_the_global_batch(tmp_path):
    args = [
        "--model",
        "dln",
        "--depth",
        "4",
        "--norm",
        "none",
        "--lrs",
        "1e-4",
        "--steps",
        "6",
        "--ics-every",
        "2",
        *ICS_COMMON,
    ]
    single(*args, "--run-dir", str(tmp_path / "one"), command="ics")
    done = torchrun(*args, "--run-dir", str(tmp_path / "two"), command="ics")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "layout: ddp" in done.stdout
    one, two = rows(tmp_path / "one" / "none-lr0.0001"), rows(tmp_path / "two" / "none-lr0.0001")
    # G - G' is a small difference of float32 gradients that the two runs sum in different
    # orders: its rounding is relative to ||G||, not to ||G - G'||.
    assert_close(one, two, must=("train/loss", "ics/l2/#4", "ics/cosine/#4"), skip=("ics/l2/", "ics/rel_l2/"))
    measured = [k for k in one if k[1].startswith("ics/l2/")]
    assert len(measured) >= 8
    for step, name in measured:
        norm = one[(step, name.replace("l2", "grad_norm"))]
        assert abs(one[(step, name)] - two[(step, name)]) <= RTOL * norm, (step, name)
        rel = name.replace("l2", "rel_l2")
        assert abs(one[(step, rel)] - two[(step, rel)]) <= RTOL, (step, rel)


def test_distributions_with_sync_bn_two_processes_equal_one(tmp_path):
    args = [
        "--model",
        "vgg_tiny",
        "--dataset",
        "synthetic",
        "--batch-size",
        "32",
        "--steps",
        "4",
        "--lr",
        "0.05",
        "--norm",
        "bn",
        "--sync-bn",
        "--eval-samples",
        "64",
        "--dist-every",
        "2",
        "--dist-layers",
        "2,3",
        *ICS_COMMON,
    ]
    single(*args, "--run-dir", str(tmp_path / "one"), command="ics-noise")
    done = torchrun(*args, "--run-dir", str(tmp_path / "two"), command="ics-noise")
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = rows(tmp_path / "one" / "bn"), rows(tmp_path / "two" / "bn")
    # BN outputs are O(1) with means near 0: absolute tolerance for the moments. A value
    # within float rounding of a bin edge may land in the neighbouring bin, so histograms
    # are compared by their totals and an L1 distance of a few counts.
    assert_close(
        one,
        two,
        must=("train/loss", "dist/mean/#", "dist/var/#", "dist/hist/#"),
        abs_tol=1e-6,
        skip=("dist/hist/", "dist/under/", "dist/over/"),
    )
    hists = [k for k in one if k[1].startswith("dist/hist/")]
    assert hists
    for key in hists:
        a, b = one[key], two[key]
        total_a = (
            sum(a) + one[(key[0], key[1].replace("hist", "under"))] + one[(key[0], key[1].replace("hist", "over"))]
        )
        total_b = (
            sum(b) + two[(key[0], key[1].replace("hist", "under"))] + two[(key[0], key[1].replace("hist", "over"))]
        )
        assert total_a == total_b > 0
        assert sum(abs(x - y) for x, y in zip(a, b)) <= 4, key


SPREAD = [a if a != "none" else "none,bn" for a in DLN]  # two runs over two processes: auto spreads them


@pytest.fixture(scope="module")
def spread_single(tmp_path_factory):
    # In a fresh process with one thread, as each rank is: then the runs agree bit for bit
    # (in this test process, with another allocation history, BLAS may round differently).
    out = tmp_path_factory.mktemp("spread1") / "exp"
    cmd = [sys.executable, "-m", "landscape_cli", "probe", *SPREAD, "--run-dir", str(out)]
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_spread_layout_gives_each_process_its_own_runs(tmp_path, spread_single):
    done = torchrun(*SPREAD, "--run-dir", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "layout: spread" in done.stdout and done.stdout.count("finished 6 steps") == 2
    ranks = set()
    for name in ("none", "bn"):
        # Each run trains alone on its process: exactly the single-process run.
        assert rows(spread_single / name) == rows(tmp_path / "two" / name)
        with RunStore(tmp_path / "two" / name, readonly=True) as store:
            assert "distributed" not in store.config
            ranks.add(store.config["placement"]["rank"])
    assert ranks == {0, 1}


def test_spread_layout_survives_a_dead_rank(tmp_path, spread_single):
    exp = tmp_path / "exp"
    done = torchrun(*SPREAD, "--run-dir", str(exp), LANDSCAPE_TEST_KILL_RANK1_AT_STEP="3")
    assert done.returncode != 0 and KILLED in done.stderr
    with RunStore(exp / "bn", readonly=True) as store:  # run 1, on rank 1
        assert store.status == "interrupted"
    resumed = torchrun("--resume", str(exp), "--no-progress", "--no-report")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("none", "bn"):
        assert rows(spread_single / name) == rows(exp / name)


# The paper's DLN (25 layers, lr 1e-6, its default float64 and summed objective), with BN
# synchronized so that the 2-process BN statistics are the global batch's.
DLN64 = [
    "--model",
    "dln",
    "--norm",
    "none,bn",
    "--sync-bn",
    "--layout",
    "ddp",
    "--steps",
    "4",
    "--checkpoint-every",
    "2",
    "--probe-every",
    "1",
    "--dense-until",
    "0",
    "--eval-every",
    "2",
    "--log-every",
    "1",
    "--device",
    "cpu",
    "--no-progress",
    "--no-report",
]


def test_float64_dln_probes_agree_across_threads_and_processes(tmp_path):
    torch.set_num_threads(1)
    single(*DLN64, "--run-dir", str(tmp_path / "t1"))
    torch.set_num_threads(2)
    single(*DLN64, "--run-dir", str(tmp_path / "t2"))
    torch.set_num_threads(1)
    done = torchrun(*DLN64, "--run-dir", str(tmp_path / "p2"))
    assert done.returncode == 0, done.stderr[-3000:]
    for norm in ("none", "bn"):
        reference = rows(tmp_path / "t1" / norm)
        with RunStore(tmp_path / "t1" / norm, readonly=True) as store:
            assert store.config["train"]["dtype"] == "float64"
            assert len(store.config["probe"]["step_sizes"]) == 5  # 0.01 ... 30 x lr: down to 1e-8
        for other in ("t2", "p2"):
            values = rows(tmp_path / other / norm)
            probes = [k for k in reference if k[1].startswith("probe/")]
            assert len(probes) >= 4 * 10
            for key in probes + [k for k in reference if k[1] == "train/loss"]:
                a, b = reference[key], values[key]
                for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
                    assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-300), (other, norm, key, x, y)


def test_noisy_bn_ranks_draw_independent_noise_and_resume_keeps_each_ranks(tmp_path):
    args = [
        "--model",
        "vgg_tiny",
        "--dataset",
        "synthetic",
        "--batch-size",
        "32",
        "--steps",
        "4",
        "--lr",
        "0.05",
        "--norm",
        "noisy_bn",
        "--noise-seed",
        "7",
        "--eval-samples",
        "64",
        "--checkpoint-every",
        "2",
        "--log-every",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    ]
    done = torchrun(*args, "--run-dir", str(tmp_path / "two"), command="train")
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=False)
    rank0, rank1 = checkpoint["generators_by_rank"]
    assert len(rank0) == len(rank1) == 1
    assert not torch.equal(rank0[0], rank1[0])  # each rank its own noise stream
    # Rank 0 is the configured seed, advanced by one draw per noisy layer and step.
    from landscape.models import build_model
    from landscape.models.noise import Noise

    layers = sum(isinstance(m, Noise) for m in build_model("vgg_tiny", norm="noisy_bn").modules())
    g = torch.Generator().manual_seed(7)
    for _ in range(layers * 4):
        torch.randint(0, 2**63 - 1, (1,), generator=g)
    assert torch.equal(rank0[0], g.get_state())
    with RunStore(tmp_path / "two", readonly=True) as store:
        assert store.config["noise"]["seed"] == 7
    # Killed at step 3 and resumed: every rank continues its own stream (the result equals
    # the uninterrupted run's).
    killed = torchrun(*args, "--run-dir", str(tmp_path / "cut"), command="train", LANDSCAPE_TEST_KILL_RANK1_AT_STEP="3")
    assert killed.returncode != 0 and KILLED in killed.stderr
    resumed = torchrun("--resume", str(tmp_path / "cut"), "--no-progress", command="train")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again["generators_by_rank"], checkpoint["generators_by_rank"]))
    assert rows(tmp_path / "cut") == rows(tmp_path / "two")


def test_a_timed_out_launch_leaves_no_rank_behind(tmp_path):
    # The tests' launcher helper kills the launcher's whole session on a timeout: ranks
    # stuck in a collective would otherwise outlive the test by their own timeout.
    script = tmp_path / "stuck.py"
    script.write_text(
        "import os, pathlib, sys, time\n"
        "part = pathlib.Path(sys.argv[1], '.' + os.environ['RANK'])\n"
        "part.write_text(str(os.getpid()))\n"
        "part.rename(part.with_name(os.environ['RANK']))\n"
        "time.sleep(120)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        launch([str(script), str(tmp_path)], env(), timeout=20)
    pids = [int(p.read_text()) for p in tmp_path.iterdir() if p.name in ("0", "1")]
    assert pids, "no rank started within the timeout: nothing was checked"
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_gpt_along_the_update_two_processes_equal_one(tmp_path):
    """The GPT on text under AdamW, probed along the update with the preconditioned
    sharpness: two processes on halves of the global batch equal one (float64)."""
    text = tmp_path / "t.txt"
    text.write_text("to be, or not to be: that is the question. whether tis nobler in the mind " * 30)
    args = ["--model", "gpt", "--dataset", f"text:{text}", "--layers", "1", "--width", "16", "--block-size", "16"]
    args += ["--batch-size", "8", "--steps", "4", "--dtype", "float64", "--norm", "layer", "--direction", "update"]
    args += ["--hessian-every", "2", "--eval-samples", "16", *COMMON]
    single(*args, "--run-dir", str(tmp_path / "one"))
    done = torchrun(*args, "--run-dir", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = rows(tmp_path / "one" / "layer"), rows(tmp_path / "two" / "layer")
    assert_close(one, two, must=("train/loss", "probe/loss", "probe/beta_precond", "hessian/lambda_max_precond"),
                 skip=("hessian/hvps", "hessian/residual"))  # fmt: skip
