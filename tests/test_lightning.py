"""landscape.integrations.lightning: the probe inside Lightning's own loop leaves the run
bit-identical, measures the step's weights and batch before the update (against plain
autograd), logs through the trainer's loggers, writes a run store that `landscape
report` renders, refuses what it cannot measure, and under DDP measures the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import lightning.pytorch as pl
import pytest
import torch
from click.testing import CliRunner
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape.integrations.lightning import LandscapeCallback, logger_metrics
from landscape.measure.probes import probe_gradient
from landscape.runs import RunStore
from landscape_cli.main import cli

QUIET = dict(
    accelerator="cpu", devices=1, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
)


class Tiny(pl.LightningModule):
    """Conv + BN + dropout: the probe must restore BN buffers and not shift the RNG
    (the dropout masks and the shuffled order would change)."""

    def __init__(self, manual: bool = False, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 4),
        )
        self.loss_fn = nn.functional.cross_entropy
        self.losses: list[torch.Tensor] = []
        self.seen: list[tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]] = []  # (w_t, x_t, y_t)
        self.automatic_optimization = not manual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(({k: v.detach().clone() for k, v in self.state_dict().items()}, x.clone(), y.clone()))
        loss = self.loss_fn(self(x), y)
        self.losses.append(loss.detach().clone())
        if not self.automatic_optimization:
            self.manual_backward(loss)
            self.optimizers().step()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class Memory(Logger):
    """Keeps every log_metrics call."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))


def fit(
    callbacks: list, steps: int = 6, logger=False, module: Tiny | None = None, ckpt_path: str | None = None, **trainer
) -> Tiny:
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 4, (64,), generator=g))
    model = module or Tiny()
    pl.Trainer(max_steps=steps, logger=logger, callbacks=callbacks, **{**QUIET, **trainer}).fit(
        model, DataLoader(data, batch_size=16, shuffle=True), ckpt_path=ckpt_path
    )
    return model


