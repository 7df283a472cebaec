"""Curvature tools against their peers: PyHessian, hessian-eigenthings, curvlinops
and loss-landscapes, on VGG-11-BN at width 1/4 (579,098 parameters) and the first
batch of 128 of the first 512 CIFAR-10 training images, float32, at two points:
at init and after 300 SGD steps (step size 0.05) on those 512 images.

Costs are in units measured in the same process: one forward+backward of the batch
(``loss.backward()`` on a private copy of the model, in the same BN mode; the median
of 3 just before and of 3 just after each timed call), and for surfaces one forward
under ``torch.no_grad``. An HVP (Hessian-vector product) is counted where each tool
calls its operator. Every call gets a fresh model loaded from the saved state dict
and a bit-exact snapshot before and after (:func:`landscape.state.snapshot`, plus
``requires_grad``) says what the call changed in the user's model.

    lambda_max  to 1e-3 relative; the reference is hessian_eigs(tol=1e-8,
                max_hvps=300), cross-checked by 300 power-iteration steps; ours by
                default (gradient start, residual certificate), from a random start,
                and with the gap bound
    hvp         setup (gradient graph or operator) and one product, in units
    trace       ours to a 5 % standard error (and 1 % at the trained point): Hutch++
                with its adaptive sketch (the default), with the fixed split of the
                default budget (sketch 66) and Hutchinson; PyHessian with tol=1e-3;
                the others with our default's budget
    density     SLQ with 100 Lanczos steps, one run (PyHessian: density(iter=100))
    surface     a 7 x 7 plane (and loss-landscapes' 8 x 8): forwards per point, and
                the grid actually evaluated (recovered from the weights at each point)

Run on the CPU with one intra-op thread (the 2 shared cores spin-wait otherwise):
``python bench/curvature_bench.py`` (landscape alone, the project's venv) or
``PYTHONPATH=. /tmp/peers/bin/python bench/curvature_bench.py --peers`` (a separate
venv holding the peers, see reports/benchmarks.md). The trained weights and the
reference eigenvalues are cached in ``--cache``, shared by both runs.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.config import DataConfig
from landscape.curvature.hessian import hessian_density, hessian_eigs, hessian_trace
from landscape.curvature.hvp import hessian_operator, problem
from landscape.curvature.surface import loss_surface
from landscape.data import batches, load_data
from landscape.models import build_model
from landscape.state import differences, snapshot

ce = nn.functional.cross_entropy
MODES = ("train", "eval")
POINTS = ("init", "trained")
TRAIN_STEPS, STEP_SIZE, BATCH, SUBSET = 300, 0.05, 128, 512
DENSITY_STEPS = 100
SURFACE_STEPS = 7
CURVLINOPS_TRACE_CAP = 60
PEERS = ("pyhessian", "hessian-eigenthings", "curvlinops-for-pytorch", "loss-landscapes")


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("vgg11", norm="bn", width_mult=0.25)


def make_points(data_dir: str, cache: Path) -> tuple[dict[str, dict], torch.Tensor, torch.Tensor]:
    """The two state dicts (trained once, then read from ``cache``) and the fixed batch."""
    dataset = load_data(DataConfig(name="cifar10", data_dir=data_dir, subset=SUBSET))
    x, y = dataset.train_x[:BATCH], dataset.train_y[:BATCH]
    path = cache / "vgg11_bn_w025_points.pt"
    if path.exists():
        return torch.load(path), x, y
    model = make_model().train()
    points = {"init": copy.deepcopy(model.state_dict())}
    optimizer = torch.optim.SGD(model.parameters(), lr=STEP_SIZE)
    generator = torch.Generator().manual_seed(0)
    step = 0
    while step < TRAIN_STEPS:
        for xb, yb in batches(dataset, BATCH, generator):
            optimizer.zero_grad(set_to_none=True)
            ce(model(xb), yb).backward()
            optimizer.step()
            step += 1
            if step == TRAIN_STEPS:
                break
    points["trained"] = copy.deepcopy(model.state_dict())
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(points, path)
    return points, x, y


def fresh(state: dict, mode: str) -> nn.Module:
    """The user's model at a point, in ``mode`` (train: batch statistics)."""
    model = make_model()
    model.load_state_dict(state)
    return model.train(mode == "train")


