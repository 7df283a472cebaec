"""``landscape surface``: the surface of a recorded run against independent
recomputations from its checkpoints, the trajectory's PCA against numpy's, the
written pages, the report's section, and one-line errors that write nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, invoke

from landscape.config import RunConfig
from landscape.curvature.hessian import hessian_eigs
from landscape.curvature.surface import loss_surface, trajectory_directions
from landscape.data import batches, load_data, objective
from landscape.runner.assembly import build_run_model
from landscape.training.checkpoint import kept_steps, load_checkpoint, weights_path
from landscape_cli.options import train_options

TRAIN = [
    "train",
    "--model",
    "tiny",
    "--dataset",
    "synthetic",
    "--subset",
    "128",
    "--batch-size",
    "32",
    "--steps",
    "30",
    "--checkpoint-every",
    "10",
    "--device",
    "cpu",
    "--no-progress",
]


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path, with a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny run that kept the weights of its checkpoints at steps 0, 10, 20 and 30."""
    path = tmp_path_factory.mktemp("surface") / "run"
    result = invoke(*TRAIN, "--keep-checkpoints", "--run-dir", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """The same run without --keep-checkpoints: only checkpoints/last.pt."""
    path = tmp_path_factory.mktemp("surface") / "short"
    result = invoke(*TRAIN, "--run-dir", path)
    assert result.exit_code == 0, result.output
    return path


def rebuilt(run_dir: Path, n_batches: int = 4):
    """The run's model at last.pt, its loss and its first batches, rebuilt by hand."""
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    model = build_run_model(config, "cpu")
    model.load_state_dict(load_checkpoint(run_dir)["model"])
    data = load_data(config.data, "cpu")
    order = torch.Generator().manual_seed(config.train.seed)
    first = [b for _, b in zip(range(n_batches), batches(data, config.train.batch_size, order))]
    return model, objective(data, config.train.loss_reduction), first


def test_the_training_flags_exist():
    names = {opt for p in train_options()(lambda **o: None).__click_params__ for opt in p.opts}
    assert {"--checkpoint-every", "--keep-checkpoints"} <= names


def test_kept_checkpoints(run, short_run):
    assert kept_steps(run) == [0, 10, 20, 30]
    assert kept_steps(short_run) == []
    last = load_checkpoint(run)
    kept = torch.load(weights_path(run, 30), weights_only=True)
    assert all(torch.equal(last["model"][k], kept["model"][k]) for k in last["model"])


def test_2d_surface_centre_is_the_checkpoint_loss_bit_for_bit(run):
    result = invoke("surface", run, "--steps", 5, "--dims", 2)
    assert result.exit_code == 0, result.output
    record = json.loads((run / "surface" / "surface.json").read_text())
    assert record["checkpoint"]["step"] == 30 and record["data"] == {
        "batches": 4,
        "batch_size": 32,
        "order": record["data"]["order"],
    }
    assert record["center_index"] == [2, 2]
    assert [len(c) for c in record["coords"]] == [5, 5] and record["coords"][0][2] == 0.0
    losses = np.array(record["losses"])
    assert losses.shape == (5, 5) and np.isfinite(losses).all()
    assert losses[2, 2] == record["base_loss"]
    assert losses.min() < losses.max()  # the directions move the weights

    model, loss_fn, first = rebuilt(run)
    independent = loss_surface(model, loss_fn, None, None, steps=3, dims=1, batches=first)
    assert record["base_loss"] == independent.base_loss  # same weights, batches and loss: the same bits
    with torch.no_grad():
        plain = np.mean([float(loss_fn(model(x), y)) for x, y in first])
    assert record["base_loss"] == pytest.approx(plain, rel=1e-6)

    page = (run / "surface" / "surface.html").read_text()
    assert page.count('"type":"contour"') == 1 and page.count('"type":"surface"') == 1
    head, body = page.split("</head>", 1)
    assert "plotly" in head and "https://cdn" not in body and "<script src=" not in page  # self-contained


def test_1d_surface_is_a_line(run, tmp_path):
    result = invoke("surface", run, "--steps", 7, "--dims", 1, "--span", 0.5, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "surface.json").read_text())
    assert len(record["coords"]) == 1 and len(record["losses"]) == 7
    assert record["coords"][0][0] == -0.5 and record["losses"][3] == record["base_loss"]
    page = (tmp_path / "surface.html").read_text()
    assert '"type":"scatter"' in page and '"type":"contour"' not in page and '"type":"surface"' not in page


