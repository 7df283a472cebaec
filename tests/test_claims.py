"""Every row of the claims catalogue (landscape.paper.catalogue) judged on stores written
through RunStore with the keys the training loop writes: a statistic beyond the
threshold in the claimed direction supports, the reverse contradicts, one on the
threshold is inconclusive with an interval that straddles it, a zero denominator is
inconclusive with the reason, and seeds whose ratios differ by orders of magnitude
give their geometric mean with a wide interval (not the arithmetic mean)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from landscape.config import ModelConfig, ProbeConfig, RunConfig, ScheduleConfig, TrainConfig
from landscape.paper import catalogue, claims
from landscape.paper.catalogue import Row
from landscape.report import data
from landscape.runs import RunStore

STEPS = 400  # train/acc, train/loss every step; probes, ICS and moments every 10 steps (40 points)
EVERY = 10
VGG_SIZES = (0.5, 1.0, 2.0, 4.0)
DLN_SIZES = (0.01, 0.1, 1.0, 10.0, 30.0)
SCHEMA = {
    "schema_version",
    "figure",
    "panel",
    "claim",
    "quote",
    "quote_source",
    "statistic",
    "values",
    "interval",
    "interval_reason",
    "interval_method",
    "threshold",
    "verdict",
    "reason",
    "scale",
    "seeds",
    "per_seed",
    "beyond_paper",
}
SCALE = {"model", "width_mult", "steps", "paper_steps", "train_images", "test_images"}


def _noise(n: int, size: float, seed: int) -> np.ndarray:
    """Antithetic noise in adjacent pairs (x, -x): the median and the mean of the whole
    series and of any even stretch from an even step are exactly 0, so a statistic lands
    on its target."""
    half = np.random.default_rng(seed).normal(0, size, (n + 1) // 2)
    return np.stack([half, -half], axis=1).ravel()[:n]


# The transformer-norms study's variants (landscape.paper.figures.GPT_VARIANTS) and their norms.
GPT_NORMS = {"pre-ln": "layer", "post-ln": "layer", "none": "none", "pre-ln-sgd": "layer"}


def _model(row: Row) -> ModelConfig:
    if row.family == "gpt":
        return ModelConfig(name="gpt", norm="layer")
    return ModelConfig(
        name="dln" if row.family == "dln" else "vgg11", width_mult=1.0 if row.family == "dln" else 0.125, norm="bn"
    )


def _series_for(row: Row, target: float, noise: float, seed: int, zero: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-step values of runs a and b (at the measure's own steps) whose statistic is ``target``."""
    measure = row.measure
    dense = measure.startswith("train-")
    n = STEPS if dense else STEPS // EVERY
    if not row.log_scale:  # accuracies and cosines: thresholds of 0.02-0.1, not a factor 1.25
        noise = noise / 10
    e = _noise(n, noise, seed)
    if row.log_scale:
        # a against a constant, or two layers of one run
        one_run = measure in ("beta-limit", "precond-limit", "sigma-depth")
        b = np.ones(n) if one_run else np.full(n, 2.0) * np.exp(_noise(n, noise, seed + 7))
        a = b * np.exp(target + e)
        if zero:
            (a if one_run else b)[::3] = 0.0  # one run: a zero beta_eff or sigma
        return a, b
    if measure == "ics-cos-gap":
        b = np.clip(0.3 + _noise(n, 0.05, seed + 7), -1, 1)
        return np.clip(b + target + e, -1, 1), b
    if measure == "ics-uncorrelated":  # target = max(median |cos_bn| - 0.3, 0.9 - median cos_none)
        cos_none = np.clip(0.95 + _noise(n, 0.02, seed + 7), -1, 1)
        cos_bn = 0.3 + target + e
        return cos_bn, cos_none
    a = 0.5 + target / 2 + e  # accuracies: mean of a - b is the target
    b = 0.5 - target / 2 - e
    return (a, np.zeros(n) if zero else b)


