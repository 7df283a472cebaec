"""The paper's claims as verdicts (landscape.report.claims) on stores built for them:
a store where a claim holds supports it, the reverse contradicts it, disagreeing
seeds and short or unfinished runs are inconclusive (--seeds runs resume: see
test_experiments)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from landscape.config import ModelConfig, ProbeConfig, RunConfig, ScheduleConfig, TrainConfig
from landscape.report import claims, data
from landscape.runs import RunStore


SIZES = np.array([0.05, 0.1, 0.2, 0.4])


def probe_run(path: Path, name: str, norm: str, roughness: float, *, steps: int = 400, acc: float = 0.5,
              status: str = "finished", seed: int = 0) -> Path:
    """A probe run whose loss band, gradient change and beta scale with ``roughness``."""
    rng = np.random.default_rng(seed)
    config = RunConfig(model=ModelConfig(name="vgg16", norm=norm), train=TrainConfig(lr=0.1, steps=steps),
                       probe=ProbeConfig(schedule=ScheduleConfig(every=10)), name=name).to_dict()
    config["total_steps"] = steps
    store = RunStore.create(path, config)
    records = []
    for step in range(0, steps, 10):
        jitter = rng.uniform(0.8, 1.2)
        gdiff = roughness * jitter * SIZES
        records.append((step, {"probe/loss": (2.0 + roughness * jitter * SIZES).tolist(),
                               "probe/grad_diff": gdiff.tolist(), "probe/beta": float(roughness * jitter),
                               "train/loss": 2.0}))
    records.append((steps, {"test/acc": acc}))
    store.log_many(records)
    store.set_status(status)
    store.close()
    return path


def verdicts(found):
    return {c.claim: c.verdict for c in found}


SMOOTH = ("BN narrows the loss along the gradient (a smoother loss landscape)",
          "with BN the gradient changes less along its own direction",
          "BN lowers the effective beta-smoothness")


def test_a_store_where_bn_is_smoother_supports_and_the_reverse_contradicts(tmp_path):
    probe_run(tmp_path / "a" / "none", "none", "none", 8.0, acc=0.5)
    probe_run(tmp_path / "a" / "bn", "bn", "bn", 2.0, acc=0.7)
    found = claims.experiment_claims(data.load_runs([tmp_path / "a"]), "probe", paper_steps=400)
    v = verdicts(found)
    assert all(v[c] == "supports" for c in SMOOTH) and v["BN raises the test accuracy"] == "supports"
    ratio = next(c for c in found if c.claim == SMOOTH[2]).values["median ratio none/bn"]
    assert ratio == pytest.approx(4.0, rel=0.1)
    # beta median 2 against 2/eta = 20: well below the stability limit.
    assert v["with BN, beta_eff stays below the stability limit 2/eta of the training step size"] == "supports"
    probe_run(tmp_path / "b" / "none", "none", "none", 2.0, acc=0.7)
    probe_run(tmp_path / "b" / "bn", "bn", "bn", 8.0, acc=0.5)
    v = verdicts(claims.experiment_claims(data.load_runs([tmp_path / "b"]), "probe", paper_steps=400))
    assert all(v[c] == "contradicts" for c in SMOOTH) and v["BN raises the test accuracy"] == "contradicts"
    # Within the thresholds: inconclusive.
    probe_run(tmp_path / "c" / "none", "none", "none", 2.2)
    probe_run(tmp_path / "c" / "bn", "bn", "bn", 2.0)
    v = verdicts(claims.experiment_claims(data.load_runs([tmp_path / "c"]), "probe", paper_steps=400))
    assert all(v[c] == "inconclusive" for c in SMOOTH)


def test_disagreeing_seeds_are_inconclusive_and_agreeing_ones_are_not(tmp_path):
    for seed, (none, bn) in enumerate([(8.0, 2.0), (2.0, 8.0)]):
        probe_run(tmp_path / "x" / "none" / f"seed{seed}", f"none/seed{seed}", "none", none, seed=seed)
        probe_run(tmp_path / "x" / "bn" / f"seed{seed}", f"bn/seed{seed}", "bn", bn, seed=seed)
    (tmp_path / "x" / "experiment.json").write_text(json.dumps(
        {"runs": ["none/seed0", "bn/seed0", "none/seed1", "bn/seed1"]}))
    found = claims.experiment_claims(data.load_runs([tmp_path / "x"]), "probe", paper_steps=400)
    band = next(c for c in found if c.claim == SMOOTH[0])
    assert band.verdict == "inconclusive" and band.reason.startswith("seeds disagree")
    assert band.per_seed == {"0": "supports", "1": "contradicts"}
    for seed in (0, 1):
        probe_run(tmp_path / "y" / "none" / f"seed{seed}", f"none/seed{seed}", "none", 8.0, seed=seed)
        probe_run(tmp_path / "y" / "bn" / f"seed{seed}", f"bn/seed{seed}", "bn", 2.0, seed=seed)
    (tmp_path / "y" / "experiment.json").write_text(json.dumps(
        {"runs": ["none/seed0", "bn/seed0", "none/seed1", "bn/seed1"]}))
    found = claims.experiment_claims(data.load_runs([tmp_path / "y"]), "probe", paper_steps=400)
    assert next(c for c in found if c.claim == SMOOTH[0]).verdict == "supports"


def test_short_or_unfinished_runs_are_inconclusive_with_the_reason(tmp_path):
    probe_run(tmp_path / "s" / "none", "none", "none", 8.0)
    probe_run(tmp_path / "s" / "bn", "bn", "bn", 2.0)
    found = claims.experiment_claims(data.load_runs([tmp_path / "s"]), "probe", paper_steps=15_000)
    assert all(c.verdict == "inconclusive" and "2.7% of the paper's 15000" in c.reason for c in found)
    assert next(c for c in found if c.claim == SMOOTH[0]).values["median ratio none/bn"] > 3  # numbers still given
    probe_run(tmp_path / "u" / "none", "none", "none", 8.0, status="interrupted")
    probe_run(tmp_path / "u" / "bn", "bn", "bn", 2.0)
    found = claims.experiment_claims(data.load_runs([tmp_path / "u"]), "probe", paper_steps=400)
    assert all(c.verdict == "inconclusive" and c.reason == "runs not complete: none" for c in found)
