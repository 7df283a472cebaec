"""The GPT on text from the command line (issue #24): text:PATH, its one-line errors,
and every training-time instrument on a tiny GPT."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke

from landscape.runs import RunStore

TINY = ["--model", "gpt", "--layers", "1", "--heads", "2", "--width", "16", "--block-size", "16"]
TINY += ["--batch-size", "8", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    rng = np.random.default_rng(0)
    words = "to be or not that is the question whether tis nobler in the mind".split()
    path.write_text(" ".join(rng.choice(words, 1500)), encoding="utf-8")
    return path


def test_train_on_a_text_file_records_loss_per_character_and_accuracy(tmp_path, corpus):
    run = tmp_path / "r"
    result = invoke("train", *TINY, "--dataset", f"text:{corpus}", "--steps", "6", "--eval-every", "3",
                    "--run-dir", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    vocab = len(set(corpus.read_text()))
    assert config["model"]["num_classes"] == vocab and config["model"]["norm"] == "layer"  # the GPT's default
    assert config["train"]["optimizer"] == "adamw" and config["train"]["betas"] == [0.9, 0.95]
    with RunStore(run, readonly=True) as store:
        steps, loss = store.series("test/loss")
        _, acc = store.series("test/acc")
    assert steps.tolist() == [3, 6] and np.all(loss < np.log(vocab) + 0.5) and np.all((acc >= 0) & (acc <= 1))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dataset", "text:does/not/exist.txt"], "does/not/exist.txt"),
        (["--dataset", "text:EMPTY"], "is empty"),
        (["--dataset", "text:CORPUS", "--epochs", "1"], "--epochs does not apply to text"),
        (["--dataset", "text:CORPUS", "--norm", "bn"], "--model gpt takes --norm layer, rms, none"),
        (["--dataset", "text:CORPUS", "--heads", "3"], "must be a multiple of --heads 3"),
    ],
)
def test_bad_text_input_is_one_line(tmp_path, corpus, args, fragment):
    (tmp_path / "empty.txt").write_text("")
    args = [a.replace("EMPTY", str(tmp_path / "empty.txt")).replace("CORPUS", str(corpus)) for a in args]
    assert_one_line_error(invoke("train", *TINY, "--steps", "2", *args, "--run-dir", tmp_path / "r"), fragment)
    assert not (tmp_path / "r").exists()


def test_probe_along_the_update_with_the_hessian_and_preconditioned_sharpness(tmp_path, corpus):
    result = invoke("probe", *TINY, "--dataset", f"text:{corpus}", "--steps", "8", "--probe-every", "4",
                    "--dense-until", "0", "--direction", "update", "--hessian-every", "4", "--norm", "none,layer",
                    "--norm-placement", "post", "--run-dir", tmp_path / "p")  # fmt: skip
    assert result.exit_code == 0, result.output
    for norm in ("none", "layer"):
        with RunStore(tmp_path / "p" / norm, readonly=True) as store:
            names = set(store.names())
            assert {"probe/beta", "probe/curvature", "probe/beta_precond", "hessian/lambda_max"} <= names
            steps, values = store.series("hessian/lambda_max_precond")
            assert steps.tolist() == [4] and np.isfinite(values).all()  # none at step 0: no Adam state yet
    assert (tmp_path / "p" / "report.html").exists()


def test_ics_and_layer_inputs_at_the_normalization_sites(tmp_path, corpus):
    result = invoke("ics", *TINY, "--dataset", f"text:{corpus}", "--steps", "3", "--run-dir", tmp_path / "i")
    assert result.exit_code == 0, result.output
    with RunStore(tmp_path / "i" / "layer-lr0.001", readonly=True) as store:
        names = set(store.names())
    assert any(n.startswith("ics/l2/#1") for n in names)  # the tied embedding is layer 1
    result = invoke("ics-noise", *TINY, "--dataset", f"text:{corpus}", "--steps", "3", "--run-dir", tmp_path / "n")
    assert result.exit_code == 0, result.output
    with RunStore(tmp_path / "n" / "layer", readonly=True) as store:
        sites = {n.split("/")[1] for n in store.names() if n.startswith("dist/")}
    assert sites, "no layer-input distributions recorded"
