"""Each optimizer's full-batch stability limit (landscape.report.limits), checked against
an independent simulation of its update rule on f(x) = λx²/2, and drawn by the report
over the series it bounds (SGD family: β, gᵀHg/‖g‖², λ_max; Adam: β^P, λ_max(P⁻¹H))."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_report import record

from landscape.paper import measures
from landscape.report import arrays, data, limits, probe_plots
from landscape.report import html as report_html

STEPS = np.arange(0, 101, 10)


# independent simulations of the update rules ----------------------------------------
def sgd(lams, lr, momentum=0.0, dampening=0.0, nesterov=False, wd=0.0, steps=3000) -> np.ndarray:
    """|x| after ``steps`` of torch.optim.SGD's update on f(x) = λx²/2, x0 = 1, per λ."""
    lams = np.asarray(lams, dtype=float)
    x, buf = np.ones_like(lams), None
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            g = lams * x + wd * x  # torch's weight decay: added to the gradient
            if momentum:  # torch: the first buffer is g itself; no momentum, no dampening
                buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            x = x - lr * g
    return np.abs(x)


def adam(lams, lr, b1, b2=None, p=3.0, correct=True, steps=3000, x0=1.0) -> np.ndarray:
    """|x| after ``steps`` of Adam on f(x) = λx²/2, per λ: x <- x - lr m̂ / P with P
    frozen at ``p`` (``b2`` None) or torch's √v̂ + 1e-8 (``b2`` given); ``correct``:
    m̂ = m / (1 - b1^t) (torch), else m (the correction folded into P)."""
    lams = np.asarray(lams, dtype=float)
    x, m, v = np.full_like(lams, x0), np.zeros_like(lams), np.zeros_like(lams)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, steps + 1):
            g = lams * x
            m = b1 * m + (1 - b1) * g
            if b2 is not None:
                v = b2 * v + (1 - b2) * g * g
                p = np.sqrt(v / (1 - b2**t)) + 1e-8
            x = x - lr * (m / (1 - b1**t) if correct else m) / p
    return np.abs(x)


def assert_edge(final: np.ndarray) -> None:
    """Just below the limit the iterate converged, just above it diverged."""
    below, above = final
    assert below < 1e-2, f"diverged below the limit: {below}"
    assert not above < 1e2, f"converged above the limit: {above}"


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.3, weight_decay=0.5),
    dict(lr=0.1, momentum=0.5),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.99),
    dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.3),
    dict(lr=0.1, momentum=0.0, dampening=0.5),  # torch ignores the dampening without momentum
    dict(lr=0.1, momentum=0.5, nesterov=True),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.2),
    dict(lr=0.02, momentum=0.99, nesterov=True),
]


@pytest.mark.parametrize("train", SGD_CASES, ids=lambda t: ",".join(f"{k}={v}" for k, v in t.items()))
def test_sgd_limits_are_where_the_update_diverges(train: dict) -> None:
    limit = limits.stability_limit(train)
    assert limit is not None and limit.series == limits.SGD_SERIES
    lam = limit.value
    kw = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0} | train
    final = sgd([lam * 0.99, lam * 1.01], kw["lr"], kw["momentum"], kw["dampening"], kw["nesterov"], kw["weight_decay"])
    assert_edge(final)


@pytest.mark.parametrize("b1", [0.0, 0.5, 0.9])
def test_adam_limit_bounds_the_preconditioned_sharpness(b1: float) -> None:
    limit = limits.stability_limit({"optimizer": "adam", "lr": 1e-3, "betas": [b1, 0.999]})
    assert limit is not None and limit.series == limits.ADAM_SERIES
    p = 3.0  # λ_max(P⁻¹H) = λ / p
    assert_edge(adam([limit.value * 0.99 * p, limit.value * 1.01 * p], 1e-3, b1, p=p))


