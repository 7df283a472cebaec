"""Gradient-direction probe (Santurkar et al. 2018, Sec. 3.1; Fig. 4, 10, 11).

At training step t, with trainable parameters w, mini-batch B and
g = grad L(w; B), for every step size eta in a set S and a direction d
(d = g unless asked otherwise):

    loss landscape             L(w - eta d; B)
    gradient predictiveness    || grad L(w - eta d; B) - g ||_2
    effective beta-smoothness  max_{eta in S} || grad L(w - eta d; B) - g ||_2 / || eta d ||_2

plus the cosine between grad L(w - eta d; B) and g, and the curvature along the
gradient g^T H g / ||g||^2 from one Hessian-vector product.

The probe is a pure function. It evaluates the model itself, with one working
set of parameters (whatever the number of step sizes) and cloned buffers put in
place of the real tensors, which are never written and are put back on exit; it
draws random numbers inside :func:`landscape.state.fork_rng` and restores every
module's training flag, so the model, its ``.grad`` fields, the optimizer and
the RNG are bit-identical afterwards. Evaluating in place is what makes a point
cost one forward+backward: ``torch.func.functional_call`` swaps every tensor in
and out per call, which on small models costs as much as the pass (it remains
for ``method="vmap"``).

Over several processes (one shard of a global batch each) a ``reduce`` callable
averages [loss, *grads] over the ranks after every evaluation, in one
collective per point, so the recorded values are the global batch's.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from landscape.config import BN_MODES, DIRECTIONS
from landscape.measure.directions import gaussian_draw, inverse_sqrt, make_direction, update_direction
from landscape.measure.points import LossFn, PointEvaluator, Reduce
from landscape.models.noise import NORM_LAYER_TYPES, switches_with_mode
from landscape.state import (
    RngSources,
    Workspace,
    flatten,
    fork_rng,
    replay_rng,
    rng_sources,
    trainable_params,
)

logger = logging.getLogger(__name__)

Grads = Mapping[str, torch.Tensor | None] | Sequence[torch.Tensor | None]

METHODS = ("loop", "vmap", "auto")
AUTO_VMAP_MAX_PARAMS = 1_000_000  # "auto" picks vmap on CUDA up to this many parameters


@dataclass(frozen=True)
class ProbeResult:
    """One probe at one training step; per-step-size tuples follow ``step_sizes``.

    ``beta`` and the cosines are NaN when the direction (or g) is zero.
    """

    step_sizes: tuple[float, ...]  # absolute step sizes, as given
    base_loss: float  # L(w; B)
    grad_norm: float  # ||g||
    direction_norm: float  # ||d||
    losses: tuple[float, ...]  # L(w - eta d; B)
    grad_diffs: tuple[float, ...]  # ||grad L(w - eta d; B) - g||
    grad_cosines: tuple[float, ...]  # cos(grad L(w - eta d; B), g)
    beta: float  # max over eta > 0 of grad_diff / (eta ||d||)
    curvature: float | None  # g^T H g / ||g||^2, None when not computed
    bn_mode: str
    direction: str
    # With a diagonal preconditioner P (Adam's): max over eta > 0 of
    # ||P^{-1/2} (grad L(w - eta d; B) - g)|| / ||P^{1/2} eta d||; None without one.
    beta_precond: float | None = None

    def metrics(self, prefix: str = "probe/") -> dict[str, float | list[float]]:
        """Slash-namespaced metrics for the run store (step sizes belong in the config)."""
        out: dict[str, float | list[float]] = {
            f"{prefix}base_loss": self.base_loss,
            f"{prefix}grad_norm": self.grad_norm,
            f"{prefix}direction_norm": self.direction_norm,
            f"{prefix}loss": list(self.losses),
            f"{prefix}grad_diff": list(self.grad_diffs),
            f"{prefix}grad_cosine": list(self.grad_cosines),
            f"{prefix}beta": self.beta,
            f"{prefix}loss_min": min(self.losses),
            f"{prefix}loss_max": max(self.losses),
            f"{prefix}grad_diff_min": min(self.grad_diffs),
            f"{prefix}grad_diff_max": max(self.grad_diffs),
        }
        if self.curvature is not None:
            out[f"{prefix}curvature"] = self.curvature
        if self.beta_precond is not None:
            out[f"{prefix}beta_precond"] = self.beta_precond
        return out


@contextlib.contextmanager
def norm_layers_mode(model: nn.Module, bn_mode: str, modules: list[nn.Module] | None = None) -> Iterator[None]:
    """Put every normalization layer (:data:`landscape.models.noise.NORM_LAYER_TYPES`: the
    BatchNorm family, noisy BN and its noise, the l_p norms, the layer, group and RMS
    norms) in ``bn_mode``; on exit give each of them back its exact training flag (no
    recursive ``train()``, no other module touched). The layer, group and RMS norms
    keep no running statistics, so their flag changes nothing: ``bn_mode`` is a no-op
    for them."""
    modules = list(model.modules()) if modules is None else modules
    flags = [(m, m.training) for m in modules if isinstance(m, NORM_LAYER_TYPES)]  # the only flags it sets
    try:
        for m, _ in flags:
            m.training = bn_mode == "train"
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _is_stochastic(modules: list[nn.Module], sources: RngSources) -> bool:
    """Whether a forward pass draws random numbers (active dropout or a layer holding a
    generator), so a gradient from an earlier forward used another draw. Functional
    dropout called inside a custom ``forward`` cannot be detected."""
    dropout = any(isinstance(m, _DropoutNd) and m.training and m.p > 0 for m in modules)
    return dropout or bool(sources.generators)


def _grad_list(grad: Grads, params: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The given gradient aligned with ``params``; a missing entry (unused parameter) is zero."""
    if isinstance(grad, Mapping):
        unknown = set(grad) - set(params)
        if unknown:
            raise ValueError(f"grad has entries for unknown or frozen parameters: {sorted(unknown)}")
        values = [grad.get(n) for n in params]
    else:
        values = list(grad)
        if len(values) != len(params):
            raise ValueError(f"grad has {len(values)} tensors for {len(params)} trainable parameters")
    out = []
    for (name, p), v in zip(params.items(), values):
        if v is not None and v.shape != p.shape:
            raise ValueError(f"grad[{name!r}] has shape {tuple(v.shape)}, parameter has {tuple(p.shape)}")
        out.append(torch.zeros_like(p) if v is None else v.detach())
    return out


