"""Activations used by FBNet/FBNetV2, named as the arch defs name them."""

import torch.nn as nn
import torch.nn.functional as F


def hard_sigmoid(x):
    # relu6(x + 3) * (1/6), in this order, as the official modules compute it (bit-exact).
    return F.relu6(x + 3.0) * (1.0 / 6.0)


class HSigmoid(nn.Module):
    """Hard sigmoid, relu6(x + 3) / 6: the squeeze-excite gate of the `_sehsig` ops."""

    def forward(self, x):
        return hard_sigmoid(x)


class HSwish(nn.Module):
    """Hard swish, x * hsigmoid(x) (MobileNetV3)."""

    def forward(self, x):
        return x * hard_sigmoid(x)


_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "hswish": HSwish,
    "hsigmoid": HSigmoid,
}


def build_activation(name):
    """Return a fresh activation module for `name`, or None for "none"/None."""
    if name in (None, "none"):
        return None
    if name not in _ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)} or 'none'."
        )
    return _ACTIVATIONS[name]()
