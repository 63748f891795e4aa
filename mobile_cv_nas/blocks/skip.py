"""`skip`: identity, or a 1x1 conv-BN-ReLU projection when the shape changes."""

import torch.nn as nn

from ..layers import ConvBNAct


class Skip(nn.Module):
    """Identity if in == out and stride 1 (no parameters); else child `conv` projects.

    The projection uses ReLU even in hswish models, like the official block. `projection=True`
    keeps it even when the shapes match (a search result whose supernet had one).
    """

    def __init__(
        self, in_channels, out_channels, stride=1, projection=None, norm="bn", bn_eps=1e-5
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        if projection is None:
            projection = in_channels != out_channels or stride != 1
        elif not projection and (in_channels != out_channels or stride != 1):
            raise ValueError("projection=False needs in == out channels and stride 1.")
        if projection:
            self.conv = ConvBNAct(
                in_channels, out_channels, 1, stride=stride, act="relu", norm=norm, bn_eps=bn_eps
            )
        else:
            self.conv = None

    def forward(self, x):
        return x if self.conv is None else self.conv(x)