def test_adam_limit_without_bias_correction_at_high_beta1() -> None:
    # β₁ = 0.99: torch's early m̂ steps are 1/(1 - 0.99^t) larger, a transient longer than
    # the test; with the correction folded into P (landscape's preconditioner) it is heavy ball.
    limit = limits.stability_limit({"optimizer": "adamw", "lr": 0.01, "betas": (0.99, 0.999)})
    assert limit.value == pytest.approx(398 / 0.01)
    assert_edge(adam([limit.value * 0.99, limit.value * 1.01], 0.01, 0.99, p=1.0, correct=False))


def test_the_simulations_are_torchs_update_rules() -> None:
    torch = pytest.importorskip("torch")
    for kw in ({"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}, {"momentum": 0.8, "nesterov": True}, {}):
        x = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        opt = torch.optim.SGD([x], lr=0.1, **kw)
        for _ in range(7):
            opt.zero_grad()
            (2.5 * x**2).sum().backward()  # λ = 5
            opt.step()
        simulated = sgd([5.0], 0.1, kw.get("momentum", 0.0), kw.get("dampening", 0.0), kw.get("nesterov", False),
                        kw.get("weight_decay", 0.0), steps=7)  # fmt: skip
        assert abs(x.item()) == pytest.approx(simulated[0], rel=1e-12)
    x = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = torch.optim.Adam([x], lr=0.05, betas=(0.8, 0.95), eps=1e-8)
    for _ in range(7):
        opt.zero_grad()
        (2.5 * x**2).sum().backward()
        opt.step()
    assert abs(x.item()) == pytest.approx(adam([5.0], 0.05, 0.8, b2=0.95, steps=7, x0=2.0)[0], rel=1e-9)


# the limits' values, labels and errors -------------------------------------------------
def test_limit_values_and_labels() -> None:
    sgd_limit = limits.stability_limit({"lr": 0.1})  # an old run: plain SGD by default
    assert sgd_limit.value == pytest.approx(20) and sgd_limit.label == "full-batch limit 2/η = 20 (SGD, η = 0.1)"
    heavy = limits.stability_limit({"optimizer": "SGD", "lr": 0.1, "momentum": 0.9})
    assert heavy.value == pytest.approx(38)
    assert heavy.label == "full-batch limit 2(1+β)/η = 38 (SGD, momentum 0.9, η = 0.1)"
    damped = limits.stability_limit({"lr": 0.1, "momentum": 0.9, "dampening": 0.5, "weight_decay": 5e-4})
    assert damped.value == pytest.approx(76 - 5e-4) and damped.formula == "2(1+β)/((1−d)η) − wd"
    nesterov = limits.stability_limit({"lr": 0.1, "momentum": 0.9, "nesterov": True})
    assert nesterov.value == pytest.approx(3.8 / 2.8 / 0.1) and nesterov.formula == "(2+2β)/((1+2β)η)"
    assert limits.stability_limit({"lr": 0.1, "dampening": 0.5}).value == pytest.approx(20)  # torch ignores it
    adamw = limits.stability_limit({"optimizer": "AdamW", "lr": 1e-3, "momentum": None, "weight_decay": 0.01})
    assert adamw.value == pytest.approx(38_000) and adamw.formula == "(2+2β₁)/((1−β₁)η)"  # wd not in it
    assert "AdamW, β₁ 0.9" in adamw.label
    np.testing.assert_allclose(heavy.at(np.array([0.1, 0.01])), [38, 380])
    assert limits.stability_limit({"optimizer": "RMSprop", "lr": 0.1}) is None  # unknown: no limit
    assert limits.stability_limit({"optimizer": "sgd"}) is None and limits.stability_limit(None) is None
    assert limits.stability_limit({"lr": 0.1, "momentum": 0.9, "dampening": 1}) is None
    assert arrays.beta_reference(0.1) == pytest.approx(20.0)


@pytest.mark.parametrize(
    "train",
    [
        {"lr": 0.0},
        {"lr": -0.1},
        {"lr": math.nan},
        {"lr": math.inf},
        {"lr": "0.1"},
        {"lr": 0.1, "momentum": 1.0},
        {"lr": 0.1, "momentum": -0.1},
        {"lr": 0.1, "weight_decay": -1e-4},
        {"lr": 0.1, "dampening": 1.5},
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True},
        {"lr": 0.1, "nesterov": True},
        {"optimizer": "adam", "lr": 0.1, "betas": [1.0, 0.999]},
        {"optimizer": "adam", "lr": 0.1, "betas": [0.9]},
    ],
)
def test_nonsense_is_refused(train: dict) -> None:
    with pytest.raises(ValueError, match="train\\."):
        limits.stability_limit(train)


# the figures -----------------------------------------------------------------------------
def run(name: str, train: dict, *metrics: str, lr_series: tuple | None = None) -> data.RunRecord:
    series = {m: (STEPS, np.linspace(1.0, 30.0, len(STEPS))) for m in metrics}
    if lr_series is not None:
        series["train/lr"] = (np.asarray(lr_series[0]), np.asarray(lr_series[1], dtype=float))
    return record(series, name=name, train=train)


RAW = ("probe/beta", "hessian/lambda_max")
PRECOND = ("probe/beta_precond", "hessian/lambda_max_precond")
SGD = run("sgd", {"lr": 0.1}, *RAW)
MOMENTUM = run("momentum", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}, *RAW)
NESTEROV = run("nesterov", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, *RAW)
ADAMW = run("adamw", {"optimizer": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.01}, *RAW, *PRECOND)


