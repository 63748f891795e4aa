"""Conv + optional BatchNorm + optional activation, with the official child names."""

import torch.nn as nn

from .activations import build_activation


class ConvBNAct(nn.Sequential):
    """`conv`, `bn` (optional) and `relu` (the activation, whatever it is) children.

    The child names match the official checkpoints (`<...>.conv.weight`, `<...>.bn.*`).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=1,
        stride=1,
        groups=1,
        bias=False,
        bn=True,
        act="relu",
        bn_eps=1e-5,
    ):
        super().__init__()
        self.add_module(
            "conv",
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=bias,
            ),
        )
        if bn:
            self.add_module("bn", nn.BatchNorm2d(out_channels, eps=bn_eps))
        activation = build_activation(act)
        if activation is not None:
            self.add_module("relu", activation)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
