"""A small decoder-only transformer (GPT-2's architecture, nanoGPT's layout) for
measuring the loss landscape of a language model with the same instruments as the
paper's networks (issue #24).

``idx`` (B, T) of token ids -> logits (B, T, vocab): a token embedding plus a learned
position embedding, ``layers`` blocks of causal multi-head self-attention and an MLP
(Linear(w, 4w), GELU, Linear(4w, w)), each on a residual connection, and an output
head tied to the token embedding (``F.linear(x, wte.weight)``: one parameter, no bias).

Normalization (``norm``): ``"layer"`` (``nn.LayerNorm``), ``"rms"`` (``nn.RMSNorm``) or
``"none"`` (``nn.Identity``), placed (``placement``) either

* ``"pre"`` (GPT-2): ``x = x + attn(n1(x)); x = x + mlp(n2(x))``, and a final norm
  before the head; or
* ``"post"`` (the original transformer's, Vaswani et al. 2017):
  ``x = n1(x + attn(x)); x = n2(x + mlp(x))``, and no final norm (the last block's
  output is already normalized).

The attention is written out (q k^T / sqrt(d), a causal mask of -inf, softmax,
dropout, @ v) rather than calling ``F.scaled_dot_product_attention``: on the CPU the
double backward of the latter raises "derivative for
_scaled_dot_product_flash_attention_for_cpu_backward is not implemented" (torch 2.14),
and every curvature measurement (Hessian-vector products, the probe's g^T H g) needs
second derivatives.

Dropout (default 0) is ``nn.Dropout`` modules, after the embeddings, on the attention
weights and at the end of both residual branches, so that the instruments see it
(:func:`landscape.measure.probes._is_stochastic` looks for dropout modules in training
mode) and replay one draw for every evaluation.

Init: GPT-2's, drawn in ``__init__`` from the global RNG: every linear and embedding
weight N(0, 0.02^2), the last linear of each residual branch (``c_proj``)
N(0, (0.02 / sqrt(2 layers))^2) so that the residual stream's variance does not grow
with depth, zero biases, norms at weight 1 (and bias 0). Not Glorot: the paper's
protocol is for its own networks.

ICS (:func:`landscape.measure.ics.measure_ics`): layer #1 is the token embedding,
whose gradient includes the tied head's contribution; the position embedding is
folded into it (:attr:`GPT.ics_fold`): it is the embedding layer's position-dependent
bias, and G covers a layer's weight and bias as one vector. Layers #2.. are
``c_attn``, ``attn.c_proj``, ``c_fc``, ``mlp.c_proj`` of each block in turn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from landscape.config import NORM_PLACEMENTS, SEQUENCE_NORMS
from landscape.models.noise import make_norm_layer

INIT_STD = 0.02  # GPT-2's


def make_norm(norm: str, width: int) -> nn.Module:
    """The registry's norm over ``width`` features (:func:`make_norm_layer` on vectors:
    ``nn.LayerNorm`` for "layer", ``nn.RMSNorm`` for "rms"), ``nn.Identity`` for "none"."""
    if norm not in SEQUENCE_NORMS:
        raise ValueError(f"unknown norm {norm!r} for the GPT; choose from {', '.join(SEQUENCE_NORMS)}")
    factory = make_norm_layer(norm, 1)
    return nn.Identity() if factory is None else factory(width)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, written out (double-differentiable on every device)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(width, 3 * width)  # q, k, v
        self.c_proj = nn.Linear(width, width)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, h, T, d)
        # q scaled before the product, and the mask written in place: two fewer passes over
        # the (B, h, T, T) scores, which dominate a small model's step on a CPU.
        scores = (q * (1 / math.sqrt(c // self.heads))) @ k.transpose(-2, -1)  # (B, h, T, T)
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        weights = self.attn_dropout(F.softmax(scores.masked_fill_(future, float("-inf")), dim=-1))
        y = (weights @ v).transpose(1, 2).reshape(b, t, c)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Linear(w, 4w), GELU (exact, erf), Linear(4w, w), dropout."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One transformer block, pre- or post-norm (see the module docstring)."""

    def __init__(self, width: int, heads: int, norm: str, placement: str, dropout: float) -> None:
        super().__init__()
        self.placement = placement
        self.ln_1 = make_norm(norm, width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln_2 = make_norm(norm, width)
        self.mlp = MLP(width, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.placement == "pre":
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class GPT(nn.Module):
    """A decoder-only transformer; ``forward(idx (B, T)) -> logits (B, T, vocab_size)``.

    Args:
        vocab_size: tokens (the ids run over [0, vocab_size)).
        block_size: the longest context; T <= block_size.
        layers: transformer blocks.
        heads: attention heads; must divide ``width``.
        width: the residual stream's features (the embedding dimension).
        norm: ``"layer"``, ``"rms"`` or ``"none"``.
        placement: ``"pre"`` (GPT-2, a final norm before the head) or ``"post"`` (the
            original transformer's, no final norm).
        dropout: the probability of every dropout module (0: none drawn).
    """

    # For landscape.measure.ics: the parameters of module "wpe" count as part of the
    # ICS layer "wte" (the position embedding is the embedding layer's bias).
    ics_fold: ClassVar[Mapping[str, str]] = MappingProxyType({"wpe": "wte"})

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        layers: int,
        heads: int,
        width: int,
        norm: str = "layer",
        placement: str = "pre",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        if placement not in NORM_PLACEMENTS:
            raise ValueError(f"unknown placement {placement!r}; choose from {', '.join(NORM_PLACEMENTS)}")
        if min(vocab_size, block_size, layers, heads, width) < 1:
            raise ValueError("vocab_size, block_size, layers, heads and width must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.block_size = block_size
        self.placement = placement
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(block_size, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, norm, placement, dropout) for _ in range(layers))
        self.ln_f = make_norm(norm, width) if placement == "pre" else nn.Identity()
        self._init_weights(layers)

    def _init_weights(self, layers: int) -> None:
        """GPT-2's init (module docstring), in module order from the global RNG."""
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                last = name.endswith("c_proj")  # the end of a residual branch
                nn.init.normal_(module.weight, 0.0, INIT_STD / math.sqrt(2 * layers) if last else INIT_STD)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def activation_sites(self) -> list[str]:
        """The modules whose outputs :mod:`landscape.measure.distributions` records, in
        forward order: the normalization sites (``blocks.i.ln_1``, ``blocks.i.ln_2``,
        and ``ln_f`` for pre-LN), which are ``nn.Identity`` for ``norm="none"``, so that
        runs with and without a norm name the same sites. Pre-LN: the inputs of each
        attention, each MLP and the head; post-LN: each block's normalized residual sums
        (the inputs of its MLP and of the next block's attention, the last one the head's)."""
        sites = [f"blocks.{i}.{norm}" for i in range(len(self.blocks)) for norm in ("ln_1", "ln_2")]
        return sites + ["ln_f"] if self.placement == "pre" else sites

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size ({self.block_size})")
        positions = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))  # (B, T, width)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # the head, tied to the token embedding
