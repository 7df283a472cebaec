import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import replace_train

from landscape.config import DataConfig, ModelConfig, RunConfig, ScheduleConfig, TrainConfig
from landscape.runner.train import train
from landscape.runs import RunStore
from landscape.training.hooks import Event, at_steps, every, hook


def rows(run_dir):
    with RunStore(run_dir, readonly=True) as store:
        return list(store.rows())


def test_records_losses_every_step_and_evaluates_on_schedule(tmp_path, tiny):
    result = train(tiny, run_dir=tmp_path / "r")
    assert result.status == "finished" and result.steps == 12
    with RunStore(result.run_dir) as store:
        assert store.series("train/loss")[0].tolist() == list(range(12))
        assert store.series("test/acc")[0].tolist() == [5, 10, 12]
        assert store.status == "finished"
        assert store.config["versions"]["torch"] == torch.__version__
        assert store.config["total_steps"] == 12
    assert (result.run_dir / "checkpoints" / "last.pt").is_file()


def test_same_seed_same_metrics_bit_for_bit(tmp_path, tiny):
    a = train(tiny, run_dir=tmp_path / "a")
    b = train(tiny, run_dir=tmp_path / "b")
    c = train(replace_train(tiny, seed=1), run_dir=tmp_path / "c")
    assert rows(a.run_dir) == rows(b.run_dir)
    assert rows(a.run_dir) != rows(c.run_dir)


def test_hooks_run_at_their_events_and_schedules(tmp_path, tiny):
    seen = []

    @hook(Event.AFTER_BACKWARD)
    def grads(ctx):
        seen.append(("grad", ctx.step, all(p.grad is not None for p in ctx.model.parameters())))
        return {"hook/grad_norm": float(sum(p.grad.norm() ** 2 for p in ctx.model.parameters()))}

    @hook(Event.TRAIN_START, Event.AFTER_STEP, Event.EPOCH_END, Event.TRAIN_END)
    def events(ctx):
        seen.append((ctx.event.value, ctx.step))
        return None

    result = train(tiny, run_dir=tmp_path / "r", hooks=[every(4, grads), at_steps([3, 7], events)])
    assert [s for s in seen if s[0] == "grad"] == [("grad", 0, True), ("grad", 4, True), ("grad", 8, True)]
    # AFTER_STEP fires with the completed-step count; 64 images / batch 16 = 4 steps per epoch.
    assert ("after_step", 3) in seen and ("after_step", 7) in seen and ("after_step", 5) not in seen
    assert seen[0] == ("train_start", 0) and seen[-1] == ("train_end", 12)
    assert [s for s in seen if s[0] == "epoch_end"] == [("epoch_end", 4), ("epoch_end", 8), ("epoch_end", 12)]
    with RunStore(result.run_dir) as store:
        assert store.series("hook/grad_norm")[0].tolist() == [0, 4, 8]


def test_idle_hooks_do_not_change_the_trajectory(tmp_path, tiny):
    @hook(Event.AFTER_BACKWARD, Event.AFTER_STEP)
    def idle(ctx):
        return None

    a = train(tiny, run_dir=tmp_path / "a")
    b = train(tiny, run_dir=tmp_path / "b", hooks=[idle])
    assert rows(a.run_dir) == rows(b.run_dir)


def dln_config(lr, steps=30):
    return RunConfig(
        model=ModelConfig(name="dln", norm="none", depth=4, width=10),
        data=DataConfig(name="gaussian-linear"),
        train=TrainConfig(steps=steps, lr=lr, full_batch=True, eval_every=10, log_every=5, device="cpu"),
    )


def test_divergence_is_a_result_with_everything_before_it_kept(tmp_path):
    result = train(dln_config(lr=50.0), run_dir=tmp_path / "r")
    assert result.status == "diverged"
    n = result.diverged_step
    with RunStore(result.run_dir) as store:
        steps, losses = store.series("train/loss")
        assert steps.tolist() == list(range(n + 1))
        assert all(torch.isfinite(torch.tensor(losses[:n])))
        assert not torch.isfinite(torch.tensor(losses[n]))
        assert store.status == "diverged" and store.meta["diverged_step"] == n
        assert store.last_step() == n


