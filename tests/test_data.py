"""Data: synthetic and Gaussian-linear generation, CIFAR-10 loading from a fake
folder in the official pickle layout, standardization, batching, augmentation."""

from __future__ import annotations

import hashlib
import math
import pickle
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.datasets import CIFAR10

from landscape.config import DataConfig
from landscape.data import (
    CHECKSUM_WARNING,
    DataError,
    Dataset,
    Objective,
    augment_batch,
    batches,
    check_fits_data,
    load_data,
    objective,
)

SYNTH = DataConfig(name="synthetic", synthetic_train=64, synthetic_test=32, image_size=8, num_classes=4)
PER_BATCH = 20  # images per fake CIFAR batch file


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same(a: Dataset, b: Dataset) -> bool:
    fields = ("train_x", "train_y", "test_x", "test_y")
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields)


def test_synthetic_is_deterministic_and_seeded():
    torch.manual_seed(123)
    a = load_data(SYNTH)
    torch.manual_seed(456)  # the global RNG must not matter
    b = load_data(SYNTH)
    assert _same(a, b)
    c = load_data(DataConfig(**{**SYNTH.__dict__, "seed": 1}))
    assert not torch.equal(a.train_x, c.train_x)


def test_synthetic_shapes_and_loss():
    d = load_data(SYNTH)
    assert d.train_x.shape == (64, 3, 8, 8) and d.test_x.shape == (32, 3, 8, 8)
    assert d.train_y.shape == (64,) and d.train_y.dtype == torch.int64
    assert d.train_x.dtype == torch.float32
    assert set(d.train_y.tolist()) <= set(range(4)) and d.num_classes == 4 and d.warnings == ()
    loss = objective(d)
    assert not loss.regression and loss.reduction == "mean"


def test_synthetic_classes_are_learnable():
    # Nearest class mean (fit on train) must beat chance by far on the test set.
    d = load_data(DataConfig(**{**SYNTH.__dict__, "synthetic_train": 256}))
    means = torch.stack([d.train_x[d.train_y == k].mean(0) for k in range(4)]).flatten(1)  # (K, D)
    predicted = torch.cdist(d.test_x.flatten(1), means).argmin(1)
    assert (predicted == d.test_y).float().mean() > 0.8


