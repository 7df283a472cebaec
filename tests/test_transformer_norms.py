"""The transformer-norms study (issue #24): its runs, its rows and how they are judged,
on records whose numbers are known (the study itself runs outside CI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landscape.paper import catalogue, measures
from landscape.paper.claims import judge
from landscape.paper.reproduce import experiment_configs, figure, paper_protocol
from landscape.report.data import RunRecord

STEPS = np.arange(0, 2000, 80)


def gpt_run(name: str, train: dict, series: dict) -> RunRecord:
    config = {"name": name, "model": {"name": "gpt", "norm": "layer"}, "data": {"name": "shakespeare"},
              "train": {"steps": 2000, "eval_samples": 640, **train}}  # fmt: skip
    return RunRecord(Path(name), name, config, "finished", {}, series)


ADAMW = {"optimizer": "adamw", "lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.1}


def test_the_study_runs_four_variants_along_the_update_with_the_preconditioned_sharpness():
    configs = {c.name: c for c in experiment_configs("gpt-norms", "cpu")}
    assert list(configs) == ["pre-ln", "post-ln", "none", "pre-ln-sgd"]
    assert [c.model.norm_placement for c in configs.values()] == ["pre", "post", "pre", "pre"]
    assert configs["none"].model.norm == "none" and configs["post-ln"].model.norm == "layer"
    for name, c in configs.items():
        adam = name != "pre-ln-sgd"
        assert c.probe.direction == "update" and c.train.steps == 2000 and c.train.batch_size == 32
        assert c.hessian.preconditioned is adam and c.hessian.schedule.every == 80
        assert (c.train.optimizer, c.train.lr) == (("adamw", 1e-3) if adam else ("sgd", 0.1))
    assert paper_protocol("gpt-norms")["optimizer"] == "adamw, weight decay 0.1"
    assert figure("transformer-norms", "gpt").name == "transformer-norms"


def test_the_preconditioned_sharpness_is_read_against_38_over_eta():
    values = np.full(len(STEPS), 0.5 * 38 / 1e-3)  # half the limit at every measurement
    run = gpt_run("pre-ln", ADAMW, {"hessian/lambda_max_precond": (STEPS, values)})
    steps, ratio = measures.precond_over_limit(run)
    np.testing.assert_allclose(ratio, 0.5)
    [row] = [r for r in catalogue.rows("transformer-norms") if r.id == "tn-precond-pre-ln"]
    claim = judge(row, {"pre-ln": {None: run}}, paper_protocol("gpt-norms"))
    assert claim is not None and claim.verdict == "contradicts"  # 0.5 lies outside [1/1.25, 1.25]
    assert claim.estimate == pytest.approx(0.5)
    assert claim.scale["protocol"] is True  # the GPT's own protocol, AdamW and all
    sgd = gpt_run("pre-ln-sgd", {"optimizer": "sgd", "lr": 0.1}, {})
    with pytest.raises(measures.NoVerdict, match="not an Adam"):
        measures.precond_over_limit(sgd)


def test_normalization_rows_compare_none_with_pre_ln_and_skip_other_families():
    rng = np.random.default_rng(0)
    wide = np.stack([np.zeros(len(STEPS)), 3.0 + 0.1 * rng.random(len(STEPS))], axis=1)  # band 3 without a norm
    narrow = np.stack([np.zeros(len(STEPS)), 1.0 + 0.1 * rng.random(len(STEPS))], axis=1)
    none = gpt_run("none", ADAMW, {"probe/loss": (STEPS, wide)})
    pre = gpt_run("pre-ln", ADAMW, {"probe/loss": (STEPS, narrow)})
    [row] = [r for r in catalogue.rows("transformer-norms") if r.id == "tn-band"]
    claim = judge(row, {"none": {None: none}, "pre-ln": {None: pre}}, paper_protocol("gpt-norms"))
    assert claim.verdict == "supports" and 2.5 < claim.estimate < 3.5
    vgg = RunRecord(Path("v"), "none", {"model": {"name": "vgg16"}}, "finished", {}, {})
    assert judge(row, {"none": {None: vgg}, "pre-ln": {None: vgg}}) is None  # a GPT row, a VGG run
