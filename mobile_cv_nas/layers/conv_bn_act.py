"""Conv + optional norm + optional activation, with the official child names."""

import torch.nn as nn

from .activations import build_activation
from .norm import build_norm


class ConvBNAct(nn.Sequential):
    """`conv`, `bn` (the norm, optional, whatever it is) and `relu` (the activation, whatever
    it is) children.

    The child names match the official checkpoints (`<...>.conv.weight`, `<...>.bn.*`).
    `norm` is a name or callable (see `layers.norm`); None leaves the norm out.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=1,
        stride=1,
        groups=1,
        bias=False,
        norm="bn",
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
        norm_layer = build_norm(norm, out_channels, eps=bn_eps)
        if norm_layer is not None:
            self.add_module("bn", norm_layer)
        activation = build_activation(act)
        if activation is not None:
            self.add_module("relu", activation)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
