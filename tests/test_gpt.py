"""The small GPT (landscape.models.gpt): its shapes, causality and tied head, and every
instrument on it (probe, Hessian eigenvalues and trace, loss surface, ICS), each
leaving the model bit-identical and checked against an independent float64
reference: a dense Hessian (``torch.autograd.functional.hessian`` of
``functional_call`` over the flat parameter vector) or a brute-force ICS."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from landscape.curvature.hessian import hessian_eigs, hessian_trace
from landscape.curvature.surface import loss_surface
from landscape.measure.distributions import layer_inputs
from landscape.measure.ics import measure_ics
from landscape.measure.probes import _is_stochastic, probe_gradient
from landscape.models.gpt import GPT
from landscape.models.init import glorot_init_, is_ics_layer, is_weight_layer
from landscape.state import differences, rng_sources, snapshot

VOCAB, BLOCK, LAYERS, HEADS, WIDTH = 11, 8, 2, 2, 16


def lm_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def tiny(norm: str = "layer", placement: str = "pre", seed: int = 0, dropout: float = 0.0, **sizes: int) -> GPT:
    """A float64 GPT (defaults: vocab 11, block 8, 2 layers, 2 heads, width 16)."""
    s = dict(vocab_size=VOCAB, block_size=BLOCK, layers=LAYERS, heads=HEADS, width=WIDTH) | sizes
    torch.manual_seed(seed)
    return GPT(**s, norm=norm, placement=placement, dropout=dropout).double()


def tokens(vocab: int = VOCAB, t: int = BLOCK, batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, t), generator=gen), torch.randint(0, vocab, (batch, t), generator=gen)


def with_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """``model`` with ``.grad`` left from a real backward (what a measurement must not touch)."""
    lm_loss(model(x), y).backward()
    return model


VARIANTS = [("layer", "pre"), ("layer", "post"), ("rms", "pre"), ("none", "pre")]


@pytest.mark.parametrize("norm, placement", VARIANTS)
def test_shapes_causality_and_tied_head(norm, placement):
    model = tiny(norm, placement)
    x, _ = tokens()
    hidden = []
    model.ln_f.register_forward_hook(lambda m, a, out: hidden.append(out))
    logits = model(x)
    assert logits.shape == (3, BLOCK, VOCAB) and logits.dtype == torch.float64
    assert model(x[:, :5]).shape == (3, 5, VOCAB)
    # Tied: the head is the token embedding itself, one Parameter, counted once.
    torch.testing.assert_close(logits, hidden[0] @ model.wte.weight.T, rtol=0, atol=1e-14)
    assert sum(p is model.wte.weight for p in model.parameters()) == 1
    norm_params = {"layer": 2 * WIDTH, "rms": WIDTH, "none": 0}[norm]
    per_block = 2 * norm_params + 12 * WIDTH * WIDTH + 9 * WIDTH  # c_attn, attn.c_proj, c_fc, mlp.c_proj
    final = norm_params if placement == "pre" else 0
    assert sum(p.numel() for p in model.parameters()) == (VOCAB + BLOCK) * WIDTH + LAYERS * per_block + final
    # Causal: changing token t changes no logit before t, and changes t's.
    for t in (0, 3, BLOCK - 1):
        changed = x.clone()
        changed[:, t] = (changed[:, t] + 1) % VOCAB
        out = model(changed)
        assert torch.equal(out[:, :t], logits[:, :t])
        assert not torch.allclose(out[:, t], logits[:, t])
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, BLOCK + 1, dtype=torch.long))


def test_dropout_zero_is_deterministic_and_dropout_is_seen():
    x, _ = tokens()
    model = tiny()
    train = model.train()(x)
    assert torch.equal(train, model.eval()(x))
    noisy = tiny(dropout=0.2).train()
    assert not _is_stochastic(list(model.train().modules()), rng_sources(model))
    assert _is_stochastic(list(noisy.modules()), rng_sources(noisy))
    assert not torch.equal(noisy(x), noisy(x))
    assert torch.equal(noisy.eval()(x), noisy(x))


def test_init_is_gpt2s_and_works_in_float32():
    torch.manual_seed(0)
    model = GPT(50, 16, 4, 2, 64)
    std = {n: float(p.detach().std()) for n, p in model.named_parameters()}
    assert std["wte.weight"] == pytest.approx(0.02, rel=0.1)
    assert std["blocks.0.mlp.c_fc.weight"] == pytest.approx(0.02, rel=0.1)
    assert std["blocks.3.attn.c_proj.weight"] == pytest.approx(0.02 / math.sqrt(8), rel=0.1)
    assert not model.blocks[0].attn.c_attn.bias.any()
    assert torch.equal(model.blocks[1].ln_1.weight, torch.ones(64))
    assert model(torch.randint(0, 50, (2, 16))).dtype == torch.float32
    with pytest.raises(ValueError):
        GPT(5, 4, 1, 3, 8)  # heads do not divide width
    with pytest.raises(ValueError):
        GPT(5, 4, 1, 2, 8, norm="batch")


def test_embeddings_are_ics_layers_but_glorot_leaves_them_alone():
    assert is_ics_layer(nn.Embedding(3, 4)) and not is_weight_layer(nn.Embedding(3, 4))
    assert is_ics_layer(nn.Linear(3, 4)) and is_ics_layer(nn.Conv2d(1, 1, 1))
    net = nn.Sequential(nn.Embedding(3, 4), nn.Linear(4, 2))
    before = net[0].weight.detach().clone()
    glorot_init_(net)
    assert torch.equal(net[0].weight, before)


@pytest.mark.parametrize("norm, placement", [("layer", "pre"), ("none", "post")])
def test_activation_sites_are_the_norm_sites(norm, placement):
    model = tiny(norm, placement)
    sites = model.activation_sites()
    assert sites == ["blocks.0.ln_1", "blocks.0.ln_2", "blocks.1.ln_1", "blocks.1.ln_2"] + (
        ["ln_f"] if placement == "pre" else []
    )
    x, _ = tokens()
    recorded = layer_inputs(model, x, sites)
    assert list(recorded) == sites and all(v.shape == (3, BLOCK, WIDTH) for v in recorded.values())


# -- the dense Hessian reference, on a GPT small enough to form it ------------------------------

SMALL = dict(vocab_size=7, block_size=4, layers=1, heads=2, width=8)


def flat_problem(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """(loss of a flat parameter vector, the flat vector at w), ``named_parameters`` order."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    shapes, sizes = [p.shape for p in params.values()], [p.numel() for p in params.values()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        pieces = {n: c.view(s) for n, c, s in zip(params, flat.split(sizes), shapes)}
        return lm_loss(functional_call(model, pieces, (x,)), y)

    return loss, torch.cat([p.flatten() for p in params.values()])


