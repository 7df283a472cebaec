"""Internal covariate shift as gradient change (Santurkar et al. 2018,
Definition 2.1; Fig. 3).

For a network with weight layers W_1, ..., W_k and loss L, the ICS of layer i
at step t is ``||G_{t,i} - G'_{t,i}||_2`` with::

    G_{t,i}  = grad_{W_i} L(W_1^t,     ..., W_k^t;     x_t, y_t)
    G'_{t,i} = grad_{W_i} L(W_1^{t+1}, ..., W_{i-1}^{t+1}, W_i^t, ..., W_k^t; x_t, y_t)

the gradient of layer i before and after every layer before it took this step's
update, on the same batch. Fig. 3 also plots the cosine of the two gradients.

Here a "layer" is a conv, linear or embedding module
(:func:`landscape.models.init.is_ics_layer`), and G covers its weight and bias as
one vector. A model may fold other modules' parameters into a layer: a module with
an ``ics_fold`` mapping {module name: layer name}, both relative to it, makes the
first's parameters part of the second's G, and the first no layer of its own (the
GPT's ``{"wpe": "wte"}``: the position embedding is the token embedding's bias). A
weight used twice (a head tied to the token embedding) is one parameter of the
layer that owns it: its G sums both uses, and W^{t+1} replaces it in both.
The layers "before layer i" are those whose outputs its input depends on: the
trainable parameters (weights, biases, BatchNorm gamma and beta) found by walking
the autograd graph back from the input of layer i. In a chain that is every
earlier layer; in a residual block the shortcut's downsample conv depends on what
precedes the block, not on the block's own conv1/conv2, which run before it in
forward order; an embedding's input (token ids) depends on nothing. Layers are
numbered in the order they are first called (forward pre-hooks), not
``named_parameters`` order. ``W^{t+1}`` is what the optimizer would produce from
the full gradient G: ``W - lr * G`` for plain SGD, or a dry run of the given
optimizer (momentum, weight decay, ...) on copies of its state.

The measurement changes nothing it measures: it runs ``functional_call`` with
detached parameters and freshly cloned buffers (so train-mode BatchNorm
normalizes with batch statistics, as in training, and updates only the clones),
inside :func:`landscape.state.fork_rng`, rewinding every RNG before each
evaluation so that all of them see the same random draw (noisy BN, dropout).
The modules' current train/eval modes are used; Definition 2.1 is meant for
training mode. Cost: one forward and backward for G, one forward for the graph
ancestry, plus one forward and backward for each layer that has an updated
parameter before it (the first layer's ICS is exactly 0 and costs nothing).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn
from torch.func import functional_call, grad

from landscape.models.init import is_ics_layer
from landscape.state import cloned_buffers, detached_params, fork_rng, replay_rng, tie_weights

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Params = dict[str, torch.Tensor]


@contextlib.contextmanager
def call_order(model: nn.Module) -> Iterator[list[str]]:
    """Yields a list that fills, during forwards run inside the block, with the
    names of ``model``'s modules in the order they are first called."""
    order: list[str] = []
    seen: set[str] = set()

    def record(name: str) -> Callable[..., None]:
        def pre_hook(module: nn.Module, args: tuple) -> None:
            if name not in seen:
                seen.add(name)
                order.append(name)

        return pre_hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in model.named_modules()]
    try:
        yield order
    finally:
        for handle in handles:
            handle.remove()


