"""What a checkpoint holds is checked by every reader (resume, `landscape hessian`,
`landscape surface`, the kept weights): a file that loads but is no landscape
checkpoint is one line naming what it holds, and exit 2."""

import argparse
import shutil

import pytest
import torch
from conftest import assert_one_line_error, invoke, train_tiny

from landscape.runs import RunStore


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory, "ckpt")


def _contents(saved):
    """What a file in place of a checkpoint may hold, and the words that must name it."""
    return {
        "tensor": (torch.zeros(3, 4), "a bare tensor (float32, shape (3, 4))"),
        # The keys a Lightning 2.x Trainer.save_checkpoint writes (it loads with weights_only=True).
        "lightning": (
            {
                "state_dict": saved["model"],
                "global_step": 7,
                "pytorch-lightning_version": "2.4.0",
                "epoch": 0,
                "callbacks": {},
                "optimizer_states": [],
                "lr_schedulers": [],
                "loops": {},
            },
            "a PyTorch Lightning checkpoint (global_step 7, pytorch-lightning 2.4.0)",
        ),
        "no model": ({k: v for k, v in saved.items() if k != "model"}, "a dict without 'model'"),
        "no step": ({k: v for k, v in saved.items() if k != "step"}, "a dict without 'step'"),
        "refused": (
            dict(saved, args=argparse.Namespace(lr=0.1)),
            "objects torch.load(weights_only=True) refuses (argparse.Namespace)",
        ),
    }


COMMANDS = {
    "resume": lambda run: ["train", "--resume", run, "--no-progress"],
    "hessian": lambda run: ["hessian", run, "--max-hvps", "4"],
    "surface": lambda run: ["surface", run, "--steps", "3", "--dims", "1"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["tensor", "lightning", "no model", "no step", "refused"])
def test_a_last_checkpoint_that_is_not_one_is_one_line(trained, tmp_path, kind, command):
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    last = run / "checkpoints" / "last.pt"
    content, words = _contents(torch.load(last, weights_only=True))[kind]
    torch.save(content, last)
    with RunStore(run, readonly=True) as store:
        before = (store.status, list(store.rows()))
    assert_one_line_error(invoke(*COMMANDS[command](run)), str(last), "not a landscape checkpoint", words)
    with RunStore(run, readonly=True) as store:
        assert (store.status, list(store.rows())) == before


@pytest.mark.parametrize(
    "command",
    [
        ["hessian", "--checkpoint", "all", "--max-hvps", "4"],
        ["surface", "--checkpoint", "1", "--steps", "3", "--dims", "1"],
    ],
)
def test_a_kept_checkpoint_that_is_not_one_is_one_line(trained, tmp_path, command):
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    kept = run / "checkpoints" / "weights-00000001.pt"
    torch.save(torch.zeros(5), kept)
    assert_one_line_error(invoke(command[0], run, *command[1:]), str(kept), "a bare tensor (float32, shape (5,))")


def test_kept_weights_do_not_resume_but_measure(trained, tmp_path):
    # Kept weights (step, model, generators) are all the measurements need, not a resume.
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    shutil.copy(run / "checkpoints" / "weights-00000002.pt", run / "checkpoints" / "last.pt")
    assert_one_line_error(
        invoke("train", "--resume", run, "--no-progress"),
        "a dict without 'optimizer'",
        "(its keys: generators, model, step)",
    )
    result = invoke("hessian", run, "--max-hvps", "4")
    assert result.exit_code == 0 and "step 2: lambda_max" in result.output, result.output