@pytest.fixture(scope="module", params=["pre", "post"])
def dense(request):
    model = tiny(placement=request.param, seed=3, **SMALL)
    x, y = tokens(7, 4, batch=4, seed=2)
    loss, flat = flat_problem(model, x, y)
    h = torch.autograd.functional.hessian(loss, flat, vectorize=True)
    g = torch.func.grad(loss)(flat)
    torch.testing.assert_close(h, h.T, rtol=0, atol=1e-12)
    return model, x, y, h, g


def test_probe_curvature_matches_dense(dense):
    model, x, y, h, g = dense
    model = with_grads(copy.deepcopy(model), x, y)
    before = snapshot(model)
    result = probe_gradient(model, lm_loss, x, y, [0.1, 0.2], curvature=True)
    assert differences(before, snapshot(model)) == []
    assert result.curvature == pytest.approx(float(g @ h @ g / (g @ g)), rel=1e-10)
    assert result.grad_norm == pytest.approx(float(g.norm()), rel=1e-12)
    assert all(math.isfinite(v) for v in (*result.losses, *result.grad_diffs, result.beta))


def test_hessian_eigs_match_dense(dense):
    model, x, y, h, _ = dense
    model = with_grads(copy.deepcopy(model), x, y)
    before = snapshot(model)
    result = hessian_eigs(model, lm_loss, x, y, k=2, tol=1e-9, max_hvps=h.shape[0])
    assert differences(before, snapshot(model)) == []
    exact = torch.linalg.eigvalsh(h).flip(0)[:2]
    assert result.converged
    torch.testing.assert_close(result.eigenvalues, exact, rtol=1e-7, atol=1e-10)


def test_hessian_trace_matches_dense(dense):
    model, x, y, h, _ = dense
    model = with_grads(copy.deepcopy(model), x, y)
    exact = float(h.trace())
    n = h.shape[0]
    before = snapshot(model)
    if model.placement == "pre":  # once: 2 n products, a few seconds
        # A sketch of all n vectors: Hutch++ takes the whole trace exactly.
        gen = torch.Generator().manual_seed(0)
        full = hessian_trace(model, lm_loss, x, y, sketch=n, max_hvps=2 * n, generator=gen)
        assert full.trace == pytest.approx(exact, rel=1e-9)
    # Hutchinson: an unbiased estimate; 4 stderr leave a chance of ~1e-4 of a false failure
    # (Student's t, >= 29 degrees of freedom), and the generator is fixed.
    est = hessian_trace(model, lm_loss, x, y, method="hutchinson", generator=torch.Generator().manual_seed(1))
    assert math.isfinite(est.stderr) and est.stderr > 0
    assert abs(est.trace - exact) <= 4 * est.stderr
    assert differences(before, snapshot(model)) == []


