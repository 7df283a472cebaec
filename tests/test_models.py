"""Model registry: shapes, gradients, norm placement, biases and initialization."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from landscape.config import SEQUENCE_MODELS, ModelConfig
from landscape.models import MODEL_NAMES, build_model, input_shape, model_family
from landscape.models.init import is_norm_layer

# The paper's networks and their kin (the GPT, a sequence model with its own norms: tests/test_gpt.py).
PAPER_NETS = tuple(name for name in MODEL_NAMES if name not in SEQUENCE_MODELS)

WEIGHTED = (nn.Conv2d, nn.Linear)


def _batch(name: str, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, *input_shape(ModelConfig(name=name)), generator=g)


def _weighted(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, WEIGHTED)]


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if is_norm_layer(m)]


@pytest.fixture(scope="module")
def built() -> dict[tuple[str, str], nn.Module]:
    """Each registry model with and without BN, built once for the whole module."""
    torch.manual_seed(0)
    return {(name, norm): build_model(name, norm=norm) for name in PAPER_NETS for norm in ("bn", "none")}


@pytest.mark.parametrize("norm", ["bn", "none"])
@pytest.mark.parametrize("name", PAPER_NETS)
def test_forward_backward(built, name, norm):
    model = built[(name, norm)]
    model.zero_grad(set_to_none=True)
    x = _batch(name)
    out = model(x)
    if model_family(name) == "dln":
        assert out.shape == (2, 10)
        loss = nn.functional.mse_loss(out, torch.ones_like(out))
    else:
        assert out.shape == (2, 10)
        loss = nn.functional.cross_entropy(out, torch.tensor([1, 3]))
    assert torch.isfinite(out).all()
    loss.backward()
    # In a linear net a BN shift is removed by the next Linear + BN (it adds a
    # constant the next BN subtracts), so only the last norm's shift gets a gradient.
    last_norm = _norms(model)[-1] if _norms(model) else None
    redundant = {id(m.bias) for m in _norms(model) if model_family(name) == "dln" and m is not last_norm}
    scale = max(float(p.grad.abs().max()) for p in model.parameters())
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        if norm == "bn":
            # With BN nothing is zero-initialized, so every other parameter is driven.
            if id(p) in redundant:
                assert p.grad.abs().max() < 1e-5 * scale, pname  # zero up to float32 roundoff
            else:
                assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", PAPER_NETS)
def test_norm_none_has_no_norm_layers(built, name):
    model = built[(name, "none")]
    assert _norms(model) == []
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", PAPER_NETS)
def test_bn_after_every_conv_and_linear_but_the_head(built, name):
    model = built[(name, "bn")]
    weighted, norms = _weighted(model), _norms(model)
    assert all(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in norms)
    assert len(norms) == len(weighted) - 1
    if model_family(name) in ("vgg", "dln"):
        layers = list((model.features if hasattr(model, "features") else model.layers).children())
        for i, layer in enumerate(layers):
            if isinstance(layer, WEIGHTED) and i < len(layers) - 1:
                assert isinstance(layers[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d)), f"{name} layer {i}"


@pytest.mark.parametrize("name", PAPER_NETS)
def test_bias_only_without_norm(built, name):
    normed = built[(name, "bn")]
    head = _weighted(normed)[-1] if model_family(name) != "resnet" else normed.fc
    for m in _weighted(normed):
        if m is not head:
            assert m.bias is None
    plain = built[(name, "none")]
    if model_family(name) == "resnet":
        assert plain.conv1.bias is not None  # the CIFAR stem; torchvision's convs stay bias-free
    elif model_family(name) == "dln":
        # The paper's objective ||W_L ... W_1 x - A x||^2 has no biases, with or without BN.
        assert all(m.bias is None for m in _weighted(plain)) and _weighted(normed)[-1].bias is None
    else:
        assert all(m.bias is not None for m in _weighted(plain))


@pytest.mark.parametrize("norm", ["bn", "none"])
@pytest.mark.parametrize("name", PAPER_NETS)
def test_glorot_init(built, name, norm):
    model = built[(name, norm)]
    for m in _weighted(model):
        w = m.weight
        receptive = w[0, 0].numel()
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        nonzero = w.abs().max() > 0
        if nonzero:  # residual branch ends are zeroed after Glorot when norm is none
            assert w.abs().max() <= bound + 1e-7
            if w.numel() >= 100:  # the max of many U(-a, a) draws is close to a
                assert w.abs().max() >= 0.9 * bound
        if m.bias is not None:
            assert torch.all(m.bias == 0)
    for m in _norms(model):
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_torch_init_differs_from_glorot():
    torch.manual_seed(0)
    default = build_model("vgg_tiny", norm="bn", init="torch").features[0].weight
    glorot = build_model("vgg_tiny", norm="bn").features[0].weight  # (8, 3, 3, 3)
    # PyTorch's default bounds a conv weight by 1/sqrt(fan_in); Glorot's bound,
    # sqrt(6 / (27 + 72)) = 0.246, is wider here, and 216 draws reach past the former.
    assert default.abs().max() <= 1 / math.sqrt(27) + 1e-7
    assert glorot.abs().max() > 1 / math.sqrt(27)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_without_norm_zero_inits_last_branch_conv(built, name):
    for norm, expect_zero in (("none", True), ("bn", False)):
        blocks = [m for m in built[(name, norm)].modules() if isinstance(m, (BasicBlock, Bottleneck))]
        assert blocks
        for block in blocks:
            last = block.conv2 if isinstance(block, BasicBlock) else block.conv3
            assert bool(torch.all(last.weight == 0)) == expect_zero


def test_resnet_stems():
    cifar = build_model("resnet18", norm="bn")
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1) and cifar.conv1.padding == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    imagenet = build_model("resnet18", norm="bn", stem="imagenet")
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, nn.MaxPool2d)
    assert input_shape(ModelConfig(name="resnet18", stem="imagenet")) == (3, 224, 224)


def test_vgg16_is_the_paper_depth():
    model = build_model(ModelConfig())
    assert len([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]) == 13


def test_tiny_runs_on_8x8_and_dln_on_its_width():
    assert build_model("tiny", num_classes=4)(torch.randn(3, 3, 8, 8)).shape == (3, 4)
    dln = build_model("dln", norm="none", depth=3, width=5)
    assert len(_weighted(dln)) == 3 and dln(torch.randn(4, 5)).shape == (4, 5)
    assert input_shape(ModelConfig(name="dln", width=5)) == (5,)


def test_config_and_keyword_forms_agree():
    torch.manual_seed(1)
    a = build_model(ModelConfig(name="vgg_tiny", norm="none", num_classes=3))
    torch.manual_seed(1)
    b = build_model("vgg_tiny", norm="none", num_classes=3)
    torch.manual_seed(1)
    c = build_model(ModelConfig(name="vgg16"), name="vgg_tiny", norm="none", num_classes=3)
    for other in (b, c):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), other.state_dict().values()))


def test_torchvision_by_name():
    model = build_model("torchvision:resnet18", norm="none", num_classes=7)
    assert _norms(model) == []
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert any(isinstance(m, nn.BatchNorm2d) for m in build_model("torchvision:resnet18").modules())
    assert model_family("torchvision:resnet18") == "other"
    with pytest.raises(ValueError, match="takes no norm_layer"):
        build_model("torchvision:vgg11", norm="none")
    with pytest.raises(ValueError, match="unknown torchvision"):
        build_model("torchvision:no_such_net")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "landscape_test_user_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def with_classes(num_classes, norm_layer=nn.BatchNorm1d):
                return nn.Sequential(nn.Linear(4, 6), norm_layer(6), nn.Linear(6, num_classes))

            def bare():
                return nn.Linear(4, 2)

            def not_a_model():
                return 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "landscape_test_user_models"


def test_user_factory_by_import_path(user_module):
    model = build_model(f"{user_module}:with_classes", num_classes=5)
    assert model(torch.randn(3, 4)).shape == (3, 5)
    assert isinstance(model[1], nn.BatchNorm1d)
    assert isinstance(build_model(f"{user_module}:with_classes", norm="none")[1], nn.Identity)
    assert build_model(f"{user_module}:bare")(torch.randn(3, 4)).shape == (3, 2)
    assert model_family(f"{user_module}:bare") == "other"
    with pytest.raises(ValueError, match="takes no norm_layer"):
        build_model(f"{user_module}:bare", norm="none")
    with pytest.raises(ValueError, match="not a torch.nn.Module"):
        build_model(f"{user_module}:not_a_model")
    with pytest.raises(ValueError, match="no callable"):
        build_model(f"{user_module}:missing")
    with pytest.raises(ValueError, match="cannot import"):
        build_model("landscape_no_such_module_xyz:factory")


def test_unknown_name():
    with pytest.raises(ValueError) as info:
        build_model("vgg17")
    message = str(info.value)
    assert "\n" not in message and "vgg17" in message
    assert all(name in message for name in MODEL_NAMES)
    with pytest.raises(ValueError):
        model_family("vgg17")


def test_width_mult_scales_every_vgg_conv_and_is_refused_elsewhere():
    import torch
    from torch import nn

    from landscape.models import build_model

    convs = [m.out_channels for m in build_model("vgg11", width_mult=0.125).modules() if isinstance(m, nn.Conv2d)]
    assert convs == [8, 16, 32, 32, 64, 64, 64, 64]
    assert build_model("vgg11", width_mult=0.125)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="width_mult applies to the VGG models only"):
        build_model("dln", width_mult=0.5)


@pytest.mark.parametrize(
    ("init", "gain"), [("glorot", 1.0), ("glorot", 2.0), ("glorot-normal", 1.0), ("glorot-normal", 1.5)]
)
def test_glorot_variants_have_their_closed_form_scale(init, gain):
    """Xavier-uniform: |W| <= gain sqrt(6/(fan_in+fan_out)), variance gain^2 2/(fan_in+fan_out);
    Xavier-normal: the same variance, unbounded. On a 25-layer 64-wide DLN, all layers pooled."""
    from landscape.config import ModelConfig
    from landscape.models import build_model

    model = build_model(ModelConfig(name="dln", norm="none", depth=25, width=64, init=init, init_gain=gain))
    weights = torch.cat([m.weight.detach().ravel() for m in model.modules() if isinstance(m, torch.nn.Linear)])
    variance = gain**2 * 2 / (64 + 64)
    assert weights.var().item() == pytest.approx(variance, rel=0.02)  # 102,400 draws: ~0.5% standard error
    bound = gain * math.sqrt(6 / (64 + 64))
    if init == "glorot":
        assert weights.abs().max().item() <= bound
    else:
        assert weights.abs().max().item() > bound  # a normal's tails pass the uniform's bound


def test_an_unknown_init_or_a_bad_gain_is_refused():
    from landscape.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="unknown init"):
        ModelConfig(init="he")
    with pytest.raises(ConfigError, match="init-gain"):
        ModelConfig(init_gain=0)


def _expected_norm(family: str, norm: str, channels: int) -> tuple[type[nn.Module], int | None]:
    """The layer type each per-sample norm becomes, and its number of groups (GroupNorm)."""
    from landscape.models.norms import ChannelRMSNorm

    if family == "dln":
        return {"layer": nn.LayerNorm, "rms": nn.RMSNorm}[norm], None
    if norm == "rms":
        return ChannelRMSNorm, None
    # group: the largest divisor of C up to 32, written out for the channel counts these models have
    groups = {8: 8, 16: 16, 64: 32, 128: 32, 256: 32, 512: 32}[channels] if norm == "group" else 1
    return nn.GroupNorm, groups


@pytest.mark.parametrize(
    ("name", "norm"), [(n, m) for n in ("vgg_tiny", "resnet18") for m in ("layer", "group", "rms")]
)
def test_layer_group_and_rms_norms_take_bn_places(name, norm):
    torch.manual_seed(0)
    model, bn = build_model(name, norm=norm), build_model(name, norm="bn")
    placed = [(n, m) for n, m in model.named_modules() if is_norm_layer(m)]
    bn_placed = [(n, m) for n, m in bn.named_modules() if is_norm_layer(m)]
    assert [n for n, _ in placed] == [n for n, _ in bn_placed]  # every BN site, and only those
    for (where, layer), (_, reference) in zip(placed, bn_placed):
        kind, groups = _expected_norm(model_family(name), norm, reference.num_features)
        assert type(layer) is kind, where
        assert layer.weight.shape == (reference.num_features,) and torch.all(layer.weight == 1), where
        assert layer.bias is None if norm == "rms" else torch.all(layer.bias == 0), where
        if groups is not None:
            assert layer.num_groups == groups, where
    # A conv before a shift-free norm (rms) keeps its bias, as before no norm at all.
    head = model.fc if model_family(name) == "resnet" else model.classifier
    convs = [m for m in _weighted(model) if m is not head]
    if model_family(name) == "vgg":
        assert all((m.bias is not None) == (norm == "rms") for m in convs)
    else:  # torchvision's convs stay bias-free; the CIFAR stem is ours
        assert (model.conv1.bias is not None) == (norm == "rms")
    model.zero_grad(set_to_none=True)
    out = model(_batch(name))
    nn.functional.cross_entropy(out, torch.tensor([1, 3])).backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_the_dln_takes_layer_and_rms_over_its_features(norm):
    torch.manual_seed(0)
    model = build_model("dln", norm=norm, depth=4, width=10)
    layers = list(model.layers)
    kind, _ = _expected_norm("dln", norm, 10)
    assert [type(m) for m in layers] == [nn.Linear, kind] * 3 + [nn.Linear]
    assert all(m.normalized_shape == (10,) and torch.all(m.weight == 1) for m in layers[1::2])
    out = model(torch.randn(5, 10))
    out.square().sum().backward()
    assert out.shape == (5, 10) and all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_group_norm_on_the_dln_is_refused_before_building():
    from landscape.config import ConfigError

    with pytest.raises(ConfigError, match="fully connected") as info:
        ModelConfig(name="dln", norm="group")
    assert "\n" not in str(info.value) and "layer" in str(info.value) and "rms" in str(info.value)
    with pytest.raises(ValueError, match="--model dln is fully connected"):
        build_model("dln", norm="group")