def probe_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    step_sizes: Sequence[float],
    *,
    grad: Grads | None = None,
    base_loss: float | None = None,
    direction: str = "gradient",
    bn_mode: str = "train",
    generator: torch.Generator | None = None,
    method: str = "loop",
    chunk_size: int | None = None,
    curvature: bool = True,
    reduce: Reduce | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    preconditioner: Mapping[str, torch.Tensor] | None = None,
) -> ProbeResult:
    """Loss, gradient predictiveness and effective beta-smoothness along a direction.

    Cost: K = len(step_sizes) forward+backward passes when ``grad`` is reused,
    K+1 otherwise; ``curvature=True`` adds one forward and a double backward
    (about 2-3 passes), so turn it off for the cheapest probe. ``grad`` is
    recomputed anyway (K+1) when it cannot be g of this probe: for
    ``bn_mode="eval"`` on a model with norm layers that keep running statistics
    (the training gradient used batch statistics) and for models with active dropout or noisy layers (the
    training forward used another random draw).

    Every evaluation point sees the same random draw (dropout masks, BN noise)
    and fresh clones of the buffers. Afterwards parameters, buffers, ``.grad``
    fields, training flags and all RNGs are bit-identical.

    Args:
        model: Any ``nn.Module``; its trainable parameters are w.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``.
        inputs: The mini-batch inputs B.
        targets: The mini-batch targets.
        step_sizes: Absolute step sizes eta (>= 0; 0 gives L(w) and is left out of beta).
        grad: g already computed (dict name -> tensor, or a list aligned with the
            trainable parameters; None entries are zero), e.g. the ``.grad`` of
            the training step.
        base_loss: L(w; B) matching ``grad`` (the training loss); computed
            (one forward) when ``grad`` is reused and this is None.
        direction: ``"gradient"`` (d = g), ``"random"`` (Gaussian, scaled to
            ||g||), ``"filter"`` (Li et al. 2018 filter-normalized Gaussian;
            1-D parameters zeroed; not rescaled) or ``"update"`` (d = u = (w - w') / lr,
            w' the step ``optimizer`` takes with ``grad``, or with the probe's g where
            no ``grad`` is given: :func:`landscape.measure.directions.update_direction`;
            at eta = lr the point is exactly the step taken, and for plain SGD u = g).
        bn_mode: ``"train"`` (batch statistics, what SGD optimises; the paper's)
            or ``"eval"`` (running statistics, as Li et al. and PyHessian). A no-op
            for the layer, group and RMS norms, which have no running statistics.
        generator: Source of random directions; None draws from the global RNG
            inside a fork, so training's RNG stream is untouched either way.
        method: ``"loop"`` (one forward+backward per step size, in place; the
            fastest on CPUs and for large models) or ``"vmap"`` (``torch.func.vmap`` over
            stacked parameter sets, ``randomness="same"``; about 2x faster for
            small, launch-bound models on a GPU such as the DLN, and K times the
            activation memory; train-mode BN works because every point gets
            its own stacked buffer copy; ``loss_fn`` must be vmappable), or
            ``"auto"`` (:func:`choose_method`). See reports/benchmarks.md.
        chunk_size: For ``"vmap"``: evaluation points per vmapped call (bounds
            memory); None: all at once.
        curvature: Also compute g^T H g / ||g||^2 (one Hessian-vector product).
        optimizer: The training optimizer, for ``direction="update"`` (a dry run on
            copies of its state: it stays untouched).
        preconditioner: The diagonal of a preconditioner P by parameter name (positive;
            Adam's: :func:`landscape.measure.preconditioner.adam_preconditioner`): also
            record ``beta_precond``, beta measured in P's geometry.
        reduce: For one shard of a global batch per process: averages
            ``[loss, *grads]`` over the processes (e.g.
            :func:`landscape.distributed.all_reduce_mean`, one collective per
            point), so every value is the global batch's; ``base_loss`` is
            reduced too, while ``grad`` must already be the global gradient (as
            DDP's ``.grad`` is). Every process must make the same call. None: one process.

    Returns:
        The :class:`ProbeResult`.

    Raises:
        ValueError: Unknown option, empty/negative/non-finite step sizes, or a
            ``grad`` that does not match the trainable parameters.
    """
    step_sizes = tuple(float(s) for s in step_sizes)
    _check_arguments(step_sizes, direction, bn_mode, method, chunk_size)
    if direction == "update" and optimizer is None:
        raise ValueError("direction 'update' needs the optimizer (its dry run gives the update)")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # DDP's forward would wait for a backward into the real .grad
    method = choose_method(method, model)
    modules, real = trainable_params(model)
    names = list(real)
    held = dict(model.named_parameters()) if direction == "update" else {}  # before the workspace swaps them
    scale = inverse_sqrt(preconditioner, real) if preconditioner is not None else None
    workspace = Workspace(modules, list(real.values()))
    named = dict(zip(names, workspace.params))  # detached: they share storage with the real ones
    sources = rng_sources(model, modules, devices={t.device for t in [*workspace.params, *workspace.buffers]})
    with fork_rng(sources), norm_layers_mode(model, bn_mode, modules), workspace.installed():
        reuse = grad is not None and _can_reuse(bn_mode, modules, sources)
        g = _grad_list(grad, named) if reuse else None
        # A random direction is drawn before the replay state is taken, so the evaluations'
        # draws (dropout masks) do not reuse the direction's random numbers.
        draw = gaussian_draw(named, generator) if direction in ("random", "filter") else None
        step_g = _grad_list(grad, named) if direction == "update" and grad is not None else None
        if reduce is not None and base_loss is not None:
            local = base_loss if isinstance(base_loss, torch.Tensor) else torch.tensor(float(base_loss))
            base_loss = reduce([local.detach().reshape(1)])[0]
        with replay_rng(sources) as rewind:
            evaluator = PointEvaluator(model, loss_fn, inputs, targets, workspace, names, rewind, reduce)
            base = _at_w(evaluator, g, reuse=reuse, base_loss=base_loss, curvature=curvature)
            if direction == "update":
                d = update_direction(held, optimizer, dict(zip(names, step_g or base.g)), names)
            else:
                d = make_direction(direction, named, base.g, draw)
            g_flat = flatten(base.g)  # one flat vector: a few reductions per point instead of a few per tensor
            d_flat = g_flat if d is base.g else flatten(d)
            evaluator.set_direction(d, d_flat)
            if method == "vmap":
                points = evaluator.points_by_vmap(step_sizes, chunk_size or len(step_sizes))
            else:
                points = evaluator.points_by_loop(step_sizes)
            measured = _compare_to_g(points, g_flat, scale)
            g_norm, d_norm = torch._foreach_norm([g_flat, d_flat])
            if scale is not None:
                measured["d_norm_precond"] = torch.linalg.vector_norm(d_flat / scale).reshape(1)

    # One transfer for every scalar (a single device sync on GPUs).
    host = _to_host(
        {**measured, "g_norm": g_norm, "d_norm": d_norm, "base_loss": base.loss, "curvature": base.curvature}
    )
    (g_norm,), (d_norm,) = host["g_norm"], host["d_norm"]
    cosines = [
        dot / (norm * g_norm) if norm * g_norm > 0 else math.nan
        for norm, dot in zip(host["point_grad_norm"], host["dot"])
    ]
    beta = _beta(host["grad_diff"], step_sizes, d_norm)
    beta_precond = None if scale is None else _beta(host["grad_diff_precond"], step_sizes, host["d_norm_precond"][0])
    return ProbeResult(
        step_sizes=step_sizes,
        base_loss=host["base_loss"][0],
        grad_norm=g_norm,
        direction_norm=d_norm,
        losses=tuple(host["loss"]),
        grad_diffs=tuple(host["grad_diff"]),
        grad_cosines=tuple(cosines),
        beta=beta,
        curvature=host["curvature"][0] if "curvature" in host else None,
        bn_mode=bn_mode,
        direction=direction,
        beta_precond=beta_precond,
    )