def test_standardization_uses_training_statistics():
    d = load_data(SYNTH)
    assert torch.allclose(d.train_x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(d.train_x.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-5)
    # The test set went through the same affine map, so it is only close to standard.
    assert not torch.allclose(d.test_x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_subset_keeps_the_first_examples():
    full, sub = load_data(SYNTH), load_data(DataConfig(**{**SYNTH.__dict__, "subset": 10}))
    assert sub.train_x.shape[0] == 10 and torch.equal(sub.train_y, full.train_y[:10])
    assert torch.equal(sub.test_y, full.test_y)
    big = load_data(DataConfig(**{**SYNTH.__dict__, "subset": 1000}))
    assert big.train_x.shape[0] == 64 and "exceeds" in big.warnings[0]


def test_gaussian_linear_is_an_exact_linear_map():
    d = load_data(DataConfig(name="gaussian-linear"))
    assert d.train_x.shape == (1000, 10) and d.train_y.shape == (1000, 10) and d.test_x.shape == (1000, 10)
    assert d.num_classes == 0 and d.train_y.dtype == torch.float32
    assert objective(d).regression
    x, y = d.train_x.double(), d.train_y.double()
    a = torch.linalg.lstsq(x, y).solution.T  # (10, 10): y = x A^T
    assert (x @ a.T - y).abs().max() < 1e-5 * y.abs().max()
    # The paper's A_ij ~ N(0, 1): 100 entries with unit spread (not the 1/sqrt(d) of a normalized map).
    assert 0.75 < a.std().item() < 1.25
    # The test set shares A.
    assert (d.test_x.double() @ a.T - d.test_y.double()).abs().max() < 1e-5 * y.abs().max()
    assert _same(d, load_data(DataConfig(name="gaussian-linear")))
    other = load_data(DataConfig(name="gaussian-linear", seed=1))
    assert not torch.allclose(torch.linalg.lstsq(other.train_x.double(), other.train_y.double()).solution.T, a)


def _indexed(n: int) -> Dataset:
    ids = torch.arange(n)
    return Dataset(ids.float()[:, None], ids, ids.float()[:, None], ids, n, "ids")


def test_batches_are_a_seeded_permutation():
    d = _indexed(10)
    run = lambda seed: [y.tolist() for _, y in batches(d, 4, _generator(seed))]  # noqa: E731
    assert run(0) == run(0)
    assert run(0) != run(1)
    assert [len(b) for b in run(0)] == [4, 4]  # the incomplete batch is dropped
    every = torch.cat([y for _, y in batches(d, 4, _generator(0), drop_last=False)])
    assert sorted(every.tolist()) == list(range(10))
    for x, y in batches(d, 3, _generator(2)):
        assert torch.equal(x[:, 0].long(), y)  # inputs and targets stay paired
    with pytest.raises(DataError, match="exceeds"):
        next(batches(d, 11, _generator(0)))


def _crop_of(augmented: torch.Tensor, image: torch.Tensor) -> tuple[int, int, bool] | None:
    """Which 4-padded crop (dy, dx) of ``image`` (C, H, W), flipped or not, equals
    ``augmented``; None if none does."""
    _, h, w = image.shape
    padded = F.pad(image, (4, 4, 4, 4))
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flip in (False, True):
                if torch.equal(augmented, crop.flip(-1) if flip else crop):
                    return dy, dx, flip
    return None


def test_augment_is_seeded_crop_and_flip():
    x = torch.randn(40, 3, 8, 8, generator=_generator(0))
    before = x.clone()
    a = augment_batch(x, _generator(5))
    assert a.shape == x.shape and torch.equal(x, before)
    assert torch.equal(a, augment_batch(x, _generator(5)))
    assert not torch.equal(a, augment_batch(x, _generator(6)))
    found = [_crop_of(augmented, image) for image, augmented in zip(x, a)]
    assert None not in found
    assert {flip for _, _, flip in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > 10  # offsets vary per image


def _write_fake_cifar(root, rng: np.random.Generator) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, PER_BATCH).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f, protocol=2)
        if name == "test_batch":
            test_x, test_y = data, labels
        else:
            train_x.append(data)
            train_y += labels
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": PER_BATCH}, f, protocol=2)
    return np.concatenate(train_x), train_y, test_x, test_y


def _reference(images: np.ndarray, stats_from: np.ndarray) -> np.ndarray:
    """Float64 per-channel standardization of (N, 3072) rows (R, G, B planes)."""
    x = images.reshape(-1, 3, 32, 32) / 255.0
    s = stats_from.reshape(-1, 3, 32, 32) / 255.0
    return (x - s.mean((0, 2, 3), keepdims=True)) / s.std((0, 2, 3), keepdims=True)


def test_fake_cifar_loads_with_checksum_warning(tmp_path, monkeypatch):
    train_x, train_y, test_x, test_y = _write_fake_cifar(tmp_path, np.random.default_rng(0))
    monkeypatch.setenv("LANDSCAPE_DATA", str(tmp_path))  # used when data_dir is None
    d = load_data(DataConfig(name="cifar10"))
    assert d.warnings == (CHECKSUM_WARNING,)
    assert d.train_x.shape == (5 * PER_BATCH, 3, 32, 32) and d.test_x.shape == (PER_BATCH, 3, 32, 32)
    assert d.train_y.tolist() == train_y and d.test_y.tolist() == test_y and d.num_classes == 10
    assert np.allclose(d.train_x.numpy(), _reference(train_x, train_x), atol=1e-5)
    assert np.allclose(d.test_x.numpy(), _reference(test_x, train_x), atol=1e-5)
    sub = load_data(DataConfig(name="cifar10", data_dir=str(tmp_path), subset=30))
    assert sub.train_y.tolist() == train_y[:30]
    assert np.allclose(sub.train_x.numpy(), _reference(train_x[:30], train_x[:30]), atol=1e-5)


def test_matching_checksums_give_no_warning(tmp_path, monkeypatch):
    _write_fake_cifar(tmp_path, np.random.default_rng(1))
    folder = tmp_path / "cifar-10-batches-py"
    md5 = lambda name: hashlib.md5((folder / name).read_bytes()).hexdigest()  # noqa: E731
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})
    assert load_data(DataConfig(name="cifar10", data_dir=str(tmp_path))).warnings == ()