def input_ancestry(
    model: nn.Module, params: Params, buffers: Params, inputs: torch.Tensor, layers: set[str], tied: bool
) -> dict[str, set[str]]:
    """For each module named in ``layers``: the names of the parameters in ``params``
    that its input depends on (its graph ancestry), from one forward with ``params``
    as fresh autograd leaves (``buffers``: clones, which train-mode BN updates)."""
    leaves = {n: p.detach().requires_grad_() for n, p in params.items()}
    owner = {id(t): n for n, t in leaves.items()}
    roots: dict[str, list[torch.autograd.graph.Node]] = {name: [] for name in layers}

    def record(name: str) -> Callable[..., None]:
        def pre_hook(module: nn.Module, args: tuple) -> None:
            for a in args:
                if isinstance(a, torch.Tensor) and a.grad_fn is not None:
                    roots[name].append(a.grad_fn)

        return pre_hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in model.named_modules() if n in layers]
    try:
        with torch.enable_grad():
            functional_call(model, (leaves, buffers), (inputs,), tie_weights=tied)
    finally:
        for handle in handles:
            handle.remove()
    ancestry = {}
    for name, nodes in roots.items():
        found: set[str] = set()
        seen: set[int] = set()
        stack = list(nodes)
        while stack:  # iterative: the graphs of deep networks are deeper than Python's recursion limit
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            variable = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf
            if variable is not None and id(variable) in owner:
                found.add(owner[id(variable)])
            stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
        ancestry[name] = found
    return ancestry


def sgd_update(params: Params, grads: Params, lr: float) -> Params:
    """Plain SGD: ``W - lr * G`` for every parameter in ``grads``."""
    return {n: p - lr * grads[n] if n in grads else p for n, p in params.items()}


def optimizer_update(model: nn.Module, optimizer: torch.optim.Optimizer, grads: Params) -> Params:
    """The parameters ``optimizer.step()`` would produce if ``.grad`` were ``grads``.

    Dry run: a throw-away optimizer of the same class and hyperparameters, over
    clones of the parameters, loaded with a deep copy of ``optimizer``'s state,
    takes the step. ``model``, ``optimizer`` and its state are untouched. The
    class is built from the parameter groups and those of ``optimizer.defaults``
    its constructor takes (all of ``torch.optim``'s work so).

    Args:
        model: owns the parameters ``optimizer`` holds.
        optimizer: the real optimizer.
        grads: gradient by parameter name (as in ``model.named_parameters()``);
            parameters without one are skipped, as ``step()`` skips ``grad=None``.

    Returns:
        Every parameter of ``model`` by name: stepped clones for those the
        optimizer holds, the detached originals for the rest.
    """
    return dry_step(dict(model.named_parameters()), optimizer, grads)


def dry_step(named: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer, grads: Params) -> Params:
    """:func:`optimizer_update` over the parameters ``named`` (name -> the very tensors
    the optimizer holds, e.g. read before a :class:`landscape.state.Workspace` swaps
    them out)."""
    names = {id(p): n for n, p in named.items()}
    stepped: Params = {}
    groups = []
    for group in optimizer.param_groups:
        clones = []
        for p in group["params"]:
            if id(p) not in names:
                raise ValueError("the optimizer holds a parameter that is not the model's")
            clone = p.detach().clone().requires_grad_(p.requires_grad)
            name = names[id(p)]
            if name in grads and grads[name] is not None:
                clone.grad = grads[name].detach().clone()
            stepped[name] = clone
            clones.append(clone)
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": clones})
    accepted = inspect.signature(type(optimizer)).parameters  # AdamW's defaults hold Adam's decoupled_weight_decay
    dry = type(optimizer)(groups, **{k: v for k, v in optimizer.defaults.items() if k in accepted})
    # The state, copied tensor by tensor onto the clones (what load_state_dict(deepcopy(
    # state_dict())) gives, without packing and unpacking every group: a third of the time).
    for group, dry_group in zip(optimizer.param_groups, dry.param_groups):
        for p, clone in zip(group["params"], dry_group["params"]):
            if p in optimizer.state:
                dry.state[clone] = {
                    k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                    for k, v in optimizer.state[p].items()
                }
    dry.step()
    return {n: stepped[n].detach() if n in stepped else p.detach() for n, p in named.items()}


def _owner(param_name: str) -> str:
    return param_name.rpartition(".")[0]


def folded_modules(model: nn.Module) -> dict[str, str]:
    """{module name: the layer its parameters count in}, from the ``ics_fold`` of
    ``model`` and of its submodules (names relative to the declaring module, here
    made full: e.g. ``"module.wpe" -> "module.wte"`` under a wrapper)."""
    fold = {}
    for prefix, module in model.named_modules():
        base = f"{prefix}." if prefix else ""
        fold.update({base + part: base + layer for part, layer in getattr(module, "ics_fold", {}).items()})
    return fold