def _records(row: Row, values: np.ndarray, role: str, config: dict) -> list[tuple[int, dict]]:
    """The store rows a training run would write for ``values`` of the row's measure."""
    measure, n = row.measure, len(values)
    dense_steps = np.arange(STEPS)
    steps = dense_steps if measure.startswith("train-") else np.arange(0, STEPS, EVERY)
    rows: dict[int, dict] = {int(s): {} for s in range(STEPS + 1)}
    layers = [catalogue.map_layer(i, config["model"]["name"], config["model"]["depth"]) for i in row.layers]
    if measure.startswith("dist-drift"):  # the loop's drift is 0 at the first measurement, by definition
        _, kind, moment = measure.split("-")
        steps = steps + EVERY
        for layer in layers:
            rows[0][f"dist/{moment}_{kind}/#{layer}"] = [0.0, 0.0, 0.0]
    sizes = VGG_SIZES if row.family != "dln" else DLN_SIZES
    for i, s in enumerate(steps[:n]):
        v = float(values[i])
        r = rows[int(s)]
        if measure == "band":
            r["probe/loss"] = [1.0, 1.0 + v / 2, 1.0 + v, 1.0 + v / 4][: len(sizes)] + [1.0] * (len(sizes) - 4)
        elif measure == "predictiveness":
            r["probe/grad_diff"] = [v / 4, v / 2, v, v / 3] + [v / 5] * (len(sizes) - 4)
        elif measure in ("beta", "beta-limit"):
            r["probe/beta"] = v if measure == "beta" else v * 2 / config["train"]["lr"]
        elif measure == "precond-limit":  # AdamW at beta1 0.9: the limit is 38 / lr
            r["hessian/lambda_max_precond"] = v * 38 / config["train"]["lr"]
        elif measure == "grad-change":
            column = sizes.index(row.step_size)
            r["probe/grad_diff"] = [v if j == column else 1.0 for j in range(len(sizes))]
        elif measure in ("ics-l2", "ics-cos-gap", "ics-uncorrelated"):
            key = "l2" if measure == "ics-l2" else "cosine"
            r[f"ics/{key}/#{layers[0]}"] = v
        elif measure.startswith("dist-"):
            _, kind, moment = measure.split("-")
            for layer in layers:
                r[f"dist/{moment}_{kind}/#{layer}"] = [v, v, v]
        elif measure == "sigma-depth":
            if role == "a":
                r[f"dist/var/#{layers[-1]}"] = [v**2] * 3
                r[f"dist/var/#{layers[0]}"] = [1.0] * 3
        elif measure == "train-loss-final":
            r["train/loss"] = v
        elif measure.startswith("train-acc"):
            r["train/acc"] = v
    for s in dense_steps:  # the loop writes these at every step
        rows[int(s)].setdefault("train/loss", 1.0)
    return [(s, m) for s, m in rows.items() if m]


def write_run(
    path: Path,
    name: str,
    norm: str,
    row: Row,
    values,
    role: str,
    *,
    seed: int = 0,
    status: str = "finished",
    test_acc: float | None = None,
    eval_samples: int | None = None,
) -> None:
    lr = row.lr or (1e-6 if row.family == "dln" else 1e-3 if row.measure == "precond-limit" else 0.1)
    sizes = VGG_SIZES if row.family != "dln" else DLN_SIZES
    model = _model(row)
    optimizer = "adamw" if row.measure == "precond-limit" else "sgd"
    norm = GPT_NORMS.get(norm, norm) if row.family == "gpt" else norm
    config = RunConfig(
        model=ModelConfig(name=model.name, norm=norm, width_mult=model.width_mult),
        train=TrainConfig(lr=lr, steps=STEPS, seed=seed, eval_samples=eval_samples, optimizer=optimizer),
        probe=ProbeConfig(step_sizes=sizes, schedule=ScheduleConfig(every=EVERY)),
        name=name,
    ).to_dict()
    if row.family == "dln":
        config["data"]["name"] = "gaussian-linear"
    config["total_steps"] = STEPS
    store = RunStore.create(path, config)
    records = _records(row, values, role, config) if values is not None else [(0, {"train/loss": 1.0})]
    if test_acc is not None:
        records.append((STEPS, {"test/acc": test_acc}))
    store.log_many(records)
    store.set_status(status)
    store.close()