def test_points_per_forward_gives_the_same_surface(run, tmp_path):
    records = []
    for n in (1, 7):
        result = invoke("surface", run, "--steps", 5, "--points-per-forward", n, "--out", tmp_path / str(n))
        assert result.exit_code == 0, result.output
        records.append(json.loads((tmp_path / str(n) / "surface.json").read_text()))
    loop, batched = records
    assert batched["settings"] == loop["settings"]  # how it is computed is not part of what
    assert batched["base_loss"] == loop["base_loss"]  # the centre goes through the loop: bit for bit
    np.testing.assert_allclose(batched["losses"], loop["losses"], rtol=1e-6, atol=0)
    assert np.std(loop["losses"]) > 0.01  # the points differ: the comparison means something


def test_eigen_directions_are_the_top_hessian_eigenvectors(run, tmp_path):
    result = invoke(
        "surface", run, "--directions", "eigen", "--dims", 1, "--steps", 5, "--span", 0.1, "--out", tmp_path
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "surface.json").read_text())

    model, loss_fn, first = rebuilt(run)
    eig = hessian_eigs(
        model,
        loss_fn,
        k=1,
        return_eigenvectors=True,
        batches=first,
        block=lambda name, p: p.dim() > 1,
        generator=torch.Generator().manual_seed(0),
    )
    assert record["eigen"]["eigenvalues"] == eig.eigenvalues.tolist()
    vector = eig.eigenvectors[0]
    direction = [vector.get(name, torch.zeros_like(p)) for name, p in model.named_parameters()]
    independent = loss_surface(
        model, loss_fn, None, None, directions=[direction], steps=5, span=0.1, dims=1, batches=first
    )
    assert record["losses"] == independent.losses.tolist()
    along_filter = loss_surface(
        model, loss_fn, None, None, steps=5, span=0.1, dims=1, batches=first, generator=torch.Generator().manual_seed(0)
    )
    assert record["losses"] != along_filter.losses.tolist()  # a negative control: the direction matters


