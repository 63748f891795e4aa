"""`ir_pool_hs`: the FBNetV2 last backbone block (expand, global pool, project)."""

import torch.nn as nn

from ..layers import ConvBNAct, make_divisible


class InvertedPool(nn.Module):
    """pw 1x1 + BN + act -> global average pool (`dw`) -> pwl 1x1 (no BN, no bias) + act."""

    def __init__(
        self,
        in_channels,
        out_channels,
        stride=1,
        expansion=6.0,
        act="hswish",
        width_divisor=1,
        mid_channels=None,
        norm="bn",
        bn_eps=1e-5,
    ):
        super().__init__()
        if mid_channels is None:
            mid_channels = make_divisible(in_channels * expansion, width_divisor)
        self.in_channels, self.mid_channels, self.out_channels = (
            in_channels,
            mid_channels,
            out_channels,
        )
        self.stride = stride
        self.pw = ConvBNAct(in_channels, mid_channels, 1, act=act, norm=norm, bn_eps=bn_eps)
        self.dw = nn.AdaptiveAvgPool2d(1)
        self.pwl = ConvBNAct(mid_channels, out_channels, 1, norm=None, act=act)

    def forward(self, x):
        return self.pwl(self.dw(self.pw(x)))
