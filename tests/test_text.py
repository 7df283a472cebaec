"""Character-level text data (landscape.text): vocabulary, the 90/10 split by
position, random blocks with next-character targets, seeds, subset, the two ways of
naming a file, the one-line errors, and data.py's hooks (train_size, example_batch,
check_fits_data, the sequence loss)."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from landscape.data import DataError, Objective, check_fits_data, example_batch, load_data, total_steps, train_size
from landscape.text import decode, encode, split_point

T = 8
ALPHABET = "abcdefgh \n"  # the file holds every one of these and nothing else
VOCAB = "".join(sorted(ALPHABET))  # "\n abcdefgh"


def _corpus(chars: int = 400, seed: int = 0) -> str:
    rng = random.Random(seed)
    body = "".join(rng.choice(ALPHABET) for _ in range(chars - len(ALPHABET)))
    return ALPHABET + body  # every character at least once, then random ones


@pytest.fixture
def corpus(tmp_path, monkeypatch) -> tuple[str, DataConfig]:
    """A 400-character file ``corpus.txt`` in the current directory (tmp_path)."""
    monkeypatch.chdir(tmp_path)
    text = _corpus()
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8", newline="")
    return text, DataConfig(name="text:corpus.txt", block_size=T, seed=3)


def _offset(split: str, row: torch.Tensor) -> list[int]:
    """Every offset o of ``split`` whose T characters are ``row``'s (decoded)."""
    block = decode(row, VOCAB)
    return [o for o in range(len(split) - T + 1) if split[o : o + T] == block]


def test_vocab_split_and_shapes(corpus):
    text, cfg = corpus
    d = load_data(cfg)
    assert d.vocab == VOCAB and d.num_classes == len(VOCAB) == 10 and not d.is_regression
    n_train = split_point(len(text))
    assert n_train == 360  # the first 90 % of the characters
    assert d.train_x.shape == d.train_y.shape == ((n_train - 1) // T, T) == (44, 8)
    assert d.test_x.shape == d.test_y.shape == ((len(text) - n_train - 1) // T, T) == (4, 8)
    for t in (d.train_x, d.train_y, d.test_x, d.test_y):
        assert t.dtype == torch.int64 and 0 <= int(t.min()) and int(t.max()) < len(VOCAB)
    assert d.warnings == () and d.to(torch.float64).train_x.dtype == torch.int64  # tokens stay ids


def test_blocks_are_windows_with_next_character_targets(corpus):
    text, cfg = corpus
    d = load_data(cfg)
    n_train = split_point(len(text))
    train, test = text[:n_train], text[n_train:]
    assert torch.equal(d.train_y[:, :-1], d.train_x[:, 1:]) and torch.equal(d.test_y[:, :-1], d.test_x[:, 1:])
    for split, xs, ys in ((train, d.train_x, d.train_y), (test, d.test_x, d.test_y)):
        for x, y in zip(xs, ys):
            # Some offset o of the split gives x = split[o : o + T] and y = split[o + 1 : o + T + 1].
            hits = [o for o in _offset(split, x) if split[o + 1 : o + T + 1] == decode(y, VOCAB)]
            assert hits, (decode(x, VOCAB), decode(y, VOCAB))
    # The offsets are random, not the consecutive non-overlapping blocks.
    starts = [_offset(train, x)[0] for x in d.train_x]
    assert starts != list(range(0, len(starts) * T, T))


def test_encode_decode_round_trip():
    text = "héllo, wörld ✓\n"
    vocab = "".join(sorted(set(text)))
    ids = encode(text, vocab)
    assert ids.dtype == torch.int64 and decode(ids, vocab) == text
    assert ids.tolist() == [vocab.index(c) for c in text]


def test_blocks_are_deterministic_per_seed(corpus):
    _, cfg = corpus
    torch.manual_seed(1)
    a = load_data(cfg)
    torch.manual_seed(2)  # the global RNG does not matter
    b = load_data(cfg)
    c = load_data(dataclasses.replace(cfg, seed=4))
    for f in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.train_x, c.train_x) and not torch.equal(a.test_x, c.test_x)


def test_subset_keeps_the_first_blocks(corpus):
    _, cfg = corpus
    full = load_data(cfg)
    part = load_data(dataclasses.replace(cfg, subset=5))
    assert torch.equal(part.train_x, full.train_x[:5]) and torch.equal(part.train_y, full.train_y[:5])
    assert torch.equal(part.test_x, full.test_x) and part.warnings == ()
    over = load_data(dataclasses.replace(cfg, subset=1000))
    assert len(over.train_x) == 44 and over.warnings == (
        "--subset 1000 exceeds the 44 training examples; using all of them",
    )


def test_train_size_and_total_steps(corpus):
    _, cfg = corpus
    assert train_size(cfg) == 44 == len(load_data(cfg).train_x)
    assert train_size(dataclasses.replace(cfg, subset=10)) == 10
    assert train_size(dataclasses.replace(cfg, block_size=4)) == (360 - 1) // 4
    run = RunConfig(data=cfg, train=TrainConfig(epochs=2, steps=None, batch_size=8, device="cpu"))
    assert total_steps(run) == 2 * (44 // 8)


def test_text_path_relative_to_current_directory(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    (tmp_path / "x.txt").write_text(_corpus(seed=5), encoding="utf-8")
    monkeypatch.chdir(sub)
    d = load_data(DataConfig(name="text:../x.txt", block_size=T))
    assert d.name == "text:../x.txt" and len(d.train_x) == 44


def test_text_path_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "h.txt").write_text(_corpus(seed=6), encoding="utf-8")
    assert train_size(DataConfig(name="text:~/h.txt", block_size=T)) == 44


def test_shakespeare_reads_the_data_directory(tmp_path, monkeypatch):
    text = _corpus(seed=7)
    (tmp_path / "shakespeare").mkdir()
    (tmp_path / "shakespeare" / "input.txt").write_text(text, encoding="utf-8", newline="")
    cfg = DataConfig(name="shakespeare", data_dir=str(tmp_path), block_size=T)
    d = load_data(cfg)
    assert d.vocab == VOCAB and len(d.train_x) == 44 == train_size(cfg)
    monkeypatch.setenv("LANDSCAPE_DATA", str(tmp_path))  # as for CIFAR-10: --data-dir, else $LANDSCAPE_DATA
    assert torch.equal(load_data(dataclasses.replace(cfg, data_dir=None)).train_x, d.train_x)
    with pytest.raises(DataError, match="--data-dir"):
        load_data(DataConfig(name="shakespeare", data_dir=str(tmp_path / "none"), block_size=T))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"abc\xff\xfe\xfa" * 40, "is not UTF-8"),
        (b"a" * 80, "too short for --block-size 8: its test split holds 8 characters, a block needs 9"),
        (b"a" * 9, "too short for --block-size 8: its training split holds 8 characters"),
    ],
)
def test_errors_name_the_path_in_one_line(tmp_path, monkeypatch, content, expected):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "bad.txt").write_bytes(content)
    cfg = DataConfig(name="text:bad.txt", block_size=T)
    for call in (load_data, train_size):
        with pytest.raises(DataError) as info:
            call(cfg)
        message = str(info.value)
        assert message.startswith("text file bad.txt ") and expected in message and "\n" not in message


