"""landscape.integrations.lightning on steps that are not plain: 16-mixed with a real
GradScaler on the CPU (the loss unscaled, a skipped step recorded as such), an
accumulation schedule, gradient clipping, an optimizer that unscales inside step()."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import GradientAccumulationScheduler
from lightning.pytorch.plugins.precision import MixedPrecision
from test_lightning import Tiny, along_gradient, fit

from landscape.integrations.lightning import LandscapeCallback
from landscape.runs import RunStore


def sixteen_mixed() -> MixedPrecision:
    """Lightning's 16-mixed plugin on the CPU; it holds a real, enabled GradScaler."""
    plugin = MixedPrecision("16-mixed", "cpu")
    assert plugin.scaler is not None and plugin.scaler.is_enabled() and plugin.scaler.get_scale() == 2.0**16
    return plugin


class Overflow(pl.Callback):
    """Puts an inf into one gradient after the backward at ``steps``: the GradScaler skips them."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step in self.steps:
            next(pl_module.parameters()).grad.view(-1)[0] = float("inf")


def series(run_dir, name: str) -> dict[int, object]:
    with RunStore(run_dir, readonly=True) as store:
        steps, values = store.series(name)
    return dict(zip(steps.tolist(), values.tolist()))


@pytest.mark.parametrize("reuse_grad", [True, None])
def test_under_16_mixed_the_losses_are_the_modules_own(tmp_path, reuse_grad):
    """train/loss (and, reusing the training step's loss, probe/base_loss) is the loss
    training_step returned, not that loss times the GradScaler's 65536. Without reuse
    (the default under mixed precision) the probe recomputes it in full precision."""
    module = fit(
        [LandscapeCallback(tmp_path / "run", probe_every=2, reuse_grad=reuse_grad)],
        steps=5,
        module=Tiny(dropout=0.0),
        plugins=[sixteen_mixed()],
    )
    own = [x.item() for x in module.losses]
    train_loss, base_loss = series(tmp_path / "run", "train/loss"), series(tmp_path / "run", "probe/base_loss")
    assert list(train_loss.values()) == pytest.approx(own, rel=1e-3)
    assert sorted(base_loss) == [0, 2, 4]
    if reuse_grad:
        assert [base_loss[t] for t in (0, 2, 4)] == pytest.approx([own[t] for t in (0, 2, 4)], rel=1e-6)
    else:
        full = [along_gradient(*module.seen[t])[0] for t in (0, 2, 4)]
        assert [base_loss[t] for t in (0, 2, 4)] == pytest.approx(full, rel=1e-6)
        assert own != pytest.approx(full, rel=1e-6)  # autocast's loss: the test can tell them apart


def test_a_step_the_grad_scaler_skips_is_recorded_and_not_measured(tmp_path):
    """At a skipped step the gradient is not finite: the step is recorded as
    train/skipped, nothing is measured there, and what was due runs at the next step."""
    plugin = sixteen_mixed()
    module = fit(
        [Overflow({2}), LandscapeCallback(tmp_path / "run", probe_every=2, reuse_grad=True)],
        steps=5,
        module=Tiny(dropout=0.0),
        plugins=[plugin],
    )
    assert plugin.scaler.get_scale() == 2.0**15  # the scaler did skip one step, and backed off
    weights = [name for name, _ in module.named_parameters()]  # BN's running statistics did move
    assert all(torch.equal(module.seen[2][0][k], module.seen[3][0][k]) for k in weights)
    assert series(tmp_path / "run", "train/skipped") == {2: 1.0}
    assert sorted(series(tmp_path / "run", "train/loss")) == [0, 1, 2, 3, 4]
    base_loss = series(tmp_path / "run", "probe/base_loss")
    assert sorted(base_loss) == [0, 3, 4]  # step 2's probe ran at step 3
    with RunStore(tmp_path / "run", readonly=True) as store:
        assert torch.tensor(store.series("probe/loss")[1]).isfinite().all()


def test_an_accumulation_schedule_that_starts_later_is_refused(tmp_path):
    """GradientAccumulationScheduler changes accumulate_grad_batches after the fit-start
    check: the first accumulating step (epoch 1: step 4) is refused, before its values."""
    schedule = GradientAccumulationScheduler({0: 1, 1: 2})
    with pytest.raises(ValueError, match=r"accumulate_grad_batches=2 is not supported \(step 4, epoch 1\)"):
        fit([schedule, LandscapeCallback(tmp_path / "run", probe_every=2)], steps=8)
    with RunStore(tmp_path / "run", readonly=True) as store:
        assert store.series("train/loss")[0].tolist() == [0, 1, 2, 3] and store.status == "failed"


class ClipsItself(Tiny):
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val=0.1, gradient_clip_algorithm="norm")


@pytest.mark.parametrize(("module", "trainer"), [(Tiny, {"gradient_clip_val": 0.1}), (ClipsItself, {})])
def test_ics_under_gradient_clipping_is_refused(tmp_path, module, trainer):
    """ICS's dry run would step with the unclipped gradient: refused at fit."""
    with pytest.raises(ValueError, match="ICS under gradient clipping"):
        fit([LandscapeCallback(tmp_path / "run", probe_every=None, ics_every=1)], steps=2, module=module(), **trainer)


def test_under_gradient_clipping_the_probe_runs_along_the_unclipped_gradient(tmp_path):
    module = fit(
        [LandscapeCallback(tmp_path / "run", probe_every=2)], steps=3, module=Tiny(dropout=0.0), gradient_clip_val=0.1
    )
    norms = series(tmp_path / "run", "probe/grad_norm")
    expected = [along_gradient(*module.seen[t])[1] for t in (0, 2)]
    assert [norms[0], norms[2]] == pytest.approx(expected, rel=1e-5) and min(expected) > 0.1


class FusedAdam(Tiny):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)


def test_an_optimizer_that_unscales_inside_step_is_refused_under_a_grad_scaler(tmp_path):
    with pytest.raises(ValueError, match="Adam unscales its gradients inside step"):
        fit(
            [LandscapeCallback(tmp_path / "run", probe_every=1)], steps=2, module=FusedAdam(), plugins=[sixteen_mixed()]
        )