def test_trajectory_is_the_pca_of_the_kept_checkpoints(run, tmp_path):
    result = invoke("surface", run, "--trajectory", "--steps", 5, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "surface.json").read_text())
    trajectory = record["trajectory"]
    assert trajectory["steps"] == [0, 10, 20, 30]
    path = np.array(trajectory["path"])
    assert path.shape == (4, 2) and path[-1].tolist() == [0.0, 0.0]
    ratios = np.array(trajectory["explained_variance_ratio"])
    assert ((ratios >= 0) & (ratios <= 1)).all() and ratios.sum() <= 1 + 1e-12 and ratios[0] >= ratios[1]
    for k in range(2):  # the grid covers the path with a margin
        assert max(record["coords"][k]) > np.abs(path[:, k]).max()

    # numpy's PCA of the flattened differences (weights with 2 or more dimensions)
    final = load_checkpoint(run)["model"]
    model, _, _ = rebuilt(run)
    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    rows = np.stack(
        [
            np.concatenate(
                [
                    (torch.load(weights_path(run, s), weights_only=True)["model"][n] - final[n])
                    .double()
                    .numpy()
                    .ravel()
                    for n in names
                ]
            )
            for s in (0, 10, 20)
        ]
    )
    centered = rows - rows.mean(0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    np.testing.assert_allclose(ratios, (s**2 / (s**2).sum())[:2], rtol=1e-9)
    projected = rows @ vt[:2].T
    signs = np.sign(projected[0]) * np.sign(path[0])  # a principal direction's sign is arbitrary
    np.testing.assert_allclose(path[:3], projected * signs, rtol=1e-6, atol=1e-9)
    page = (tmp_path / "surface.html").read_text()
    assert "training path" in page and "% of variance" in page and '"type":"contour"' in page


def test_trajectory_directions_of_a_known_path():
    final = [torch.zeros(3, 2)]
    points = [
        [torch.tensor([[4.0, 0], [0, 0], [0, 0]])],
        [torch.tensor([[2.0, 1], [0, 0], [0, 0]])],
        [torch.tensor([[1.0, -1], [0, 0], [0, 0]])],
    ]
    traj = trajectory_directions(points, final)
    plane = torch.zeros(3, 2)
    plane[0] = 1
    for d in traj.directions:
        assert torch.linalg.vector_norm(d[0]).item() == pytest.approx(1.0)
        assert torch.equal(d[0] * (1 - plane), torch.zeros(3, 2))  # in the plane the path spans
    assert traj.path[-1].tolist() == [0.0, 0.0]
    assert traj.explained_variance_ratio.sum().item() == pytest.approx(1.0)  # 3 points span 2 directions
    with pytest.raises(ValueError, match="at least 3"):
        trajectory_directions(points[:2], final)


def test_trajectory_without_kept_checkpoints_is_one_line(short_run):
    before = files(short_run)
    result = invoke("surface", short_run, "--trajectory", "--steps", 3)
    assert_one_line_error(result, "only checkpoints/last.pt", "--keep-checkpoints")
    assert files(short_run) == before


def test_report_shows_the_surface(run, short_run, tmp_path):
    if not (run / "surface" / "surface.json").is_file():
        assert invoke("surface", run, "--steps", 3).exit_code == 0
    result = invoke("report", run, "--output", tmp_path / "with.html")
    assert result.exit_code == 0, result.output
    assert 'id="surface"' in (tmp_path / "with.html").read_text()
    result = invoke("report", short_run, "--output", tmp_path / "without.html")
    assert result.exit_code == 0, result.output
    assert 'id="surface"' not in (tmp_path / "without.html").read_text()


@pytest.mark.parametrize(
    "content",
    [
        '{"earlier": true}',
        "[1, 2]",
        '{"coords": [[0, 1]], "losses": "x"}',
        "{",
        '{"coords": [[0, 1], [0, 1]], "losses": [1, 2], "base_loss": 1.0, '
        '"checkpoint": {"step": 3}, "settings": {"directions": "filter"}}',
    ],
)
def test_a_malformed_surface_json_is_warned_about_and_the_report_still_written(short_run, tmp_path, content, caplog):
    copy = tmp_path / "run"
    shutil.copytree(short_run, copy)
    (copy / "surface").mkdir(exist_ok=True)
    (copy / "surface" / "surface.json").write_text(content)
    with caplog.at_level("WARNING"):
        result = invoke("report", copy, "--output", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    assert 'id="surface"' not in (tmp_path / "report.html").read_text()
    assert any("surface" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--steps", "4"], ["--steps must be an odd number"]),
        (["--dims", "3"], ["--dims must be 1 or 2"]),
        (["--checkpoint", "7"], ["no checkpoint at step 7", "kept steps: 0, 10, 20, 30"]),
        (["--checkpoint", "best"], ["--checkpoint must be 'last'"]),
        (["--trajectory", "--dims", "1"], ["--trajectory draws a 2-D surface"]),
        (["--batches", "5"], ["--batches 5 exceeds the 4 batches"]),
        (["--points-per-forward", "0"], ["--points-per-forward", "0"]),
    ],
)
def test_bad_input_is_one_line_and_loses_nothing(run, tmp_path, args, fragments):
    out = tmp_path / "out"
    out.mkdir()
    (out / "surface.json").write_text('{"earlier": true}')
    before, run_before = files(out), files(run)
    assert_one_line_error(invoke("surface", run, "--out", out, *args), *fragments)
    assert files(out) == before and files(run) == run_before


def test_not_a_run_or_no_checkpoint_is_one_line(run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(invoke("surface", empty), "not a run directory")
    assert list(empty.iterdir()) == []
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("checkpoints", "surface"))
    before = files(bare)
    assert_one_line_error(invoke("surface", bare), "no checkpoint (checkpoints/last.pt)")
    assert files(bare) == before