@pytest.mark.parametrize("norm, placement", [("layer", "pre"), ("rms", "post")])
def test_hessian_eigs_float32_from_the_gradient(norm, placement):
    model32 = tiny(norm, placement, seed=5).float()
    x, y = tokens(seed=6)
    model64 = copy.deepcopy(model32).double()
    before = snapshot(model32)
    top32 = hessian_eigs(model32, lm_loss, x, y, k=1, start="gradient", tol=1e-4)
    assert differences(before, snapshot(model32)) == []
    top64 = hessian_eigs(model64, lm_loss, x, y, k=1, start="gradient", tol=1e-6)
    assert top32.finite and top32.eigenvalues.dtype == torch.float64
    assert float(top32.eigenvalues[0]) == pytest.approx(float(top64.eigenvalues[0]), rel=1e-3)


@pytest.mark.parametrize("norm, placement", [("layer", "pre"), ("rms", "post")])
def test_loss_surface_runs_and_its_centre_is_the_loss(norm, placement):
    model = with_grads(tiny(norm, placement), *tokens())
    x, y = tokens()
    before = snapshot(model)
    surface = loss_surface(model, lm_loss, x, y, steps=3, generator=torch.Generator().manual_seed(0))
    assert differences(before, snapshot(model)) == []
    assert surface.losses.shape == (3, 3) and bool(torch.isfinite(surface.losses).all())
    with torch.no_grad():
        assert surface.base_loss == float(lm_loss(model(x), y))
    assert float(surface.losses[1, 1]) == surface.base_loss


def test_probe_with_dropout_leaves_the_model_and_rng_intact():
    x, y = tokens()
    model = with_grads(tiny(dropout=0.1).train(), x, y)
    before = snapshot(model)
    result = probe_gradient(model, lm_loss, x, y, [0.1, 0.2], curvature=True)
    assert differences(before, snapshot(model)) == []
    assert math.isfinite(result.curvature)


# -- ICS -------------------------------------------------------------------------------------


def brute_force(model: nn.Module, x, y, lr: float, layer: str, earlier: list[str]) -> dict[str, float]:
    """Definition 2.1 the long way on deep copies: G of ``layer`` (weight and bias), a
    real SGD step on the ``earlier`` parameters only, then G' by a second backward."""
    twin = copy.deepcopy(model)
    params = dict(twin.named_parameters())
    own = [params[f"{layer}.weight"], params[f"{layer}.bias"]]
    lm_loss(twin(x), y).backward()
    g = torch.cat([p.grad.flatten() for p in own]).clone()
    torch.optim.SGD([params[n] for n in earlier], lr=lr).step()
    twin.zero_grad()
    lm_loss(twin(x), y).backward()
    g2 = torch.cat([p.grad.flatten() for p in own])
    return {"l2": float((g - g2).norm()), "cosine": float(g @ g2 / (g.norm() * g2.norm()))}


@pytest.mark.parametrize("norm, placement", [("layer", "pre"), ("layer", "post"), ("none", "pre")])
def test_ics_layer_one_is_the_tied_embedding_and_matches_brute_force(norm, placement):
    x, y = tokens()
    model = with_grads(tiny(norm, placement, seed=4), x, y)
    before = snapshot(model)
    result = measure_ics(model, lm_loss, x, y, lr=0.1)
    assert differences(before, snapshot(model)) == []
    per_block = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    assert list(result) == ["wte"] + [f"blocks.{i}.{name}" for i in range(LAYERS) for name in per_block]
    # Layer #1: the token embedding with the position embedding folded in; its G is the
    # real gradient, the tied head's contribution included; nothing precedes it.
    g1 = torch.cat([model.wte.weight.grad.flatten(), model.wpe.weight.grad.flatten()])
    assert result["wte"]["grad_norm"] == pytest.approx(float(g1.norm()), rel=1e-12)
    assert result["wte"]["l2"] == 0.0
    names = [n for n, _ in model.named_parameters()]
    first = "blocks.0.attn.c_attn"
    before_first = ("wte.", "wpe.", "blocks.0.ln_1.") if placement == "pre" else ("wte.", "wpe.")
    earlier_first = [n for n in names if n.startswith(before_first)]
    last = f"blocks.{LAYERS - 1}.mlp.c_proj"
    after_last = "ln_f." if placement == "pre" else f"blocks.{LAYERS - 1}.ln_2."
    earlier_last = [n for n in names if not n.startswith((f"{last}.", after_last))]
    for layer, earlier in ((first, earlier_first), (last, earlier_last)):
        expected = brute_force(model, x, y, 0.1, layer, earlier)
        assert expected["l2"] > 1e-3 * result[layer]["grad_norm"]  # not vacuous (1 % without a norm)
        for key, value in expected.items():
            assert result[layer][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (layer, key)


def test_ics_folds_the_position_embedding_under_a_wrapper():
    x, y = tokens()
    wrapped = nn.Sequential(tiny(layers=1))
    result = measure_ics(wrapped, lm_loss, x, y, lr=0.1)
    assert list(result)[:2] == ["0.wte", "0.blocks.0.attn.c_attn"]
    assert len(result) == 5
