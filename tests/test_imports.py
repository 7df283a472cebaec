"""Every module imports on its own, in a fresh interpreter (pip-tools' circular-import
test): an import cycle or a module that works only after another was imported fails here."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

import landscape
import landscape_cli


def modules() -> list[str]:
    names = []
    for package in (landscape, landscape_cli):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            if not info.name.endswith("__main__"):
                names.append(info.name)
    return names


# In one fresh interpreter: before each import every module of ours is dropped from
# sys.modules (third-party ones such as torch stay, which keeps this fast), so each of
# ours is imported first, on its own, as a user's first import would.
CHECK = """
import importlib, sys, traceback
failures = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("landscape", "landscape_cli")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failures.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failures))
"""


def test_each_module_imports_alone():
    names = modules()
    assert {
        "landscape.paper.defaults",
        "landscape.training.syncbn",
        "landscape.report.plots",
        "landscape_cli.probe_cmd",
    } <= set(names)
    out = subprocess.run(
        [sys.executable, "-c", CHECK, *names],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""


def test_the_report_never_imports_torch():
    code = (
        "import sys, landscape.report, landscape.report.plots, landscape.paper.claims, landscape.paper.intervals, "
        "landscape.paper.measures, "
        "landscape.paper.reproduction, landscape.paper.catalogue, landscape.runner.run_match, landscape.runs; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_command_line_starts_without_torch():
    """Shell completion runs `landscape` on every Tab: the command group must load in
    a fraction of a second, so no command module imports torch or plotly at load time."""
    code = "import sys, landscape_cli.main; print('torch' in sys.modules, 'plotly' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# The deep paths README showed before the packages by concern (issue #22): kept for one
# minor release as re-exports that warn, each with the names users imported from it.
OLD_PATHS = {
    "landscape.hooks": ("ProbeHook", "ICSHook", "HessianHook", "Event", "Context", "every", "dense_early"),
    "landscape.probes": ("probe_gradient", "ProbeResult", "training_grads"),
    "landscape.hessian": ("hessian_eigs", "hessian_trace", "hessian_density", "EigResult"),
}
WARNS = """
import importlib, sys, warnings
name, wanted = sys.argv[1], sys.argv[2:]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    module = importlib.import_module(name)
moved = [w for w in caught if issubclass(w.category, DeprecationWarning) and name in str(w.message)]
print(len(moved), [n for n in wanted if not hasattr(module, n)])
"""


def test_the_old_deep_paths_still_import_and_warn():
    from landscape.curvature.hessian import hessian_eigs
    from landscape.runner.adapters import ProbeHook

    for name, wanted in OLD_PATHS.items():
        out = subprocess.run([sys.executable, "-c", WARNS, name, *wanted], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "1 []", (name, out.stdout)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import landscape.hessian
        import landscape.hooks

    assert landscape.hooks.ProbeHook is ProbeHook and landscape.hessian.hessian_eigs is hessian_eigs


def test_every_export_of_landscape_resolves():
    for name in landscape.__all__:
        assert getattr(landscape, name) is not None, name