def _names(row: Row) -> tuple[str, str]:
    suffix = f"-lr{row.lr:g}" if row.lr is not None else ""
    return row.a + suffix, row.b + suffix


def write_pair(
    root: Path,
    row: Row,
    target: float,
    *,
    noise: float = 0.1,
    seeds=(None,),
    zero: bool = False,
    targets=None,
    status: str = "finished",
) -> Path:
    """Runs of the row's two variants (one per seed) whose statistic is ``target``."""
    na, nb = _names(row)
    runs = []
    for k, seed in enumerate(seeds):
        t = targets[k] if targets is not None else target
        suffix = "" if seed is None else f"/seed{seed}"
        if row.measure == "test-acc":
            pa, pb = 0.6 + t / 2, 0.6 - t / 2
            write_run(
                root / (na + suffix), na + suffix, row.a, row, None, "a", seed=seed or 0, test_acc=pa, status=status
            )
            write_run(
                root / (nb + suffix), nb + suffix, row.b, row, None, "b", seed=seed or 0, test_acc=0.0 if zero else pb
            )
        else:
            a, b = _series_for(row, t, noise, 11 * (seed or 0) + 3, zero)
            write_run(root / (na + suffix), na + suffix, row.a, row, a, "a", seed=seed or 0, status=status)
            if nb != na:
                write_run(root / (nb + suffix), nb + suffix, row.b, row, b, "b", seed=seed or 0)
        runs += [na + suffix] + ([nb + suffix] if nb != na else [])
    (root / "experiment.json").write_text(json.dumps({"runs": runs}))
    return root


def judged(root: Path, row: Row) -> claims.Claim:
    found = claims.judge(row, claims.by_variant(data.load_runs([root])), {"model": "vgg16", "steps": 15000})
    assert found is not None, f"{row.id} did not apply"
    return found


def _log(row: Row, value: float) -> float:
    return math.log(value) if row.log_scale else value


def _thr(row: Row) -> float:
    return math.log(row.threshold) if row.log_scale else row.threshold


def _direction(row: Row) -> tuple[float, float, float]:
    """Targets (on the statistic's scale) that support, contradict and sit on the threshold."""
    t = _thr(row)
    big = max(3 * t, 0.3)
    return {
        "greater": (big, -big, t),
        "less": (-big, big, -t),
        "not-below": (0.0 if t else big, -big, -t),
        "not-above": (-big if not t else 0.0, big, t),
        "within": (0.0, big, t),
    }[row.test]


# Per-lr rows (Fig. 3) at the paper's first lr of their network.
ROWS = [r.at_lr(0.1 if r.family == "vgg" else 1e-6) if r.per_lr else r for r in catalogue.CATALOGUE]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_every_row_supports_contradicts_and_straddles(tmp_path, row):
    supports, contradicts, on_threshold = _direction(row)
    found = judged(write_pair(tmp_path / "s", row, supports), row)
    assert found.verdict == "supports", (found.estimate, found.interval, found.reason)
    assert SCHEMA <= set(found.to_dict()) and SCALE <= set(found.scale)
    assert found.interval[0] <= found.estimate <= found.interval[1]
    assert found.beyond_paper == row.beyond_paper and found.quote == row.quote
    found = judged(write_pair(tmp_path / "c", row, contradicts), row)
    assert found.verdict == "contradicts", (found.estimate, found.interval, found.reason)
    # On the threshold: the interval straddles it, so no verdict.
    found = judged(write_pair(tmp_path / "t", row, on_threshold, noise=0.05), row)
    lo, hi = (_log(row, v) for v in found.interval)
    edge = on_threshold
    assert lo < edge < hi, (row.id, found.interval, found.estimate)
    assert found.verdict == "inconclusive" and found.reason.startswith("too noisy"), found.reason


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_every_row_survives_a_zero_and_seeds_orders_of_magnitude_apart(tmp_path, row):
    found = judged(write_pair(tmp_path / "z", row, _direction(row)[0], zero=True), row)
    if row.log_scale:
        assert found.verdict == "inconclusive" and found.reason.startswith("zero denominator"), found.reason
        assert found.interval is None and found.interval_reason.startswith("zero denominator")
    else:  # a zero accuracy is a value like any other
        assert found.verdict in claims.VERDICTS and found.interval is not None
    # Three seeds: ratios 0.1, 0.1 and 30 (differences -0.1, -0.1, +0.3 points of accuracy).
    targets = [math.log(0.1), math.log(0.1), math.log(30)] if row.log_scale else [-0.1, -0.1, 0.3]
    found = judged(write_pair(tmp_path / "seeds", row, 0.0, seeds=(0, 1, 2), targets=targets), row)
    assert found.seeds == [0, 1, 2] and set(found.per_seed) == {"0", "1", "2"}
    assert "t-interval over 3 seeds" in found.interval_method
    mean = float(np.mean(targets))
    if row.measure == "ics-uncorrelated":  # the statistic is a max of two margins: not linear in the target
        return
    assert _log(row, found.estimate) == pytest.approx(mean, abs=0.02)  # geometric, not arithmetic (10.07)
    assert found.verdict == "inconclusive" and found.reason.startswith("too noisy")


