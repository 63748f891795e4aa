"""Squeeze-excite with a hard-sigmoid gate, as in the official `_sehsig` ops."""

import torch.nn as nn

from .activations import HSigmoid
from .conv_bn_act import ConvBNAct


class SqueezeExcite(nn.Module):
    """x * hsigmoid(conv(act(conv(avgpool(x))))), with 1x1 convs carrying biases.

    Children `avg_pool` and `se` (reduce ConvBNAct without BN, expand Conv2d, gate) give
    the official keys `se.se.0.conv.*` and `se.se.1.*`.
    """

    def __init__(self, channels, mid_channels, inner_act="relu"):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.se = nn.Sequential(
            ConvBNAct(channels, mid_channels, 1, bias=True, norm=None, act=inner_act),
            nn.Conv2d(mid_channels, channels, 1, bias=True),
            HSigmoid(),
        )

    def forward(self, x):
        return x * self.se(self.avg_pool(x))
