"""landscape.report: data functions against hand-made records, figures, the page, the CLI.

Run stores are synthetic (``write_synthetic_run``: RunStore.create + log, no torch).
"""

from __future__ import annotations

import functools
import html.parser
import json
import math
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from landscape.config import ModelConfig, ProbeConfig, RunConfig, ScheduleConfig, TrainConfig
from landscape.report import arrays, build_report, data, ics_plots, plots, probe_plots, training_plots, write_report
from landscape.report import html as report_html
from landscape.report.data import RunRecord
from landscape.runs import RunStore, StoreError
from landscape_cli.report_cmd import report

LAYERS = ("#1", "#2", "#4")
XSS_NAME = "<script>alert(1)</script>"
SCALE_MAX_BYTES = 10 * 2**20


# synthetic stores ------------------------------------------------------------
def write_synthetic_run(
    path: Path,
    *,
    name: str = "",
    norm: str = "bn",
    lr: float = 0.1,
    steps: int = 300,
    probe_every: int = 10,
    log_every: int = 1,
    eval_every: int = 100,
    ics_every: int = 10,
    dist_every: int = 50,
    layers: tuple[str, ...] = LAYERS,
    bins: int = 20,
    channels: int = 8,
    diverge_at: int | None = None,
    seed: int = 0,
) -> Path:
    """A run directory as the training loop and hooks would leave it, with plausible values."""
    rng = np.random.default_rng(seed)
    probe = ProbeConfig(step_sizes=(0.5, 1.0, 2.0, 4.0), schedule=ScheduleConfig(every=probe_every))
    config = RunConfig(
        model=ModelConfig(name="vgg16", norm=norm),
        train=TrainConfig(lr=lr, steps=steps, seed=seed),
        probe=probe,
        name=name,
    ).to_dict()
    config.update(versions={"python": "3.11", "torch": "2.14.1"}, device="cpu", git_commit="abc123", kind="probe")
    sizes = np.array(probe.absolute_step_sizes(lr))
    edges = np.linspace(-3, 3, bins + 1)
    smooth = 0.2 if norm == "bn" else 1.0
    store = RunStore.create(path, config)
    last = steps if diverge_at is None else diverge_at + 1
    records = []
    first_moments: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for step in range(last):
        broken = step == diverge_at
        loss = 2.3 * math.exp(-3 * step / steps) + 0.05 + 0.02 * rng.standard_normal()
        m: dict[str, float | list[float]] = {}
        if step % log_every == 0:  # as the loop logs them
            m["train/loss"] = math.nan if broken else loss
            m["train/acc"] = 1 - loss / 2.5
        if step % eval_every == 0 or step == steps - 1:
            m.update({"test/loss": 1.1 * loss, "test/acc": 0.9 - loss / 2.5})
        if step % probe_every == 0:
            curve = loss * (1 + smooth * sizes * rng.uniform(0.5, 1.5, len(sizes)))
            gdiff = smooth * sizes * rng.uniform(0.5, 1.5, len(sizes)) * (1 + step / steps)
            if broken:
                curve[-2:] = [math.inf, math.nan]
            m.update(
                {
                    "probe/base_loss": loss,
                    "probe/grad_norm": float(rng.uniform(0.5, 2)),
                    "probe/loss": curve.tolist(),
                    "probe/grad_diff": gdiff.tolist(),
                    "probe/grad_cosine": rng.uniform(0.5, 1, len(sizes)).tolist(),
                    "probe/beta": float(np.max(gdiff / sizes)),
                    "probe/curvature": float(rng.uniform(0, 1)),
                    "probe/loss_min": float(np.nanmin(curve)),
                    "probe/loss_max": float(np.nanmax(curve)),
                }
            )
        if step % ics_every == 0:
            for i, layer in enumerate(layers):  # layer 1's ICS is 0 by definition
                l2 = float(rng.uniform(0.1, 10) * smooth) if i else 0.0
                m.update({f"ics/l2/{layer}": l2, f"ics/rel_l2/{layer}": l2 / 20, f"ics/grad_norm/{layer}": 20.0})
                m[f"ics/cosine/{layer}"] = float(rng.uniform(-1, 1)) if i else 1.0
        if step % dist_every == 0:
            for layer in layers:
                counts, _ = np.histogram(rng.standard_normal(512) + step / steps, edges)
                mean, var = rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels)
                first_mean, first_var = first_moments.setdefault(layer, (mean, var))
                m.update(
                    {
                        f"dist/hist/{layer}": counts.tolist(),
                        f"dist/edges/{layer}": edges.tolist(),
                        f"dist/under/{layer}": 0.0,
                        f"dist/over/{layer}": float(rng.integers(0, 3)),
                        f"dist/channels/{layer}": list(range(channels)),
                        f"dist/mean/{layer}": mean.tolist(),
                        f"dist/var/{layer}": var.tolist(),
                        f"dist/mean_drift/{layer}": (mean - first_mean).tolist(),
                        f"dist/var_drift/{layer}": (var - first_var).tolist(),
                    }
                )
        records.append((step, m))
    store.log_many(records)
    if diverge_at is None:
        store.set_status("finished")
    else:
        store.set_status("diverged", diverged_step=diverge_at, message="loss is nan")
    store.close()
    return path


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment directory: BN, standard and a diverged standard run at a higher lr."""
    root = tmp_path_factory.mktemp("experiment")
    write_synthetic_run(root / "bn", norm="bn", lr=0.1, seed=1)
    write_synthetic_run(root / "standard", norm="none", lr=0.1, seed=2)
    write_synthetic_run(root / "standard_hi", norm="none", lr=0.5, seed=3, diverge_at=200)
    (root / "experiment.json").write_text(json.dumps({"runs": ["bn", "standard", "standard_hi"]}))
    return root


@functools.cache
def scale_report_page(base: Path) -> tuple[Path, float, float]:
    root = base / "scale"
    t0 = time.perf_counter()
    for i, norm in enumerate(("bn", "none", "noisy_bn")):
        write_synthetic_run(
            root / norm,
            norm=norm,
            steps=15_000,
            probe_every=10,
            log_every=1,
            eval_every=500,
            ics_every=10,
            dist_every=100,
            layers=("#1", "#2", "#3", "#4"),
            bins=30,
            channels=64,
            seed=i,
        )
    t1 = time.perf_counter()
    out = build_report([root], root / "report.html")
    return out, t1 - t0, time.perf_counter() - t1


@pytest.fixture
def scale_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 runs x 15k steps, probes and ICS every 10 steps, 4 layers; built once per session."""
    out, generate_s, build_s = scale_report_page(tmp_path_factory.getbasetemp())
    print(f"scale report: generated stores in {generate_s:.2f} s, built page in {build_s:.2f} s")
    return out