class Perturb(pl.Callback):
    """Negative control: one random draw before the optimizer step shifts training."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        torch.rand(1)


def along_gradient(
    state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, step_sizes: tuple[float, ...] = ()
) -> tuple[float, float, list[float]]:
    """L(w; B), ||g|| and L(w - eta g; B) by plain autograd on a fresh Tiny without
    dropout (train-mode BN): the independent calculation the callback is checked against."""
    net = Tiny(dropout=0.0)
    net.load_state_dict(state)
    params = list(net.parameters())
    start = [p.detach().clone() for p in params]
    loss = net.loss_fn(net(x), y)
    grads = torch.autograd.grad(loss, params)
    losses = []
    with torch.no_grad():
        for eta in step_sizes:
            for p, w, g in zip(params, start, grads):
                p.copy_(w - eta * g)
            losses.append(net.loss_fn(net(x), y).item())
    return loss.item(), torch.cat([g.flatten() for g in grads]).norm().item(), losses


def same_run(a: Tiny, b: Tiny) -> bool:
    weights = all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    return weights and torch.equal(torch.stack(a.losses), torch.stack(b.losses))


def test_the_run_is_bit_identical_and_the_store_renders(tmp_path):
    plain = fit([])
    memory = Memory()
    run_dir = tmp_path / "run"
    probed = fit([LandscapeCallback(run_dir, probe_every=2, ics_every=3, hessian_every=5)], logger=memory)
    assert same_run(plain, probed)
    assert not same_run(plain, fit([Perturb()]))  # the comparison sees a single random draw

    # Every probe reaches the logger at its step, whatever log_every_n_steps says.
    etas = ["0.05", "0.1", "0.2", "0.4"]  # (0.5, 1, 2, 4) x lr 0.1
    logged = {step: row for step, row in memory.rows if "landscape/beta" in row}
    assert sorted(logged) == [0, 2, 4]
    assert {f"landscape/probe_loss_{e}" for e in etas} | {f"landscape/grad_diff_{e}" for e in etas} <= set(logged[2])
    assert [step for step, row in memory.rows if "landscape/hessian/lambda_max" in row] == [0, 5]

    with RunStore(run_dir, readonly=True) as store:
        steps, losses = store.series("train/loss")
        assert steps.tolist() == list(range(6))
        assert losses.tolist() == [x.item() for x in probed.losses]
        probe_steps, probe_losses = store.series("probe/loss")
        assert probe_steps.tolist() == [0, 2, 4] and probe_losses.shape == (3, 4)
        assert store.series("ics/l2/#2")[0].tolist() == [0, 3]
        assert store.series("hessian/lambda_max")[0].tolist() == [0, 5]
        assert store.status == "finished" and store.config["train"]["lr"] == 0.1

    report = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "-o", str(report)])
    assert result.exit_code == 0, result.output
    page = report.read_text()
    for anchor in ("training", "landscape", "predictiveness", "smoothness", "step-size", "ics"):
        assert f'<section id="{anchor}">' in page
    assert "nothing recorded yet" not in page
    assert "0.05, 0.1, 0.2, 0.4 (= 0.5, 1.0, 2.0, 4.0 × lr)" in page  # the step sizes from config.json


def test_the_probe_measures_the_steps_weights_and_batch_before_its_update(tmp_path):
    """The store and the logger against plain autograd at the weights and batch that
    training_step saw: a probe moved after the optimizer step (w_{t+1}), or run on
    another step's batch, would not match."""
    memory = Memory()
    module = fit([LandscapeCallback(tmp_path / "run", probe_every=2)], steps=5, logger=memory, module=Tiny(dropout=0.0))
    sizes = (0.05, 0.1, 0.2, 0.4)  # (0.5, 1, 2, 4) x lr 0.1
    logged = {step: row for step, row in memory.rows if "landscape/beta" in row}
    with RunStore(tmp_path / "run", readonly=True) as store:
        _, train_loss = store.series("train/loss")
        steps, losses = store.series("probe/loss")
        _, base_loss = store.series("probe/base_loss")
        _, grad_norm = store.series("probe/grad_norm")
    assert steps.tolist() == [0, 2, 4] == sorted(logged)
    assert train_loss.tolist() == pytest.approx([along_gradient(*seen)[0] for seen in module.seen], rel=1e-6)
    for i, step in enumerate(steps.tolist()):
        base, norm, along = along_gradient(*module.seen[step], sizes)
        assert (base_loss[i], grad_norm[i]) == pytest.approx((base, norm), rel=1e-5)
        assert losses[i].tolist() == pytest.approx(along, rel=1e-5)
        assert [logged[step][f"landscape/probe_loss_{eta:g}"] for eta in sizes] == pytest.approx(along, rel=1e-5)


def test_logger_names():
    metrics = {"probe/loss": [1.0, 2.0], "probe/beta": 3.0, "hessian/eigs": [5.0, 4.0], "ics/l2/#1": 0.5}
    assert logger_metrics(metrics, (0.05, 0.1)) == {
        "landscape/probe_loss_0.05": 1.0,
        "landscape/probe_loss_0.1": 2.0,
        "landscape/beta": 3.0,
        "landscape/hessian/eigs_0": 5.0,
        "landscape/hessian/eigs_1": 4.0,
        "landscape/ics/l2/#1": 0.5,
    }


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (dict(accumulate_grad_batches=2), "accumulate_grad_batches=2 is not supported"),
        (dict(manual=True), "manual optimization is not supported"),
    ],
)
def test_what_it_cannot_measure_is_refused(tmp_path, setting, message):
    module = Tiny(manual=setting.pop("manual", False))
    with pytest.raises(ValueError, match=message):
        fit([LandscapeCallback(tmp_path / "run", probe_every=1)], steps=2, module=module, **setting)