def _offline(monkeypatch) -> list[str]:
    attempts: list[str] = []

    def fail(self: CIFAR10) -> None:
        attempts.append(self.root)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(CIFAR10, "download", fail)
    return attempts


def test_missing_cifar_raises_one_line_data_error(tmp_path, monkeypatch):
    attempts = _offline(monkeypatch)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name="cifar10", data_dir=str(tmp_path / "empty")))
    message = str(info.value)
    assert attempts, "a download should have been tried"
    assert "\n" not in message and "--data-dir" in message and "--dataset synthetic" in message


def test_unreadable_cifar_raises_data_error(tmp_path, monkeypatch):
    _write_fake_cifar(tmp_path, np.random.default_rng(2))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    attempts = _offline(monkeypatch)
    with pytest.raises(DataError, match="cannot be read") as info:
        load_data(DataConfig(name="cifar10", data_dir=str(tmp_path)))
    assert "\n" not in str(info.value)
    assert attempts == []  # present files are never overwritten by a download


def test_objective_reductions_against_their_definitions():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(7, 10, generator=g, dtype=torch.float64), torch.randn(7, 10, generator=g, dtype=torch.float64)
    sq = (out - y) ** 2
    assert torch.allclose(Objective(True, "mean")(out, y), sq.mean())
    assert torch.allclose(Objective(True, "sum")(out, y), sq.sum())
    # The paper's DLN objective: summed over the samples, averaged over the 10 outputs.
    assert torch.allclose(Objective(True, "sample-sum")(out, y), sq.mean(1).sum())
    assert torch.allclose(Objective(True, "sample-sum", shards=2)(out, y), 2 * sq.mean(1).sum())
    logits, labels = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randint(4, (7,), generator=g)
    nll = -torch.log_softmax(logits, 1)[torch.arange(7), labels]
    assert torch.allclose(Objective(False, "mean")(logits, labels), nll.mean())
    for reduction in ("sum", "sample-sum"):
        assert torch.allclose(Objective(False, reduction)(logits, labels), nll.sum())
    with pytest.raises(ValueError, match="unknown loss reduction"):
        Objective(True, "median")


def test_objective_whole_set_loss_matches_one_batch():
    g = torch.Generator().manual_seed(1)
    out, y = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    for reduction in ("mean", "sum", "sample-sum"):
        loss = Objective(True, reduction)
        total = float(loss.per_example(out[:4], y[:4]).sum() + loss.per_example(out[4:], y[4:]).sum())
        assert math.isclose(loss.whole(total, 9), float(loss(out, y)), rel_tol=1e-6)


def test_dataset_to_dtype_casts_floats_only():
    d = load_data(SYNTH).to(torch.float64)
    assert d.train_x.dtype == d.test_x.dtype == torch.float64 and d.train_y.dtype == torch.int64
    lin = load_data(DataConfig(name="gaussian-linear")).to(torch.float64)
    assert lin.train_y.dtype == torch.float64


def test_a_model_that_does_not_fit_the_data_is_a_one_line_error():
    from landscape.config import ModelConfig, RunConfig
    from landscape.models import build_model

    config = RunConfig(model=ModelConfig(name="resnet18", norm="bn"), data=DataConfig(name="gaussian-linear"))
    with pytest.raises(ValueError, match="--model resnet18 does not fit --dataset gaussian-linear") as info:
        check_fits_data(config, build_model(config.model))
    assert "\n" not in str(info.value)
    dln = RunConfig(model=ModelConfig(name="dln", norm="bn"), data=DataConfig(name="cifar10"))
    with pytest.raises(ValueError, match="does not fit"):
        check_fits_data(dln, build_model(dln.model))
    ok = RunConfig(model=ModelConfig(name="dln", norm="bn"), data=DataConfig(name="gaussian-linear"))
    model = build_model(ok.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_fits_data(ok, model)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
