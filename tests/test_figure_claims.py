"""The figure-level claims of ``landscape reproduce`` (landscape.report.claims.checked_claims)
on stores built for them: where the claim holds the verdict supports, the reverse
contradicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landscape.config import ModelConfig, ProbeConfig, RunConfig, ScheduleConfig, TrainConfig
from landscape.report import claims, data
from landscape.runs import RunStore


def store(path: Path, norm: str, rows: list[tuple[int, dict]], *, model: str = "vgg16", steps: int = 400,
          status: str = "finished", probe: bool = False) -> Path:
    config = RunConfig(model=ModelConfig(name=model, norm=norm), train=TrainConfig(lr=0.1, steps=steps),
                       probe=ProbeConfig(schedule=ScheduleConfig(every=10)) if probe else None, name=norm).to_dict()
    config["total_steps"] = steps
    s = RunStore.create(path, config)
    s.log_many(rows)
    s.set_status(status)
    s.close()
    return path


def accuracy_rows(rise_at: int | None, steps: int = 400, top: float = 0.9, test: float = 0.6) -> list:
    """train/acc at 0.1 until ``rise_at`` (never: None), ``top`` after; a final test accuracy."""
    rows = [(s, {"train/loss": 1.0, "train/acc": top if rise_at is not None and s >= rise_at else 0.1})
            for s in range(0, steps, 10)]
    return rows + [(steps, {"test/acc": test})]


def check(name: str, path: Path, figure: str = "Fig. X", paper_steps: int | None = 400) -> list[claims.Claim]:
    return claims.checked_claims([name], data.load_runs([path]), figure, paper_steps)


def test_speed_supports_when_bn_reaches_the_target_first_and_contradicts_the_reverse(tmp_path):
    store(tmp_path / "a" / "none", "none", accuracy_rows(300))
    store(tmp_path / "a" / "bn", "bn", accuracy_rows(100))
    (found,) = check("speed", tmp_path / "a")
    assert found.verdict == "supports" and found.values["steps ratio none/bn"] == pytest.approx(3.0, rel=0.2)
    store(tmp_path / "b" / "none", "none", accuracy_rows(100))
    store(tmp_path / "b" / "bn", "bn", accuracy_rows(300))
    assert check("speed", tmp_path / "b")[0].verdict == "contradicts"
    store(tmp_path / "c" / "none", "none", accuracy_rows(None))  # never reaches it: BN is infinitely faster
    store(tmp_path / "c" / "bn", "bn", accuracy_rows(100))
    assert check("speed", tmp_path / "c")[0].verdict == "supports"


def test_high_lr_supports_when_only_the_standard_network_fails(tmp_path):
    store(tmp_path / "a" / "none", "none", accuracy_rows(None)[:5], status="diverged")
    store(tmp_path / "a" / "bn", "bn", accuracy_rows(100))
    assert check("high-lr", tmp_path / "a")[0].verdict == "supports"
    store(tmp_path / "b" / "none", "none", accuracy_rows(100))
    store(tmp_path / "b" / "bn", "bn", accuracy_rows(100))
    assert check("high-lr", tmp_path / "b")[0].verdict == "contradicts"
    store(tmp_path / "c" / "none", "none", accuracy_rows(None))
    store(tmp_path / "c" / "bn", "bn", accuracy_rows(None))
    found = check("high-lr", tmp_path / "c")[0]
    assert found.verdict == "inconclusive"


def test_lp_accuracy_and_noisy_like_bn_compare_with_bn_within_the_margin(tmp_path):
    store(tmp_path / "a" / "bn", "bn", accuracy_rows(100, test=0.70))
    store(tmp_path / "a" / "l1", "l1", accuracy_rows(100, test=0.695))
    store(tmp_path / "a" / "l2", "l2", accuracy_rows(100, test=0.60))
    v = {c.claim: c.verdict for c in check("lp-accuracy", tmp_path / "a")}
    assert v == {"l1 trains as well as BN": "supports", "l2 trains as well as BN": "contradicts"}
    store(tmp_path / "a" / "noisy_bn", "noisy_bn", accuracy_rows(100, test=0.5))
    assert check("noisy-like-bn", tmp_path / "a")[0].verdict == "contradicts"


def dist_rows(scale: float, sigma_by_layer: dict[int, float] | None = None, steps: int = 400) -> list:
    """Layer-input moments: drift and step-to-step change grow with ``scale``."""
    rows = []
    sigma_by_layer = sigma_by_layer or {2: 1.0}
    for i, s in enumerate(range(0, steps, 20)):
        metrics = {"train/loss": 1.0}
        for layer, sigma in sigma_by_layer.items():
            metrics[f"dist/var/#{layer}"] = [sigma**2] * 3
            metrics[f"dist/mean_drift/#{layer}"] = [scale * i] * 3
            metrics[f"dist/var_drift/#{layer}"] = [-scale * i] * 3
            if i:
                metrics[f"dist/mean_change/#{layer}"] = [scale] * 3
                metrics[f"dist/var_change/#{layer}"] = [scale] * 3
        rows.append((s, metrics))
    return rows


def test_drift_and_change_of_the_moments(tmp_path):
    store(tmp_path / "a" / "none", "none", dist_rows(1.0))
    store(tmp_path / "a" / "noisy_bn", "noisy_bn", dist_rows(5.0))
    store(tmp_path / "a" / "bn", "bn", dist_rows(1.0))
    store(tmp_path / "a" / "l2", "l2", dist_rows(0.2))
    (change,) = check("moment-change", tmp_path / "a")
    assert change.verdict == "supports" and change.values["mean_change ratio noisy_bn/none"] == pytest.approx(5.0)
    (drift,) = check("lp-drift", tmp_path / "a")  # l2 drifts less than BN here: the paper's Fig. 6 reversed
    assert drift.verdict == "contradicts" and drift.values["mean_drift ratio l2/bn"] == pytest.approx(0.2)


def test_depth_reads_sigma_of_the_deepest_against_the_shallowest_layer(tmp_path):
    store(tmp_path / "a" / "none", "none", dist_rows(1.0, {2: 0.5, 12: 1.0, 24: 2.0}), model="dln")
    (found,) = check("depth", tmp_path / "a", "Fig. 9")
    assert found.verdict == "supports" and found.values["seed 0: sigma #24 / sigma #2"] == pytest.approx(4.0)
    store(tmp_path / "b" / "none", "none", dist_rows(1.0, {2: 2.0, 24: 0.5}), model="dln")
    assert check("depth", tmp_path / "b", "Fig. 9")[0].verdict == "contradicts"


def probe_rows(slopes: np.ndarray, steps: int = 400) -> list:
    return [(s, {"train/loss": 1.0, "probe/loss": [1.0] * len(slopes), "probe/grad_diff": slopes.tolist(),
                 "probe/beta": 1.0}) for s in range(0, steps, 10)]


def test_step_size_and_lp_smoothness(tmp_path):
    store(tmp_path / "a" / "none", "none", probe_rows(np.array([4.0, 8.0, 16.0, 32.0])), probe=True)
    store(tmp_path / "a" / "bn", "bn", probe_rows(np.array([1.0, 2.0, 4.0, 8.0])), probe=True)
    (found,) = check("step-size", tmp_path / "a")
    assert found.verdict == "supports"
    assert [v for k, v in found.values.items() if k.startswith("ratio none/bn")] == pytest.approx([4.0] * 4)
    # One step size where BN's gradient changes more: no longer every step size.
    store(tmp_path / "b" / "none", "none", probe_rows(np.array([4.0, 8.0, 16.0, 1.0])), probe=True)
    store(tmp_path / "b" / "bn", "bn", probe_rows(np.array([1.0, 2.0, 4.0, 8.0])), probe=True)
    assert check("step-size", tmp_path / "b")[0].verdict == "inconclusive"


def test_unknown_checks_are_refused():
    with pytest.raises(ValueError, match="unknown claim check 'nope'"):
        claims.checked_claims(["nope"], [], "Fig. 1")
