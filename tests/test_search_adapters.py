"""Search adapters: a block registered here is searched, derived and counted; every op a
space accepts derives to a model that computes the argmax supernet; what cannot be searched
is refused with an error that says what is missing."""

import pytest
import torch
import torch.nn as nn

from mobile_cv_nas.blocks import BLOCK_REGISTRY
from mobile_cv_nas.layers import ConvBNAct
from mobile_cv_nas.search import (
    SEARCH_OP_REGISTRY,
    BlockAdapter,
    SearchSpaceError,
    Supernet,
    layer_cost,
)
from mobile_cv_nas.search.testing import (
    assert_derived_computes_argmax_supernet,
    check_derived_computes_argmax_supernet,
    favour,
    randomize_supernet,
)


# ---------------------------------------------------------------- a user's block, as in README
class DwPw(nn.Module):
    """A depthwise kxk conv keeping the input width, then a 1x1 conv to the output width."""

    def __init__(self, in_channels, out_channels, stride=1, kernel_size=3, norm="bn"):
        super().__init__()
        self.dw = ConvBNAct(
            in_channels, in_channels, kernel_size, stride=stride, groups=in_channels, norm=norm
        )
        self.pw = ConvBNAct(in_channels, out_channels, 1, norm=norm)

    def forward(self, x):
        return self.pw(self.dw(x))


@BLOCK_REGISTRY.register()
def test_dw_pw(in_channels, out_channels, stride=1, kernel_size=3, norm="bn"):
    return DwPw(in_channels, out_channels, stride=stride, kernel_size=kernel_size, norm=norm)


test_dw_pw.__test__ = False  # a block builder, not a test


@SEARCH_OP_REGISTRY.register()
class DwPwAdapter(BlockAdapter):
    block_type = DwPw

    def mask(self, block, ctx):
        ctx.mask(block, "dw", ctx.in_width)  # depthwise: the input's width
        ctx.mask(block, "pw", ctx.out_width)
        return block

    def costs(self, block, ctx, shape):
        dw, shape_dw = layer_cost(block.dw.conv, shape, shape.channels, shape.channels)
        pw, _ = layer_cost(block.pw.conv, shape_dw, shape.channels, ctx.out_width.expected())
        return [(block.dw.conv, dw), (block.pw.conv, pw)]


def _space(ops, first=(8, 16, 8), second=(16, 24, 8), expansion=None, **top):
    """Stem (16) -> a stride-2 row -> a stride-1 row, each of `ops` with the given widths."""
    rows = [{"ops": list(ops), "channels": first, "stride": 2}]
    rows.append({"ops": list(ops), "channels": second})
    if expansion is not None:
        for row in rows:
            row["expansion"] = expansion
    return {
        "name": "adapters",
        "resolutions": [32, 24],
        "width_divisor": 8,
        "num_classes": 5,
        "stages": [[{"op": "conv_k3_hs", "channels": 16, "stride": 2}], rows],
        **top,
    }


def test_a_registered_block_is_searched_derived_and_counted():
    net = Supernet(_space(["test_dw_pw", "ir_k3", "skip"]))
    block = net.backbone.stages.xif1_1.candidates["test_dw_pw"]
    assert type(block.dw).__name__ == "MaskedChannel" and type(block.pw).__name__ == "MaskedChannel"
    weights = torch.optim.SGD(net.weight_parameters(), lr=0.1)  # it trains
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    (loss + 1e-6 * net.cost()).backward()
    weights.step()
    assert net.decisions["op:xif1_1"].alpha.grad.abs().sum() > 0
    for seed, (c0, c1) in enumerate([(8, 16), (16, 24), (16, 16)]):
        randomize_supernet(net, seed)
        favour(
            net, **{"op:xif1_0": "test_dw_pw", "op:xif1_1": "test_dw_pw", "out:1": c0, "out:2": c1}
        )
        model = assert_derived_computes_argmax_supernet(net)  # outputs and exact cost
        assert [row["op"] for row in model.arch_def.stages[1]] == ["test_dw_pw"] * 2
        assert isinstance(model.backbone.stages.xif1_1, DwPw)


class Miscounted(DwPw):
    pass


class Uninherited(DwPw):
    pass


@SEARCH_OP_REGISTRY.register()
class MiscountedAdapter(DwPwAdapter):
    block_type = Miscounted

    def costs(self, block, ctx, shape):
        return super().costs(block, ctx, shape)[1:]  # forgets the depthwise conv