def test_stable_dln_trains(tmp_path):
    result = train(dln_config(lr=1e-2), run_dir=tmp_path / "r")
    assert result.status == "finished"
    with RunStore(result.run_dir) as store:
        losses = store.series("train/loss")[1]
    assert losses[-1] < losses[0]


RESUMABLE = {
    "bn": {},
    "noisy_bn": {"norm": "noisy_bn"},  # the noise generator's state
    "augment": {"augment": True},  # the augmentation generator's state
    "bf16": {"bf16": True},  # autocast and the probe's recomputed gradient
    # The optimizer's state (Adam's moments, the momentum buffer) and probes along the update.
    "adamw": {"train": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01}, "direction": "update"},
    "nesterov": {"train": {"momentum": 0.9, "nesterov": True}, "direction": "update"},
}


@pytest.mark.parametrize("variant", list(RESUMABLE))
def test_ctrl_c_stops_cleanly_and_resume_equals_uninterrupted(tmp_path, tiny, variant):
    from landscape.config import ProbeConfig

    change = RESUMABLE[variant]
    config = replace_train(
        tiny, steps=14, checkpoint_every=100, bf16=change.get("bf16", False), **change.get("train", {})
    )
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, norm=change.get("norm", "bn")),
        data=dataclasses.replace(config.data, augment=change.get("augment", False)),
        probe=ProbeConfig(
            step_sizes=(0.5, 1.0), schedule=ScheduleConfig(every=4), direction=change.get("direction", "gradient")
        ),
    )
    full = train(config, run_dir=tmp_path / "full")

    @hook(Event.AFTER_STEP)
    def ctrl_c(ctx):
        if ctx.step == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return None

    part = train(config, run_dir=tmp_path / "part", hooks=[ctrl_c])
    assert part.status == "interrupted" and part.steps == 6
    with RunStore(part.run_dir) as store:
        assert store.status == "interrupted"
    resumed = train(run_dir=tmp_path / "part", resume=True)
    assert resumed.status == "finished" and resumed.steps == 14
    assert rows(full.run_dir) == rows(part.run_dir)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    """A real `landscape train` process killed with SIGKILL mid-run, then --resume."""
    args = [
        "--model",
        "vgg_tiny",
        "--dataset",
        "synthetic",
        "--steps",
        "400",
        "--batch-size",
        "16",
        "--checkpoint-every",
        "20",
        "--eval-every",
        "50",
        "--log-every",
        "5",
        "--device",
        "cpu",
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "landscape_cli", "train", *args]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--run-dir", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (killed / "checkpoints" / "last.pt").is_file() and (killed / "metrics.sqlite").is_file():
                with RunStore(killed, readonly=True) as store:
                    if (store.last_step() or 0) >= 60:
                        break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    with RunStore(killed, readonly=True) as store:  # opens and reads after the kill
        assert store.status == "interrupted"
        assert 60 <= store.last_step() < 400
    subprocess.run([*cmd[:4], "--resume", str(killed), "--no-progress"], env=env, check=True, capture_output=True)
    subprocess.run([*cmd, "--run-dir", str(tmp_path / "full")], env=env, check=True, capture_output=True)
    assert rows(killed) == rows(tmp_path / "full")


