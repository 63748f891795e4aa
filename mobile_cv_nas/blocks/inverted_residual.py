"""Inverted residual block (MobileNetV2 style) with the official FBNet child names."""

import torch.nn as nn

from ..layers import ChannelShuffle, ConvBNAct, SqueezeExcite, make_divisible


def mid_width(in_channels, expansion, width_divisor):
    """Expansion (mid) width: round(in * expansion) to the width divisor."""
    return make_divisible(in_channels * expansion, width_divisor)


def se_width(mid_channels, width_divisor, expansion=1.0, less_se_channels=False):
    """Squeeze-excite width: int(mid * ratio) rounded, ratio 0.25 (or 0.25/expansion)."""
    ratio = 0.25 / expansion if less_se_channels else 0.25
    return make_divisible(int(mid_channels * ratio), width_divisor)


class InvertedResidual(nn.Module):
    """[pw 1x1 + BN + act] -> [shuffle] -> dw kxk + BN + act -> [SE] -> pwl 1x1 + BN -> [+x].

    `pw` is left out when the mid width equals the input width (expansion 1), as officially,
    unless `force_pw`; the residual add is used when in == out and stride 1, unless
    `residual` says otherwise. Search results use both to stay exactly what was searched.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        stride=1,
        expansion=1.0,
        kernel_size=3,
        act="relu",
        se=False,
        se_act=None,
        pw_groups=1,
        pwl_groups=1,
        shuffle_groups=None,
        bias=False,
        width_divisor=1,
        mid_channels=None,
        se_channels=None,
        less_se_channels=False,
        zero_last_bn_gamma=False,
        force_pw=False,
        residual=None,
        norm="bn",
        bn_eps=1e-5,
    ):
        super().__init__()
        if expansion is None:
            expansion = 1.0
        if mid_channels is None:
            mid_channels = mid_width(in_channels, expansion, width_divisor)
        self.in_channels, self.mid_channels, self.out_channels = (
            in_channels,
            mid_channels,
            out_channels,
        )
        self.stride, self.kernel_size = stride, kernel_size
        if mid_channels != in_channels or force_pw:
            self.pw = ConvBNAct(
                in_channels,
                mid_channels,
                1,
                groups=pw_groups,
                bias=bias,
                act=act,
                norm=norm,
                bn_eps=bn_eps,
            )
        else:
            self.pw = None
        self.shuffle = ChannelShuffle(shuffle_groups) if shuffle_groups else None
        self.dw = ConvBNAct(
            mid_channels,
            mid_channels,
            kernel_size,
            stride=stride,
            groups=mid_channels,
            bias=bias,
            act=act,
            norm=norm,
            bn_eps=bn_eps,
        )
        if se:
            if se_channels is None:
                se_channels = se_width(mid_channels, width_divisor, expansion, less_se_channels)
            self.se = SqueezeExcite(mid_channels, se_channels, inner_act=se_act or act)
        else:
            self.se = None
        self.pwl = ConvBNAct(
            mid_channels,
            out_channels,
            1,
            groups=pwl_groups,
            bias=bias,
            act=None,
            norm=norm,
            bn_eps=bn_eps,
        )
        can_add = in_channels == out_channels and stride == 1
        if residual and not can_add:
            raise ValueError(
                f"residual=True needs in == out channels and stride 1, got {in_channels} -> "
                f"{out_channels}, stride {stride}."
            )
        self.use_residual = can_add if residual is None else bool(residual)
        if zero_last_bn_gamma and self.use_residual and hasattr(self.pwl, "bn"):
            nn.init.zeros_(self.pwl.bn.weight)

    def forward(self, x):
        y = x
        if self.pw is not None:
            y = self.pw(y)
        if self.shuffle is not None:
            y = self.shuffle(y)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.pwl(y)
        return x + y if self.use_residual else y
