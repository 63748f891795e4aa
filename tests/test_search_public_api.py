"""Public methods of mobile_cv_nas.search that code outside the package (the benchmarks in
tools/benchmarks) uses instead of the search internals: `Decision.set_argmax` and
`MaskedChannel.parts`."""

import pytest

from mobile_cv_nas.layers import ConvBNAct
from mobile_cv_nas.search import (
    ChannelChoice,
    Decision,
    GumbelSampler,
    MaskedChannel,
    Supernet,
    derive_arch,
)

TINY_SPACE = {
    "name": "tiny",
    "resolutions": [32, 24],
    "width_divisor": 1,
    "num_classes": 10,
    "stages": [
        [{"op": "conv_k3_hs", "channels": [4, 8, 4], "stride": 2}],
        [{"op": "ir_k3_hs", "channels": [8, 16, 4], "stride": 2, "expansion": [2, 4, 2]}],
    ],
}


def test_set_argmax_makes_the_option_the_argmax():
    d = Decision([16, 24, 32], name="out:0")
    for i, option in enumerate(d.options):
        assert d.set_argmax(i) is d
        assert d.argmax() == option
        assert d.alpha.tolist() == [1.0 if j == i else 0.0 for j in range(3)]
        gates = d.sample(GumbelSampler(mode="argmax"))
        assert gates.tolist() == [1.0 if j == i else 0.0 for j in range(3)]
    assert d.alpha.grad is None and d.alpha.requires_grad  # still a trainable parameter


def test_set_argmax_refuses_a_missing_option():
    d = Decision(["a", "b"], name="op")
    for bad in (2, -1):
        with pytest.raises(IndexError, match="no index"):
            d.set_argmax(bad)
    with pytest.raises(TypeError):
        d.set_argmax(1.0)
    fixed = Decision([7], name="fixed")
    assert fixed.set_argmax(0).argmax() == 7


def test_set_argmax_picks_the_derived_architecture():
    net = Supernet(TINY_SPACE)
    for d in list(net.decisions.values()) + list(net.fixed_decisions.values()):
        d.set_argmax(max(range(len(d.options)), key=lambda i: d.options[i]))
    arch = derive_arch(net)
    assert arch.input_size == 32
    assert [row["out_channels"] for stage in arch.stages for row in stage] == [8, 16]
    assert arch.stages[1][0]["mid_channels"] == 32  # expansion 4 x input width 8
    net.decisions["out:1"].set_argmax(0)
    net.decisions["resolution"].set_argmax(1)
    arch = derive_arch(net)
    assert arch.input_size == 24
    assert arch.stages[1][0]["out_channels"] == 8


@pytest.mark.parametrize(("norm", "act"), [("bn", "relu"), ("bn", None), (None, "hswish")])
def test_masked_channel_parts_are_the_plain_layers_modules(norm, act):
    layer = ConvBNAct(3, 8, 3, norm=norm, act=act)
    conv = layer.conv
    bn = layer.bn if norm else None
    relu = layer.relu if act else None
    parts = MaskedChannel(layer, ChannelChoice([4, 8])).parts()
    assert len(parts) == 3
    assert parts[0] is conv
    assert parts[1] is bn
    assert parts[2] is relu