def test_bf16_probes_use_the_gradient_of_the_loss_they_evaluate(tmp_path, tiny):
    # Under bf16 autocast the training gradient is not that of the float32 loss the probe
    # evaluates; at small step sizes reusing it makes beta rounding noise (410 vs 16).
    from landscape.config import ProbeConfig
    from landscape.measure.probes import probe_gradient

    sizes = (1e-4, 1e-2)
    seen = {}

    @hook(Event.AFTER_BACKWARD)
    def keep(ctx):
        if ctx.step == 2:
            seen["model"] = {k: v.clone() for k, v in ctx.model.state_dict().items()}
            seen["batch"] = ctx.batch

    probe = ProbeConfig(step_sizes=sizes, relative=False, schedule=ScheduleConfig(every=1), curvature=False)
    config = dataclasses.replace(replace_train(tiny, bf16=True, steps=3), probe=probe)
    train(config, run_dir=tmp_path / "r", hooks=[keep])
    with RunStore(tmp_path / "r", readonly=True) as store:
        recorded = {name: value for step, name, value in store.rows() if step == 2}
    from landscape.models import build_model

    model = build_model(config.model)
    model.load_state_dict(seen["model"])
    x, y = seen["batch"]
    reference = probe_gradient(model, torch.nn.functional.cross_entropy, x, y, sizes, curvature=False)  # float32 g
    assert recorded["probe/base_loss"] == pytest.approx(reference.base_loss, rel=1e-6)
    assert recorded["probe/grad_diff"] == pytest.approx(list(reference.grad_diffs), rel=1e-4)
    assert recorded["probe/beta"] == pytest.approx(reference.beta, rel=1e-4)


def test_dtype_is_recorded_and_used(tmp_path):
    config = dln_config(lr=1e-2)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, dtype="float64"))
    dtypes = set()

    @hook(Event.AFTER_BACKWARD)
    def look(ctx):
        dtypes.update({p.dtype for p in ctx.model.parameters()} | {ctx.batch[0].dtype, ctx.batch[1].dtype})

    train(config, run_dir=tmp_path / "r", hooks=[look])
    assert dtypes == {torch.float64}
    with RunStore(tmp_path / "r", readonly=True) as store:
        assert store.config["train"]["dtype"] == "float64"
        assert store.config["train"]["loss_reduction"] == config.train.loss_reduction
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="float16")
    with pytest.raises(ValueError, match="--bf16"):
        TrainConfig(bf16=True, dtype="float64")


def test_the_noise_seed_is_honoured(tmp_path, tiny):
    from landscape.config import NoiseConfig
    from landscape.models.noise import Noise

    def first_noise(config, name):
        drawn = []

        @hook(Event.TRAIN_START)
        def grab(ctx):
            noise = next(m for m in ctx.model.modules() if isinstance(m, Noise))
            drawn.append(noise.generator.get_state().clone())

        train(config, run_dir=tmp_path / name, hooks=[grab])
        return drawn[0]

    base = dataclasses.replace(replace_train(tiny, steps=1), model=dataclasses.replace(tiny.model, norm="noisy_bn"))
    a = first_noise(dataclasses.replace(base, noise=NoiseConfig(seed=5)), "a")
    b = first_noise(dataclasses.replace(base, noise=NoiseConfig(seed=6)), "b")
    assert not torch.equal(a, b)  # the training seed (0 in both) does not decide the noise
    assert torch.equal(a, torch.Generator().manual_seed(5).get_state())
    with RunStore(tmp_path / "a", readonly=True) as store:
        assert store.config["noise"]["seed"] == 5


def test_a_checkpoint_that_does_not_fit_the_model_is_a_one_line_error(tmp_path, tiny):
    from landscape.runs import StoreError
    from landscape.training.checkpoint import load_checkpoint, save_checkpoint

    config = replace_train(tiny, steps=4, checkpoint_every=100)
    train(config, run_dir=tmp_path / "r")
    state = load_checkpoint(tmp_path / "r")
    state["model"]["features.0.bias"] = torch.zeros(8)  # a tensor this model does not have
    save_checkpoint(tmp_path / "r", state)
    with RunStore(tmp_path / "r") as store:
        store.set_status("interrupted")
    with pytest.raises(StoreError, match="does not fit the model this version builds"):
        train(run_dir=tmp_path / "r", resume=True)
    with RunStore(tmp_path / "r", readonly=True) as store:  # nothing recorded is lost
        assert store.last_step() == 4