def measure_ics(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> dict[str, dict[str, float]]:
    """ICS of every conv/linear/embedding layer of ``model`` on one batch (Definition 2.1).

    Give exactly one of ``lr`` (plain SGD update) and ``optimizer`` (dry run of
    its update, state included).

    Args:
        model: the network at W^t, in the mode to measure (training mode for
            the paper's definition).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        inputs: the batch x_t.
        targets: its labels y_t.
        lr: step size of a plain SGD update.
        optimizer: the training optimizer whose update to dry-run.
        reduce: for one shard of a global batch per process: averages a list of
            gradients over the processes (:func:`landscape.distributed.all_reduce_mean`),
            so that G and every G' are the global batch's; one collective for G and
            one per measured layer, the same on every process. None: one process.

    Returns:
        ``{layer name: {"l2": ||G - G'||_2, "rel_l2": ||G - G'|| / ||G||,
        "cosine": cos(G, G'), "grad_norm": ||G||}}`` in forward order, names as
        in ``model.named_modules()``; ``rel_l2`` and ``cosine`` are NaN where a
        norm they divide by is 0.
    """
    if (lr is None) == (optimizer is None):
        raise ValueError("give exactly one of lr and optimizer")
    params = detached_params(model)
    if not params:
        return {}
    tied = tie_weights(model)

    def loss(own: Params, rest: Params, buffers: Params) -> torch.Tensor:
        # The buffers are an argument, not captured, so train-mode BatchNorm may
        # update them in place under torch.func.grad.
        return loss_fn(functional_call(model, ({**rest, **own}, buffers), (inputs,), tie_weights=tied), targets)

    with fork_rng(model), replay_rng(model) as rewind:

        def gradient(own: Params, rest: Params) -> Params:
            rewind()  # every evaluation sees the same random draw
            local = grad(loss)(own, rest, cloned_buffers(model))
            return local if reduce is None else dict(zip(local, reduce(list(local.values()))))

        with call_order(model) as order:
            full = gradient(params, {})
        if lr is not None:
            stepped = sgd_update(params, full, lr)
        else:
            stepped = optimizer_update(model, optimizer, full)
            stepped = {n: stepped[n] for n in params}
        changed = dict(zip(params, torch.stack([(stepped[n] != params[n]).any() for n in params]).tolist()))

        fold = folded_modules(model)
        layers = [n for n in order if is_ics_layer(model.get_submodule(n)) and n not in fold]
        rewind()
        ancestry = input_ancestry(model, params, cloned_buffers(model), inputs, set(layers), tied)
        rows = []
        measured = []
        for layer in layers:
            own_names = [n for n in params if fold.get(_owner(n), _owner(n)) == layer]
            if not own_names:
                continue  # a frozen layer has no gradient
            earlier = ancestry[layer] - set(own_names)
            g = torch.cat([full[n].flatten() for n in own_names]).double()
            if any(changed[n] for n in earlier):
                point = {n: stepped[n] if n in earlier else p for n, p in params.items() if n not in own_names}
                shifted = gradient({n: params[n] for n in own_names}, point)
                g_shifted = torch.cat([shifted[n].flatten() for n in own_names]).double()
            else:
                g_shifted = g  # nothing before this layer moved: G' = G exactly
            rows.append(torch.stack([(g - g_shifted).norm(), g.norm(), g_shifted.norm(), g @ g_shifted]))
            measured.append(layer)

    result = {}
    for layer, (l2, g_norm, shifted_norm, dot) in zip(measured, torch.stack(rows).tolist() if rows else []):
        result[layer] = {
            "l2": l2,
            "rel_l2": l2 / g_norm if g_norm > 0 else math.nan,
            "cosine": max(-1.0, min(1.0, dot / (g_norm * shifted_norm))) if g_norm * shifted_norm > 0 else math.nan,
            "grad_norm": g_norm,
        }
    return result
