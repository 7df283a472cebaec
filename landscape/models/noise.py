"""Normalization layers by name, and "noisy" BatchNorm (Santurkar et al. 2018,
Algorithm 1; Fig. 2, 5, 7, 8).

:func:`make_norm_layer` is the one place where a norm choice becomes a
``norm_layer`` factory for the model builders.

Algorithm 1 adds time-varying, non-zero-mean, non-unit-variance noise to every
batch-normalized activation. At each training step, for every noisy layer and
every channel j::

    mu_j    ~ U(-mean_range, mean_range)            # (0.5 in the paper)
    sigma_j ~ U(scale_low, scale_high)              # (1, 1.25)

and then for every element of that channel (sample, and height and width for
conv layers)::

    m ~ U(mu_j - mean_jitter, mu_j + mean_jitter)   # (0.1)
    s ~ N(sigma_j, scale_jitter_std**2)             # (std 0.1)
    out = s * a + m

where ``a`` is the BatchNorm output after gamma and beta, before the
non-linearity. The noise is drawn only in training mode and carries no gradient,
so d out / d a = s.

Random numbers: all noisy layers of one model share one CPU ``torch.Generator``
created by :func:`make_norm_layer` and seeded from ``NoiseConfig.seed``; it is a
plain attribute (``Noise.generator``), so ``landscape.state.module_generators``
finds it and probes snapshot and rewind it. It exists from construction on and
stays on the CPU when the model moves. Each noisy forward draws ONE 63-bit seed
from it and seeds a fresh throw-away generator on the activation's device, which
draws all of that step's noise there: no elementwise CPU draw and host-to-device
copy (for a (128, 64, 32, 32) activation on an H200: 0.17 ms against 86 ms, see
reports/benchmarks_ics.md; a CUDA generator costs ~6 us to create), and the
noise is a function of the shared generator's state alone, so rewinding that one
generator replays the noise exactly on any device. The same seed gives different
numbers on CPU and CUDA (different generator algorithms); runs are reproducible
per device.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from landscape.config import CONV_ONLY_NORMS, NoiseConfig
from landscape.models.norms import LP_NORMS, PER_SAMPLE_NORM_TYPES, ChannelRMSNorm, LpNorm, group_norm, layer_norm

NormFactory = Callable[[int], nn.Module]

_SEED_BOUND = 2**63 - 1  # torch.randint's high is exclusive and must fit in int64


def noise_generator(cfg: NoiseConfig) -> torch.Generator:
    """The CPU generator that one model's noisy layers share, seeded from ``cfg.seed``."""
    return torch.Generator(device="cpu").manual_seed(cfg.seed)


