"""Character-level text data: ``--dataset shakespeare`` (``DATA_DIR/shakespeare/input.txt``)
and ``--dataset text:PATH`` (any UTF-8 file; PATH relative to the current directory,
``~`` expanded).

The vocabulary is the sorted set of the characters of the whole file, and a token is
a character's index in it (int64). The first 90 % of the characters are the training
split, the rest the test split. An example is a block of ``T = block_size``
consecutive characters at a random offset ``o`` of its split, with next-character
targets: ``x = ids[o : o + T]``, ``y = ids[o + 1 : o + T + 1]``.

A split of ``n`` characters gives ``(n - 1) // T`` blocks: as many as it holds without
overlap, but at offsets drawn once (uniform over every offset with a whole target
block) from a generator seeded by ``DataConfig.seed`` (the training and test splits
each from their own seed derived from it). So the data set is a fixed set of blocks,
like an image set's fixed set of images, and one "epoch" of the training loop is one
shuffled pass over these training blocks, not over every offset of the text (the
blocks overlap at random, and some characters are not in any block). ``subset``
keeps the first N training blocks.

This module is below :mod:`landscape.data` (which wraps its tensors in a
``Dataset``): it holds :class:`DataError`, which ``landscape.data`` re-exports.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from landscape.config import TEXT_PREFIX, DataConfig

logger = logging.getLogger(__name__)

SHAKESPEARE_FILE = os.path.join("shakespeare", "input.txt")  # under the data directory
TRAIN_TENTHS = 9  # the first 9/10 of the characters train
_SEED_BOUND = 2**62


class DataError(Exception):
    """The data cannot be loaded; the message is one line for the user."""


@dataclass(frozen=True, eq=False)
class TextSplits:
    """The blocks of one text file. ``*_x``, ``*_y``: (N, T) int64 token ids, ``y``
    the next characters of ``x``. ``vocab``: the characters, a token's id its index."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    vocab: str
    warnings: tuple[str, ...] = ()


def text_path(name: str, root: str) -> str:
    """The file a text data set reads: ``root/shakespeare/input.txt`` for
    "shakespeare", PATH (``~`` expanded) for "text:PATH"."""
    if name.startswith(TEXT_PREFIX):
        return os.path.expanduser(name[len(TEXT_PREFIX) :])
    if name == "shakespeare":
        return os.path.join(root, SHAKESPEARE_FILE)
    raise ValueError(f"{name!r} is not a text data set")


def read_text(path: str, hint: str = "") -> str:
    """The whole file decoded as UTF-8 (strict, no newline translation).

    Raises:
        DataError: the file is missing, unreadable, empty or not UTF-8 (one line,
            naming ``path``, then ``hint`` where the file is missing).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"text file {path} does not exist{hint}") from None
    except OSError as e:
        raise DataError(f"text file {path} cannot be read ({type(e).__name__}: {e.strerror or e})") from None
    if not raw:
        raise DataError(f"text file {path} is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"text file {path} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def _read(cfg: DataConfig, root: str) -> tuple[str, str]:
    path = text_path(cfg.name, root)
    hint = "; pass --data-dir DIR (the folder holding shakespeare/input.txt)" if cfg.name == "shakespeare" else ""
    return path, read_text(path, hint)


def encode(text: str, vocab: str) -> torch.Tensor:
    """(len(text),) int64: each character's index in ``vocab`` (sorted, holding every
    character of ``text``)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32)
    return torch.from_numpy(np.searchsorted(table, codes).astype(np.int64))


def decode(ids: torch.Tensor, vocab: str) -> str:
    """The characters of token ids (any shape, read in row-major order)."""
    return "".join(vocab[i] for i in ids.flatten().tolist())


def split_point(chars: int) -> int:
    """Characters of the training split of a file of ``chars`` characters."""
    return chars * TRAIN_TENTHS // 10


def block_count(chars: int, block_size: int) -> int:
    """Blocks drawn from a split of ``chars`` characters: ``(chars - 1) // T``."""
    return max(chars - 1, 0) // block_size


