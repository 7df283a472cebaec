"""Distributions of layer inputs over training (Santurkar et al. 2018, Fig. 2,
5, 7 and 8): the "distributional stability" view of internal covariate shift.

For chosen layers (the paper shows #2, #9 and #13 of VGG16: 1-based positions in
:func:`activation_sites`) and K channels of each, drawn once, a hook records on
its schedule the input to the non-linearity (the norm layer's output, or the
conv's when there is no norm):

- a histogram per layer, pooled over the K channels and over batch x H x W, on
  bin edges fixed at the first measurement (Fig. 2 and 7 show one distribution
  per layer over time);
- per channel j: the moments over batch x H x W, mu_t and sigma^2_t (biased,
  as BatchNorm normalizes), their change since the previous measurement
  |mu_t - mu_prev| and |sigma^2_t - sigma^2_prev| (Fig. 8's "between two
  successive steps" when the hook runs every step), and their drift from the
  first measurement, mu_t - mu_0 and sigma^2_t - sigma^2_0.

:class:`DistributionRecorder` measures and remembers (channels, bin edges, first
and previous moments); the training hook around it is
:class:`landscape.runner.adapters.LayerInputDistributions`. That hook runs at
``AFTER_BACKWARD``: the model then holds w_t and ``ctx.batch`` is B_t, so the
forward it repeats reproduces the activations of training step t
(at ``AFTER_STEP`` it would mix w_{t+1} with B_t). Train-mode BatchNorm uses the
batch statistics as in training; the running statistics are not touched (cloned
buffers), and the RNG is forked, so a noisy BN layer shows a fresh draw of its
noise without shifting the training's draws.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call

from landscape.measure.points import Reduce
from landscape.models.init import WEIGHT_TYPES, is_weight_layer
from landscape.models.noise import NORM_LAYER_TYPES
from landscape.state import cloned_buffers, detached_params, fork_rng, tie_weights

# A norm layer right after a conv/linear is where the input to the non-linearity is
# taken: the models' one list (BN and InstanceNorm, noisy BN and its noise, l_p, layer,
# group and RMS norms).
NORM_LAYERS = NORM_LAYER_TYPES

PAPER_LAYERS = (2, 9, 13)  # the layers Fig. 2, 5 and 7 show for VGG16


def _layer_modules(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Leaf modules in registration order; weight and norm layers count as leaves
    (noisy BN holds its noise as a child)."""
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, WEIGHT_TYPES + NORM_LAYERS) or not any(True for _ in child.children()):
            yield full, child
        else:
            yield from _layer_modules(child, full)


def activation_sites(model: nn.Module) -> list[str]:
    """Names of the modules whose outputs feed a non-linearity, in forward order.

    Heuristic: walk the leaf modules in registration order (which is forward
    order for VGG-like sequential models, DLNs and torchvision-style ResNets);
    for every conv/linear layer but the last (the classifier head, which feeds
    the loss), the site is the norm layer registered right after it if there is
    one, else the conv/linear itself. In residual networks the shortcut
    projections count too although their outputs are added before the
    non-linearity. A model with an ``activation_sites()`` method names its own (the
    GPT: the outputs of its normalization sites, the inputs of attention, MLP and head).

    Args:
        model: the network.

    Returns:
        Module names as in ``model.named_modules()``; the paper's layer #k is
        ``activation_sites(model)[k - 1]``.
    """
    own = getattr(model, "activation_sites", None)
    if callable(own):  # a model that names its own sites (the GPT: its normalization sites)
        return list(own())
    units = list(_layer_modules(model))
    weights = [i for i, (_, m) in enumerate(units) if is_weight_layer(m)]
    sites = []
    for i in weights[:-1]:
        follows_norm = i + 1 < len(units) and isinstance(units[i + 1][1], NORM_LAYERS)
        sites.append(units[i + 1][0] if follows_norm else units[i][0])
    return sites