class Noise(nn.Module):
    """Algorithm 1's per-step noise ``s * a + m`` on channel dim 1; identity in eval mode.

    Args:
        num_features: number of channels C of the input (B, C) or (B, C, H, W).
        cfg: the noise constants.
        generator: the CPU generator shared by the model's noisy layers;
            a fresh one seeded from ``cfg.seed`` when None.
    """

    def __init__(self, num_features: int, cfg: NoiseConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("the shared noise generator must be a CPU generator")
        self.num_features = num_features
        self.cfg = cfg
        self.generator = noise_generator(cfg) if generator is None else generator

    def extra_repr(self) -> str:
        return f"{self.num_features}, {self.cfg}"

    def draw(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's noise for an activation like ``a``: ``(s, m)``, each shaped like ``a``.

        Advances the shared generator by exactly one draw (the device seed).
        """
        if a.dim() < 2 or a.shape[1] != self.num_features:
            raise ValueError(f"expected (B, {self.num_features}, ...) input, got {tuple(a.shape)}")
        seed = int(torch.randint(0, _SEED_BOUND, (1,), generator=self.generator).item())
        local = torch.Generator(device=a.device).manual_seed(seed)
        cfg, channels = self.cfg, (1, a.shape[1]) + (1,) * (a.dim() - 2)
        empty = {"device": a.device, "dtype": a.dtype}
        # Per-channel distribution parameters, shaped to broadcast over (B, C, ...).
        mu = torch.empty(channels, **empty).uniform_(-cfg.mean_range, cfg.mean_range, generator=local)
        sigma = torch.empty(channels, **empty).uniform_(cfg.scale_low, cfg.scale_high, generator=local)
        # Per-element draws around them, in place: these tensors are as large as
        # the activation, and each extra pass over them costs memory bandwidth.
        m = torch.empty(a.shape, **empty).uniform_(-cfg.mean_jitter, cfg.mean_jitter, generator=local).add_(mu)
        s = torch.empty(a.shape, **empty).normal_(0.0, cfg.scale_jitter_std, generator=local).add_(sigma)
        return s, m

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return a
        s, m = self.draw(a)  # fresh tensors: no autograd history, so d out / d a = s
        return torch.addcmul(m, s, a)  # s * a + m in one pass


class NoisyBatchNorm(_BatchNorm):
    """BatchNorm (1-D or 2-D) followed by :class:`Noise`: Algorithm 1's noisy BN.

    It is a ``_BatchNorm``, so its parameters, buffers and state-dict keys are
    BatchNorm's and code that looks for BatchNorm layers finds it; the noise is
    the child ``noise``.

    Args:
        num_features: number of channels C.
        dims: 2 for conv feature maps (B, C, H, W), 1 for vectors (B, C) or (B, C, L).
        cfg: the noise constants.
        generator: the CPU generator shared by the model's noisy layers.
        **bn_kwargs: BatchNorm options (eps, momentum, affine, ...).
    """

    def __init__(
        self,
        num_features: int,
        dims: int,
        cfg: NoiseConfig,
        generator: torch.Generator | None = None,
        **bn_kwargs,
    ) -> None:
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        super().__init__(num_features, **bn_kwargs)
        self.dims = dims
        self.noise = Noise(num_features, cfg, generator)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        allowed = (4,) if self.dims == 2 else (2, 3)
        if x.dim() not in allowed:
            raise ValueError(f"expected {' or '.join(f'{d}D' for d in allowed)} input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.noise(super().forward(x))


# Every normalization layer the toolkit ships, by what its training flag switches:
# batch or running statistics (torch's BatchNorm family, noisy BN, the l_p norms),
# noise or none (Noise), and nothing (the per-sample layer, group and RMS norms, which
# have neither). Eval mode means running statistics and no noise.
NORM_LAYER_TYPES: tuple[type[nn.Module], ...] = (_NormBase, LpNorm, Noise, *PER_SAMPLE_NORM_TYPES)


def switches_with_mode(module: nn.Module) -> bool:
    """A norm layer whose output depends on its training flag (running statistics or
    noise), so that a probe's ``bn_mode="eval"`` computes another function."""
    return isinstance(module, NORM_LAYER_TYPES) and not isinstance(module, PER_SAMPLE_NORM_TYPES)


def make_norm_layer(norm: str, dims: int, noise_cfg: NoiseConfig | None = None) -> NormFactory | None:
    """Factory ``num_features -> nn.Module`` for ``norm`` on ``dims``-D features
    (2: conv feature maps (B, C, H, W); 1: vectors (B, C)).

    Call it once per model: for ``noisy_bn`` and ``noise`` the factory holds the
    one generator that all the layers it makes share.

    Args:
        norm: one of ``landscape.config.NORMS``: ``none``, ``bn``, ``noisy_bn``
            (BN then noise), ``noise`` (the noise alone, no BN: the paper's
            control), ``l1``, ``l2``, ``linf``, and the per-sample ``layer``,
            ``group`` (conv feature maps only) and ``rms`` (see
            ``landscape.models.norms``; on vectors ``layer`` and ``rms`` are
            ``nn.LayerNorm`` and ``nn.RMSNorm`` over the features).
        dims: 1 or 2.
        noise_cfg: constants and seed of the noise; ``NoiseConfig()`` when None.

    Returns:
        The factory, or None for ``norm="none"``: builders then put no layer at
        all (and keep the bias of the preceding conv/linear).

    Raises:
        ValueError: an unknown norm, or ``group`` on vectors (``dims=1``).
    """
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims}")
    if norm == "none":
        return None
    if norm == "bn":
        return nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    if norm in LP_NORMS:
        return functools.partial(LpNorm, p=LP_NORMS[norm], dims=dims)
    if norm in CONV_ONLY_NORMS and dims == 1:
        raise ValueError(f"norm {norm!r} groups the channels of conv feature maps; vectors have none")
    if norm == "layer":
        return layer_norm if dims == 2 else nn.LayerNorm
    if norm == "group":
        return group_norm
    if norm == "rms":
        return ChannelRMSNorm if dims == 2 else nn.RMSNorm
    if norm in ("noisy_bn", "noise"):
        cfg = NoiseConfig() if noise_cfg is None else noise_cfg
        generator = noise_generator(cfg)
        if norm == "noisy_bn":
            return functools.partial(NoisyBatchNorm, dims=dims, cfg=cfg, generator=generator)
        return functools.partial(Noise, cfg=cfg, generator=generator)
    raise ValueError(f"unknown norm {norm!r}")


def rank_noise(noise: NoiseConfig, rank: int) -> NoiseConfig:
    """The noise constants process ``rank`` uses: ``noise`` itself on rank 0 (so a
    one-process run uses the configured seed), a seed of its own derived from
    (seed, rank) on the others, so that ranks holding different shards of a global
    batch draw independent noise (Algorithm 1 draws it per element)."""
    if rank == 0:
        return noise
    seeds = torch.randint(2**62, (rank,), generator=torch.Generator().manual_seed(noise.seed))
    return dataclasses.replace(noise, seed=int(seeds[-1]))
