"""Tests of the loss surface against a closed form, independent evaluations on model
copies, Li et al.'s filter normalization, state preservation, the batched (vmap)
path against the loop, and one process's share of a sharded grid (the processes
together: test_surface_distributed.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from landscape.curvature.surface import Shard, loss_surface
from landscape.state import differences, snapshot

CE = nn.functional.cross_entropy


def conv_net(seed: int = 0, dtype: torch.dtype = torch.float64, dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    ).to(dtype)


def batch(seed: int = 1, dtype: torch.dtype = torch.float64, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, 4, generator=gen, dtype=dtype), torch.randint(0, 3, (n,), generator=gen)


def gaussian_like(model: nn.Module, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in model.parameters()]


def loss_at(model: nn.Module, offset: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, bn_mode: str) -> float:
    """L(w + offset) on an independent copy of the model."""
    moved = copy.deepcopy(model).train(bn_mode == "train")
    with torch.no_grad():
        for p, o in zip(moved.parameters(), offset):
            p.add_(o)
        return float(CE(moved(x), y))


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("dims", [1, 2])
def test_centre_is_the_base_loss_exactly(bn_mode, dims):
    model = conv_net(dtype=torch.float32)
    x, y = batch(dtype=torch.float32)
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)  # eval and train mode give different losses
    reference = copy.deepcopy(model).train(bn_mode == "train")
    with torch.no_grad():
        expected = float(CE(reference(x), y))
    s = loss_surface(model, CE, x, y, steps=5, dims=dims, bn_mode=bn_mode, generator=torch.Generator().manual_seed(0))
    assert s.center_index == (2,) * dims
    assert s.losses.shape == (5,) * dims
    assert s.base_loss == expected
    assert float(s.losses[s.center_index]) == expected
    for c in s.coords:
        assert c[2] == 0 and c[0] == -1 and c[-1] == 1 and torch.equal(c, -c.flip(0))


def filter_norms(t: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim())))


@pytest.mark.parametrize("include", [False, True])
def test_filter_normalized_directions(include):
    model = conv_net()
    x, y = batch()
    s = loss_surface(model, CE, x, y, steps=3, include_bias_and_bn=include, generator=torch.Generator().manual_seed(0))
    assert len(s.directions) == 2 and not torch.equal(s.directions[0][0], s.directions[1][0])
    for direction in s.directions:
        for (name, p), d in zip(model.named_parameters(), direction):
            if p.dim() > 1:  # conv and linear weights: every output filter has the norm of w's
                torch.testing.assert_close(filter_norms(d), filter_norms(p.detach()), rtol=1e-12, atol=0)
                assert not torch.equal(
                    d / filter_norms(d).view(-1, *[1] * (p.dim() - 1)),
                    p.detach() / filter_norms(p.detach()).view(-1, *[1] * (p.dim() - 1)),
                )
            elif include:  # Li et al.'s code: d = w for biases and BN parameters
                assert torch.equal(d, p.detach()), name
            else:
                assert not d.any(), name


@pytest.mark.parametrize("include", [False, True])
def test_random_directions_have_the_norm_of_w(include):
    model = conv_net()
    x, y = batch()
    s = loss_surface(
        model,
        CE,
        x,
        y,
        directions="random",
        steps=3,
        dims=1,
        include_bias_and_bn=include,
        generator=torch.Generator().manual_seed(0),
    )
    (d,) = s.directions
    kept = [(p.detach(), di) for p, di in zip(model.parameters(), d) if include or p.dim() > 1]
    w_norm = torch.cat([p.flatten() for p, _ in kept]).norm()
    assert float(torch.cat([di.flatten() for _, di in kept]).norm()) == pytest.approx(float(w_norm), rel=1e-12)
    assert all(di.any() for _, di in kept)
    assert all(not di.any() for p, di in zip(model.parameters(), d) if not include and p.dim() <= 1)


def test_least_squares_surface_is_the_closed_form_quadratic():
    torch.manual_seed(0)
    model = nn.Linear(5, 2).double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 2, generator=gen, dtype=torch.float64)
    s = loss_surface(
        model,
        nn.functional.mse_loss,
        x,
        y,
        steps=7,
        span=0.8,
        include_bias_and_bn=True,
        generator=torch.Generator().manual_seed(4),
    )
    # L(a, b) = mean((r0 + a r1 + b r2)^2) with r0 the residual at w and rk = x Wk^T + ck
    # the change of the output along dk: a quadratic in (a, b), expanded term by term.
    w, c = model.weight.detach(), model.bias.detach()
    (w1, c1), (w2, c2) = s.directions
    r0, r1, r2 = x @ w.T + c - y, x @ w1.T + c1, x @ w2.T + c2
    a, b = torch.meshgrid(s.coords[0], s.coords[1], indexing="ij")
    expected = (
        (r0**2).mean()
        + 2 * a * (r0 * r1).mean()
        + 2 * b * (r0 * r2).mean()
        + a**2 * (r1**2).mean()
        + 2 * a * b * (r1 * r2).mean()
        + b**2 * (r2**2).mean()
    )
    torch.testing.assert_close(s.losses, expected, rtol=1e-12, atol=1e-12)
    assert float(s.coords[0][-1]) == 0.8


def test_explicit_directions_are_used_as_given_and_1d_is_the_2d_centre_line():
    model = conv_net()
    x, y = batch()
    d1, d2 = [[t * 0.3 for t in gaussian_like(model, seed)] for seed in (5, 6)]
    plane = loss_surface(model, CE, x, y, directions=[d1, d2], steps=5, bn_mode="eval")
    assert all(torch.equal(a, b) for given, used in zip((d1, d2), plane.directions) for a, b in zip(given, used))
    line1 = loss_surface(model, CE, x, y, directions=[d1], steps=5, dims=1, bn_mode="eval")
    line2 = loss_surface(model, CE, x, y, directions=[d2], steps=5, dims=1, bn_mode="eval")
    assert torch.equal(line1.losses, plane.losses[:, 2])  # b = 0: the line along d1
    assert torch.equal(line2.losses, plane.losses[2, :])  # a = 0: the line along d2
    # A corner, evaluated on a copy moved to w + a d1 + b d2.
    a, b = float(plane.coords[0][0]), float(plane.coords[1][-1])
    corner = loss_at(model, [a * u + b * v for u, v in zip(d1, d2)], x, y, "eval")
    assert float(plane.losses[0, -1]) == pytest.approx(corner, rel=1e-12)
    assert plane.losses.std() > 0.01


def test_generator_reproducible_and_global_rng_untouched():
    model = conv_net()
    x, y = batch()
    rng = torch.get_rng_state()
    runs = [loss_surface(model, CE, x, y, steps=3, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    same = all(torch.equal(a, b) for d, e in zip(runs[0].directions, runs[1].directions) for a, b in zip(d, e))
    assert same and torch.equal(runs[0].losses, runs[1].losses)
    assert not torch.equal(runs[0].directions[0][0], runs[2].directions[0][0])
    assert torch.equal(torch.get_rng_state(), rng)
    forked = [loss_surface(model, CE, x, y, steps=3, directions="random") for _ in range(2)]
    assert torch.equal(forked[0].losses, forked[1].losses)  # drawn from the global RNG at the same state
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("per_forward", [1, 4])
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("dims", [1, 2])
def test_state_is_bit_identical_afterwards(bn_mode, dims, per_forward):
    model = conv_net(dropout=0.3)
    x, y = batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        CE(model(x), y).backward()
        opt.step()
    model[1].bias.requires_grad_(False)
    model[5].eval()  # mixed training flags
    before = snapshot(model, opt)
    loss_surface(model, CE, x, y, steps=3, dims=dims, bn_mode=bn_mode, points_per_forward=per_forward)
    assert differences(before, snapshot(model, opt)) == []
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, False, True, True]
    model(x)  # negative control: a plain train-mode forward moves the running stats and the RNG
    assert set(differences(before, snapshot(model, opt))) == {"buffers", "cpu_rng"}


class Counted(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_several_batches_give_the_mean_with_one_forward_per_point():
    model = Counted(conv_net())
    pairs = [batch(seed) for seed in (1, 2, 3)]
    d = [gaussian_like(model, 9)]
    single = [loss_surface(model, CE, x, y, directions=d, steps=5, dims=1).losses for x, y in pairs]
    model.calls = 0
    pulled = []

    def loader():
        for pair in pairs:
            pulled.append(pair)
            yield pair

    s = loss_surface(model, CE, None, None, directions=d, steps=5, dims=1, batches=loader(), max_batches=2)
    assert len(pulled) == 2 and model.calls == 2 * 5
    torch.testing.assert_close(s.losses, (single[0] + single[1]) / 2, rtol=1e-14, atol=0)
    every = loss_surface(model, CE, None, None, directions=d, steps=5, dims=1, batches=pairs)
    torch.testing.assert_close(every.losses, sum(single) / 3, rtol=1e-14, atol=0)
    assert every.base_loss == float(every.losses[2])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(steps=4),
        dict(steps=1),
        dict(dims=3),
        dict(span=0.0),
        dict(span=-1.0),
        dict(span=float("nan")),
        dict(bn_mode="frozen"),
        dict(directions="eigen"),
        dict(directions="gradient"),
        dict(directions="explicit-1", dims=2),
        dict(directions="explicit-shape"),
        dict(directions="explicit-count"),
        dict(max_batches=2),
        dict(batches=[]),
        dict(batches="both"),
        dict(frozen=True),
        dict(vectors_only=True),
        dict(points_per_forward=0),
        dict(shard=Shard(rank=2, world=2, sum=list)),
    ],
)
def test_bad_arguments(kwargs):
    model = conv_net()
    x, y = batch()
    d = gaussian_like(model, 0)
    if kwargs.get("directions") == "explicit-1":
        kwargs["directions"] = [d]
    elif kwargs.get("directions") == "explicit-shape":
        kwargs["directions"] = [d, [*d[:-1], torch.zeros(2)]]
    elif kwargs.get("directions") == "explicit-count":
        kwargs["directions"] = [d, d[:-1]]
    if kwargs.pop("frozen", False):
        model.requires_grad_(False)
    if kwargs.pop("vectors_only", False):
        model = nn.Sequential(nn.BatchNorm1d(3)).double()
        x = torch.randn(6, 3, dtype=torch.float64)
    if kwargs.get("batches") == []:
        x = y = None
    elif kwargs.get("batches") == "both":
        kwargs["batches"] = [(x, y)]
    with pytest.raises(ValueError) as error:
        loss_surface(model, CE, x, y, **kwargs)
    assert "\n" not in str(error.value)


def cnn(dropout: float = 0.0) -> nn.Sequential:
    """Two convs with BatchNorm in float32, running statistics away from their start."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 4),
    )
    with torch.no_grad():
        for bn in (model[1], model[5]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    return model


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("dims, steps, per_forward", [(2, 5, 7), (2, 5, 25), (1, 7, 4)])
def test_points_per_forward_equals_the_loop(bn_mode, dims, steps, per_forward):
    model = Counted(cnn(dropout=0.3))  # every point of a batch sees the same dropout mask either way
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    before = snapshot(model)
    loop = loss_surface(
        model, CE, x, y, steps=steps, dims=dims, bn_mode=bn_mode, generator=torch.Generator().manual_seed(1)
    )
    model.calls = 0
    batched = loss_surface(
        model,
        CE,
        x,
        y,
        steps=steps,
        dims=dims,
        bn_mode=bn_mode,
        generator=torch.Generator().manual_seed(1),
        points_per_forward=per_forward,
    )
    assert differences(before, snapshot(model)) == []
    others = steps**dims - 1  # the centre goes through the loop
    assert model.calls == 1 + -(-others // per_forward)
    assert all(torch.equal(a, b) for d, e in zip(loop.directions, batched.directions) for a, b in zip(d, e))
    torch.testing.assert_close(batched.losses, loop.losses, rtol=1e-6, atol=0)
    assert batched.base_loss == loop.base_loss  # L(w) bit for bit, as the loop's
    assert loop.losses.std() > 0.01  # the points differ: the comparison means something


def test_one_shard_evaluates_its_points_only():
    model = Counted(conv_net())
    pairs = [batch(1), batch(2)]
    single = loss_surface(model, CE, None, None, steps=5, batches=pairs, generator=torch.Generator().manual_seed(0))
    owned = torch.arange(25) % 3 == 0  # rank 0 of 3: points 0, 3, ..., 24, the centre (12) included
    for per_forward, calls in [(1, 9), (4, 1 + 2)]:
        model.calls = 0
        alone = Shard(rank=0, world=3, sum=list)  # the others' -0.0 never added: this rank's part of the grid
        part = loss_surface(
            model,
            CE,
            None,
            None,
            steps=5,
            batches=pairs,
            generator=torch.Generator().manual_seed(0),
            points_per_forward=per_forward,
            shard=alone,
        )
        assert model.calls == 2 * calls  # per batch
        flat, expected = part.losses.flatten(), single.losses.flatten()
        torch.testing.assert_close(flat[owned], expected[owned], rtol=1e-12 if per_forward > 1 else 0, atol=0)
        assert part.base_loss == single.base_loss
        assert (flat[~owned] == 0).all() and torch.signbit(flat[~owned]).all()  # -0.0: x + -0.0 == x for every x