def hlines(fig) -> list[float]:
    return sorted(s.y0 for s in fig.layout.shapes if s.type == "line" and s.y0 == s.y1)


def limit_labels(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations if a.text.startswith("full-batch limit")]


def test_momentum_run_gets_its_own_limit_not_two_over_eta() -> None:
    fig = probe_plots.plot_beta_smoothness([MOMENTUM])
    assert hlines(fig) == pytest.approx([38.0])  # the momentum bug: 2/η = 20 is not drawn
    assert 20.0 not in [round(y, 9) for y in hlines(fig)]
    assert limit_labels(fig) == ["full-batch limit 2(1+β)/η = 38 (SGD, momentum 0.9, η = 0.1)"]
    assert next(a.y for a in fig.layout.annotations if a.text in limit_labels(fig)) == pytest.approx(math.log10(38))


def test_each_run_draws_its_optimizers_limit_over_the_right_series() -> None:
    runs = [SGD, MOMENTUM, NESTEROV, ADAMW]
    fig = probe_plots.plot_beta_smoothness(runs)
    assert hlines(fig) == pytest.approx([3.8 / 2.8 / 0.1, 20.0, 38.0])  # no 38,000: Adam's is not over raw λ_max
    labels = limit_labels(fig)
    assert len(labels) == 3 and not any("Adam" in text for text in labels)
    assert "full-batch limit 2/η = 20 (SGD, η = 0.1)" in labels
    assert any(text.startswith("full-batch limit (2+2β)/((1+2β)η) = 13.5714 (SGD, Nesterov") for text in labels)
    assert {"adamw — β", "adamw — λ_max"} <= {t.name for t in fig.data}  # its raw series, limit-free

    pre = probe_plots.plot_preconditioned_sharpness(runs)
    assert pre.layout.title.text == "Preconditioned sharpness (Adam, AdamW)"
    assert {t.name for t in pre.data} == {"adamw — β^P", "adamw — λ_max(P⁻¹H)"}
    assert hlines(pre) == pytest.approx([38_000.0])  # and no SGD limit: those runs have no P series
    [label] = limit_labels(pre)
    assert label.startswith("full-batch limit (2+2β₁)/((1−β₁)η) = 38000 (AdamW, β₁ 0.9")


