"""Shared fixtures: tiny, seeded configurations that train in well under a second."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from landscape.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from landscape_cli.main import cli


def tiny_config(**train: object) -> RunConfig:
    """vgg_tiny on a synthetic 3x8x8, 4-class set of 64 images, batch 16."""
    t = dict(steps=12, batch_size=16, lr=0.05, eval_every=5, checkpoint_every=4, log_every=3, device="cpu")
    t.update(train)
    return RunConfig(
        model=ModelConfig(name="vgg_tiny", norm="bn", num_classes=4),
        data=DataConfig(name="synthetic", synthetic_train=64, synthetic_test=32, image_size=8, num_classes=4),
        train=TrainConfig(**t),
    )


@pytest.fixture
def tiny() -> RunConfig:
    return tiny_config()


def replace_train(config: RunConfig, **changes: object) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


@pytest.fixture(autouse=True)
def _small_torch() -> None:
    # Two cores are shared with other work; one intra-op thread keeps timings sane.
    torch.set_num_threads(1)


def torchrun(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node 2 *args``, by
    :func:`run_session`."""
    return run_session(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args], env, timeout)


def run_session(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python *args`` in a session of its own, its output captured; on a timeout the
    whole session is killed (a launcher and its ranks, which would otherwise run on
    until their collective timeout) and TimeoutExpired raised, as subprocess.run would."""
    cmd = [sys.executable, *args]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def invoke(*args: object):
    """The ``landscape`` command with these arguments (each made a string), in process."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    """The command failed as bad input should: exit 2, one line "Error: ..." holding
    every fragment, and no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