@contextlib.contextmanager
def recorded_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Yields a dict that fills, during forwards inside the block, with the
    (detached) output of each named module's first call; the hooks are removed
    on exit."""
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = []

    def store(name: str):
        def forward_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            outputs.setdefault(name, output.detach())

        return forward_hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(store(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def layer_inputs(model: nn.Module, inputs: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named modules in one forward of ``inputs``, leaving the
    model's parameters, buffers, mode and every RNG as they were.

    Args:
        model: the network, in the mode to observe.
        inputs: one batch.
        names: module names (e.g. from :func:`activation_sites`).

    Returns:
        Each name's output tensor, e.g. (B, C, H, W).
    """
    with torch.no_grad(), fork_rng(model), recorded_outputs(model, names) as outputs:
        functional_call(
            model, (detached_params(model), cloned_buffers(model)), (inputs,), tie_weights=tie_weights(model)
        )
    missing = [n for n in names if n not in outputs]
    if missing:
        raise ValueError(f"modules not called in the forward: {', '.join(missing)}")
    return outputs


class DistributionRecorder:
    """Records layer-input distributions and moments (Fig. 2, 5, 7, 8), one
    :meth:`measure` at a time, remembering what the series needs.

    Args:
        layers: 1-based positions in :func:`activation_sites` (the paper's
            layer numbers) or module names.
        channels: K, channels per layer drawn once at the first measurement
            (all of them when a layer has fewer).
        bins: histogram bins.
        value_range: fixed histogram range; None: the range of the first
            measurement widened by ``margin`` of its width on each side.
        margin: see ``value_range``.
        seed: seeds the draw of the channels.
        sum_all: pools the shards of a batch split over processes: sums each tensor
            of a list over them (histogram counts summed, moments over the whole
            batch); None: this process's batch alone.
        max_all: with ``sum_all``, the element-wise maximum over the processes (the
            first bin edges from the global range).

    Returns metrics per layer L (``#k`` for a layer given by position, else its
    module name): ``dist/hist/L`` (counts, pooled over the K
    channels), ``dist/edges/L`` (bins + 1), ``dist/under/L`` and ``dist/over/L``
    (counts outside the edges, so hist + under + over = K * B * H * W),
    ``dist/channels/L``, and lists over the channels ``dist/mean/L``,
    ``dist/var/L``, ``dist/mean_drift/L``, ``dist/var_drift/L`` and, from the
    second measurement on, ``dist/mean_change/L`` and ``dist/var_change/L``.
    """

    def __init__(
        self,
        layers: Sequence[int | str] = PAPER_LAYERS,
        channels: int = 5,
        bins: int = 60,
        value_range: tuple[float, float] | None = None,
        margin: float = 0.25,
        seed: int = 0,
        sum_all: Reduce | None = None,
        max_all: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if channels <= 0 or bins <= 0 or margin < 0:
            raise ValueError("channels and bins must be positive and margin non-negative")
        if value_range is not None and not value_range[0] < value_range[1]:
            raise ValueError("value_range must be (low, high) with low < high")
        self.layers = tuple(layers)
        self.channels = channels
        self.bins = bins
        self.value_range = value_range
        self.margin = margin
        self.seed = seed
        self.sum_all, self.max_all = sum_all, max_all
        # Filled at the first measurement and kept for the run.
        self.names: list[str] | None = None
        self.chosen: dict[str, torch.Tensor] = {}
        self.edges: dict[str, torch.Tensor] = {}
        self.first: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.previous: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def label(self, layer: int | str) -> str:
        """The metric suffix of a selected layer: ``#k`` for the paper's 1-based
        position (the same with and without BN, whose layers shift module names),
        else the module name."""
        return f"#{layer}" if isinstance(layer, int) else layer

    def resolve(self, model: nn.Module) -> list[str]:
        """Module names of the selected layers."""
        sites = activation_sites(model)
        modules = dict(model.named_modules())
        names = []
        for layer in self.layers:
            if isinstance(layer, int):
                if not 1 <= layer <= len(sites):
                    raise ValueError(f"layer #{layer} does not exist: the model has {len(sites)} activation sites")
                names.append(sites[layer - 1])
            elif layer in modules:
                names.append(layer)
            else:
                raise ValueError(f"no module named {layer!r}")
        return names

    def measure(self, model: nn.Module, inputs: torch.Tensor) -> dict[str, float | list[float]]:
        """One measurement on the batch ``inputs``; updates the hook's memory."""
        if self.names is None:
            self.names = self.resolve(model)
        outputs = layer_inputs(model, inputs, self.names)
        if not self.chosen:
            draw = torch.Generator().manual_seed(self.seed)
            for name in self.names:
                permutation = torch.randperm(outputs[name].shape[1], generator=draw)
                self.chosen[name] = permutation[: self.channels].sort().values
        metrics: dict[str, float | list[float]] = {}
        for layer, name in zip(self.layers, self.names):
            metrics.update(self._measure_layer(name, self.label(layer), outputs[name]))
        return metrics

    def _sum_named(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum several tensors over the processes in one collective, by name."""
        sizes = [t.numel() for t in parts.values()]
        total = self._sum(torch.cat([t.reshape(-1) for t in parts.values()]))
        return dict(zip(parts, total.split(sizes)))

    def _measure_layer(self, name: str, key: str, out: torch.Tensor) -> dict[str, float | list[float]]:
        """Histogram and per-channel moments of one layer's input ``out`` (B, C, ...)."""
        channels = self.chosen[name]
        values = out[:, channels.to(out.device)]  # (B, K, ...)
        per_channel = values.transpose(0, 1).reshape(values.shape[1], -1).double()  # (K, B*H*W)
        pooled = per_channel.flatten()
        if name not in self.edges:
            self.edges[name] = self._first_edges(pooled)
        edges = self.edges[name].to(pooled.device)
        low, high = edges[0].item(), edges[-1].item()
        # Counts and sums, then squared deviations from the (global) mean: two passes,
        # as torch.var, so that a shard's moments add up without cancellation.
        summed = self._sum_named(
            {
                "count": torch.tensor([per_channel.shape[1]], dtype=torch.float64, device=pooled.device),
                "sums": per_channel.sum(dim=1),
                "hist": torch.histc(pooled, self.bins, low, high),
                "outside": torch.stack([(pooled < low).sum(), (pooled > high).sum()]).double(),
            }
        )
        count = summed["count"][0]
        under, over = summed["outside"].tolist()
        mean = summed["sums"] / count
        var = self._sum((per_channel - mean[:, None]).square().sum(dim=1)) / count
        metrics: dict[str, float | list[float]] = {
            f"dist/hist/{key}": summed["hist"].tolist(),
            f"dist/edges/{key}": edges.tolist(),
            f"dist/under/{key}": under,
            f"dist/over/{key}": over,
            f"dist/channels/{key}": [float(c) for c in channels.tolist()],
            f"dist/mean/{key}": mean.tolist(),
            f"dist/var/{key}": var.tolist(),
        }
        first_mean, first_var = self.first.setdefault(name, (mean, var))
        metrics[f"dist/mean_drift/{key}"] = (mean - first_mean).tolist()
        metrics[f"dist/var_drift/{key}"] = (var - first_var).tolist()
        if name in self.previous:
            previous_mean, previous_var = self.previous[name]
            metrics[f"dist/mean_change/{key}"] = (mean - previous_mean).abs().tolist()
            metrics[f"dist/var_change/{key}"] = (var - previous_var).abs().tolist()
        self.previous[name] = (mean, var)
        return metrics

    def state_dict(self) -> dict[str, object]:
        """The hook's memory (chosen channels, bin edges, first and previous moments),
        so a resumed run continues the same series; tensors and lists only, for
        ``torch.load(weights_only=True)``."""
        return {
            "names": list(self.names or []),
            "chosen": {k: v.cpu() for k, v in self.chosen.items()},
            "edges": {k: v.cpu() for k, v in self.edges.items()},
            "first": {k: [m.cpu(), v.cpu()] for k, (m, v) in self.first.items()},
            "previous": {k: [m.cpu(), v.cpu()] for k, (m, v) in self.previous.items()},
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.names = list(state["names"]) or None
        self.chosen = dict(state["chosen"])
        self.edges = dict(state["edges"])
        self.first = {k: (m, v) for k, (m, v) in state["first"].items()}
        self.previous = {k: (m, v) for k, (m, v) in state["previous"].items()}

    def _sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.sum_all([tensor])[0] if self.sum_all is not None else tensor

    def _first_edges(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.value_range is not None:
            low, high = self.value_range
        else:
            extremes = torch.stack([-pooled.min(), pooled.max()])
            if self.max_all is not None:
                extremes = self.max_all(extremes)
            low, high = -extremes[0].item(), extremes[1].item()
            width = high - low if high > low else 1.0  # a constant activation still gets a range
            low, high = low - self.margin * width, high + self.margin * width
        return torch.linspace(low, high, self.bins + 1, dtype=torch.float64)
