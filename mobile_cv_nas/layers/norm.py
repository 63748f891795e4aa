"""Normalization layers chosen by name or callable, as detectron2's `get_norm` does.

Names (detectron2's spellings are accepted too, in any case):

  * ``bn`` (``BN``): `nn.BatchNorm2d`;
  * ``sync_bn`` (``SyncBN``): `nn.SyncBatchNorm` (statistics all-reduced over the process
    group under DDP; torch syncs CUDA tensors only, on CPU it acts as a plain batch norm when
    not distributed);
  * ``frozen_bn`` (``FrozenBN``): torchvision's `FrozenBatchNorm2d`: statistics and affine
    parameters are buffers, never updated (detection fine-tuning);
  * ``gn`` (``GN``): `nn.GroupNorm` with at most 32 groups, as detectron2's GN, and fewer
    where 32 does not divide the width (gcd(32, channels) groups), so every mobile width works;
  * ``none`` / None / "": no norm.

A callable `norm(channels) -> nn.Module` is used as given (e.g. detectron2's
`NaiveSyncBatchNorm`); `eps` is then the callable's business. Layers never import detectron2.
"""

import math

import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

GN_MAX_GROUPS = 32

_BUILDERS = {
    "bn": lambda c, eps: nn.BatchNorm2d(c, eps=eps),
    "sync_bn": lambda c, eps: nn.SyncBatchNorm(c, eps=eps),
    "frozen_bn": lambda c, eps: FrozenBatchNorm2d(c, eps=eps),
    "gn": lambda c, eps: nn.GroupNorm(math.gcd(GN_MAX_GROUPS, c), c, eps=eps),
}
#: detectron2's names for the same layers.
_ALIASES = {"syncbn": "sync_bn", "frozenbn": "frozen_bn"}


def norm_name(norm):
    """The canonical name of a norm given by name ("BN", "SyncBN", "frozen_bn", ...), None for
    "no norm". Raises ValueError naming the accepted values."""
    if norm is None or norm in ("", "none"):
        return None
    if not isinstance(norm, str):
        raise TypeError(f"norm must be a name or a callable, got {type(norm).__name__}.")
    key = norm.lower()
    key = _ALIASES.get(key, key)
    if key not in _BUILDERS:
        raise ValueError(
            f"Unknown norm {norm!r}; expected one of {sorted(_BUILDERS)} (or detectron2's "
            f"'BN', 'SyncBN', 'FrozenBN', 'GN'), 'none', or a callable channels -> nn.Module."
        )
    return key


def build_norm(norm, channels, eps=1e-5):
    """A norm module over `channels` channels, or None for no norm."""
    if callable(norm) and not isinstance(norm, str):
        return norm(channels)
    name = norm_name(norm)
    return None if name is None else _BUILDERS[name](channels, eps)