def test_a_directory_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match=r"^text file d cannot be read"):
        load_data(DataConfig(name="text:d", block_size=T))


class _TinyLM(nn.Module):
    """Embedding -> Linear: (B, T) ids -> (B, T, V) logits."""

    def __init__(self, vocab: int, width: int = 4) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab, width), nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def test_example_batch_and_check_fits_data(corpus):
    _, cfg = corpus
    run = RunConfig(model=ModelConfig(name="vgg_tiny"), data=cfg, train=TrainConfig(batch_size=6, device="cpu"))
    x, y, loss = example_batch(run, "cpu")
    assert x.shape == y.shape == (6, T) and x.dtype == y.dtype == torch.int64 and not loss.regression
    assert example_batch(run, "cpu", n=2)[0].shape == (2, T)
    check_fits_data(run, _TinyLM(len(VOCAB)).double())  # ids stay int64 for a float64 model
    with pytest.raises(ValueError, match=r"outputs of shape \(2, 8, 7\) for 2 examples, the data needs \(2, 8, 10\)"):
        check_fits_data(run, _TinyLM(7))


def test_sequence_loss_reductions():
    g = torch.Generator().manual_seed(0)
    out, target = torch.randn(3, T, 5, generator=g), torch.randint(5, (3, T), generator=g)
    tokens = F.cross_entropy(out.reshape(-1, 5), target.reshape(-1), reduction="none").view(3, T)
    assert torch.allclose(Objective(False)(out, target), tokens.mean())
    assert torch.allclose(Objective(False, "sum")(out, target), tokens.sum())
    assert torch.allclose(Objective(False, "sample-sum")(out, target), tokens.mean(1).sum())
    assert torch.allclose(Objective(False).per_example(out, target), tokens.mean(1))
    loss = Objective(False, "mean")
    assert loss.whole(float(loss.per_example(out, target).sum()), 3) == pytest.approx(float(tokens.mean()))
