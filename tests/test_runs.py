import math
import os
import subprocess
import sys

import pytest

from landscape.runs import RunStore, StoreError, find_runs, write_json_atomic


def make(tmp_path, name="run", config=None):
    return RunStore.create(tmp_path / name, config or {"name": name})


def test_scalars_and_arrays_round_trip(tmp_path):
    with make(tmp_path) as store:
        store.log(0, {"train/loss": 2.5, "probe/loss": [1.0, 2.0, 3.0]})
        store.log(3, {"train/loss": 1.5, "probe/loss": [0.5, math.nan, math.inf]})
        steps, values = store.series("train/loss")
        assert steps.tolist() == [0, 3] and values.tolist() == [2.5, 1.5]
        steps, arr = store.series("probe/loss")
        assert arr.shape == (2, 3) and arr[0].tolist() == [1.0, 2.0, 3.0]
        assert math.isnan(arr[1, 1]) and arr[1, 2] == math.inf
        assert store.names() == ["probe/loss", "train/loss"]
        assert list(store.rows())[0] == (0, "probe/loss", [1.0, 2.0, 3.0])


def test_nan_scalar_is_kept_as_nan(tmp_path):
    with make(tmp_path) as store:
        store.log(1, {"x": math.nan})
        assert math.isnan(store.series("x")[1][0])
        assert math.isnan(store.final("x"))


def test_relogging_replaces_and_truncate_drops_later_steps(tmp_path):
    with make(tmp_path) as store:
        for s in range(5):
            store.log(s, {"a": float(s)})
        store.log(2, {"a": 20.0})
        store.truncate_after(2)
        steps, values = store.series("a")
        assert steps.tolist() == [0, 1, 2] and values.tolist() == [0.0, 1.0, 20.0]


def test_create_refuses_a_nonempty_directory(tmp_path):
    make(tmp_path).close()
    with pytest.raises(StoreError, match="not empty"):
        make(tmp_path)


def test_not_a_run_and_corrupt_store_give_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a run"):
        RunStore(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "metrics.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="corrupt") as info:
        RunStore(bad)
    assert "\n" not in str(info.value)


def test_find_runs_expands_experiments_in_their_order(tmp_path):
    exp = tmp_path / "exp"
    for name in ("none", "bn"):
        RunStore.create(exp / name, {}).close()
    write_json_atomic(exp / "experiment.json", {"runs": ["none", "bn"]})
    assert [p.name for p in find_runs([exp])] == ["none", "bn"]
    assert find_runs([exp / "bn"]) == [exp / "bn"]
    with pytest.raises(StoreError):
        find_runs([tmp_path / "missing"])


def test_status_of_a_dead_process_reads_interrupted(tmp_path):
    with make(tmp_path) as store:
        store.set_status("running")
        assert store.status == "running"  # this process is alive
        proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        store.set_meta(pid=int(proc.stdout))
        assert store.status == "interrupted"
        store.set_status("finished", steps=3)
        assert store.status == "finished" and store.meta["steps"] == 3


def test_store_survives_sigkill_during_writes(tmp_path):
    """A writer killed mid-transaction leaves a store that opens, with whole steps only."""
    path = tmp_path / "run"
    RunStore.create(path, {}).close()
    code = (
        "import sys; from landscape.runs import RunStore\n"
        f"s = RunStore({str(path)!r})\n"
        "i = 0\n"
        "while True:\n"
        "    s.log(i, {f'm{k}': float(i) for k in range(50)}); i += 1\n"
        "    if i == 200: print('go', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    os.kill(proc.pid, 9)
    proc.wait()
    with RunStore(path, readonly=True) as store:
        counts = {}
        for step, _name, value in store.rows():
            counts[step] = counts.get(step, 0) + 1
            assert value == float(step)
        assert len(counts) >= 200 and set(counts.values()) == {50}