def _check_split(path: str, split: str, chars: int, block_size: int) -> None:
    if chars < block_size + 1:
        raise DataError(
            f"text file {path} is too short for --block-size {block_size}: its {split} split holds {chars} "
            f"characters, a block needs {block_size + 1}"
        )


def _checked_splits(path: str, chars: int, block_size: int) -> int:
    """The training split's length, after checking that both splits hold a block."""
    n_train = split_point(chars)
    _check_split(path, "training", n_train, block_size)
    _check_split(path, "test", chars - n_train, block_size)
    return n_train


def train_blocks(cfg: DataConfig, root: str) -> int:
    """Training blocks of the text data set ``cfg`` before ``subset`` (reads the file).

    Raises:
        DataError: as :func:`load_text`.
    """
    path, text = _read(cfg, root)
    return block_count(_checked_splits(path, len(text), cfg.block_size), cfg.block_size)


def vocabulary(cfg: DataConfig, root: str) -> str:
    """The sorted characters of the text data set ``cfg`` (reads the file).

    Raises:
        DataError: as :func:`load_text`.
    """
    return characters(_read(cfg, root)[1])


def characters(text: str) -> str:
    """The vocabulary of ``text``: its distinct characters, sorted (a token's id is its index)."""
    return "".join(sorted(set(text)))


def _split_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    # A parent generator seeds one child per split, so the test blocks do not depend
    # on how many training blocks were drawn.
    parent = torch.Generator().manual_seed(seed)
    train, test = torch.randint(_SEED_BOUND, (2,), generator=parent).tolist()
    return torch.Generator().manual_seed(train), torch.Generator().manual_seed(test)


def draw_blocks(ids: torch.Tensor, block_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``block_count(len(ids), T)`` blocks at offsets drawn from ``generator``
    (uniform over ``0 .. len(ids) - T - 1``).

    Returns:
        x, y: (N, T) int64, ``x[i] = ids[o_i : o_i + T]``, ``y[i] = ids[o_i + 1 : o_i + T + 1]``.
    """
    n = block_count(len(ids), block_size)
    offsets = torch.randint(len(ids) - block_size, (n,), generator=generator)  # (N,)
    windows = ids[offsets[:, None] + torch.arange(block_size + 1)]  # (N, T + 1)
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def load_text(cfg: DataConfig, root: str, device: torch.device | str = "cpu") -> TextSplits:
    """The blocks of the text data set ``cfg`` (see the module's docstring) on ``device``.

    Args:
        cfg: "shakespeare" or "text:PATH"; ``block_size`` T, ``seed`` (the offsets)
            and ``subset`` (keep the first N training blocks).
        root: the data directory ("shakespeare" reads ``root/shakespeare/input.txt``).
        device: where the tensors live.

    Raises:
        DataError: the file is missing, unreadable, empty or not UTF-8, or a split
            has fewer than T + 1 characters.
    """
    path, text = _read(cfg, root)
    t = cfg.block_size
    n_train = _checked_splits(path, len(text), t)
    vocab = characters(text)
    ids = encode(text, vocab)  # (chars,)
    g_train, g_test = _split_generators(cfg.seed)
    train_x, train_y = draw_blocks(ids[:n_train], t, g_train)
    test_x, test_y = draw_blocks(ids[n_train:], t, g_test)
    warnings: list[str] = []
    n = len(train_x)
    if cfg.subset is not None and cfg.subset > n:
        warnings.append(f"--subset {cfg.subset} exceeds the {n} training examples; using all of them")
    elif cfg.subset is not None:
        train_x, train_y = train_x[: cfg.subset], train_y[: cfg.subset]
    logger.info("%s: %d characters, vocabulary of %d, blocks of %d", path, len(text), len(vocab), t)
    tensors = (x.to(device) for x in (train_x, train_y, test_x, test_y))
    return TextSplits(*tensors, vocab=vocab, warnings=tuple(warnings))
