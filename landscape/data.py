"""Data sets held as whole tensors on the device, and the batching the training
loop uses (no DataLoader: CIFAR-10 fits in memory and would starve a GPU through
workers).

Paper protocol (Santurkar et al. 2018): CIFAR-10 without augmentation, each
channel standardized with the training set's own statistics,
x' = (x - mean_c) / std_c. The deep-linear-network task is regression on
y = A x, x ~ N(0, I_10), with a fixed random A (A_ij ~ N(0, 1)) and 1000 training
samples, trained full-batch on the squared error summed over the samples
(:class:`Objective`, ``reduction="sample-sum"``). Character-level text: :mod:`landscape.text`.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import os
import pickle
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.datasets import CIFAR10

from landscape.config import DATASET_SIZES, LOSS_REDUCTIONS, DataConfig, RunConfig, is_text
from landscape.state import fork_rng
from landscape.text import DataError, load_text, train_blocks, vocabulary  # DataError: re-exported

logger = logging.getLogger(__name__)

CHECKSUM_WARNING = "checksums differ from the official CIFAR-10 release; using the files as they are"
CIFAR_CLASSES = 10
CROP_PADDING = 4
CIFAR_TRAIN, CIFAR_TEST = DATASET_SIZES["cifar10"]
LINEAR_TRAIN, LINEAR_TEST = DATASET_SIZES["gaussian-linear"]
SYNTHETIC_NOISE = 1.0  # std of the per-pixel noise around a class template
_SEED_BOUND = 2**62


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole data set as single tensors on one device.

    ``train_x``/``test_x``: (N, 3, H, W) float images, (N, d) vectors, or (N, T) int64 tokens.
    ``train_y``/``test_y``: (N,) int64 labels, (N, d) float regression targets, or (N, T) next tokens.
    ``num_classes``: 0 for regression; text: ``len(vocab)``, its characters (a token's id is an index).
    ``warnings``: one-line notes for the user.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    name: str
    warnings: tuple[str, ...] = ()
    vocab: str = ""

    @property
    def is_regression(self) -> bool:
        return self.num_classes == 0

    def to(self, dtype: torch.dtype) -> Dataset:
        """The same data with every floating tensor (images, vectors, regression
        targets) in ``dtype``; labels stay int64."""

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype) if t.is_floating_point() else t

        return dataclasses.replace(
            self,
            train_x=cast(self.train_x),
            train_y=cast(self.train_y),
            test_x=cast(self.test_x),
            test_y=cast(self.test_y),
        )


class Objective(nn.Module):
    """The training loss: cross-entropy for classification, squared error for
    regression, reduced as ``reduction`` says (:data:`landscape.config.LOSS_REDUCTIONS`).

    An example's loss is its cross-entropy, or its squared error (text: its T tokens'
    cross-entropies, from (B, T, V) logits) averaged over the outputs ("mean",
    "sample-sum") or summed over them ("sum"). "mean" averages the examples' losses
    (for regression: the mean over every entry, ``nn.MSELoss``); "sum" and
    "sample-sum" add them up. The deep linear network of Santurkar et al.
    2018 is trained on ``sum_i mean_j (f(x_i) - A x_i)_j^2`` ("sample-sum"): its
    plotted losses (1e3-1e4) and its step size 1e-6 belong to that scale, which
    ``nn.MSELoss`` divides by 10,000.

    Args:
        regression: squared error on float targets (else cross-entropy on labels).
        reduction: "mean", "sum" or "sample-sum".
        shards: the number of processes that each hold one equal shard of a global
            batch. A summed loss is multiplied by it, so that the mean over the
            processes (what DDP and every all-reduce here take) is the global
            batch's sum.
    """

    def __init__(self, regression: bool, reduction: str = "mean", shards: int = 1) -> None:
        super().__init__()
        if reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"unknown loss reduction {reduction!r}; choose from {', '.join(LOSS_REDUCTIONS)}")
        self.regression, self.reduction, self.shards = regression, reduction, shards

    def extra_repr(self) -> str:
        kind = "squared error" if self.regression else "cross-entropy"
        return f"{kind}, reduction={self.reduction}, shards={self.shards}"

    def per_example(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,) each example's loss, unscaled."""
        if not self.regression:
            ce = F.cross_entropy(_classes_second(output), target, reduction="none")  # (B,) or (B, T)
            return ce if ce.dim() == 1 else ce.sum(1) if self.reduction == "sum" else ce.mean(1)
        error = (output - target).square().flatten(1)  # (B, entries)
        return error.sum(1) if self.reduction == "sum" else error.mean(1)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            if self.regression:
                return F.mse_loss(output, target)
            return F.cross_entropy(_classes_second(output), target)
        return self.per_example(output, target).sum() * self.shards

    def whole(self, total: float, count: int) -> float:
        """The loss of ``count`` examples whose :meth:`per_example` losses add up to ``total``."""
        return total / count if self.reduction == "mean" else total


