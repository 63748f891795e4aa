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
  * ``naive_sync_bn`` (``naiveSyncBN``): detectron2's `NaiveSyncBatchNorm`, known by name but
    built only where the caller supplies the class (`resolve_norm(..., builders=...)`, as
    mobile_cv_nas.detection does);
  * ``none`` / None / "": no norm.

A norm class (a `nn.Module` subclass, e.g. detectron2's `NaiveSyncBatchNorm` or
`FrozenBatchNorm2d`) is built as `norm(channels, eps=eps)`; any other callable as
`norm(channels)` (`eps` is then the callable's business). `resolve_norm` turns a name into
what the block builders take, with a caller's classes in place of ours for some names;
`freeze_norms` turns the batch norms of a built module into frozen ones. Layers never import
detectron2.
"""

import math

import torch
import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

GN_MAX_GROUPS = 32

_BUILDERS = {
    "bn": lambda c, eps: nn.BatchNorm2d(c, eps=eps),
    "sync_bn": lambda c, eps: nn.SyncBatchNorm(c, eps=eps),
    "frozen_bn": lambda c, eps: FrozenBatchNorm2d(c, eps=eps),
    "gn": lambda c, eps: nn.GroupNorm(math.gcd(GN_MAX_GROUPS, c), c, eps=eps),
}
#: Names known here whose class the caller supplies (layers do not import detectron2).
_SUPPLIED = {"naive_sync_bn": "detectron2's NaiveSyncBatchNorm (mobile_cv_nas.detection)"}
#: detectron2's names for the same layers.
_ALIASES = {"syncbn": "sync_bn", "frozenbn": "frozen_bn", "naivesyncbn": "naive_sync_bn"}
#: The name of the norm whose statistics and affine parameters never train.
FROZEN = "frozen_bn"


def norm_name(norm, builders=None):
    """The canonical name of a norm given by name ("BN", "SyncBN", "frozen_bn", ...), None for
    "no norm". `builders` ({canonical name: class}) adds names the caller can build. Raises
    ValueError naming the accepted values."""
    if norm is None or norm in ("", "none"):
        return None
    if not isinstance(norm, str):
        raise TypeError(f"norm must be a name or a callable, got {type(norm).__name__}.")
    key = norm.lower()
    key = _ALIASES.get(key, key)
    if key in _BUILDERS or key in (builders or {}):
        return key
    if key in _SUPPLIED:
        raise ValueError(
            f"Norm {norm!r} is {_SUPPLIED[key]}; it is available where detectron2 is (the "
            f"detection backbones and heads), not here. Use 'BN', 'SyncBN', 'FrozenBN' or 'GN'."
        )
    names = sorted({*_BUILDERS, *(builders or {})})
    raise ValueError(
        f"Unknown norm {norm!r}; expected one of {names} (or detectron2's 'BN', 'SyncBN', "
        f"'FrozenBN', 'GN', 'naiveSyncBN'), 'none', or a callable channels -> nn.Module."
    )


def resolve_norm(norm, builders=None, trainable=False):
    """What block builders and `build_norm` take for `norm`: a canonical name, the class
    `builders` gives for that name (e.g. {"naive_sync_bn": NaiveSyncBatchNorm,
    "frozen_bn": detectron2's FrozenBatchNorm2d}), None for no norm, or a callable as given.
    `trainable`: refuse the frozen norm (a freshly initialised module must learn its norms).
    ValueError / TypeError name the accepted values."""
    if callable(norm) and not isinstance(norm, str):
        return norm
    name = norm_name(norm, builders)
    if trainable and name == FROZEN:
        raise ValueError(
            f"{norm!r} is not allowed here: the norm must train (freshly initialised heads "
            f"must learn their norms). Use 'BN', 'SyncBN', 'naiveSyncBN', 'GN'."
        )
    return (builders or {}).get(name, name)


def build_norm(norm, channels, eps=1e-5):
    """A norm module over `channels` channels, or None for no norm."""
    if isinstance(norm, type) and issubclass(norm, nn.Module):
        return norm(channels, eps=eps)
    if callable(norm) and not isinstance(norm, str):
        return norm(channels)
    name = norm_name(norm)
    return None if name is None else _BUILDERS[name](channels, eps)


def freeze_norms(module, frozen=FrozenBatchNorm2d):
    """Replace every batch norm under `module` (BatchNorm2d, SyncBatchNorm and subclasses such
    as NaiveSyncBatchNorm) by `frozen(num_features, eps=eps)` holding its weight, bias and
    running statistics (no batch counter), in place. Returns the module to use in place of
    `module` (a new one when `module` itself is a batch norm). Other norms (GroupNorm) are
    left as they are."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = frozen(module.num_features, eps=module.eps)
        source = next(iter(module.state_dict().values()), None)
        if source is not None:
            new = new.to(source.device)
        with torch.no_grad():
            if module.affine:
                new.weight.copy_(module.weight)
                new.bias.copy_(module.bias)
            if module.track_running_stats:
                new.running_mean.copy_(module.running_mean)
                new.running_var.copy_(module.running_var)
        return new
    for name, child in module.named_children():
        new = freeze_norms(child, frozen)
        if new is not child:
            setattr(module, name, new)
    return module
