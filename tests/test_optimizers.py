"""Adam, AdamW and momentum beside plain SGD (issue #23): the options, what a run
records, and probes along the optimizer's update, checked against the real step."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, invoke, replace_train
from torch import nn

from landscape.config import ConfigError, ProbeConfig, ScheduleConfig, TrainConfig
from landscape.measure.directions import update_direction
from landscape.measure.probes import probe_gradient
from landscape.runner.assembly import build_optimizer
from landscape.runner.train import train
from landscape.runs import RunStore

TINY = ["--model", "vgg_tiny", "--dataset", "synthetic", "--subset", "64", "--batch-size", "16"]
TINY += ["--eval-samples", "32", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("norm", ["group", "layer", "rms"])
def test_adamw_trains_with_todays_norms(tmp_path, norm):
    run = tmp_path / norm
    result = invoke("train", *TINY, "--optimizer", "adamw", "--lr", "1e-3", "--norm", norm, "--steps", "4",
                    "--run-dir", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    train_config = json.loads((run / "config.json").read_text())["train"]
    assert train_config["optimizer"] == "adamw" and train_config["betas"] == [0.9, 0.999]
    assert train_config["eps"] == 1e-8 and train_config["lr"] == 1e-3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--optimizer", "nope"], "unknown optimizer 'nope'"),
        (["--optimizer", "adam", "--betas", "0.9"], "--betas takes two numbers"),
        (["--optimizer", "adam", "--betas", "0.9,x"], "--betas takes two numbers"),
        (["--optimizer", "adam", "--betas", "0.9,1.0"], "--betas must lie in [0, 1)"),
        (["--optimizer", "adam", "--eps", "0"], "--eps must be a positive"),
        (["--optimizer", "adam", "--momentum", "0.9"], "adam takes --betas"),
        (["--betas", "0.9,0.99"], "add --optimizer adam or adamw"),
        (["--nesterov"], "--nesterov needs --momentum > 0"),
        (["--momentum", "1.5"], "--momentum must be below 1"),
    ],
)
def test_bad_optimizer_options_are_one_line(tmp_path, args, fragment):
    assert_one_line_error(invoke("train", *TINY, "--steps", "1", *args, "--run-dir", tmp_path / "r"), fragment)
    assert not (tmp_path / "r").exists()


def test_adam_weight_decay_is_coupled_and_adamw_decoupled(tiny):
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False).double()
    w0 = model.weight.detach().clone()
    x = torch.randn(8, 3, dtype=torch.float64)
    after = {}
    for kind in ("adam", "adamw"):
        model.weight.data.copy_(w0)
        config = replace_train(tiny, optimizer=kind, lr=0.1, weight_decay=0.5)
        optimizer = build_optimizer(model, config)
        assert type(optimizer).__name__.lower() == kind
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        g = model.weight.grad.clone()
        optimizer.step()
        after[kind] = (model.weight.detach().clone(), g)
    # First Adam step from zero moments: w - lr * G / (|G| + eps) elementwise, with G the gradient
    # (Adam: g + wd w, coupled) or g, after w <- w (1 - lr wd) (AdamW, decoupled).
    w, g = after["adam"]
    coupled = g + 0.5 * w0
    assert torch.allclose(w, w0 - 0.1 * coupled / (coupled.abs() + 1e-8), rtol=0, atol=1e-12)
    w, g = after["adamw"]
    assert torch.allclose(w, w0 * (1 - 0.1 * 0.5) - 0.1 * g / (g.abs() + 1e-8), rtol=0, atol=1e-12)


def test_config_round_trips_the_optimizer():
    t = TrainConfig(optimizer="adam", betas=[0.8, 0.95], eps=1e-6)
    assert t.betas == (0.8, 0.95)
    with pytest.raises(ConfigError, match="SGD's"):
        TrainConfig(optimizer="adamw", nesterov=True)
    assert TrainConfig().optimizer == "sgd" and TrainConfig().momentum == 0  # the paper's plain SGD


def test_the_lr_of_every_step_is_recorded(tmp_path, tiny):
    result = train(replace_train(tiny, steps=7, optimizer="adam", lr=1e-3), run_dir=tmp_path / "r")
    with RunStore(result.run_dir, readonly=True) as store:
        steps, lrs = store.series("train/lr")
    assert steps.tolist() == [0] and lrs.tolist() == [1e-3]  # constant: written once, where it starts


# -- probes along the update ---------------------------------------------------------------


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)


def _warm(model, optimizer, steps: int = 3) -> None:
    """A few real steps, so that the optimizer has state (moments, momentum buffers)."""
    for i in range(steps):
        x, y = _batch(10 + i)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_w_minus_lr_u_is_the_step_taken(kind):
    model = _net()
    optimizer = OPTIMIZERS[kind](model.parameters())
    _warm(model, optimizer)
    x, y = _batch()
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    named = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    state = {k: {n: v.clone() if torch.is_tensor(v) else v for n, v in s.items()} for k, s in optimizer.state.items()}
    u = update_direction(named, optimizer, {n: p.grad for n, p in named.items()}, list(named))
    for (_, p), b in zip(named.items(), before.values()):
        assert torch.equal(p.detach(), b)  # the dry run left the weights alone ...
    for k, s in optimizer.state.items():  # ... and the optimizer's state
        assert all(torch.equal(v, state[k][n]) if torch.is_tensor(v) else v == state[k][n] for n, v in s.items())
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    for (name, p), ui in zip(named.items(), u):
        predicted = before[name] - lr * ui
        assert torch.linalg.vector_norm(predicted - p.detach()) <= 1e-12 * torch.linalg.vector_norm(p.detach())


def test_the_probe_at_eta_lr_lands_on_the_step_taken():
    model = _net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    _warm(model, optimizer)
    x, y = _batch()
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    result = probe_gradient(
        model, nn.functional.cross_entropy, x, y, [1e-2, 2e-2], grad=grads, base_loss=loss.item(),
        direction="update", optimizer=optimizer, curvature=False,
    )  # fmt: skip
    optimizer.step()
    with torch.no_grad():
        after = nn.functional.cross_entropy(model(x), y).item()  # train mode: the same batch statistics
    assert result.losses[0] == pytest.approx(after, rel=1e-12)
    assert result.direction == "update"


def test_update_needs_the_optimizer():
    model = _net()
    x, y = _batch()
    with pytest.raises(ValueError, match="needs the optimizer"):
        probe_gradient(model, nn.functional.cross_entropy, x, y, [0.1], direction="update")


def _probe_rows(run_dir):
    with RunStore(run_dir, readonly=True) as store:
        return {name: store.series(name) for name in store.names() if name.startswith("probe/")}


def test_dln_probe_along_the_update_is_the_gradient_probe_for_plain_sgd(tmp_path):
    """`landscape probe --model dln`: float64, plain SGD, so u = g up to rounding."""
    args = ["probe", "--model", "dln", "--norm", "bn", "--steps", "21", "--probe-every", "10", "--no-progress"]
    args += ["--dense-until", "0", "--device", "cpu"]
    runs = {}
    for direction in ("gradient", "update"):
        result = invoke(*args, "--direction", direction, "--run-dir", tmp_path / direction)
        assert result.exit_code == 0, result.output
        runs[direction] = _probe_rows(tmp_path / direction / "bn")
    assert set(runs["gradient"]) == set(runs["update"]) and "probe/beta" in runs["update"]
    for name, (steps, values) in runs["gradient"].items():
        other_steps, other = runs["update"][name]
        assert np.array_equal(steps, other_steps) and len(steps) == 3
        np.testing.assert_allclose(other, values, rtol=1e-10, atol=0, err_msg=name)


def test_an_update_probe_leaves_the_run_bit_identical(tmp_path, tiny):
    config = replace_train(tiny, optimizer="adamw", lr=1e-3, weight_decay=0.1, steps=6)
    plain = train(config, run_dir=tmp_path / "plain")
    probe = ProbeConfig(step_sizes=(0.5, 1.0), schedule=ScheduleConfig(every=2), direction="update")
    probed = train(dataclasses.replace(config, probe=probe), run_dir=tmp_path / "probed")

    def rows(path, keep):
        with RunStore(path, readonly=True) as store:
            return [r for r in store.rows() if keep(r[1])]

    assert rows(probed.run_dir, lambda n: not n.startswith("probe/")) == rows(plain.run_dir, lambda n: True)
    assert {r[0] for r in rows(probed.run_dir, lambda n: n == "probe/beta")} == {0, 2, 4}
    # In AdamW's geometry from its first state on (there is no P before the first step).
    assert {r[0] for r in rows(probed.run_dir, lambda n: n == "probe/beta_precond")} == {2, 4}


def test_beta_in_adams_geometry_against_a_direct_calculation():
    """beta^P = max_eta ||P^{-1/2} (G(w - eta u) - g)|| / ||P^{1/2} eta u||, with G evaluated
    on a deep copy at each point and P = (1 - b1^t)(sqrt(v / (1 - b2^t)) + eps) by hand."""
    import copy

    from landscape.measure.preconditioner import adam_preconditioner

    model = _net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    _warm(model, optimizer, steps=4)
    x, y = _batch()
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    names = [n for n, _ in model.named_parameters()]
    g = [p.grad.clone() for p in model.parameters()]
    diag = adam_preconditioner(model, optimizer)
    by_hand = []
    for p in model.parameters():
        s = optimizer.state[p]
        t = float(s["step"])
        by_hand.append((1 - 0.8**t) * ((s["exp_avg_sq"] / (1 - 0.99**t)).sqrt() + 1e-8))
    assert all(torch.allclose(diag[n], h, rtol=1e-12, atol=0) for n, h in zip(names, by_hand))
    u = update_direction(dict(model.named_parameters()), optimizer, dict(zip(names, g)), names)
    etas = [5e-3, 1e-2, 3e-2]
    ratios = []
    for eta in etas:
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for p, ui in zip(moved.parameters(), u):
                p -= eta * ui
        moved.zero_grad()
        nn.functional.cross_entropy(moved(x), y).backward()
        top = sum(((q.grad - gi) ** 2 / d).sum() for q, gi, d in zip(moved.parameters(), g, by_hand)).sqrt()
        bottom = eta * sum((ui**2 * d).sum() for ui, d in zip(u, by_hand)).sqrt()
        ratios.append(float(top / bottom))
    result = probe_gradient(
        model, nn.functional.cross_entropy, x, y, etas, grad=dict(zip(names, g)), direction="update",
        optimizer=optimizer, preconditioner=diag, curvature=False,
    )  # fmt: skip
    assert result.beta_precond == pytest.approx(max(ratios), rel=1e-10)
    assert result.metrics()["probe/beta_precond"] == result.beta_precond
    bad = {**diag, names[0]: -diag[names[0]]}
    with pytest.raises(ValueError, match="positive"):
        probe_gradient(model, nn.functional.cross_entropy, x, y, etas, preconditioner=bad, curvature=False)


def test_adams_preconditioned_sharpness_is_tracked_and_changes_nothing_else(tmp_path):
    base = ["train", *TINY, "--optimizer", "adamw", "--lr", "1e-3", "--steps", "5", "--hessian-every", "2"]
    runs = {}
    for flag in ("--hessian-preconditioned", "--no-hessian-preconditioned"):
        result = invoke(*base, flag, "--run-dir", tmp_path / flag)
        assert result.exit_code == 0, result.output
        with RunStore(tmp_path / flag, readonly=True) as store:
            runs[flag] = list(store.rows())
    on, off = runs["--hessian-preconditioned"], runs["--no-hessian-preconditioned"]
    assert [r for r in on if "precond" not in r[1]] == off  # lambda_max and the run itself: unchanged
    precond = {(r[0], r[1]): r[2] for r in on if "precond" in r[1]}
    assert precond[(0, "hessian/precond_skipped")] == 1.0  # no Adam state before the first step
    assert {s for s, n in precond if n == "hessian/lambda_max_precond"} == {2, 4}
    assert all(np.isfinite(precond[(s, "hessian/lambda_max_precond")]) for s in (2, 4))
    config = json.loads((tmp_path / "--hessian-preconditioned" / "config.json").read_text())
    assert config["hessian"]["preconditioned"] is True


def test_the_preconditioned_sharpness_is_adams_by_default_and_refused_for_sgd(tmp_path):
    result = invoke("train", *TINY, "--optimizer", "adam", "--steps", "1", "--hessian-every", "5", "--run-dir",
                    tmp_path / "adam")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "adam" / "config.json").read_text())["hessian"]["preconditioned"] is True
    bad = invoke("train", *TINY, "--steps", "1", "--hessian-every", "5", "--hessian-preconditioned", "--run-dir",
                 tmp_path / "sgd")  # fmt: skip
    assert_one_line_error(bad, "needs --optimizer adam or adamw")


def test_verdicts_on_other_optimizers_say_they_are_not_the_papers_protocol():
    from landscape.paper.measures import optimizer_text as _optimizer_text
    from landscape.report.verdicts import scale_label

    assert _optimizer_text({}) == "" and _optimizer_text({"optimizer": "sgd", "momentum": 0.0}) == ""
    assert _optimizer_text({"optimizer": "adamw", "weight_decay": 0.1}) == "adamw, weight decay 0.1"
    assert _optimizer_text({"momentum": 0.9, "nesterov": True}) == "sgd, nesterov momentum 0.9"
    label = scale_label({"model": "dln", "steps": 10_000, "paper_steps": 10_000, "optimizer": "adam"})
    assert label == "reduced: dln, 10,000 steps, adam (the paper's: plain SGD)"
    label = scale_label({"model": "gpt", "optimizer": "plain sgd", "protocol_optimizer": "adamw, weight decay 0.1"})
    assert label == "reduced: gpt, plain sgd (the protocol's: adamw, weight decay 0.1)"