def _classes_second(logits: torch.Tensor) -> torch.Tensor:
    return logits.transpose(1, 2) if logits.dim() == 3 else logits  # text: (B, T, V) -> (B, V, T)


def objective(dataset: Dataset, reduction: str = "mean", shards: int = 1) -> Objective:
    """The :class:`Objective` for ``dataset``: cross-entropy for classification,
    squared error for regression."""
    return Objective(dataset.is_regression, reduction, shards)


def data_root(cfg: DataConfig) -> str:
    """``cfg.data_dir``, else ``$LANDSCAPE_DATA``, else ``./data``."""
    return os.path.expanduser(cfg.data_dir or os.environ.get("LANDSCAPE_DATA") or "./data")


class _UncheckedCIFAR10(CIFAR10):
    """torchvision's CIFAR10 with the MD5 checks off: it only checks the files exist.
    For faithful re-encodings, e.g. a copy decoded from JPEG."""

    train_list = [[f"data_batch_{i}", None] for i in range(1, 6)]
    test_list = [["test_batch", None]]
    meta = {**CIFAR10.meta, "md5": None}


_Split = tuple[np.ndarray, list[int]]  # images (N, 32, 32, 3) uint8, labels


def _read_cifar(cls: type[CIFAR10], root: str, download: bool = False) -> tuple[_Split, _Split]:
    train = cls(root, train=True, download=download)
    test = cls(root, train=False, download=False)
    return (train.data, train.targets), (test.data, test.targets)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_cifar_arrays(root: str) -> tuple[_Split, _Split, tuple[str, ...]]:
    try:
        return (*_read_cifar(CIFAR10, root), ())
    except RuntimeError:
        logger.info("CIFAR-10 under %s is missing or fails the MD5 check; trying without the check", root)
    try:
        return (*_read_cifar(_UncheckedCIFAR10, root), (CHECKSUM_WARNING,))
    except RuntimeError:
        logger.info("CIFAR-10 not found under %s; trying to download it", root)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
        raise DataError(f"the CIFAR-10 files under {root} cannot be read ({_one_line(exc)})") from exc
    try:
        return (*_read_cifar(CIFAR10, root, download=True), ())
    except (OSError, RuntimeError, tarfile.TarError, http.client.HTTPException) as exc:
        raise DataError(
            f"CIFAR-10 is not under {root} and could not be downloaded ({_one_line(exc)}); "
            "pass --data-dir DIR (the folder holding cifar-10-batches-py/) or use --dataset synthetic"
        ) from exc