def test_adam_limit_needs_the_preconditioned_series() -> None:
    raw_only = run("adam", {"optimizer": "adam", "lr": 1e-3}, *RAW)
    assert hlines(probe_plots.plot_beta_smoothness([raw_only])) == []
    assert not probe_plots.plot_preconditioned_sharpness([raw_only]).data
    assert not probe_plots.plot_preconditioned_sharpness([SGD, MOMENTUM]).data  # no second figure for SGD runs


def test_a_scheduled_lr_draws_the_limit_over_the_steps() -> None:
    scheduled = run("decay", {"lr": 0.1, "momentum": 0.9}, *RAW, lr_series=([0, 50], [0.1, 0.01]))
    fig = probe_plots.plot_beta_smoothness([scheduled])
    assert hlines(fig) == []
    [line] = [t for t in fig.data if "full-batch limit" in t.name]
    assert line.line.dash == "dash" and line.line.shape == "hv"
    assert list(line.x) == [0, 50, 100] and list(line.y) == pytest.approx([38, 380, 380])  # to the last step
    assert "η from train/lr" in line.name
    constant = run("constant", {"lr": 0.1}, *RAW, lr_series=([0], [0.1]))
    assert hlines(probe_plots.plot_beta_smoothness([constant])) == pytest.approx([20.0])


def test_report_section_table_and_measure() -> None:
    adam_cfg = dict(
        ADAMW.config,
        probe={"step_sizes": [1.0], "direction": "update"},
        hessian={"schedule": {"every": 10}, "preconditioned": True},
    )
    adam_run = data.RunRecord(ADAMW.path, "adamw", adam_cfg, "finished", {}, ADAMW.series)
    expected = data.expected_smoothness_series(adam_run)
    assert {"probe/beta_precond", "hessian/lambda_max_precond", "hessian/lambda_max"} <= set(expected)
    # Along the gradient, or without --hessian-preconditioned, neither is asked for.
    plain_cfg = dict(ADAMW.config, probe={"step_sizes": [1.0]}, hessian={"schedule": {"every": 10}})
    plain = data.RunRecord(ADAMW.path, "adamw", plain_cfg, "finished", {}, ADAMW.series)
    assert not {"probe/beta_precond", "hessian/lambda_max_precond"} & set(data.expected_smoothness_series(plain))
    assert "probe/beta_precond" not in data.expected_smoothness_series(SGD)
    smooth = report_html.select_sections(["smoothness"])
    [(_, figures, _)] = report_html.section_figures([SGD, adam_run], smooth)
    assert [f.layout.title.text for f in figures][1] == "Preconditioned sharpness (Adam, AdamW)"
    page = report_html.render_page([SGD, adam_run], "t", sections=["smoothness"])
    assert "full-batch" in page and "Edge of Stochastic Stability" in page and "Cohen et al. 2022" in page
    rows = dict(data.config_rows([SGD, MOMENTUM, ADAMW]))
    assert rows["optimizer"] == ["sgd", "sgd", "adamw"] and rows["betas"] == ["—", "—", "0.9, 0.999"]
    assert rows["full-batch limit"][1] == "2(1+β)/η = 38 (SGD, momentum 0.9, η = 0.1)"
    assert "nesterov" in rows
    steps, ratio = measures.beta_over_limit(MOMENTUM)
    np.testing.assert_allclose(ratio, MOMENTUM.series["probe/beta"][1] / 38)
    _, ratio = measures.beta_over_limit(ADAMW)  # Adam: β^P over its own limit
    np.testing.assert_allclose(ratio, ADAMW.series["probe/beta_precond"][1] / 38_000)
    decay = run("decay", {"lr": 0.1}, *RAW, lr_series=([0, 50], [0.1, 0.01]))
    _, ratio = measures.beta_over_limit(decay)
    np.testing.assert_allclose(ratio * np.where(STEPS < 50, 20, 200), decay.series["probe/beta"][1])