def _beta(diffs: Sequence[float], step_sizes: Sequence[float], d_norm: float) -> float:
    """max over eta > 0 of diff / (eta ||d||); NaN when ||d|| is 0 or a point's diff is NaN."""
    ratios = [diff / (eta * d_norm) if d_norm > 0 else math.nan for diff, eta in zip(diffs, step_sizes) if eta > 0]
    return max(ratios) if ratios and not any(math.isnan(r) for r in ratios) else math.nan


def _check_arguments(
    step_sizes: tuple[float, ...], direction: str, bn_mode: str, method: str, chunk_size: int | None
) -> None:
    if not step_sizes or not all(math.isfinite(s) and s >= 0 for s in step_sizes):
        raise ValueError("step sizes must be a non-empty sequence of finite numbers >= 0")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose from {', '.join(DIRECTIONS)}")
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose from {', '.join(BN_MODES)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if chunk_size is not None and chunk_size <= 0:
        raise ValueError("chunk_size must be positive")


def choose_method(method: str, model: nn.Module) -> str:
    """``"auto"``: ``"vmap"`` for a model on CUDA with at most :data:`AUTO_VMAP_MAX_PARAMS`
    parameters (launch-bound: vmap measured about 2x faster for the DLN on an H200),
    else ``"loop"`` (faster on CPUs and for large models; see reports/benchmarks.md).
    Other methods are returned as they are."""
    if method != "auto":
        return method
    params = [p for p in model.parameters() if p.requires_grad]
    on_cuda = bool(params) and params[0].device.type == "cuda"
    return "vmap" if on_cuda and sum(p.numel() for p in params) <= AUTO_VMAP_MAX_PARAMS else "loop"


def _can_reuse(bn_mode: str, modules: list[nn.Module], sources: RngSources) -> bool:
    """Whether the caller's gradient is g of this probe: not for ``bn_mode="eval"`` on a
    model with norm layers that switch with the mode (training used batch statistics;
    the per-sample layer, group and RMS norms do not switch), nor when a forward draws
    random numbers (training used another draw)."""
    if bn_mode == "eval" and any(switches_with_mode(m) for m in modules):
        logger.debug("bn_mode='eval': recomputing g and L(w) in eval mode instead of reusing grad")
        return False
    if _is_stochastic(modules, sources):
        logger.debug("random layers are active: recomputing g so that it sees the probe's draw")
        return False
    return True


@dataclass(frozen=True)
class _AtW:
    """The probe's centre: g, L(w) (a tensor, or the caller's number) and the curvature."""

    g: list[torch.Tensor]
    loss: torch.Tensor | float
    curvature: torch.Tensor | None


def _at_w(
    evaluator: PointEvaluator,
    g: list[torch.Tensor] | None,
    *,
    reuse: bool,
    base_loss: torch.Tensor | float | None,
    curvature: bool,
) -> _AtW:
    """g and L(w): the caller's where they can be reused, else evaluated (with the
    curvature, when asked, from the same forward)."""
    loss, curv = None, None
    if curvature and g is None and evaluator.reduce is not None:
        loss, g = evaluator.loss_and_grad(0.0)  # the curvature needs the global g first
    if curvature:
        loss, grads, curv = evaluator.with_curvature(g)
        g = grads if g is None else g
    elif g is None:
        loss, g = evaluator.loss_and_grad(0.0)
    elif base_loss is None:
        loss = evaluator.loss()
    if reuse and base_loss is not None:
        loss = base_loss  # the caller's loss is L(w; B) of exactly this g
    return _AtW(g, loss, curv)


def _compare_to_g(
    points: Iterator[tuple[torch.Tensor, list[torch.Tensor]]], g_flat: torch.Tensor, scale: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Per point (L, G): the loss, ||G - g||, ||G|| and G.g, stacked over the points;
    with ``scale`` = P^{-1/2} (flat) also ||P^{-1/2} (G - g)||."""
    out: dict[str, list[torch.Tensor]] = {"loss": [], "grad_diff": [], "point_grad_norm": [], "dot": []}
    if scale is not None:
        out["grad_diff_precond"] = []
    for loss, grads in points:
        flat = flatten(grads)  # the point's own gradient: overwritten below, no temporary
        out["loss"].append(loss)
        out["point_grad_norm"].append(torch.linalg.vector_norm(flat))
        out["dot"].append(torch.dot(flat, g_flat))
        out["grad_diff"].append(torch.linalg.vector_norm(flat.sub_(g_flat)))
        if scale is not None:
            out["grad_diff_precond"].append(torch.linalg.vector_norm(flat.mul_(scale)))
    return {k: torch.stack(v) for k, v in out.items()}


def _to_host(values: dict[str, torch.Tensor | float | None]) -> dict[str, list[float]]:
    """Every tensor as a list of Python floats, in one transfer; numbers pass through, None is left out."""
    tensors = {k: v.detach().reshape(-1).double() for k, v in values.items() if isinstance(v, torch.Tensor)}
    flat = torch.cat([t.to(next(iter(tensors.values())).device) for t in tensors.values()]).tolist() if tensors else []
    out: dict[str, list[float]] = {}
    start = 0
    for k, t in tensors.items():
        out[k], start = flat[start : start + t.numel()], start + t.numel()
    out.update({k: [float(v)] for k, v in values.items() if v is not None and not isinstance(v, torch.Tensor)})
    return out


def training_grads(model: nn.Module) -> dict[str, torch.Tensor | None] | None:
    """The ``.grad`` of every trainable parameter (None when no backward has run),
    to pass as ``grad=`` right after ``loss.backward()``."""
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return grads if any(v is not None for v in grads.values()) else None