def _images(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    # Move uint8 (4x fewer bytes) and convert on the device.
    x = torch.from_numpy(np.ascontiguousarray(array)).to(device)  # (N, H, W, C) uint8
    return x.permute(0, 3, 1, 2).contiguous().float().div_(255)  # (N, C, H, W) in [0, 1]


def _labels(labels: list[int] | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    return torch.as_tensor(labels, dtype=torch.int64).to(device)


def _standardize_(train_x: torch.Tensor, test_x: torch.Tensor) -> None:
    """Per-channel (x - mean) / std with the training set's statistics, in place on
    both sets; population std, so the training set ends with std exactly 1."""
    var, mean = torch.var_mean(train_x, dim=(0, 2, 3), correction=0, keepdim=True)  # (1, C, 1, 1)
    std = var.sqrt()
    for x in (train_x, test_x):
        x.sub_(mean).div_(std)


def _subset(cfg: DataConfig, n: int, warnings: list[str]) -> int:
    if cfg.subset is None:
        return n
    if cfg.subset > n:
        warnings.append(f"--subset {cfg.subset} exceeds the {n} training examples; using all of them")
        return n
    return cfg.subset


def _cifar10(cfg: DataConfig, device: torch.device | str) -> Dataset:
    root = data_root(cfg)
    (train_x, train_y), (test_x, test_y), notes = _load_cifar_arrays(root)
    warnings = list(notes)
    n = _subset(cfg, len(train_y), warnings)
    train = _images(train_x[:n], device)
    test = _images(test_x, device)
    _standardize_(train, test)
    train_labels, test_labels = _labels(train_y[:n], device), _labels(test_y, device)
    return Dataset(train, train_labels, test, test_labels, CIFAR_CLASSES, cfg.name, tuple(warnings))


def _child_generators(seed: int, count: int) -> tuple[torch.Generator, list[torch.Generator]]:
    # A parent generator seeds one child per split, so a split's samples do not
    # depend on how many samples another split drew.
    parent = torch.Generator().manual_seed(seed)
    seeds = torch.randint(_SEED_BOUND, (count,), generator=parent).tolist()
    return parent, [torch.Generator().manual_seed(s) for s in seeds]


def _synthetic(cfg: DataConfig, device: torch.device | str) -> Dataset:
    """Each class is a smooth random template (3, S, S) (upsampled from S/4 x S/4,
    so it survives pooling and crops); a sample is its template plus N(0, 1) pixel noise."""
    parent, (g_train, g_test) = _child_generators(cfg.seed, 2)
    size, classes = cfg.image_size, cfg.num_classes
    coarse = max(1, size // 4)
    templates = torch.randn(classes, 3, coarse, coarse, generator=parent)
    templates = F.interpolate(templates, size=(size, size), mode="bilinear", align_corners=False)  # (K, 3, S, S)

    def draw(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(classes, (n,), generator=g)
        x = templates[y] + SYNTHETIC_NOISE * torch.randn(n, 3, size, size, generator=g)
        return x, y

    train_x, train_y = draw(cfg.synthetic_train, g_train)
    test_x, test_y = draw(cfg.synthetic_test, g_test)
    warnings: list[str] = []
    n = _subset(cfg, len(train_y), warnings)
    train_x, train_y = train_x[:n].to(device), train_y[:n].to(device)
    test_x, test_y = test_x.to(device), test_y.to(device)
    _standardize_(train_x, test_x)
    return Dataset(train_x, train_y, test_x, test_y, classes, cfg.name, tuple(warnings))


def _gaussian_linear(cfg: DataConfig, device: torch.device | str) -> Dataset:
    """x ~ N(0, I_d), y = A x with A_ij ~ N(0, 1), the paper's deep-linear-network
    task (so y has variance about d per coordinate, and the summed squared error
    starts near 1e4, the scale of the paper's plots). No standardization: x is
    already standard. d = ``cfg.dim`` (the paper's 10)."""
    d = cfg.dim
    parent, (g_train, g_test) = _child_generators(cfg.seed, 2)
    a = torch.randn(d, d, generator=parent)  # (d, d)
    train_x = torch.randn(LINEAR_TRAIN, d, generator=g_train)
    test_x = torch.randn(LINEAR_TEST, d, generator=g_test)
    warnings: list[str] = []
    n = _subset(cfg, LINEAR_TRAIN, warnings)
    train_x = train_x[:n]
    train_y, test_y = train_x @ a.T, test_x @ a.T  # rows: y_i = A x_i
    tensors = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    return Dataset(*tensors, num_classes=0, name=cfg.name, warnings=tuple(warnings))


_LOADERS: dict[str, Callable[[DataConfig, torch.device | str], Dataset]] = {
    "cifar10": _cifar10,
    "synthetic": _synthetic,
    "gaussian-linear": _gaussian_linear,
}


def _text(cfg: DataConfig, device: torch.device | str) -> Dataset:
    t = load_text(cfg, data_root(cfg), device)
    splits = (t.train_x, t.train_y, t.test_x, t.test_y)
    return Dataset(*splits, num_classes=len(t.vocab), name=cfg.name, warnings=t.warnings, vocab=t.vocab)


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Dataset:
    """Load ``cfg.name`` whole onto ``device``.

    Args:
        cfg: which data set; ``subset`` keeps the first N training examples.
        device: where every tensor lives.

    Returns:
        The :class:`Dataset`; ``warnings`` holds notes the CLI shows (e.g. a copy of
        CIFAR-10 whose checksums differ from the official files).

    Raises:
        DataError: CIFAR-10 is neither on disk nor downloadable, or unreadable; a text
            file is missing, empty, not UTF-8 or too short (:func:`landscape.text.load_text`).
    """
    dataset = (_text if is_text(cfg.name) else _LOADERS[cfg.name])(cfg, device)
    logger.info("loaded %s: %d train, %d test on %s", cfg.name, len(dataset.train_x), len(dataset.test_x), device)
    return dataset


def batches(
    dataset: Dataset, batch_size: int, generator: torch.Generator, drop_last: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled training mini-batches.

    The order is ``torch.randperm`` drawn from ``generator`` (a CPU generator, so
    it is the same on every device), then the batches are indexed on the data's
    device. The same generator state gives the same batches.

    Args:
        dataset: the data; only the training split is used.
        batch_size: examples per batch.
        generator: source of the shuffle; advanced by one ``randperm``.
        drop_last: skip the final incomplete batch.

    Yields:
        ``(x, y)`` pairs of ``batch_size`` examples (fewer for a last partial batch).

    Raises:
        DataError: ``drop_last`` and fewer training examples than ``batch_size``.
    """
    n = len(dataset.train_x)
    if drop_last and batch_size > n:
        raise DataError(f"--batch-size {batch_size} exceeds the {n} training examples")
    order = torch.randperm(n, generator=generator, device=generator.device).to(dataset.train_x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        yield dataset.train_x[index], dataset.train_y[index]


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding by 4 and random horizontal flip, per image,
    vectorized: one gather for the whole batch.

    The images are standardized, so the zero padding is the training mean colour.
    The draws come from ``generator`` on its own device and are then moved to
    ``x``'s device, so the result is a function of the generator state alone.

    Args:
        x: (B, C, H, W) images.
        generator: source of the crop offsets and flips.

    Returns:
        (B, C, H, W) augmented copy; ``x`` is not modified.
    """
    b, _, h, w = x.shape
    pad = CROP_PADDING
    dy = torch.randint(2 * pad + 1, (b, 1), generator=generator, device=generator.device).to(x.device)
    dx = torch.randint(2 * pad + 1, (b, 1), generator=generator, device=generator.device).to(x.device)
    flip = torch.rand(b, 1, generator=generator, device=generator.device).to(x.device) < 0.5
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    rows = dy + ys  # (B, H)
    cols = dx + torch.where(flip, xs.flip(0), xs)  # (B, W); a flip reads the columns backwards
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C): advanced dims first
    return out.permute(0, 3, 1, 2).contiguous()


def example_batch(
    config: RunConfig, device: torch.device | str, n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, Objective]:
    """Random inputs and targets of the run's data shapes, ``n`` of them (default: the
    run's batch), in its dtype, with its loss: for timing and for checking a model
    against the data without loading the data."""
    d = config.data
    g = torch.Generator().manual_seed(0)
    dtype = getattr(torch, config.train.dtype)
    if is_text(d.name):  # token ids 0 (in every vocabulary), next-token targets
        x = torch.zeros(n or config.train.batch_size, d.block_size, dtype=torch.int64, device=device)
        return x, x.clone(), Objective(False, config.train.loss_reduction)
    if d.name == "gaussian-linear":
        n = n or min(d.subset or LINEAR_TRAIN, LINEAR_TRAIN)
        x, y = torch.randn(n, d.dim, generator=g), torch.randn(n, d.dim, generator=g)
        return x.to(device, dtype), y.to(device, dtype), Objective(True, config.train.loss_reduction)
    size = d.image_size if d.name == "synthetic" else 32
    n = n or config.train.batch_size
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(d.num_classes, (n,), generator=g)
    return x.to(device, dtype), y.to(device), Objective(False, config.train.loss_reduction)


def check_fits_data(config: RunConfig, model: nn.Module) -> None:
    """A forward (eval mode, no gradient) of two examples shaped like the data set's,
    whose output must have the targets' shape (regression) or one score per class
    (text: per token and vocabulary character, which this reads from the file).

    Raises:
        ValueError: the model does not take the data's inputs or does not give its outputs.
        DataError: a text file cannot be read.
    """
    x, y, _ = example_batch(config, "cpu", n=2)
    what = f"--model {config.model.name} does not fit --dataset {config.data.name}"
    want = tuple(y.shape) if y.is_floating_point() else (2, config.data.num_classes)
    if is_text(config.data.name):  # (2, T, vocabulary)
        want = (*y.shape, len(vocabulary(config.data, data_root(config.data))))
    like = next(model.parameters(), x)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), fork_rng(model):
            out = model(x.to(like.device, like.dtype if x.is_floating_point() else x.dtype))
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{what}: inputs of shape {tuple(x.shape[1:])} fail ({first})") from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{what}: outputs of shape {shape} for 2 examples, the data needs {want}")


def train_size(data: DataConfig) -> int:
    """Training examples a run on ``data`` sees (without loading the data; text
    counts its blocks from the file's length, and raises :class:`DataError` as loading would)."""
    sizes = {"cifar10": CIFAR_TRAIN, "synthetic": data.synthetic_train, "gaussian-linear": LINEAR_TRAIN}
    n = train_blocks(data, data_root(data)) if is_text(data.name) else sizes[data.name]
    return min(n, data.subset) if data.subset else n


def total_steps(config: RunConfig) -> int:
    """Optimizer steps of a run, as the training loop counts them."""
    t = config.train
    if t.epochs is None:
        return t.steps
    n = train_size(config.data)
    batch = n if t.full_batch else min(t.batch_size, n)
    return t.epochs * max(n // batch, 1)
