"""The block factory and the plain layers it builds from."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from mobile_cv_nas.arch import ArchDefError, build_model, parse_arch_def
from mobile_cv_nas.blocks import BLOCK_REGISTRY, InvertedResidual, Skip
from mobile_cv_nas.blocks.inverted_residual import mid_width, se_width
from mobile_cv_nas.blocks.ops import PAPER_MICRO_OPS
from mobile_cv_nas.layers import ChannelShuffle, ConvBNAct, HSigmoid, HSwish, make_divisible

PAPER_OPS = [
    "ir_k3",
    "ir_k5",
    "ir_k3_hs",
    "ir_k5_hs",
    "ir_k3_se",
    "ir_k5_se",
    "ir_k3_se_hs",
    "ir_k5_se_hs",
    "skip",
]
OFFICIAL_OPS = [
    "conv_k1",
    "conv_k3",
    "conv_k3_hs",
    "skip",
    "ir_k3",
    "ir_k5",
    "ir_k3_hs",
    "ir_k5_hs",
    "ir_k3_sehsig",
    "ir_k5_sehsig",
    "ir_k3_sehsig_hs",
    "ir_k5_sehsig_hs",
    "ir_k3_g2",
    "ir_k5_g2",
    "ir_pool_hs",
]


def test_registry_has_paper_and_official_ops():
    names = set(BLOCK_REGISTRY.names())
    assert set(PAPER_OPS) <= names
    assert set(OFFICIAL_OPS) <= names
    assert list(PAPER_MICRO_OPS) == PAPER_OPS


def test_registry_covers_every_reference_op(data_dir):
    """Every op name of the official FBNet/FBNetV2 arch defs (tests/data) has a builder here."""
    with open(data_dir / "fbnetv2_archs.yaml") as f:
        ops = yaml.safe_load(f)["ops"]
    assert ops, "the extract lists no ops"
    missing = sorted(set(ops) - set(BLOCK_REGISTRY.names()))
    assert not missing, f"official ops without a builder: {missing}"


def test_unknown_op_suggests():
    with pytest.raises(KeyError, match=r"Unknown block op 'ir_k3_hss'.*Did you mean.*'ir_k3_hs'"):
        BLOCK_REGISTRY.get("ir_k3_hss")


@torch.no_grad()
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("hs", ["", "_hs"])
def test_se_and_sehsig_build_identical_blocks(k, hs):
    kwargs = dict(stride=1, expansion=3.0, width_divisor=8)
    se = BLOCK_REGISTRY.get(f"ir_k{k}_se{hs}")(16, 16, **kwargs).eval()
    sehsig = BLOCK_REGISTRY.get(f"ir_k{k}_sehsig{hs}")(16, 16, **kwargs).eval()
    a, b = se.state_dict(), sehsig.state_dict()
    assert [(n, t.shape) for n, t in a.items()] == [(n, t.shape) for n, t in b.items()]
    assert any(".se." in n or n.startswith("se.") for n in a)
    assert repr(se) == repr(sehsig)
    sehsig.load_state_dict(a)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(se(x), sehsig(x))


@pytest.fixture
def registered_op():
    """Register test ops the third-party way; unregister afterwards."""
    added = []

    @BLOCK_REGISTRY.register()
    def third_party_dw_block(in_channels, out_channels, stride=1, expansion=None, **options):
        """Any callable returning a module: here a depthwise conv + 1x1 projection."""
        return nn.Sequential(
            ConvBNAct(in_channels, in_channels, 3, stride=stride, groups=in_channels),
            ConvBNAct(in_channels, out_channels, 1, act=options.get("act", "relu")),
        )

    added.append("third_party_dw_block")

    @BLOCK_REGISTRY.register()
    def third_party_strict(in_channels, out_channels, stride=1, kernel_size=3):
        return ConvBNAct(in_channels, out_channels, kernel_size, stride=stride)

    added.append("third_party_strict")
    yield added
    for name in added:
        BLOCK_REGISTRY._obj_map.pop(name, None)


@torch.no_grad()
def test_third_party_block_in_an_arch_def(registered_op):
    arch = {
        "input_size": 32,
        "num_classes": 5,
        "stages": [
            [{"op": "conv_k3", "out_channels": 8, "stride": 2}],
            [{"op": "third_party_dw_block", "out_channels": 16, "stride": 2, "act": "hswish"}],
            [{"op": "third_party_strict", "out_channels": 24, "kernel_size": 5}],
        ],
    }
    model = build_model(arch).eval()
    block = model.backbone.stages.xif1_0
    assert isinstance(block, nn.Sequential) and isinstance(block[1].relu, HSwish)
    assert model.backbone.stages.xif2_0.conv.kernel_size == (5, 5)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    # options of an op with an explicit signature are checked
    arch["stages"][2][0]["width"] = 2
    with pytest.raises(ArchDefError, match=r"stage 2, block 0, field 'width'.*takes no option"):
        parse_arch_def(arch)


def test_make_divisible_examples():
    assert make_divisible(8 * 5.4566, 8) == 48  # 43.65 -> 40 loses > 5 % -> 48
    assert mid_width(8, 5.4566, 8) == 48
    assert make_divisible(36, 8) == 40  # 4.5 rounds half up
    assert make_divisible(12, 8) == 16
    for exact in (8, 16, 48, 64, 1344):
        assert make_divisible(exact, 8) == exact
    assert make_divisible(4, 8) == 8  # at least the divisor
    assert make_divisible(24 * 6.0, 1) == 144 and make_divisible(43.65, 1) == 43
    assert se_width(128, 8) == 32 and se_width(120, 8) == 32  # int(30) -> 32


def test_official_mid_widths_from_expansion():
    block = BLOCK_REGISTRY.get("ir_k5")(8, 24, stride=2, expansion=5.4566, width_divisor=8)
    assert block.pw.conv.weight.shape == (48, 8, 1, 1)
    assert block.dw.conv.weight.shape == (48, 1, 5, 5)


def test_hswish_hsigmoid_match_torch():
    x = torch.cat(
        [torch.linspace(-8, 8, 1601), torch.randn(1000) * 4, torch.tensor([-3.0, 3.0, 0.0])]
    )
    assert torch.allclose(HSwish()(x), F.hardswish(x), atol=1e-6, rtol=0)
    assert torch.allclose(HSigmoid()(x), F.hardsigmoid(x), atol=1e-6, rtol=0)


def test_channel_shuffle():
    x = torch.arange(6.0).view(1, 6, 1, 1).expand(2, 6, 2, 3).contiguous()
    y = ChannelShuffle(2)(x)
    assert y[0, :, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]
    assert ChannelShuffle(3)(x)[1, :, 1, 2].tolist() == [0, 2, 4, 1, 3, 5]
    assert y.shape == x.shape
    # shuffling twice with g and c/g groups restores the order
    assert torch.equal(ChannelShuffle(3)(y), x)


@torch.no_grad()
def test_skip_identity_and_projection():
    skip = BLOCK_REGISTRY.get("skip")
    ident = skip(16, 16, stride=1, expansion=4, width_divisor=8)
    assert isinstance(ident, Skip) and ident.conv is None
    assert not list(ident.parameters()) and not ident.state_dict()
    x = torch.randn(2, 16, 8, 8)
    assert ident(x) is x

    proj = skip(16, 24, stride=1).eval()
    assert list(proj.state_dict())[:1] == ["conv.conv.weight"]
    assert proj.conv.conv.weight.shape == (24, 16, 1, 1) and proj.conv.conv.bias is None
    assert isinstance(proj.conv.relu, nn.ReLU)
    assert proj(x).shape == (2, 24, 8, 8)

    strided = skip(16, 16, stride=2).eval()
    assert strided.conv is not None and strided(x).shape == (2, 16, 4, 4)


@torch.no_grad()
def test_inverted_residual_structure():
    ir = BLOCK_REGISTRY.get("ir_k3_hs")(16, 16, stride=1, expansion=1, width_divisor=8).eval()
    assert isinstance(ir, InvertedResidual)
    assert ir.pw is None and ir.use_residual  # expansion 1: no pw; same shape: residual
    x = torch.randn(1, 16, 8, 8)
    ir.pwl.bn.weight.zero_()
    ir.pwl.bn.bias.zero_()
    assert torch.equal(ir(x), x)  # zero branch -> pure residual
    down = BLOCK_REGISTRY.get("ir_k5_g2")(16, 32, stride=2, expansion=3, pwl_groups=2).eval()
    assert not down.use_residual and down.shuffle.groups == 2
    assert down.pw.conv.groups == 2 and down.pwl.conv.groups == 2
    assert down(x).shape == (1, 32, 4, 4)
