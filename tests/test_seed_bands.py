"""Several seeds of a variant are one plot entry: the mean over seeds and a min-max band
over seeds (landscape.report.data.seed_groups / seed_stats, used by landscape.report.plots).

Records are hand-made RunRecords with known arrays, so every drawn number is checked
against numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landscape.paper import claims
from landscape.report import arrays, data, ics_plots, plots, probe_plots, training_plots
from landscape.report.data import RunRecord

STEPS = np.arange(0, 50, 5)
SEEDS = (0, 1, 2)
LAYERS = ("#1", "#2")
# train/loss per seed: known, and different enough that mean, min and max all differ.
LOSS = np.array([[2.0 - 0.03 * k + 0.1 * s * (k % 3) for k in range(len(STEPS))] for s in SEEDS])


def record(label: str, series: dict, norm: str = "bn", lr: float = 0.1) -> RunRecord:
    config = {"name": label, "model": {"name": "vgg16", "norm": norm}, "train": {"lr": lr}}
    return RunRecord(Path(label.replace("/", "_")), label, config, "finished", {}, series)


def seed_series(seed: int) -> dict:
    """Every series a plot aggregates, as a function of the seed."""
    series = {
        "train/loss": (STEPS, LOSS[seed]),
        "probe/beta": (STEPS, 10.0 + seed + STEPS / 10),
        "probe/curvature": (STEPS, 1.0 + seed * np.ones(len(STEPS))),
        "probe/loss": (STEPS, np.column_stack([LOSS[seed], LOSS[seed] + 1 + seed, LOSS[seed] + 0.5])),
    }
    for i, layer in enumerate(LAYERS):
        series[f"ics/l2/{layer}"] = (STEPS, (i + 1) * (1.0 + seed) + STEPS / 100)
    return series


def bn_seeds() -> list[RunRecord]:
    return [record(f"bn/seed{s}", seed_series(s)) for s in SEEDS]


def legend_names(fig) -> list[str]:
    return [t.name for t in fig.data if t.showlegend is not False]


def trace(fig, name: str, hover: str):
    """The one trace named ``name`` whose hover text contains ``hover``."""
    found = [t for t in fig.data if t.name == name and hover in t.hovertemplate]
    assert len(found) == 1, [(t.name, t.hovertemplate) for t in fig.data]
    return found[0]


# grouping -------------------------------------------------------------------
def test_split_seed_lives_in_data_and_claims_reexports_it():
    assert data.split_seed("bn/seed3") == ("bn", 3)
    assert data.split_seed("vgg16 · bn") == ("vgg16 · bn", None)
    assert claims.split_seed is data.split_seed


def test_seeds_of_a_variant_form_one_group_and_other_runs_stay_alone():
    runs = [record("none/seed0", {}, "none"), *bn_seeds(), record("solo/seed4", {}), record("plain", {})]
    groups = data.seed_groups(runs)
    assert [g.label for g in groups] == ["none/seed0", "bn (3 seeds)", "solo/seed4", "plain"]
    assert [len(g.records) for g in groups] == [1, 3, 1, 1]
    assert [g.seeded for g in groups] == [False, True, False, False]


def test_seed_stats_use_the_steps_every_seed_recorded_and_a_non_finite_seed_is_a_gap():
    steps, mean, lo, hi = data.seed_stats(
        [
            (np.array([0, 1, 2, 3]), np.array([1.0, 2.0, np.nan, 4.0])),
            (np.array([1, 2, 3, 4]), np.array([4.0, 5.0, 6.0, 7.0])),
        ]
    )
    np.testing.assert_array_equal(steps, [1, 2, 3])
    np.testing.assert_array_equal(mean, [3.0, np.nan, 5.0])
    np.testing.assert_array_equal(lo, [2.0, np.nan, 4.0])
    np.testing.assert_array_equal(hi, [4.0, np.nan, 6.0])


# figures ----------------------------------------------------------------------
def test_training_draws_one_entry_per_variant_with_seed_mean_and_min_max_band():
    fig = training_plots.plot_training(bn_seeds())
    name = "bn (3 seeds) — train loss"
    assert legend_names(fig) == [name]
    assert len(fig.data) == 3  # band lower edge, band upper edge, mean line
    mean = trace(fig, name, "mean train/loss over 3 seeds")
    lo = trace(fig, name, "min train/loss over 3 seeds")
    hi = trace(fig, name, "max train/loss over 3 seeds")
    for t in (mean, lo, hi):
        np.testing.assert_array_equal(t.x, STEPS)
    np.testing.assert_allclose(mean.y, LOSS.mean(axis=0))
    np.testing.assert_allclose(lo.y, LOSS.min(axis=0))
    np.testing.assert_allclose(hi.y, LOSS.max(axis=0))
    assert hi.fill == "tonexty" and hi.fillcolor == arrays.rgba(data.NORM_COLORS["bn"], plots.SEED_ALPHA)
    assert {t.line.color for t in fig.data} == {data.NORM_COLORS["bn"]}  # the variant's colour


def test_a_single_seed_is_drawn_as_its_run():
    run = record("bn/seed0", seed_series(0))
    for runs in ([run], [run, record("none", {"train/loss": (STEPS, LOSS[1])}, "none")]):
        fig = training_plots.plot_training(runs)
        assert len(fig.data) == len(runs)
        for t, r in zip(fig.data, runs):
            assert t.name == f"{r.label} — train loss"
            assert t.fill is None
            np.testing.assert_array_equal(t.x, r.series["train/loss"][0])
            np.testing.assert_allclose(t.y, r.series["train/loss"][1])
    band = probe_plots.plot_loss_landscape([run])
    assert len(band.data) == 2 and band.data[1].fillcolor == arrays.rgba(data.NORM_COLORS["bn"], plots.BAND_ALPHA)
    np.testing.assert_allclose(band.data[0].y, LOSS[0])
    np.testing.assert_allclose(band.data[1].y, LOSS[0] + 1)


def test_beta_smoothness_aggregates_seeds():
    runs = bn_seeds()
    fig = probe_plots.plot_beta_smoothness(runs)
    beta = np.array([r.series["probe/beta"][1] for r in runs])
    assert legend_names(fig) == ["bn (3 seeds) — β", "bn (3 seeds) — curvature"]
    np.testing.assert_allclose(trace(fig, "bn (3 seeds) — β", "mean β over 3 seeds").y, beta.mean(axis=0))
    np.testing.assert_allclose(trace(fig, "bn (3 seeds) — β", "min β").y, beta.min(axis=0))
    np.testing.assert_allclose(trace(fig, "bn (3 seeds) — β", "max β").y, beta.max(axis=0))
    np.testing.assert_allclose(trace(fig, "bn (3 seeds) — curvature", "mean").y, 2.0)  # mean of 1, 2, 3


def test_loss_landscape_draws_seed_mean_band_inside_pooled_band():
    runs = bn_seeds()
    fig = probe_plots.plot_loss_landscape(runs)
    lo = np.array([arrays.band_of(r, "probe/loss", "", "")[1] for r in runs])
    hi = np.array([arrays.band_of(r, "probe/loss", "", "")[2] for r in runs])
    assert legend_names(fig) == ["bn (3 seeds)"]
    assert len(fig.data) == 4
    pooled_lo, pooled_hi, mean_lo, mean_hi = (t.y for t in fig.data)
    np.testing.assert_allclose(pooled_lo, lo.min(axis=0))
    np.testing.assert_allclose(pooled_hi, hi.max(axis=0))
    np.testing.assert_allclose(mean_lo, lo.mean(axis=0))
    np.testing.assert_allclose(mean_hi, hi.mean(axis=0))


def test_ics_aggregates_seeds_per_layer():
    runs = bn_seeds()
    fig = ics_plots.plot_ics(runs)
    for layer in LAYERS:
        name = f"bn (3 seeds) — {layer}"
        l2 = np.array([r.series[f"ics/l2/{layer}"][1] for r in runs])
        np.testing.assert_allclose(trace(fig, name, "mean l2").y, l2.mean(axis=0))
        np.testing.assert_allclose(trace(fig, name, "min l2").y, l2.min(axis=0))
        np.testing.assert_allclose(trace(fig, name, "max l2").y, l2.max(axis=0))
    assert legend_names(fig) == [f"bn (3 seeds) — {layer}" for layer in LAYERS]
    # the layer menu toggles every trace of a layer, band included
    visible = fig.layout.updatemenus[0].buttons[-2].args[0]["visible"]  # the last single layer
    assert visible == [t.name.endswith(LAYERS[-1]) for t in fig.data]


@pytest.mark.parametrize("plot", [ics_plots.plot_histograms, probe_plots.plot_gradient_vs_step_size])
def test_plots_that_cannot_average_show_the_lowest_seed(plot):
    hist = {"dist/hist/#1": (STEPS, np.ones((len(STEPS), 4))), "probe/grad_diff": (STEPS, np.ones((len(STEPS), 3)))}
    runs = [record(f"bn/seed{s}", hist) for s in (2, 0, 1)]
    fig = plot(runs)
    assert [a.text for a in fig.layout.annotations] == ["bn (seed 0 of 3)"]