class Clock:
    """Units at one point: a forward+backward (or a forward) of the batch on a private
    copy of the model, in the BN mode asked for."""

    def __init__(self, state: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        self.models = {mode: fresh(state, mode) for mode in MODES}
        self.x, self.y = x, y

    @staticmethod
    def _median(fn: Callable[[], Any], repeats: int = 3) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def unit(self, mode: str) -> float:
        model = self.models[mode]

        def step() -> None:
            model.zero_grad(set_to_none=True)
            ce(model(self.x), self.y).backward()

        return self._median(step)

    def forward(self, mode: str) -> float:
        model = self.models[mode]
        with torch.no_grad():
            return self._median(lambda: ce(model(self.x), self.y))

    def measure(self, fn: Callable[[], Any], mode: str, per: str = "unit") -> tuple[Any, float]:
        """(fn() or the exception it raised, its time in units or forwards)."""
        scale = self.unit if per == "unit" else self.forward
        before = scale(mode)
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as error:  # a peer that crashes is a finding, not a stop
            result = error
        elapsed = time.perf_counter() - start
        return result, elapsed / ((before + scale(mode)) / 2)


def checked(model: nn.Module, call: Callable[[], Any]) -> tuple[Any, str]:
    """call(), and what it changed in ``model`` (bit-exact), in words."""
    before = snapshot(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    result = call()
    after = snapshot(model)
    changed = differences(before, after)
    out = []
    if "params" in changed:
        out.append("weights")
    if "buffers" in changed:
        out += sorted(
            {n.rsplit(".", 1)[-1] for n in before.buffers if not torch.equal(before.buffers[n], after.buffers[n])}
        )
    if "grads" in changed:
        out.append(".grad")
    if "training" in changed:
        out.append("train->eval" if all(before.training.values()) else "training flags")
    if any(flags[n] != p.requires_grad for n, p in model.named_parameters()):
        out.append("requires_grad")
    if "cpu_rng" in changed:
        out.append("global RNG")
    return result, ", ".join(out) or "none"


class Counter:
    """Counts products with H (one per column) through a wrapped callable."""

    def __init__(self) -> None:
        self.n = 0

    def wrap(self, fn: Callable, columns: Callable[..., int] = lambda *a, **k: 1) -> Callable:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.n += columns(*args, **kwargs)
            return fn(*args, **kwargs)

        return counted


@dataclass
class Row:
    task: str
    tool: str
    point: str
    mode: str
    hvps: int | None = None
    units: float | None = None
    value: float | None = None
    stderr: float | None = None
    converged: str = ""
    changes: str = ""
    note: str = ""


@dataclass
class Bench:
    states: dict[str, dict]
    x: torch.Tensor
    y: torch.Tensor
    refs: dict[str, dict]
    rows: list[Row]
    clocks: dict[str, Clock]

    def add(
        self,
        task: str,
        tool: str,
        point: str,
        mode: str,
        run: Callable[[nn.Module], Any],
        read: Callable[[Any], dict],
        counter: Counter | None = None,
        model_mode: str | None = None,
        per: str = "unit",
        clock_mode: str | None = None,
    ) -> Any:
        """Time run(model) on a fresh model, count its HVPs, check the model's state."""
        model = fresh(self.states[point], model_mode or mode)
        if counter is not None:
            counter.n = 0
        (result, units), changes = checked(
            model, lambda: self.clocks[point].measure(lambda: run(model), clock_mode or mode, per)
        )
        row = Row(task, tool, point, mode, units=units, changes=changes)
        if counter is not None:
            row.hvps = counter.n
        if isinstance(result, Exception):
            row.note = f"{type(result).__name__}: {str(result).splitlines()[0][:90]}"
        else:
            for k, v in read(result).items():
                setattr(row, k, v)
        self.rows.append(row)
        return result

    def ref(self, point: str, mode: str) -> float:
        return self.refs[f"{point}/{mode}"]["lanczos"]


def references(states: dict, x: torch.Tensor, y: torch.Tensor, cache: Path) -> dict[str, dict]:
    """lambda_max per (point, mode): Lanczos to 1e-8 (or rounding), and 300 power-iteration
    steps; where those find a larger negative eigenvalue instead, 300 more on H - that * I."""
    path = cache / "vgg11_bn_w025_references.json"
    refs = json.loads(path.read_text()) if path.exists() else {}
    for point in POINTS:
        for mode in MODES:
            key = f"{point}/{mode}"
            model = fresh(states[point], "train")
            if key not in refs:
                lanczos = hessian_eigs(
                    model, ce, x, y, bn_mode=mode, tol=1e-8, max_hvps=300, generator=torch.Generator().manual_seed(1)
                )
                refs[key] = {
                    "lanczos": float(lanczos.eigenvalues[0]),
                    "residual": float(lanczos.residuals[0]),
                    "hvps": lanczos.hvps,
                    "converged": lanczos.converged,
                    "power300": power_iteration(model, x, y, mode, 0.0),
                }
            entry = refs[key]
            if "shifted300" not in entry and entry["power300"] < 0:
                entry["shifted300"] = power_iteration(model, x, y, mode, entry["power300"])
            cache.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(refs, indent=1))
    return refs


def power_iteration(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str, shift: float) -> float:
    """The Rayleigh quotient after 300 steps of power iteration on H - shift * I, plus shift."""
    with hessian_operator(model, ce, problem(model, x, y, mode, None, None, None)) as op:
        v = torch.randn(op.n, generator=torch.Generator().manual_seed(2))
        v /= v.norm()
        value = 0.0
        for _ in range(300):
            w = op(v) - shift * v
            value = float(v @ w)
            v = w / w.norm()
    return value + shift


def hvp_cost(clock: Clock, mode: str, setup: Callable[[], Callable[[], Any]], repeats: int = 5) -> dict:
    """Setup and one product in units: setup() builds the operator and returns one product."""
    unit = clock.unit(mode)
    start = time.perf_counter()
    product = setup()
    built = time.perf_counter()
    for _ in range(repeats):
        product()
    done = time.perf_counter()
    unit = (unit + clock.unit(mode)) / 2
    return {"setup": (built - start) / unit, "per": (done - built) / repeats / unit}


# ----------------------------------------------------------------------------- landscape


def run_ours(b: Bench) -> dict[tuple[str, str], int]:
    """Our functions; returns the Hutch++ HVP count per (point, mode), the peers' budget."""

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    budget = {}
    x, y = b.x, b.y
    for point in POINTS:
        for mode in MODES:
            ref = b.ref(point, mode)

            def eig_row(r: Any) -> dict:
                return {
                    "hvps": r.hvps,
                    "value": float(r.eigenvalues[0]),
                    "converged": str(r.converged),
                    "note": f"residual {float(r.residuals[0]):.2g} ({float(r.residuals[0]) / ref:.1e} rel), "
                    f"error bound {r.error_bound:.2g}",
                }

            # The default (gradient start, stops on the residual), then the other starts and bound.
            for label, options in (
                ("", {}),
                ("(start='random')", {"start": "random"}),
                ("(bound='gap')", {"bound": "gap"}),
            ):
                b.add(
                    "lambda_max",
                    f"landscape hessian_eigs{label}",
                    point,
                    mode,
                    lambda m: hessian_eigs(m, ce, x, y, bn_mode=mode, tol=1e-3, generator=gen(), **options),
                    eig_row,
                    model_mode="train",
                )

            model = fresh(b.states[point], "train")
            held = []

            def setup() -> Callable[[], Any]:
                context = hessian_operator(model, ce, problem(model, x, y, mode, None, None, None))
                op = context.__enter__()
                held.append(context)
                v = torch.randn(op.n, generator=gen())
                return lambda: op(v)

            cost = hvp_cost(b.clocks[point], mode, setup)
            held[0].__exit__(None, None, None)
            b.rows.append(
                Row(
                    "hvp",
                    "landscape (one graph, reused)",
                    point,
                    mode,
                    units=cost["per"],
                    note=f"setup {cost['setup']:.2f} units: forward + graph-keeping backward",
                )
            )

            # Hutch++ with its adaptive sketch (the default), with the fixed split of Meyer et
            # al. at the default budget (sketch = 200 // 3), and Hutchinson; 5 % and 1 %.
            for rtol in (0.05, 0.01):
                for label, options in (
                    ("hutch++", {}),
                    ("hutch++ sketch=66", {"sketch": 66}),
                    ("hutchinson", {"method": "hutchinson"}),
                ):
                    if rtol == 0.01 and point != "trained":
                        continue
                    t = b.add(
                        "trace",
                        f"landscape hessian_trace {label}",
                        point,
                        mode,
                        lambda m: hessian_trace(m, ce, x, y, bn_mode=mode, rtol=rtol, generator=gen(), **options),
                        lambda r: {
                            "hvps": r.hvps,
                            "value": r.trace,
                            "stderr": r.stderr,
                            "converged": str(r.converged),
                            "note": f"sized for stderr <= {rtol:.0%}: pilot + {r.samples} fresh; sketch {r.sketch}",
                        },
                        model_mode="train",
                    )
                    if label == "hutch++" and rtol == 0.05:
                        budget[point, mode] = t.hvps

            if point != "trained":
                continue
            b.add(
                "density",
                "landscape hessian_density",
                point,
                mode,
                lambda m: hessian_density(m, ce, x, y, bn_mode=mode, runs=1, steps=DENSITY_STEPS, generator=gen()),
                lambda r: {"hvps": r.hvps, "note": f"1 run x {DENSITY_STEPS} steps, full reorthogonalization"},
                model_mode="train",
            )
            b.add(
                "surface",
                f"landscape loss_surface {SURFACE_STEPS}x{SURFACE_STEPS}",
                point,
                mode,
                lambda m: loss_surface(m, ce, x, y, steps=SURFACE_STEPS, dims=2, bn_mode=mode, generator=gen()),
                lambda s: {
                    "value": s.base_loss,
                    "note": "centre in grid: yes (L(w) bit for bit); symmetric: yes (exact -1, 0, 1)",
                },
                model_mode="train",
                per="forward",
            )
            b.rows[-1].units /= SURFACE_STEPS**2
    return budget


# ----------------------------------------------------------------------------- peers


def run_pyhessian(b: Bench) -> None:
    # The module: ``import pyhessian.hessian as ph`` binds the class its package exports.
    ph = importlib.import_module("pyhessian.hessian")
    counter = Counter()
    ph.hessian_vector_product = counter.wrap(ph.hessian_vector_product)
    x, y = b.x, b.y
    for point in POINTS:
        # Given the model as training leaves it (train mode): PyHessian calls .eval() itself.
        b.add(
            "lambda_max",
            "PyHessian eigenvalues(tol=1e-3)",
            point,
            "eval (forced)",
            lambda m: ph.hessian(m, ce, data=(x, y), cuda=False).eigenvalues(maxIter=100, tol=1e-3),
            lambda r: {"value": r[0][0], "converged": f"{counter.n < 100} (stops on relative change)"},
            counter,
            model_mode="train",
            clock_mode="eval",
        )
        model = fresh(b.states[point], "train")
        held = []

        def setup() -> Callable[[], Any]:
            h = ph.hessian(model, ce, data=(x, y), cuda=False)
            held.append(h)
            v = [torch.randn_like(p) for p in h.params]
            return lambda: ph.hessian_vector_product(h.gradsH, h.params, v)

        cost = hvp_cost(b.clocks[point], "eval", setup)
        b.rows.append(
            Row(
                "hvp",
                "PyHessian (one graph, reused)",
                point,
                "eval (forced)",
                units=cost["per"],
                note=f"setup {cost['setup']:.2f} units: forward + backward(create_graph) into .grad",
            )
        )
        held.clear()

        def trace_read(samples: list[float]) -> dict:
            t = torch.tensor(samples, dtype=torch.float64)
            stderr = float(t.std() / len(t) ** 0.5) if len(t) > 1 else float("inf")
            return {
                "value": float(t.mean()),
                "stderr": stderr,
                "converged": f"{len(t) < 100} (relative change of the mean < 1e-3)",
            }

        b.add(
            "trace",
            "PyHessian trace(tol=1e-3)",
            point,
            "eval (forced)",
            lambda m: ph.hessian(m, ce, data=(x, y), cuda=False).trace(maxIter=100, tol=1e-3),
            trace_read,
            counter,
            model_mode="train",
            clock_mode="eval",
        )
        if point == "trained":
            b.add(
                "density",
                "PyHessian density(iter=100, n_v=1)",
                point,
                "eval (forced)",
                lambda m: ph.hessian(m, ce, data=(x, y), cuda=False).density(iter=DENSITY_STEPS, n_v=1),
                lambda r: {"note": "ran"},
                counter,
                model_mode="train",
                clock_mode="eval",
            )


def run_eigenthings(b: Bench, budget: dict) -> None:
    import hessian_eigenthings as he

    counter = Counter()
    x, y = b.x, b.y

    def operator(m: nn.Module) -> Any:
        op = he.HessianOperator(m, [(x, y)], he.supervised_loss(ce))
        op.matvec = counter.wrap(op.matvec)
        return op

    for point in POINTS:
        for mode in MODES:
            b.add(
                "lambda_max",
                "hessian-eigenthings power_iteration_one(tol=1e-3)",
                point,
                mode,
                lambda m: he.power_iteration_one(operator(m), max_iter=100, tol=1e-3, seed=0),
                lambda r: {"value": r[0], "converged": str(r[4])},
                counter,
            )
            b.add(
                "lambda_max",
                "hessian-eigenthings lanczos(k=1), default max_iter=2",
                point,
                mode,
                lambda m: he.lanczos(operator(m), k=1, which="LA", tol=1e-3, seed=0),
                lambda r: {"value": float(r.eigenvalues[0]), "converged": str(bool(r.converged[0]))},
                counter,
            )
            spent = counter.n
            for steps in (4, 8, 16, 32, 64):
                r = b.add(
                    "lambda_max",
                    f"hessian-eigenthings lanczos(k=1, max_iter={steps})",
                    point,
                    mode,
                    lambda m: he.lanczos(operator(m), k=1, max_iter=steps, which="LA", tol=1e-3, seed=0),
                    lambda r: {"value": float(r.eigenvalues[0]), "converged": str(bool(r.converged[0]))},
                    counter,
                )
                spent += counter.n
                if bool(r.converged[0]):
                    b.rows[-1].note = f"first converged max_iter of 2, 4, 8, ...: {spent} HVPs over the search"
                    break
                b.rows.pop()  # only the first converged length is reported

            model = fresh(b.states[point], mode)
            op = operator(model)
            v = torch.randn(op.size, generator=torch.Generator().manual_seed(0))
            cost = hvp_cost(b.clocks[point], mode, lambda: lambda: op.matvec(v))
            b.rows.append(
                Row(
                    "hvp",
                    "hessian-eigenthings (forward + double backward each)",
                    point,
                    mode,
                    units=cost["per"],
                    note="no setup",
                )
            )

            n = max(6, 3 * -(-budget[point, mode] // 3))
            b.add(
                "trace",
                f"hessian-eigenthings trace(hutch++, num_matvecs={n})",
                point,
                mode,
                lambda m: he.trace(operator(m), num_matvecs=n, method="hutch++", seed=0),
                lambda r: {"value": r.estimate, "stderr": r.stderr, "note": "fixed budget: ours' Hutch++ count"},
                counter,
            )
            if point == "trained":
                b.add(
                    "density",
                    f"hessian-eigenthings spectral_density(1 run x {DENSITY_STEPS})",
                    point,
                    mode,
                    lambda m: he.spectral_density(operator(m), num_runs=1, lanczos_steps=DENSITY_STEPS, seed=0),
                    lambda r: {"note": "full reorthogonalization"},
                    counter,
                )


def run_curvlinops(b: Bench, budget: dict) -> None:
    import curvlinops
    from scipy.sparse.linalg import eigsh

    counter = Counter()
    cls = curvlinops.HessianLinearOperator
    cls._matmat_batch = counter.wrap(cls._matmat_batch, lambda self, X, y, M: M[0].shape[-1])
    x, y = b.x, b.y

    def operator(m: nn.Module) -> Any:
        return cls(m, nn.CrossEntropyLoss(), [p for p in m.parameters() if p.requires_grad], [(x, y)])

    for point in POINTS:
        for mode in MODES:
            b.add(
                "lambda_max",
                "curvlinops + scipy eigsh(k=1, LA, tol=1e-3)",
                point,
                mode,
                lambda m: eigsh(operator(m).to_scipy(), k=1, which="LA", tol=1e-3, return_eigenvectors=False),
                lambda r: {
                    "value": float(r[0]),
                    "converged": "True (no ArpackNoConvergence)",
                    "note": "HVPs include the constructor's determinism check (2)",
                },
                counter,
            )

            model = fresh(b.states[point], mode)
            held = []

            def setup() -> Callable[[], Any]:
                op = operator(model)
                held.append(op)
                v = torch.randn(op.shape[1], generator=torch.Generator().manual_seed(0))
                return lambda: op @ v

            try:
                cost = hvp_cost(b.clocks[point], mode, setup)
                b.rows.append(
                    Row(
                        "hvp",
                        "curvlinops (jvp of jacrev, forward each)",
                        point,
                        mode,
                        units=cost["per"],
                        note=f"setup {cost['setup']:.2f} units: determinism check (2 gradients, 2 HVPs)",
                    )
                )
            except Exception as error:
                b.rows.append(Row("hvp", "curvlinops", point, mode, note=f"{type(error).__name__}: {error}"[:120]))
            held.clear()

            # Each phase multiplies all its columns in one vmap (about 115 MB per column
            # here): capped at 60 products, 20 columns at once.
            n = min(CURVLINOPS_TRACE_CAP, max(6, 3 * -(-budget[point, mode] // 3)))
            b.add(
                "trace",
                f"curvlinops hutchpp_trace(num_matvecs={n})",
                point,
                mode,
                lambda m: curvlinops.hutchpp_trace(operator(m), num_matvecs=n),
                lambda r: {"value": float(r), "note": "no standard error returned; budget capped (memory)"},
                counter,
            )
            if point == "trained":
                b.add(
                    "density",
                    f"curvlinops lanczos_approximate_spectrum(ncv={DENSITY_STEPS})",
                    point,
                    mode,
                    lambda m: curvlinops.lanczos_approximate_spectrum(operator(m), ncv=DENSITY_STEPS),
                    lambda r: {"note": "no reorthogonalization; eigsh for the boundaries first"},
                    counter,
                )


def grid_geometry(offsets: list[torch.Tensor], w_norm: float, steps: int) -> dict:
    """The grid loss-landscapes evaluated, from w_point - w at each point, in its own step
    vectors: d2 between its first two points, d1 from the first column switch (its
    columns run up and down alternately). Coordinates by least squares (the fit's
    residual says the points are that lattice)."""
    r = torch.stack(offsets)  # (steps ** 2, n) float64, in evaluation order
    d2 = r[1] - r[0]
    d1 = r[steps] - r[steps - 1] + d2  # the switch moves +d1 and -d2 (the next column runs down)
    basis = torch.stack([d1, d2], dim=1)  # (n, 2)
    coords = torch.linalg.lstsq(basis, r.T).solution.T  # (points, 2)
    fit = float((basis @ coords.T - r.T).norm() / r.norm())
    coords = coords.round(decimals=6)
    grid = {tuple(c) for c in coords.tolist()}
    first = sorted({c[1] for c in coords[:steps].tolist()})
    second = sorted({c[1] for c in coords[steps : 2 * steps].tolist()})
    return {
        "centre": (0.0, 0.0) in grid or (-0.0, 0.0) in grid or (0.0, -0.0) in grid or (-0.0, -0.0) in grid,
        "symmetric": all((-a + 0.0, -b + 0.0) in grid for a, b in grid),
        "d1": sorted({c[0] for c in coords.tolist()}),
        "d2_even": first,
        "d2_odd": second,
        "fit": fit,
        "extent": float(r.norm(dim=1).max()) / w_norm,
        "step": float(d1.norm()) / w_norm,
    }


def run_loss_landscapes(b: Bench) -> None:
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    x, y = b.x, b.y
    point = "trained"
    for mode in MODES:
        for steps in (SURFACE_STEPS, SURFACE_STEPS + 1):
            b.add(
                "surface",
                f"loss-landscapes random_plane(steps={steps})",
                point,
                mode,
                lambda m: loss_landscapes.random_plane(m, Loss(ce, x, y), distance=1, steps=steps),
                lambda r: {"value": float(r.flat[r.size // 2])},
                per="forward",
            )
            b.rows[-1].units /= steps**2
            # The grid it evaluated: record the weights at every point (untimed).
            model = fresh(b.states[point], mode)
            w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
            offsets: list[torch.Tensor] = []
            metric = Loss(ce, x, y)

            def recording(wrapper: Any) -> float:
                offsets.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double() - w0)
                return metric(wrapper)

            loss_landscapes.random_plane(model, recording, distance=1, steps=steps)
            g = grid_geometry(offsets, float(w0.norm()), steps)
            left = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double() - w0

            def span(values: list[float]) -> str:
                return f"{values[0]:g}..{values[-1]:g}"

            b.rows[-1].note = (
                f"grid in its steps: d1 {span(g['d1'])}, d2 {span(g['d2_even'])} in even columns and "
                f"{span(g['d2_odd'])} in odd ones (lattice fit {g['fit']:.0e}); centre in grid: "
                f"{'yes' if g['centre'] else 'no'}; symmetric: {'yes' if g['symmetric'] else 'no'}; step "
                f"{g['step']:.2f} ||w||; weights left at w + {float(left.norm()) / float(w0.norm()):.2f} ||w||"
            )


# ----------------------------------------------------------------------------- report


def table(rows: list[Row], columns: list[tuple[str, Callable[[Row], str]]]) -> str:
    lines = ["| " + " | ".join(c for c, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f(r) for _, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def fmt(v: float | None, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def power_check(entry: dict) -> float:
    return entry.get("shifted300", entry["power300"])


def report(b: Bench) -> str:
    out = []
    refs = [Row("ref", "", *key.split("/")) for key in b.refs]
    out.append("Reference lambda_max (hessian_eigs tol=1e-8, max_hvps=300; 300 power-iteration steps):\n")
    out.append(
        table(
            refs,
            [
                ("point", lambda r: r.point),
                ("BN mode", lambda r: r.mode),
                ("lambda_max", lambda r: f"{b.refs[f'{r.point}/{r.mode}']['lanczos']:.7g}"),
                ("residual", lambda r: f"{b.refs[f'{r.point}/{r.mode}']['residual']:.1e}"),
                ("HVPs", lambda r: str(b.refs[f"{r.point}/{r.mode}"]["hvps"])),
                ("power x300", lambda r: f"{b.refs[f'{r.point}/{r.mode}']['power300']:.7g}"),
                ("shifted power x300", lambda r: fmt(b.refs[f"{r.point}/{r.mode}"].get("shifted300"), ".7g")),
                (
                    "rel. diff",
                    lambda r: f"{abs(power_check(b.refs[f'{r.point}/{r.mode}']) / b.ref(r.point, r.mode) - 1):.1e}",
                ),
            ],
        )
    )

    def ref_of(r: Row) -> float:
        return b.ref(r.point, "eval" if r.mode.startswith("eval") else "train")

    def rel(r: Row) -> str:
        return "-" if r.value is None else f"{abs(r.value - ref_of(r)) / ref_of(r):.1e}"

    def per_hvp(r: Row) -> str:
        return "-" if not r.hvps or r.units is None else f"{r.units / r.hvps:.2f}"

    common = [("tool", lambda r: r.tool), ("point", lambda r: r.point), ("BN mode", lambda r: r.mode)]
    tail = [("model state changed", lambda r: r.changes), ("note", lambda r: r.note)]
    sections = {
        "lambda_max": (
            "lambda_max to 1e-3 relative",
            [
                ("HVPs", lambda r: fmt(r.hvps, "d")),
                ("units", lambda r: fmt(r.units, ".1f")),
                ("units/HVP", per_hvp),
                ("lambda_max", lambda r: fmt(r.value, ".6g")),
                ("rel. error", rel),
                ("claims converged", lambda r: r.converged),
            ],
        ),
        "hvp": ("One HVP, fixed batch", [("units per HVP", lambda r: fmt(r.units, ".2f"))]),
        "trace": (
            "Trace",
            [
                ("HVPs", lambda r: fmt(r.hvps, "d")),
                ("units", lambda r: fmt(r.units, ".1f")),
                ("trace", lambda r: fmt(r.value, ".5g")),
                (
                    "stderr / trace",
                    lambda r: "-" if r.stderr is None or r.value is None else f"{r.stderr / abs(r.value):.3f}",
                ),
                ("claims converged", lambda r: r.converged),
            ],
        ),
        "density": (
            "SLQ density",
            [("HVPs", lambda r: fmt(r.hvps, "d")), ("units", lambda r: fmt(r.units, ".1f")), ("units/HVP", per_hvp)],
        ),
        "surface": ("2-D surface", [("forwards per point", lambda r: fmt(r.units, ".2f"))]),
    }
    for task, (title, columns) in sections.items():
        rows = [r for r in b.rows if r.task == task]
        if rows:
            out.append(f"\n{title}:\n")
            out.append(table(rows, common + columns + (tail if task != "hvp" else [("note", lambda r: r.note)])))
    return "\n".join(out)


def versions(peers: bool) -> str:
    names = ["torch", "torch-landscape", *(PEERS if peers else ())]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", action="store_true", help="also run the peers (installed in this venv)")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/landscape_curvature_bench"))
    parser.add_argument(
        "--only", default="", help="comma-separated: ours,pyhessian,eigenthings,curvlinops,loss-landscapes"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    states, x, y = make_points(args.data_dir, args.cache)
    refs = references(states, x, y, args.cache)
    b = Bench(states, x, y, refs, [], {p: Clock(states[p], x, y) for p in POINTS})
    only = set(filter(None, args.only.split(",")))

    def wanted(name: str) -> bool:
        return not only or name in only

    print(f"{versions(args.peers)}; {torch.get_num_threads()} thread(s)", flush=True)
    budget = run_ours(b) if wanted("ours") or args.peers else {}
    if args.peers:
        for name, run in (
            ("pyhessian", lambda: run_pyhessian(b)),
            ("eigenthings", lambda: run_eigenthings(b, budget)),
            ("curvlinops", lambda: run_curvlinops(b, budget)),
            ("loss-landscapes", lambda: run_loss_landscapes(b)),
        ):
            if wanted(name):
                run()
    print(report(b))


if __name__ == "__main__":
    main()
