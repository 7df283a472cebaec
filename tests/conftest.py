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
from torch import nn

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
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
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


class Quadratic(nn.Module):
    """L(w) = 1/2 w^T A w - b^T w (b = 0 by default) at w (0 by default): H = A, in
    closed form. The forward ignores its input and returns L; A is a buffer, so it can
    change between two measurements."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor | None = None, w: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("a", a.clone())
        self.register_buffer("b", torch.zeros(len(a), dtype=a.dtype) if b is None else b.clone())
        self.w = nn.Parameter(torch.zeros(len(a), dtype=a.dtype) if w is None else w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.w @ self.a @ self.w - self.b @ self.w


# A 2-step vgg_tiny run with every checkpoint kept: what the checkpoint and curvature
# commands read.
TINY_TRAIN = [
    "train",
    "--model",
    "vgg_tiny",
    "--dataset",
    "synthetic",
    "--steps",
    "2",
    "--batch-size",
    "16",
    "--subset",
    "64",
    "--eval-samples",
    "32",
    "--checkpoint-every",
    "1",
    "--keep-checkpoints",
    "--device",
    "cpu",
    "--no-progress",
]


def train_tiny(tmp_path_factory: pytest.TempPathFactory, name: str):
    """A fresh :data:`TINY_TRAIN` run directory."""
    run_dir = tmp_path_factory.mktemp(name) / "r"
    result = invoke(*TINY_TRAIN, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir
