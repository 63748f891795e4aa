"""Built-in op names: the paper's micro space and every op of the published archs.

Naming: `ir_k<k>` inverted residual with a kxk depthwise conv; `_hs` hard-swish instead of
ReLU; `_sehsig` squeeze-excite with a hard-sigmoid gate (the official name); `_g2` grouped
(g=2) 1x1 expansion plus channel shuffle. The paper's `_se` (Table 3) is the same block as the
official `_sehsig`: every published FBNetV2 model uses the hard-sigmoid gate, so
`ir_k3_se` and `ir_k3_sehsig` build identical modules.
"""

from ..layers import ConvBNAct
from .inverted_residual import InvertedResidual
from .pool_block import InvertedPool
from .registry import BLOCK_REGISTRY
from .skip import Skip


def conv_block(
    in_channels,
    out_channels,
    stride=1,
    kernel_size=3,
    act="relu",
    bias=True,
    norm="bn",
    bn_eps=1e-5,
):
    """Plain conv + norm + act; the conv keeps a bias, as the official stem does."""
    return ConvBNAct(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        bias=bias,
        act=act,
        norm=norm,
        bn_eps=bn_eps,
    )


def skip_block(
    in_channels,
    out_channels,
    stride=1,
    expansion=None,
    width_divisor=1,
    projection=None,
    norm="bn",
    bn_eps=1e-5,
):
    """`skip` ignores expansion and width rounding, as the official builder does."""
    return Skip(
        in_channels, out_channels, stride=stride, projection=projection, norm=norm, bn_eps=bn_eps
    )


def _register_builtin_ops():
    reg = BLOCK_REGISTRY
    for k in (1, 3, 5):
        reg.register_variant(f"conv_k{k}", conv_block, kernel_size=k, act="relu")
        reg.register_variant(f"conv_k{k}_hs", conv_block, kernel_size=k, act="hswish")
    reg.register_variant("skip", skip_block, expansion_free=True)
    for k in (3, 5, 7):
        for act_suffix, act in (("", "relu"), ("_hs", "hswish")):
            ir = dict(kernel_size=k, act=act)
            reg.register_variant(f"ir_k{k}{act_suffix}", InvertedResidual, **ir)
            for se_name in ("sehsig", "se"):
                reg.register_variant(
                    f"ir_k{k}_{se_name}{act_suffix}", InvertedResidual, se=True, **ir
                )
            reg.register_variant(
                f"ir_k{k}_g2{act_suffix}", InvertedResidual, pw_groups=2, shuffle_groups=2, **ir
            )
    reg.register_variant("ir_pool", InvertedPool, act="relu")
    reg.register_variant("ir_pool_hs", InvertedPool, act="hswish")


_register_builtin_ops()

#: The paper's micro search space (Table 3).
PAPER_MICRO_OPS = (
    "ir_k3",
    "ir_k5",
    "ir_k3_hs",
    "ir_k5_hs",
    "ir_k3_se",
    "ir_k5_se",
    "ir_k3_se_hs",
    "ir_k5_se_hs",
    "skip",
)