def test_an_existing_run_directory_is_not_overwritten(tmp_path):
    fit([LandscapeCallback(tmp_path / "run", probe_every=4)], steps=2)
    with pytest.raises(Exception, match="already exists"):
        fit([LandscapeCallback(tmp_path / "run", probe_every=4)], steps=2)


def test_a_resumed_trainer_continues_its_run_store(tmp_path):
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1)
    fit([LandscapeCallback(tmp_path / "run", probe_every=2), checkpoints], steps=4, enable_checkpointing=True)
    with RunStore(tmp_path / "run") as store:  # as if killed after step 4's checkpoint
        store.log(4, {"train/loss": 99.0})
    resumed = fit(
        [LandscapeCallback(tmp_path / "run", probe_every=2)],
        steps=6,
        ckpt_path=str(next((tmp_path / "ckpt").iterdir())),
    )
    with RunStore(tmp_path / "run", readonly=True) as store:
        steps, losses = store.series("train/loss")
        assert steps.tolist() == list(range(6)) and 99.0 not in losses.tolist()
        assert losses[4:].tolist() == [x.item() for x in resumed.losses]
        assert store.series("probe/loss")[0].tolist() == [0, 2, 4] and store.status == "finished"


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch, lightning.pytorch as pl
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from landscape.integrations.lightning import LandscapeCallback

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
            self.loss_fn = nn.functional.cross_entropy
        def forward(self, x):
            return self.net(x)
        def training_step(self, batch, batch_idx):
            return self.loss_fn(self(batch[0]), batch[1])
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    torch.set_num_threads(1)
    out = sys.argv[1]
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    model = Net()
    rank = int(os.environ.get("LOCAL_RANK", "0"))  # set by Lightning for the processes it launches
    if rank == 0:
        torch.save({"state": model.state_dict(), "x": x, "y": y}, out + "/start.pt")
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                         use_distributed_sampler=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[LandscapeCallback(out + "/run", probe_every=100)])
    # Rank r's batches are samples r, r+2, ...: step 0's global batch is samples 0-15.
    trainer.fit(model, DataLoader(TensorDataset(x[rank::2], y[rank::2]), batch_size=8, shuffle=False))
""")


@pytest.mark.slow
def test_under_ddp_the_probe_measures_the_global_batch(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]

    start = torch.load(tmp_path / "start.pt")
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    net.load_state_dict({k.removeprefix("net."): v for k, v in start["state"].items()})
    x, y = start["x"], start["y"]

    def probe(rows: slice):
        return probe_gradient(net, nn.functional.cross_entropy, x[rows], y[rows], (0.25, 0.5, 1.0, 2.0))

    with RunStore(tmp_path / "run", readonly=True) as store:
        assert store.config["distributed"] == {"world_size": 2}
        steps, measured = store.series("probe/loss")
        (_, train_loss), (_, grad_norm) = store.series("train/loss"), store.series("probe/grad_norm")
    whole, shard = probe(slice(0, 16)), probe(slice(0, 16, 2))
    assert steps.tolist() == [0]
    torch.testing.assert_close(torch.tensor(measured[0]), torch.tensor(whole.losses, dtype=torch.float64))
    assert measured[0].tolist() != pytest.approx(list(shard.losses), rel=1e-4)  # not rank 0's shard alone
    assert grad_norm[0] == pytest.approx(whole.grad_norm, rel=1e-5)
    assert train_loss[0] == pytest.approx(whole.base_loss, rel=1e-6)


def test_the_core_never_imports_the_integrations():
    code = (
        "import sys, landscape, landscape.report, landscape.integrations.tensorboard, landscape_cli.main; "
        "print(any(m.split('.')[0] in ('lightning', 'pytorch_lightning', 'tensorboard') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_lightning_the_error_says_what_to_install():
    code = "import sys; sys.modules['lightning'] = None; import landscape.integrations.lightning"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert "pip install 'torch-landscape[lightning]'" in out.stderr.strip().splitlines()[-1]
