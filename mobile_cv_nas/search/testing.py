"""Checks for search-adapter authors: the derived model is the argmax supernet.

A block becomes searchable through a `BlockAdapter` (mobile_cv_nas.search.adapters). The one
property every adapter must keep: with every decision one-hot at its argmax, the supernet
computes exactly what the derived plain model (`derive_model`, weights inherited) computes, and
the derived model's fvcore FLOPs/params are exactly the supernet's effective cost. A mistake
in `mask`, `costs`, `derive` or `inherit` breaks it. This module is the project's own check of
its built-in adapters, for use in your tests (plain asserts; no pytest needed):

    from mobile_cv_nas.search import Supernet
    from mobile_cv_nas.search.testing import (
        assert_derived_computes_argmax_supernet, favour, randomize_supernet)

    net = Supernet(my_space)  # a space whose rows list your op
    for seed in range(3):     # random alphas (so random argmax architectures) and norm stats
        randomize_supernet(net, seed)
        favour(net, **{"op:xif1_0": "my_op"})  # make sure your op is the argmax somewhere
        assert_derived_computes_argmax_supernet(net, seed=seed)

or in one call, `check_derived_computes_argmax_supernet(my_space, seeds=range(3))`.
`random_search_space` draws random small spaces over a list of ops (random widths,
expansions, strides, repeats, resolutions, input channels, channel-decision modes) for a
property test over many architectures.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

from ..blocks.ops import PAPER_MICRO_OPS
from ..flops import count_flops
from .derive import derive_model
from .resolution_sampler import subsample_indices
from .space import SearchSpace
from .supernet import Supernet

__all__ = [
    "argmax_eval",
    "assert_derived_computes_argmax_supernet",
    "check_derived_computes_argmax_supernet",
    "favour",
    "random_search_space",
    "randomize_supernet",
    "subsampled",
]

#: The norm layers whose statistics and affines `randomize_supernet` draws.
NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, FrozenBatchNorm2d)


def randomize_supernet(net: Supernet, seed: int = 0) -> Supernet:
    """Random alphas (so a random argmax architecture) and random norm statistics and
    affines, so that equalities are not met by chance (a fresh BN is the identity). In place;
    returns `net`."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for d in net.decisions.values():
            d.alpha.copy_(torch.randn(d.alpha.shape, generator=g))
        for m in net.modules():
            if not isinstance(m, NORMS):
                continue
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if getattr(m, "running_var", None) is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


def favour(net: Supernet, **choices: Any) -> Supernet:
    """Make the option `value` the argmax of each decision named, e.g.
    `favour(net, **{"op:xif1_0": "my_op", "out:0": 16})`. In place; returns `net`."""
    with torch.no_grad():
        for name, value in choices.items():
            if name not in net.decisions:
                raise KeyError(f"No decision {name!r}; the supernet has {sorted(net.decisions)}.")
            d = net.decisions[name]
            if value not in d.options:
                raise ValueError(f"{value!r} is not an option of {name!r}: {list(d.options)}.")
            d.alpha.fill_(-5.0)
            d.alpha[d.options.index(value)] = 5.0
    return net


def argmax_eval(net: Supernet) -> Supernet:
    """Eval mode, every decision one-hot at its argmax, the gates kept for the next forwards
    (`auto_sample` off). In place; returns `net`."""
    net.eval()
    net.sampler.mode = "argmax"
    net.sample()
    net.auto_sample = False
    return net


