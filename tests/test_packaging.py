"""The installed distribution: its name and version, the `landscape` command it puts on
PATH, that command's shell completion, and a package list that ships every subpackage."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import landscape
from landscape_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "torch-landscape"  # "landscape" on the package index is another project


def installed_command() -> Path:
    script = Path(sys.executable).parent / "landscape"
    assert script.exists(), f"no {script}: install the project first (pip install -e .)"
    return script


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    # One thread: the CLI imports torch, and these tests only need it to start.
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", **env)
    )


def test_version_is_the_distributions():
    assert landscape.__version__ == importlib.metadata.version(DISTRIBUTION)
    assert landscape.__version__ != "0+unknown"


def test_version_option_prints_it():
    out = run([str(installed_command()), "--version"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"landscape, version {landscape.__version__}"


def test_every_subpackage_is_listed():
    # packages.find cannot be used: it does not see cli/ as landscape_cli, so the list is
    # explicit and a new subpackage has to be added to it.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    renamed = {path: name for name, path in config["package-dir"].items()}
    on_disk = set()
    for top in ("landscape", "cli"):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            on_disk.add(".".join((renamed.get(parts[0], parts[0]), *parts[1:])))
    assert on_disk == listed


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_commands():
    script = run([str(installed_command())], _LANDSCAPE_COMPLETE="bash_source")
    assert script.returncode == 0, script.stderr[-2000:]
    assert "_landscape_completion()" in script.stdout
    assert "complete -o nosort -F _landscape_completion landscape" in script.stdout
    # bash runs the script's function as it would on <Tab> after `landscape rep`; the
    # function calls `landscape` back with _LANDSCAPE_COMPLETE=bash_complete.
    tab = (
        'eval "$SCRIPT"; COMP_WORDS=(landscape rep); COMP_CWORD=1; '
        '_landscape_completion landscape; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    path = f"{installed_command().parent}{os.pathsep}{os.environ.get('PATH', '')}"
    out = run(["bash", "-c", tab], SCRIPT=script.stdout, PATH=path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["report", "reproduce"]


@pytest.mark.parametrize(
    ("shell", "marker"), [("zsh", "#compdef landscape"), ("fish", "complete --no-files --command landscape")]
)
def test_other_shells_get_a_script(shell, marker):
    result = CliRunner().invoke(cli, [], prog_name="landscape", env={"_LANDSCAPE_COMPLETE": f"{shell}_source"})
    assert result.exit_code == 0, result.output
    assert marker in result.output
