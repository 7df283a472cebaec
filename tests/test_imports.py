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