def test_too_few_measurements_and_unfinished_runs_give_no_verdict(tmp_path):
    row = next(r for r in ROWS if r.id == "fig4a-band")
    write_pair(tmp_path / "u", row, 1.0, status="interrupted")
    found = judged(tmp_path / "u", row)
    assert found.verdict == "inconclusive" and found.reason == "runs not complete: none"
    assert found.estimate == pytest.approx(math.e, rel=1e-6)  # the numbers are still given
    write_run(tmp_path / "f" / "none", "none", "none", row, np.ones(19), "a")
    write_run(tmp_path / "f" / "bn", "bn", "bn", row, np.ones(19), "b")
    found = judged(tmp_path / "f", row)
    assert found.verdict == "inconclusive" and found.reason.startswith("too few measurements: 19")


def test_noisy_bn_is_judged_by_training_accuracy_with_the_noise_on(tmp_path):
    """Noisy BN trains well (train/acc, logged in train mode) but its eval-mode test
    accuracy, with the noise switched off, is poor: Fig. 2 reads the former."""
    row = next(r for r in ROWS if r.id == "fig2-noisy-beats-none")
    assert row.measure == "train-acc-final"
    n = STEPS
    write_run(tmp_path / "noisy_bn", "noisy_bn", "noisy_bn", row, np.full(n, 0.54), "a", test_acc=0.35)
    write_run(tmp_path / "none", "none", "none", row, np.full(n, 0.35), "b", test_acc=0.34)
    found = judged(tmp_path, row)
    assert found.verdict == "supports" and found.estimate == pytest.approx(0.19)
    assert found.values["noisy_bn: mean"] == pytest.approx(0.54)


