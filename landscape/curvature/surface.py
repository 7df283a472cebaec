"""Loss surfaces around the weights along one or two directions (Li et al. 2018,
Visualizing the Loss Landscape of Neural Nets, Sec. 3-4).

For trainable parameters w, directions d1 (and d2) and a batch B (or the mean over
several batches), on a symmetric grid of coefficients a, b in [-span, span]:

    1-D    f(a)    = L(w + a d1; B)
    2-D    f(a, b) = L(w + a d1 + b d2; B)

Li et al.'s directions are Gaussian and filter-normalized: every filter of a weight
(slice along dim 0: a conv's output channel, a linear layer's output row) is rescaled,
d_ij <- d_ij / ||d_ij|| * ||w_ij||, so that the scale invariance of ReLU networks with
normalization does not distort the picture and surfaces of different networks compare.

The surface is a pure function, built on the probe's machinery
(:mod:`landscape.measure.probes`): every point is written into one working set of parameters
and buffers installed in the model (:class:`landscape.state.Workspace`) and evaluated
by :class:`landscape.measure.points.PointEvaluator`, so a point costs one forward under
``torch.no_grad`` and no copy of the model; random draws happen inside
:func:`landscape.state.fork_rng`. Afterwards parameters, buffers, ``.grad`` fields,
``requires_grad``, training flags and all RNGs are bit-identical. With
``points_per_forward`` N > 1, N points share one forward instead
(:mod:`landscape.curvature.surface_batched`: ``torch.func.vmap`` over stacked parameter sets).

Over several processes (a :class:`Shard` each) every process evaluates the points
i % world == rank of the flattened grid on the whole batches it was given, and one
sum puts the grid together on every process. A point is the same computation
wherever it runs, so the grid equals a single process's bit for bit (same kernels
and thread counts): the unevaluated entries are -0.0, the sum's exact neutral
element (x + -0.0 = x for every x, +0.0 included).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from landscape.config import BN_MODES
from landscape.curvature.surface_batched import BatchedPoints, offset
from landscape.measure.points import LossFn, PointEvaluator, Reduce
from landscape.measure.probes import gaussian_draw, make_direction, norm_layers_mode
from landscape.state import (
    Workspace,
    flatten,
    fork_rng,
    has_filters,
    replay_rng,
    rng_sources,
    trainable_params,
)

SURFACE_DIRECTIONS = ("filter", "random")

Direction = list[torch.Tensor]  # one tensor per trainable parameter


@dataclass(frozen=True)
class Surface:
    """The loss on a grid around w; ``losses[i, j] = L(w + coords[0][i] d1 + coords[1][j] d2)``."""

    coords: tuple[torch.Tensor, ...]  # one (steps,) float64 grid per direction, symmetric, exact 0 in the middle
    losses: torch.Tensor  # (steps,) * dims, float64 on the CPU; the mean over the batches
    base_loss: float  # L(w): the loss at the centre, evaluated at w itself
    directions: list[Direction]  # d1 (, d2), aligned with the trainable parameters
    center_index: tuple[int, ...]  # (steps // 2,) * dims: where the coefficients are all 0


@dataclass(frozen=True)
class Shard:
    """This process's share of a surface that several processes evaluate together: the
    points i % world == rank of the row-major flattened grid."""

    rank: int
    world: int
    sum: Reduce  # the sum over the processes of a list of tensors (landscape.distributed.all_reduce_sum)

    def owns(self, index: int) -> bool:
        return index % self.world == self.rank


def loss_surface(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor | None,
    targets: torch.Tensor | None,
    *,
    directions: str | Sequence[Sequence[torch.Tensor]] = "filter",
    steps: int = 21,
    span: float = 1.0,
    dims: int = 2,
    bn_mode: str = "train",
    include_bias_and_bn: bool = False,
    generator: torch.Generator | None = None,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    max_batches: int | None = None,
    points_per_forward: int = 1,
    shard: Shard | None = None,
) -> Surface:
    """Loss on a 1-D or 2-D grid around the weights (Li et al. 2018).

    Cost: ``steps ** dims`` forward passes per batch under ``torch.no_grad``, each
    preceded by a few passes over the parameters to write the point; no backward and
    no copy of the model. The centre is evaluated at w itself (a copy of the
    weights, no ``w + 0 * d``), so ``base_loss`` is L(w) bit for bit. Every point of a
    batch sees the same random draw (dropout masks, BN noise) and fresh clones of
    the buffers. Only normalization layers are switched to ``bn_mode``; other layers
    (dropout) keep their training flag.

    Args:
        model: Any ``nn.Module``; its trainable parameters are w. A
            ``DistributedDataParallel`` wrapper is looked through (its forward would
            run a collective per point).
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``.
        inputs: The batch inputs; None when ``batches`` is given.
        targets: The batch targets; None when ``batches`` is given.
        directions: ``"filter"`` (Li et al.: Gaussian, each filter scaled to the norm
            of the matching filter of w), ``"random"`` (Gaussian scaled to ||w||), or
            ``dims`` explicit directions (e.g. the top Hessian eigenvectors), each a
            sequence of tensors aligned with the trainable parameters in
            ``named_parameters()`` order, used as given.
        steps: Grid points per direction; odd, so the grid contains the centre.
        span: The grid runs over [-span, span] in every direction.
        dims: 1 (a line along d1) or 2 (a plane along d1, d2).
        bn_mode: ``"train"`` (batch statistics: the objective SGD minimises, the
            paper's) or ``"eval"`` (running statistics, as Li et al.).
        include_bias_and_bn: For generated directions: False (Li et al.'s default)
            leaves 1-D parameters (biases, BN scales and shifts) out, their
            direction zero; True includes them: ``"filter"`` then uses d = w for them,
            as Li et al.'s code does (a 1-D parameter has one number per filter), and
            ``"random"`` draws them too. ``"random"`` is scaled to the norm of the
            included parameters of w. Explicit directions ignore it.
        generator: Source of the Gaussian draws (d1 first, then d2); None draws from
            the global RNG inside a fork, so the global RNG is untouched either way.
        batches: ``(inputs, targets)`` pairs, read once; the surface is the mean
            of their surfaces.
        max_batches: Use at most this many of ``batches``.
        points_per_forward: 1 evaluates the points one by one in the model (the
            loop). N > 1 evaluates N points per forward by ``torch.func.vmap`` over
            stacked parameter sets and per-point clones of the buffers
            (:mod:`landscape.curvature.surface_batched`; N times the activation memory;
            ``loss_fn`` and the model must be vmappable): meant for small,
            launch-bound models on a GPU (on one CPU thread it is slower than the
            loop: reports/benchmarks.md). Its losses equal the loop's up to float rounding
            (another summation order); the centre is still evaluated by the loop,
            so ``base_loss`` stays L(w) bit for bit.
        shard: For several processes evaluating one surface: this process's
            :class:`Shard`. Every process makes the same call on the same batches
            (in the same RNG state, for dropout or noisy layers) and evaluates only
            its points; one ``shard.sum`` assembles the whole grid on every process,
            equal to a single process's. The directions are rank 0's (drawn or
            given there), sent to every rank by one more ``shard.sum`` before any
            evaluation, so they are identical everywhere whatever the other ranks
            drew or were given. None: one process evaluates every point.

    Returns:
        The :class:`Surface` (under ``shard``: the whole surface, on every process).

    Raises:
        ValueError: Even ``steps`` or fewer than 3, ``dims`` not 1 or 2, ``span`` not
            a positive finite number, an unknown option, explicit directions that do
            not match the trainable parameters, a model without trainable
            parameters (or, for generated directions without 1-D parameters, without
            a parameter of 2 or more dimensions), no batch, both a batch and
            ``batches``, ``points_per_forward`` below 1, or a ``shard`` whose rank is
            not in [0, world) (one-line messages).
    """
    _check_arguments(steps, span, dims, bn_mode, directions, inputs, targets, batches, max_batches)
    _check_evaluation(points_per_forward, shard)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    modules, real = trainable_params(model)
    if not real:
        raise ValueError("the model has no trainable parameters")
    if isinstance(directions, str):
        if not include_bias_and_bn and not any(has_filters(p) for p in real.values()):
            raise ValueError(
                "every trainable parameter is 1-D, so the direction would be zero; pass include_bias_and_bn=True"
            )
        explicit = None
    else:
        explicit = _explicit(directions, real, dims)
    pairs = [(inputs, targets)] if batches is None else itertools.islice(batches, max_batches)
    buffers = dict(model.named_buffers())  # the real ones, before the workspace's are put in their place
    workspace = Workspace(modules, list(real.values()))
    named = dict(zip(real, workspace.params))  # detached: they share storage with the real ones
    sources = rng_sources(model, modules, devices={t.device for t in [*workspace.params, *workspace.buffers]})
    k = steps // 2
    grid = torch.arange(-k, k + 1, dtype=torch.float64) / k  # exact -1, 0 and 1, and symmetric
    coords = tuple(grid * span for _ in range(dims))
    points = list(itertools.product(*(c.tolist() for c in coords)))  # row-major, as the losses
    mine = [i for i in range(len(points)) if shard is None or shard.owns(i)]
    total: torch.Tensor | None = None
    count = 0
    with fork_rng(sources), norm_layers_mode(model, bn_mode, modules), workspace.installed(), torch.no_grad():
        # Drawn before any replay state is taken, so the evaluations' random draws
        # (dropout masks) do not reuse the directions' random numbers.
        chosen = (
            explicit
            if explicit is not None
            else [_generated(directions, named, include_bias_and_bn, generator) for _ in range(dims)]
        )
        if shard is not None:
            chosen = _from_rank0(chosen, shard)
        batched = (
            None
            if points_per_forward == 1
            else BatchedPoints(model, loss_fn, named, buffers, chosen, points_per_forward)
        )
        for x, y in pairs:
            with replay_rng(sources) as rewind:  # per batch: each batch gets its own draw, every point the same
                evaluator = PointEvaluator(model, loss_fn, x, y, workspace, list(real), rewind)
                losses = _losses(evaluator, workspace, chosen, batched, points, mine)  # (steps ** dims,) float64
            total = losses if total is None else total + losses  # -0.0 + -0.0 stays -0.0
            count += 1
    if total is None:
        raise ValueError("batches yielded no batch")
    if shard is not None:
        (total,) = shard.sum([total])  # each entry: one process's value plus -0.0 from the others
    mean = (total / count).cpu().reshape((steps,) * dims)
    center = (k,) * dims
    return Surface(coords=coords, losses=mean, base_loss=float(mean[center]), directions=chosen, center_index=center)


def _check_evaluation(points_per_forward: int, shard: Shard | None) -> None:
    if points_per_forward < 1:
        raise ValueError(f"points_per_forward must be at least 1, got {points_per_forward}")
    if shard is not None and not 0 <= shard.rank < shard.world:
        raise ValueError(f"shard rank {shard.rank} is not in [0, {shard.world})")


def _from_rank0(directions: list[Direction], shard: Shard) -> list[Direction]:
    """Rank 0's directions on every rank, exactly: the others add -0.0 (one sum per
    dtype, as the sum shares one dtype over its tensors)."""
    flat = [t for d in directions for t in d]
    out = list(flat)
    for dtype in dict.fromkeys(t.dtype for t in flat):
        at = [i for i, t in enumerate(flat) if t.dtype == dtype]
        sent = [flat[i] if shard.rank == 0 else torch.full_like(flat[i], -0.0) for i in at]
        for i, t in zip(at, shard.sum(sent)):
            out[i] = t
    n = len(directions[0])
    return [out[j * n : (j + 1) * n] for j in range(len(directions))]


def _losses(
    evaluator: PointEvaluator,
    workspace: Workspace,
    directions: list[Direction],
    batched: BatchedPoints | None,
    points: list[tuple[float, ...]],
    mine: list[int],
) -> torch.Tensor:
    """One batch's losses: a (len(points),) float64 tensor holding the loss at every
    index in ``mine`` (by the loop, or N per forward) and -0.0 elsewhere."""
    centre = len(points) // 2  # row-major over an odd symmetric grid: the all-zero point
    looped = mine if batched is None else [i for i in mine if i == centre]  # the loop keeps L(w) exact
    losses = {i: _loss_at(evaluator, workspace, directions, points[i]) for i in looped}
    if batched is not None:
        rest = [i for i in mine if i != centre]
        values = batched.losses(evaluator.inputs, evaluator.targets, [points[i] for i in rest], evaluator.rewind)
        losses.update(zip(rest, values.unbind()))
    device = next(iter(losses.values())).device if losses else workspace.params[0].device
    out = torch.full((len(points),), -0.0, dtype=torch.float64, device=device)
    if losses:
        out[list(losses)] = torch.stack(list(losses.values())).double()
    return out


def _check_arguments(
    steps: int,
    span: float,
    dims: int,
    bn_mode: str,
    directions: str | Sequence[Sequence[torch.Tensor]],
    inputs: torch.Tensor | None,
    targets: torch.Tensor | None,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    max_batches: int | None,
) -> None:
    if steps < 3 or steps % 2 == 0:
        raise ValueError(f"steps must be an odd number >= 3 (the grid contains its centre), got {steps}")
    if not (math.isfinite(span) and span > 0):
        raise ValueError(f"span must be a positive finite number, got {span}")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims}")
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose from {', '.join(BN_MODES)}")
    if directions == "eigen":
        raise ValueError("directions='eigen': pass the top Hessian eigenvectors as a list of direction lists")
    if isinstance(directions, str) and directions not in SURFACE_DIRECTIONS:
        raise ValueError(
            f"unknown directions {directions!r}; choose from {', '.join(SURFACE_DIRECTIONS)} "
            "or pass a list of direction lists"
        )
    if batches is None and (inputs is None or targets is None):
        raise ValueError("pass inputs and targets, or batches")
    if batches is not None and (inputs is not None or targets is not None):
        raise ValueError("pass either inputs and targets or batches, not both")
    if max_batches is not None and (batches is None or max_batches <= 0):
        raise ValueError("max_batches must be positive and comes with batches")


def _explicit(
    directions: Sequence[Sequence[torch.Tensor]], params: dict[str, nn.Parameter], dims: int
) -> list[Direction]:
    """The caller's directions, checked against the parameters and detached."""
    if len(directions) != dims:
        raise ValueError(f"dims={dims} needs {dims} directions, got {len(directions)}")
    out = []
    for k, direction in enumerate(directions):
        if len(direction) != len(params):
            raise ValueError(f"direction {k} has {len(direction)} tensors for {len(params)} trainable parameters")
        for (name, p), t in zip(params.items(), direction):
            if t.shape != p.shape:
                raise ValueError(f"direction {k}[{name!r}] has shape {tuple(t.shape)}, parameter has {tuple(p.shape)}")
        out.append([t.detach().to(device=p.device, dtype=p.dtype) for p, t in zip(params.values(), direction)])
    return out


def _generated(
    kind: str, params: dict[str, torch.Tensor], include_bias_and_bn: bool, generator: torch.Generator | None
) -> Direction:
    """One Gaussian direction, filter-normalized or scaled to ||w|| (the probe's
    :func:`landscape.measure.probes.make_direction`), with 1-D parameters left out or included."""
    w = list(params.values())
    draw = gaussian_draw(params, generator)
    if kind == "filter":
        d = make_direction("filter", params, w, draw)  # zero for 1-D parameters
        return [wi.clone() if include_bias_and_bn and not has_filters(wi) else di for wi, di in zip(w, d)]
    if not include_bias_and_bn:  # left out of the draw and of the norm it is scaled to
        draw = [z if has_filters(z) else torch.zeros_like(z) for z in draw]
        w = [wi if has_filters(wi) else torch.zeros_like(wi) for wi in w]
    return make_direction("random", params, w, draw)  # draw * ||w|| / ||draw||


def _loss_at(
    evaluator: PointEvaluator, workspace: Workspace, directions: list[Direction], point: tuple[float, ...]
) -> torch.Tensor:
    """L(w + sum_k point[k] d_k); where every coefficient is 0, L(w) at w itself."""
    if not any(point):
        return evaluator.loss_at(0.0)  # the working parameters are a copy of w: L(w) exactly
    shift = offset(directions, point)
    # The workspace writes w - step_size * d: in one kernel from the flat offset when the
    # working parameters are one flat vector, else per tensor from the list.
    evaluator.set_direction(shift, flatten(shift) if workspace.flat_w is not None else None)
    return evaluator.loss_at(-1.0)  # w - (-1) shift = w + shift


@dataclass(frozen=True)
class Trajectory:
    """Li et al.'s (Sec. 7) two PCA directions of a training path, and the path in them."""

    directions: list[Direction]  # two unit directions (over all included entries), aligned with the weights
    path: torch.Tensor  # (len(weights) + 1, 2) float64: each w_i - w_final projected, then w_final itself, (0, 0)
    explained_variance_ratio: torch.Tensor  # (2,) float64: each direction's share of the variance of the w_i


def trajectory_directions(
    weights: Sequence[Sequence[torch.Tensor]], final: Sequence[torch.Tensor], *, include_bias_and_bn: bool = False
) -> Trajectory:
    """PCA of a training path around its final weights (Li et al. 2018, Sec. 7).

    The rows m_i = w_i - w_final (the final point left out, as Li et al.) are centered
    and their two principal directions taken; every point is then projected without
    centering, <w_i - w_final, d_k>, so w_final lies at (0, 0) exactly. The SVD goes
    through the n x n Gram matrix in float64, accumulated one parameter at a time, so
    no (n, P) matrix is formed: d_k = sum_i u_ik m_i / s_k, where u_k is an
    eigenvector of the centered Gram matrix (orthogonal to the ones vector, so the
    centering cancels).

    Args:
        weights: The earlier points w_i, each aligned with ``final``.
        final: The weights the surface is centred on.
        include_bias_and_bn: False (Li et al.'s default) leaves 1-D parameters out:
            their entries of every direction are zero.

    Returns:
        The :class:`Trajectory`.

    Raises:
        ValueError: Fewer than 3 earlier points (their centered differences would span
            fewer than 2 directions), shapes that do not match ``final``, or a path
            that spans fewer than 2 directions.
    """
    if len(weights) < 3:
        raise ValueError(f"two PCA directions need at least 3 checkpoints before the final one, got {len(weights)}")
    for i, w in enumerate(weights):
        if [t.shape for t in w] != [t.shape for t in final]:
            raise ValueError(f"checkpoint {i} does not match the final weights' shapes")
    n = len(weights)
    included = [include_bias_and_bn or has_filters(f) for f in final]
    gram = torch.zeros(n, n, dtype=torch.float64)
    for k, f in enumerate(final):
        if included[k]:
            rows = _rows(weights, f, k)  # (n, numel)
            gram += (rows @ rows.T).cpu()
    center = torch.eye(n, dtype=torch.float64) - 1.0 / n
    variances, vectors = torch.linalg.eigh(center @ gram @ center)  # ascending
    variances, vectors = variances.flip(0).clamp(min=0), vectors.flip(1)
    if variances[1] <= 1e-12 * variances[0]:
        raise ValueError("the checkpoints span fewer than 2 directions around the final weights")
    scales = vectors[:, :2] / variances[:2].sqrt()  # (n, 2): d_k = sum_i scales[i, k] m_i
    directions = [
        [
            (scales[:, j].to(f.device) @ _rows(weights, f, k)).view_as(f).to(f.dtype)
            if included[k]
            else torch.zeros_like(f)
            for k, f in enumerate(final)
        ]
        for j in range(2)
    ]
    path = torch.cat([gram @ scales, torch.zeros(1, 2, dtype=torch.float64)])  # <m_i, d_k>; the final point at 0
    return Trajectory(directions, path, variances[:2] / variances.sum())


def _rows(weights: Sequence[Sequence[torch.Tensor]], final: torch.Tensor, k: int) -> torch.Tensor:
    """Parameter k of every w_i - w_final, flattened: (n, numel) float64."""
    return torch.stack([(w[k].double() - final.double()).reshape(-1) for w in weights])