@SEARCH_OP_REGISTRY.register()
class UninheritedAdapter(DwPwAdapter):
    block_type = Uninherited

    def inherit(self, block, target, ctx):
        pass  # the derived block keeps its own initial weights


BLOCK_REGISTRY.register_variant("test_miscounted", Miscounted)
BLOCK_REGISTRY.register_variant("test_uninherited", Uninherited)


@pytest.mark.parametrize(
    "op, words",
    [
        ("test_dw_pw", None),
        ("test_miscounted", ["effective flops", "check the adapter's costs"]),
        ("test_uninherited", ["outputs differ", "check the adapter's mask, derive and inherit"]),
    ],
)
def test_the_adapter_check_of_search_testing_catches_broken_adapters(op, words):
    """mobile_cv_nas.search.testing, the check offered to adapter authors: a correct adapter
    passes over random architectures; a wrong cost or a missing weight copy is caught and
    named."""
    if words is None:
        models = check_derived_computes_argmax_supernet(_space([op, "skip"]), seeds=range(3))
        assert len(models) == 3
        return
    with pytest.raises(AssertionError) as err:
        check_derived_computes_argmax_supernet(_space([op]), seeds=range(2))
    for word in words:
        assert word in str(err.value), str(err.value)
    assert f"op: {op}" in str(err.value)  # the derived arch def, to reproduce it


class Opaque(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1)

    def forward(self, x):
        return self.conv(x)


class HalfDone(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1)

    def forward(self, x):
        return self.conv(x)


@SEARCH_OP_REGISTRY.register()
class HalfDoneAdapter(BlockAdapter):
    block_type = HalfDone

    def mask(self, block, ctx):
        return block


BLOCK_REGISTRY.register_variant("test_opaque", Opaque)
BLOCK_REGISTRY.register_variant("test_half_done", HalfDone)


@pytest.mark.parametrize(
    "op, words",
    [
        ("test_opaque", ["builds a Opaque", "no search adapter", "SEARCH_OP_REGISTRY"]),
        ("test_half_done", ["HalfDoneAdapter", "lacks costs()"]),
    ],
)
def test_a_block_that_cannot_be_searched_says_what_it_lacks(op, words):
    with pytest.raises(SearchSpaceError) as err:
        Supernet(_space([op, "ir_k3"]))
    msg = str(err.value)
    assert msg.startswith("space 'adapters', stage 1, row 0, field 'ops': "), msg
    for word in words:
        assert word in msg, msg


# ------------------------------------------------------------------ every op a space accepts
def _expansion_for(op):
    return [1, 3, 1] if BLOCK_REGISTRY.uses_expansion(op) else None


BUILT_IN_OPS = [op for op in BLOCK_REGISTRY.names() if not op.startswith("test_")]


@pytest.mark.parametrize("op", BUILT_IN_OPS)
def test_every_op_derives_what_the_supernet_computes(op):
    """Each built-in op, alone in two searched rows (the second with a searched input width):
    refused with a clear error, or its argmax supernet is the derived model at its cost."""
    try:
        net = Supernet(_space([op], expansion=_expansion_for(op)))
    except SearchSpaceError as e:
        assert "_g2" in op, f"{op} refused: {e}"  # grouped expansion over a searched input
        assert "input width" in str(e) and "Fix the input width" in str(e)
        net = None
    if net is not None:
        for seed in range(2):
            assert_derived_computes_argmax_supernet(randomize_supernet(net, seed), seed=seed)
    # with a fixed input width, every op is searchable
    fixed = Supernet(_space([op], first=16, expansion=_expansion_for(op)))
    assert_derived_computes_argmax_supernet(randomize_supernet(fixed, 7))


@pytest.mark.parametrize("mid", [32, 48, 64])
def test_grouped_expansion_derives_exactly_at_every_mid_width(mid):
    """The grouped (g=2) 1x1 expansion + shuffle of `ir_k3_g2`, with mid options {32, 48, 64}:
    masked per group, so the argmax supernet is the derived model at every mid width."""
    space = {
        "name": "g2",
        "resolutions": [16],
        "width_divisor": 8,
        "num_classes": 4,
        "stages": [
            [{"op": "conv_k3", "channels": 16, "stride": 2}],
            [{"op": "ir_k3_g2", "channels": [16, 24, 8], "expansion": [2, 4, 1]}],
        ],
    }
    net = randomize_supernet(Supernet(space), mid)
    favour(net, **{"expansion:xif1_0": mid // 16})
    model = assert_derived_computes_argmax_supernet(net)
    block = model.backbone.stages.xif1_0
    assert block.mid_channels == mid and block.pw.conv.groups == 2
