"""Activations used by FBNet/FBNetV2, named as the arch defs name them."""

import torch.nn as nn
import torch.nn.functional as F


class HSwish(nn.Module):
    """Hard swish, x * relu6(x + 3) / 6 (MobileNetV3)."""

    def forward(self, x):
        return x * F.relu6(x + 3.0) / 6.0


class HSigmoid(nn.Module):
    """Hard sigmoid, relu6(x + 3) / 6: the squeeze-excite gate of the `_sehsig` ops."""

    def forward(self, x):
        return F.relu6(x + 3.0) / 6.0


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