def test_fig6_compares_the_lp_shift_with_the_unnormalized_network(tmp_path):
    rows = [r for r in ROWS if r.figure == "Fig. 6"]
    assert rows and all(r.b == "none" for r in rows)
    row = rows[0]
    # l1 shifts 2x more than the standard network and 2x less than BN: supports the paper.
    values = {"l1": 2.0, "none": 1.0, "bn": 4.0}
    for name, v in values.items():
        write_run(tmp_path / name, name, name, row, np.full(STEPS // EVERY, v) * np.exp(_noise(40, 0.05, 1)), "a")
    assert judged(tmp_path, row).verdict == "supports"


def test_ics_reads_the_papers_layers_mapped_onto_a_smaller_vgg(tmp_path):
    rows = [r for r in ROWS if r.measure == "ics-l2" and r.family == "vgg"]
    assert {r.layers for r in rows} == {(5,), (10,)} and all(r.lr == 0.1 for r in rows)
    assert catalogue.map_layer(5, "vgg11") == 3 and catalogue.map_layer(10, "vgg11") == 6
    assert catalogue.map_layer(10, "vgg16") == 10 and catalogue.map_layer(17, "dln", 25) == 17
    row = rows[0]
    write_pair(tmp_path, row, 0.0)
    found = judged(tmp_path, row)
    assert found.values["points"] == STEPS // EVERY  # it found ics/l2/#3
    assert found.layers == {"paper": [5], "run": [3]}  # the mapping, recorded in claims.json
    assert (tmp_path / f"none-lr{row.lr:g}").is_dir()


def test_the_vgg_conv_counts_match_the_registry():
    from landscape.models.vgg import LAYOUTS

    for name, layout in LAYOUTS.items():
        assert catalogue.VGG_CONVS[name] == sum(1 for x in layout if x != "M" and isinstance(x, int))


def test_the_catalogue_is_the_papers_figures_without_fig7():
    figures = {r.figure for r in ROWS}
    assert "Fig. 7" not in figures
    assert {f"Fig. {i}" for i in (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13)} <= figures
    assert all(r.per_lr for r in catalogue.CATALOGUE if r.figure == "Fig. 3")
    beyond = {r.id for r in ROWS if r.beyond_paper}
    study = {r.id for r in ROWS if r.figure == "transformer-norms"}  # issue #24's study: all beyond the paper
    assert len(study) == 8 and study <= beyond
    assert beyond - study == {"fig4-beyond-limit", "fig10-beyond-limit", "fig9-beyond-depth", "seed-review-test"}
    assert all(r.quote for r in ROWS if not r.beyond_paper)
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_the_table_prints_intervals_and_keeps_beyond_the_paper_apart(tmp_path):
    row = next(r for r in ROWS if r.id == "fig4a-band")
    write_pair(tmp_path, row, 1.0)
    (limit,) = [r for r in ROWS if r.id == "fig4-beyond-limit"]
    found = [judged(tmp_path, row), judged(tmp_path, limit)]
    text = claims.table(found)
    paper, beyond = text.split("beyond the paper")
    assert "Fig. 4(a)" in paper and "[" in paper and "x/" in paper and "stability limit" in beyond
    assert "scale: reduced: vgg11 x1/8, 400 of 15,000 steps" in text


def test_verdicts_read_from_the_interval():
    t = math.log(1.25)
    assert claims.verdict("greater", 0.3, 0.5, t) == ("supports", "")
    assert claims.verdict("greater", -0.1, 0.1, t)[1].startswith("effect within threshold")
    assert claims.verdict("greater", 0.1, 0.4, t)[1].startswith("too noisy")
    assert claims.verdict("not-below", -0.2, 0.1, t)[0] == "supports"  # not smaller: -0.2 > -log 1.25
    assert claims.verdict("within", -0.2, 0.3, t)[0] == "inconclusive"
    assert claims.verdict("within", 0.3, 0.5, t)[0] == "contradicts"
    assert claims.verdict("less", float("nan"), 0.1, t) == ("inconclusive", "no finite interval")


def test_a_probe_with_a_vanishing_step_size_exits_0_with_reasons(tmp_path):
    """`landscape probe --model tiny --dataset synthetic --steps 1 --lr 1e-12` ended in a
    ZeroDivisionError in the claims: the loss band is 0. Now it exits 0, every claim
    inconclusive with its reason."""
    from conftest import invoke

    result = invoke(
        "probe",
        "--model",
        "tiny",
        "--dataset",
        "synthetic",
        "--steps",
        1,
        "--lr",
        "1e-12",
        "--no-progress",
        "--no-report",
        "--run-dir",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "run" / "claims.json").read_text())
    assert written and all(c["verdict"] == "inconclusive" and c["reason"] for c in written)
    assert all(SCHEMA <= set(c) for c in written)


def test_per_lr_rows_are_judged_at_every_lr_the_runs_have(tmp_path):
    (row,) = [r for r in catalogue.CATALOGUE if r.id == "fig3a-l2-5"]
    for lr, target in ((0.1, 1.0), (0.01, -1.0)):
        write_pair(tmp_path / "ics", row.at_lr(lr), target)
    found = claims.group_claims(["ics"], data.load_runs([tmp_path / "ics"]))
    by_id = {c.id: c for c in found}
    assert by_id["fig3a-l2-5-lr0.1"].verdict == "supports" and by_id["fig3a-l2-5-lr0.01"].verdict == "contradicts"
    assert "x/" in claims.estimate_text(by_id["fig3a-l2-5-lr0.1"].to_dict())  # a ratio's factor either way
    assert "at lr 0.01" in by_id["fig3a-l2-5-lr0.01"].claim