def record(series: dict, *, status: str = "finished", meta: dict | None = None, **config) -> RunRecord:
    cfg = {"model": {"name": "vgg16", "norm": "bn"}, "train": {"lr": 0.1}, **config}
    return RunRecord(Path("run"), data.run_label(cfg), cfg, status, meta or {}, series)


class _Page(html.parser.HTMLParser):
    """Collects tags, attributes, script bodies and visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.scripts: list[str] = []
        self.divs: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            self.attrs.append((tag, key, value or ""))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")
        if tag == "div" and "plotly-graph-div" in (dict(attrs).get("class") or ""):
            self.divs.append(dict(attrs)["id"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, text: str) -> None:
        if self._in_script:
            self.scripts[-1] += text
        else:
            self.text.append(text)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


# import boundary ---------------------------------------------------------------
def test_report_imports_without_torch() -> None:
    code = "import sys, landscape.report, landscape_cli.report_cmd; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# data ------------------------------------------------------------------------
def test_band_drops_rows_with_nonfinite_extremes() -> None:
    values = np.array([[1.0, 2.0, 3.0], [np.nan, 5.0, 4.0], [np.nan, np.nan, np.nan], [1.0, np.inf, 2.0]])
    steps, lo, hi = arrays.band(np.array([0, 10, 20, 30]), values)
    np.testing.assert_array_equal(steps, [0, 10])
    np.testing.assert_array_equal(lo, [1.0, 4.0])
    np.testing.assert_array_equal(hi, [3.0, 5.0])


def test_band_empty_single_point_and_scalar_series() -> None:
    steps, lo, hi = arrays.band(np.array([], dtype=np.int64), np.empty((0, 4)))
    assert steps.shape == lo.shape == hi.shape == (0,)
    steps, lo, hi = arrays.band(np.array([7]), np.array([[3.0, 1.0]]))
    assert (steps.tolist(), lo.tolist(), hi.tolist()) == ([7], [1.0], [3.0])
    steps, lo, hi = arrays.band(np.array([1, 2]), np.array([0.5, 0.25]))  # 1-D: a zero-width band
    np.testing.assert_array_equal(lo, hi)


def test_downsample_short_series_unchanged() -> None:
    steps, values = np.arange(5), np.arange(5.0)
    out_s, out_v = arrays.downsample(steps, values, 10)
    np.testing.assert_array_equal(out_s, steps)
    np.testing.assert_array_equal(out_v, values)


def test_downsample_keeps_each_buckets_extremes() -> None:
    rng = np.random.default_rng(0)
    n, max_points = 10_000, 200
    steps, values = np.arange(n) * 3, rng.standard_normal(n)
    values[4321] = 50.0  # a divergence spike
    out_s, out_v = arrays.downsample(steps, values, max_points)
    assert len(out_s) <= max_points
    assert np.all(np.diff(out_s) > 0)
    # independent reference: n is a multiple of the bucket count, so buckets are a reshape
    buckets = values.reshape(max_points // 2, -1)
    np.testing.assert_array_equal(np.sort(out_v[np.isin(out_v, buckets.max(1))]), np.sort(buckets.max(1)))
    np.testing.assert_array_equal(np.sort(out_v[np.isin(out_v, buckets.min(1))]), np.sort(buckets.min(1)))
    assert out_s[out_v == 50.0].tolist() == [4321 * 3]  # kept at its own step
    np.testing.assert_array_equal(out_v, values[out_s // 3])  # only real points


def test_downsample_keeps_gaps_of_undefined_values() -> None:
    values = np.concatenate([np.ones(100), np.full(100, np.nan), np.ones(100)])
    _, out_v = arrays.downsample(np.arange(300), values, 30)
    assert np.isnan(out_v).any() and np.isfinite(out_v).any()


def test_downsample_band_contains_the_original_band() -> None:
    rng = np.random.default_rng(1)
    n, max_points = 6000, 300
    lo = rng.uniform(0, 1, n)
    hi = lo + rng.uniform(0, 1, n)
    steps, d_lo, d_hi = arrays.downsample_band(np.arange(n), lo, hi, max_points)
    assert len(steps) == max_points
    np.testing.assert_array_equal(d_lo, lo.reshape(max_points, -1).min(1))
    np.testing.assert_array_equal(d_hi, hi.reshape(max_points, -1).max(1))
    np.testing.assert_array_equal(steps, np.arange(0, n, n // max_points))
    assert d_lo.min() == lo.min() and d_hi.max() == hi.max()


def test_beta_reference_is_two_over_step_size() -> None:
    assert arrays.beta_reference(0.1) == pytest.approx(20.0)
    assert arrays.beta_reference(0.5) == 4.0
    for bad in (0.0, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError):
            arrays.beta_reference(bad)


def test_absolute_step_sizes() -> None:
    relative = {"train": {"lr": 0.2}, "probe": {"step_sizes": [0.5, 2.0], "relative": True}}
    np.testing.assert_allclose(data.absolute_step_sizes(relative), [0.1, 0.4])
    absolute = {"train": {"lr": 0.2}, "probe": {"step_sizes": [0.5, 2.0], "relative": False}}
    np.testing.assert_allclose(data.absolute_step_sizes(absolute), [0.5, 2.0])
    assert data.absolute_step_sizes({"train": {"lr": 0.2}, "probe": None}) is None
    assert data.absolute_step_sizes({}) is None


def test_metric_families_group_by_prefix_in_natural_order() -> None:
    names = ["ics/l2/#4", "ics/l2/#2", "ics/cosine/#2", "train/loss", "dist/new/fc", "ics/x"]
    assert arrays.metric_families(names, "ics") == {"cosine": ["#2"], "l2": ["#2", "#4"]}
    assert arrays.metric_families(names, "dist") == {"new": ["fc"]}
    ordered = arrays.order_families(["cosine", "zeta", "l2", "alpha"], ("l2", "rel_l2", "cosine"))
    assert ordered == ["l2", "cosine", "alpha", "zeta"]


def test_labels_and_colors() -> None:
    assert data.run_label({"model": {"name": "vgg16", "norm": "bn"}}) == "vgg16 · bn"
    assert data.run_label({"model": {"name": "vgg16", "norm": "none"}}) == "vgg16 · standard"
    assert data.run_label({"name": "mine", "model": {"name": "vgg16", "norm": "bn"}}) == "mine"
    assert data.unique_labels(["a", "a", "b"], [Path("x/r1"), Path("y/r2"), Path("z")]) == ["a (r1)", "a (r2)", "b"]
    assert data.unique_labels(["a", "a"], [Path("x/r"), Path("y/r")]) == ["a (r)", "a (r) #2"]
    colors = arrays.run_colors(["bn", "none", "bn", "weird"])
    assert colors[0] == data.NORM_COLORS["bn"] and colors[1] == data.NORM_COLORS["none"]
    assert colors[2] != colors[0] and colors[3] == arrays.UNKNOWN_COLOR
    assert arrays.rgba("#ff0080", 0.25) == "rgba(255,0,128,0.25)"


def test_histogram_grid_edges() -> None:
    hist = (np.array([0, 10, 20]), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    once = record({"dist/hist/a": hist, "dist/edges/a": (np.array([0]), np.array([[0.0, 1.0, 2.0]]))})
    steps, edges, counts = arrays.histogram_grid(once, "a", max_rows=100)
    assert steps.tolist() == [0, 10, 20] and edges.tolist() == [0.0, 1.0, 2.0] and counts.shape == (3, 2)
    moving = record({"dist/hist/a": hist, "dist/edges/a": (np.array([0, 10]), np.array([[0.0, 1, 2], [0, 2, 4]]))})
    assert arrays.histogram_grid(moving, "a", 100)[1] is None
    wrong = record({"dist/hist/a": hist, "dist/edges/a": (np.array([0]), np.array([[0.0, 1.0]]))})
    assert arrays.histogram_grid(wrong, "a", 100)[1] is None
    steps, _, counts = arrays.histogram_grid(once, "a", max_rows=2)
    assert steps.tolist() == [0, 20] and counts.tolist() == [[1.0, 2.0], [5.0, 6.0]]


def test_band_of_falls_back_to_min_max_scalars() -> None:
    rec = record(
        {
            "probe/loss_min": (np.array([0, 10, 20]), np.array([1.0, 2.0, 3.0])),
            "probe/loss_max": (np.array([10, 20]), np.array([5.0, 6.0])),
        }
    )
    steps, lo, hi = arrays.band_of(rec, "probe/loss", "probe/loss_min", "probe/loss_max")
    assert (steps.tolist(), lo.tolist(), hi.tolist()) == ([10, 20], [2.0, 3.0], [5.0, 6.0])
    assert len(arrays.band_of(record({}), "probe/loss", "a", "b")[0]) == 0


def test_load_diverged_run(tmp_path: Path) -> None:
    path = write_synthetic_run(tmp_path / "r", norm="none", steps=100, diverge_at=40)
    rec = data.load_run(path)
    assert rec.status == "diverged" and rec.diverged_step == 40
    assert data.status_text(rec) == "diverged at step 40: loss is nan"
    assert data.last_step(rec) == 40
    steps, _, _ = arrays.band(*rec.series["probe/loss"])
    assert 40 not in steps.tolist() and 30 in steps.tolist()  # the inf/nan probe row is dropped
    rows = dict(data.config_rows([rec]))
    assert rows["probe step sizes"] == ["0.05, 0.1, 0.2, 0.4 (= 0.5, 1.0, 2.0, 4.0 × lr)"]
    assert rows["versions"] == ["python 3.11, torch 2.14.1"]
    assert rows["batch size"] == ["128"]


def test_full_batch_runs_say_so(tmp_path: Path) -> None:
    path = write_synthetic_run(tmp_path / "r", steps=20)
    config = json.loads((path / "config.json").read_text())
    config["train"]["full_batch"] = True
    (path / "config.json").write_text(json.dumps(config))
    assert dict(data.config_rows([data.load_run(path)]))["batch size"] == ["full batch"]


def test_load_run_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such directory"):
        data.load_runs([tmp_path / "missing"])
    with pytest.raises(StoreError, match="not a run"):
        data.load_runs([tmp_path])
    path = write_synthetic_run(tmp_path / "r", steps=20)
    (path / "metrics.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="corrupt"):
        data.load_runs([path])


# figures ---------------------------------------------------------------------
def test_plots_of_no_data_are_empty() -> None:
    empty = record({})
    for fig in (
        training_plots.plot_training([]),
        training_plots.plot_training([empty]),
        probe_plots.plot_loss_landscape([empty]),
        probe_plots.plot_gradient_predictiveness([empty]),
        probe_plots.plot_beta_smoothness([empty]),
        probe_plots.plot_gradient_vs_step_size([empty]),
        ics_plots.plot_ics([empty]),
        ics_plots.plot_histograms([empty]),
        ics_plots.plot_moments([empty]),
    ):
        assert len(fig.data) == 0
    assert '<section id="landscape">' not in report_html.render_page([empty], "t")


def test_single_point_run_plots() -> None:
    rec = record(
        {"probe/loss": (np.array([5]), np.array([[1.0, 2.0]])), "probe/beta": (np.array([5]), np.array([3.0]))}
    )
    fig = probe_plots.plot_loss_landscape([rec])
    assert [list(t.y) for t in fig.data] == [[1.0], [2.0]]
    assert len(probe_plots.plot_beta_smoothness([rec]).data) == 1


def test_loss_landscape_band_is_decimated_with_extremes(experiment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = data.load_runs([experiment])
    monkeypatch.setattr(plots, "MAX_POINTS", 7)
    fig = probe_plots.plot_loss_landscape(runs)
    assert len(fig.data) == 2 * len(runs)
    lower, upper = fig.data[0], fig.data[1]
    assert upper.fill == "tonexty" and lower.showlegend is False and len(upper.y) == 7
    _, lo, hi = arrays.band(*runs[0].series["probe/loss"])
    assert min(lower.y) == lo.min() and max(upper.y) == hi.max()
    assert fig.layout.yaxis.type == "log"
    # the diverged run is marked at its step
    assert [s.x0 for s in fig.layout.shapes] == [200]
    assert "diverged @ 200" in fig.layout.annotations[0].text


def test_beta_reference_line_per_distinct_step_size(experiment: Path) -> None:
    fig = probe_plots.plot_beta_smoothness(data.load_runs([experiment]))
    refs = sorted(s.y0 for s in fig.layout.shapes if s.y0 == s.y1)
    assert refs == pytest.approx([4.0, 20.0])  # lr 0.5 and 0.1 (two runs share 0.1)
    labels = sorted((a.y, a.text) for a in fig.layout.annotations if a.text.startswith("full-batch limit"))
    assert labels[0][0] == pytest.approx(math.log10(4.0)) and labels[1][0] == pytest.approx(math.log10(20.0))
    assert labels[1][1] == "full-batch limit 2/η = 20 (SGD, η = 0.1)"


def test_gradient_vs_step_size_uses_absolute_step_sizes(experiment: Path) -> None:
    runs = data.load_runs([experiment / "bn", experiment / "standard_hi"])
    fig = probe_plots.plot_gradient_vs_step_size(runs)
    bn = [t for t in fig.data if t.xaxis == "x" and t.mode == "lines+markers"]
    assert len(bn) == probe_plots.FIG11_STEPS
    np.testing.assert_allclose(bn[0].x, [0.05, 0.1, 0.2, 0.4])
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.ticktext) == ["0.05", "0.1", "0.2", "0.4"]
    np.testing.assert_allclose([t for t in fig.data if t.xaxis == "x2"][0].x, [0.25, 0.5, 1.0, 2.0])  # lr 0.5
    steps, values = runs[0].series["probe/grad_diff"]
    assert bn[-1].name == f"step {steps[-1]}"
    np.testing.assert_array_equal(bn[-1].y, values[-1])
    assert bn[0].line.color != bn[-1].line.color
    # one step colour scale for both runs: the diverged run (last probe 200 of 300) ends mid-scale
    hi = [t for t in fig.data if t.xaxis == "x2"][-1]
    assert hi.name == "step 200" and hi.line.color not in (bn[0].line.color, bn[-1].line.color)


def test_ics_layer_selector_toggles_visibility(experiment: Path) -> None:
    runs = data.load_runs([experiment])
    fig = ics_plots.plot_ics(runs)
    assert len(fig.data) == len(LAYERS) * 4 * len(runs)  # l2, rel_l2, cosine, grad_norm
    menu = fig.layout.updatemenus[0]
    assert [b.label for b in menu.buttons] == [*LAYERS, "all layers"]
    for button, layer in zip(menu.buttons, LAYERS):
        visible = button.args[0]["visible"]
        assert len(visible) == len(fig.data)
        assert sum(visible) == 4 * len(runs)
        assert all(v == t.name.endswith(layer) for v, t in zip(visible, fig.data))
    # the first layer's ICS is 0 (nothing on a log axis): the second is shown first
    assert menu.active == 1 and [t.visible for t in fig.data] == menu.buttons[1].args[0]["visible"]
    assert [fig.layout[f"yaxis{i}"].type for i in ("", "2", "3", "4")] == ["log", "log", "linear", "log"]


def test_ics_highlighted_layers_are_shown_first(experiment: Path) -> None:
    runs = data.load_runs([experiment])
    layers = list(LAYERS)
    assert arrays.ics_default_layers(runs, layers) == ["#2"]
    highlighted = [
        RunRecord(r.path, r.label, dict(r.config, ics={"highlight": [3, 1, 99]}), r.status, r.meta, r.series)
        for r in runs
    ]
    assert arrays.ics_default_layers(highlighted, layers) == ["#1", "#4"]
    menu = ics_plots.plot_ics(highlighted).layout.updatemenus[0]
    assert menu.active == 0 and menu.buttons[0].label == "highlighted: #1, #4"
    assert arrays.ics_default_layers([record({})], []) == []


def test_distribution_plots(experiment: Path) -> None:
    runs = data.load_runs([experiment])
    heat = ics_plots.plot_histograms(runs)
    assert len(heat.data) == len(LAYERS) * len(runs)
    assert heat.data[0].z.shape == (20, 6)  # bins x steps (every 50 of 300)
    assert [t.visible for t in heat.data] == [True] * 3 + [False] * 6  # first layer, all runs
    families = ["mean", "var", "mean_drift", "var_drift", "over", "under"]  # not hist, edges, channels
    assert ics_plots.distribution_families(runs) == families
    fig = ics_plots.plot_moments(runs)
    # per layer and run: (band + mean) for the 4 per-channel families, one line for under/over
    assert len(fig.data) == (4 * 3 + 2) * len(LAYERS) * len(runs)
    assert [a.text for a in fig.layout.annotations[:6]] == ["mean", "var", "mean drift", "var drift", "over", "under"]
    mean_line = fig.data[2]
    np.testing.assert_allclose(mean_line.y, runs[0].series[f"dist/mean/{LAYERS[0]}"][1].mean(axis=1))
    shown = [t.name for t in fig.data if t.showlegend is not False]
    assert len(shown) == len(set(shown)) == len(LAYERS) * len(runs)  # one legend entry per run and layer


# page ------------------------------------------------------------------------
# training, landscape, predictiveness and cosine, smoothness, Fig. 11, ICS, histograms, moments
EXPECTED_FIGURES = 9


def test_page_is_self_contained(experiment: Path, tmp_path: Path) -> None:
    out = build_report([experiment], tmp_path / "deep" / "r.html")
    page = parse(out.read_text(encoding="utf-8"))
    external = [(t, k, v) for t, k, v in page.attrs if k in ("src", "href") and not v.startswith("#")]
    assert external == []
    assert not [a for a in page.attrs if a[1] == "src"]  # everything inline
    assert len(page.divs) == EXPECTED_FIGURES
    assert len(page.scripts) == 1 + len(page.divs)  # plotly.js + one per figure
    assert len(page.scripts[0]) > 1_000_000  # plotly.js itself, inlined
    assert "https://cdn" not in out.read_text(encoding="utf-8").split("</head>", 1)[1]
    text = " ".join(page.text)
    assert "diverged at step 200: loss is nan" in text and "vgg16 · standard (standard_hi)" in text


def test_run_names_cannot_break_out(tmp_path: Path) -> None:
    evil = '</script><script>alert(1)</script><img src=x onerror="alert(2)">'
    write_synthetic_run(tmp_path / "runs" / "a", name=evil, steps=60)
    write_synthetic_run(tmp_path / "runs" / "b", name=XSS_NAME, steps=60, norm="none")
    out = build_report([tmp_path / "runs"], tmp_path / "r.html", title=XSS_NAME)
    raw = out.read_text(encoding="utf-8")
    page = parse(raw)
    assert "<script>alert" not in raw and "<img src=x" not in raw
    assert all(tag != "img" for tag, _, _ in page.attrs)
    assert len(page.scripts) == 1 + len(page.divs)  # no extra script element appeared
    assert XSS_NAME in " ".join(page.text)  # shown as text (title, table)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw  # in the table and plotly's labels


def test_figure_json_cannot_close_its_script_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[1], y=[2], name="</script><script>alert(1)</script><!--"))  # unescaped
    fragment = report_html.figure_html(fig, "f")
    assert fragment.lower().count("<script") == 1 and "\\u003c\\u002fscript\\u003e" in fragment
    broken = '<div id="f"></div><script>Plotly.newPlot("f", [{"name": "</script><script>alert(1)"}])</script>'
    monkeypatch.setattr(go.Figure, "to_html", lambda self, **kw: broken)
    with pytest.raises(ValueError, match="break out"):
        report_html.figure_html(fig, "f")


def test_scale_report_size(scale_report: Path) -> None:
    size = scale_report.stat().st_size
    print(f"scale report: {size / 2**20:.2f} MiB")
    assert size < SCALE_MAX_BYTES
    page = parse(scale_report.read_text(encoding="utf-8"))
    assert len(page.divs) == EXPECTED_FIGURES


def test_report_of_a_run_still_training(tmp_path: Path) -> None:
    path = write_synthetic_run(tmp_path / "r", steps=50)
    writer = RunStore(path)  # a live writer: WAL lets the report read beside it
    writer.set_status("running")
    writer.log(50, {"train/loss": 0.5})
    out = build_report([path], tmp_path / "live.html")
    assert "running" in out.read_text(encoding="utf-8")
    writer.log(51, {"train/loss": 0.4})
    assert data.last_step(data.load_run(path)) == 51
    writer.close()


def test_write_report_defaults_beside_the_data(experiment: Path) -> None:
    out = write_report([experiment])
    assert out == experiment / "report.html" and out.is_file()
    assert len(data.load_runs([experiment])) == 3  # the report file is not mistaken for a run


# CLI -------------------------------------------------------------------------
def test_cli_writes_and_prints_the_path(experiment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    out = tmp_path / "reports" / "exp.html"
    result = CliRunner().invoke(report, [str(experiment), "-o", str(out), "--title", "BN vs standard", "--open"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    assert "<title>BN vs standard</title>" in out.read_text(encoding="utf-8")
    assert opened == [out.resolve().as_uri()]


def test_cli_default_output(experiment: Path) -> None:
    result = CliRunner().invoke(report, [str(experiment / "bn")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(experiment / "bn" / "report.html")


@pytest.mark.parametrize("case", ["missing", "not_a_run", "corrupt", "no_args"])
def test_cli_errors_are_one_line(case: str, tmp_path: Path) -> None:
    args = {"missing": [str(tmp_path / "nope")], "not_a_run": [str(tmp_path)], "no_args": []}.get(case)
    if case == "corrupt":
        path = write_synthetic_run(tmp_path / "r", steps=5)
        (path / "metrics.sqlite").unlink()
        sqlite3.connect(path / "metrics.sqlite").close()  # a database without the tables
        args = [str(path)]
    result = CliRunner().invoke(report, args)
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    if case != "no_args":
        assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("Error: ")


def test_a_real_dln_run_gets_fig_10_on_log_axes(tmp_path: Path) -> None:
    # The paper's DLN (its defaults: float64, summed objective, step sizes 0.01-30 x lr),
    # shortened: its losses (1e3-1e4) and gradient changes (over 3.5 decades of step
    # sizes) are read on log axes, as the paper plots Fig. 10.
    from landscape_cli.main import cli

    result = CliRunner().invoke(
        cli,
        [
            "probe",
            "--model",
            "dln",
            "--steps",
            "30",
            "--probe-every",
            "10",
            "--dense-until",
            "0",
            "--device",
            "cpu",
            "--no-progress",
            "--run-dir",
            str(tmp_path / "e"),
        ],
    )
    assert result.exit_code == 0, result.output
    runs = data.load_runs([tmp_path / "e" / "none", tmp_path / "e" / "bn"])
    figures = {
        "loss": probe_plots.plot_loss_landscape(runs),
        "grad": probe_plots.plot_gradient_predictiveness(runs),
        "beta": probe_plots.plot_beta_smoothness(runs),
        "training": training_plots.plot_training(runs),
    }
    for name, fig in figures.items():
        assert fig.data, name
        assert fig.layout.yaxis.type == "log", name
    losses = runs[0].series["probe/loss"][1]
    assert np.nanmin(losses) > 1e3  # the paper's scale, not MSELoss's 1e4 times smaller one
    assert (tmp_path / "e" / "report.html").is_file()