def subsampled(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """`x` (N, C, H, W) at `resolution`, by the pixels the supernet's resolution sampler keeps
    (the derived model's input for the supernet's input `x`)."""
    hi = subsample_indices(x.shape[-2], resolution)
    wi = subsample_indices(x.shape[-1], resolution)
    return x[:, :, hi][:, :, :, wi]


def assert_derived_computes_argmax_supernet(
    net: Supernet, batch: int = 2, seed: int = 0, rtol: float = 1e-5
) -> nn.Module:
    """The derived model (weights inherited) gives the argmax supernet's outputs (to `rtol` of
    the largest output), and its fvcore FLOPs/params are exactly the supernet's effective
    cost. Puts `net` in `argmax_eval`. Returns the derived model; raises AssertionError
    (with the derived arch def) otherwise."""
    argmax_eval(net)
    model = derive_model(net).eval()
    r = net.max_resolution
    x = torch.randn(batch, net.in_channels, r, r, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        a = net(x)
        b = model(subsampled(x, model.arch_def.input_size))
    arch = model.arch_def.to_yaml()
    if a.shape != b.shape:
        raise AssertionError(
            f"Output shapes differ: supernet {a.shape}, derived {b.shape}.\n{arch}"
        )
    scale = max(1.0, a.abs().max().item())
    diff = (a - b).abs().max().item()
    if diff > rtol * scale:
        raise AssertionError(
            f"The derived model's outputs differ from the argmax supernet's by {diff:.3g} "
            f"(allowed {rtol * scale:.3g}): check the adapter's mask, derive and inherit.\n{arch}"
        )
    cost = net.effective_cost()
    report = count_flops(model)
    for what in ("flops", "params"):
        effective, counted = getattr(cost, what).item(), getattr(report, what)
        if effective != counted:
            raise AssertionError(
                f"The supernet's effective {what} ({effective}) is not the derived model's "
                f"fvcore count ({counted}): check the adapter's costs.\n{arch}"
            )
    return model


def check_derived_computes_argmax_supernet(
    space: SearchSpace | dict[str, Any] | str | os.PathLike | Supernet,
    seeds: Iterable[int] = range(3),
    batch: int = 2,
    **supernet_kwargs: Any,
) -> list[nn.Module]:
    """`assert_derived_computes_argmax_supernet` for each seed of `seeds`, each time with
    `randomize_supernet(net, seed)`: a random argmax architecture of `space` (a SearchSpace,
    a search-space mapping, name or YAML path, or a built Supernet; `supernet_kwargs` go to
    Supernet). Returns the derived models."""
    net = space if isinstance(space, Supernet) else Supernet(space, **supernet_kwargs)
    return [
        assert_derived_computes_argmax_supernet(
            randomize_supernet(net, seed), batch=batch, seed=seed
        )
        for seed in seeds
    ]


def random_search_space(
    rng: random.Random, ops: Sequence[str] = PAPER_MICRO_OPS, name: str = "random"
) -> dict[str, Any]:
    """A random small search space (a mapping in the search-space schema): a conv stem, 2-4
    rows each choosing among 1-4 of `ops` (random width ranges, strides, repeats, and, on 80%
    of the rows, expansion ranges; half the rows continued by a stride-1 row of the same
    range), an `ir_pool_hs` head, random resolutions, width divisor, input channels and
    channel-decision mode. Ops whose expansion cannot be searched over a searched input
    width (grouped expansions) may make Supernet refuse it."""
    micro = list(ops)

    def channels():
        low = rng.choice([4, 8, 12, 16])
        return [low, low + rng.choice([0, 4, 8, 12]), 4]

    stages = [[{"op": rng.choice(["conv_k3", "conv_k3_hs"]), "channels": channels(), "stride": 2}]]
    for _ in range(rng.randint(2, 4)):
        row = {
            "ops": rng.sample(micro, rng.randint(1, min(4, len(micro)))),
            "channels": channels(),
            "stride": rng.choice([1, 2]),
            "repeat": rng.randint(1, 2),
        }
        if rng.random() < 0.8:
            low = rng.choice([0.5, 1, 2])
            row["expansion"] = [low, low + rng.choice([0, 1, 2]), 1]
        stages.append([row])
        if rng.random() < 0.5:  # a stride-1 row of the same range continues the decision
            stages[-1].append(dict(row, stride=1, repeat=1))
    stages.append([{"op": "ir_pool_hs", "channels": 24, "expansion": rng.choice([2, 4])}])
    resolutions = rng.choice([[32], [32, 24], [32, 28, 24, 16]])
    return {
        "name": name,
        "resolutions": resolutions,
        "width_divisor": rng.choice([1, 4, 8]),
        "num_classes": 7,
        "in_channels": rng.choice([1, 3]),
        "channel_decisions": rng.choice(["per_stage", "per_block"]),
        "stages": stages,
    }
