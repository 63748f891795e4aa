"""Effective shapes and the per-layer cost of Eq. 10, with the published FLOP convention.

An effective shape carries effective channels C_eff = sum_i g_i C_i (a tensor, so the cost is
differentiable in the gates) and, per input-resolution option, the real spatial size; the
effective height/width are sum_r g_r h_r and sum_r g_r w_r. Costs follow
`mobile_cv_nas.flops`: conv multiply-adds k^2 * h * w * C_in * C_out / groups (no bias), one op
per element entering a global average pool; params are conv/linear weight elements. Everything
is computed in float64, so that with one-hot gates a cost is the exact integer count.
"""

import collections
import dataclasses
import functools
import math

import torch


@dataclasses.dataclass
class EffectiveShape:
    channels: torch.Tensor  # effective channels (0-d float64 tensor)
    sizes: list[tuple[int, int]]  # real (h, w) for each resolution option
    resolution_gates: torch.Tensor  # gates of the resolution options (sums to 1), float64

    # The effective height and width are computed once per shape and shared by the shapes
    # derived with other channels: a cost evaluation reads them thousands of times.
    @functools.cached_property
    def height(self):
        return self._expected([h for h, _ in self.sizes])

    @functools.cached_property
    def width(self):
        return self._expected([w for _, w in self.sizes])

    def _expected(self, values):
        g = self.resolution_gates
        return (g * torch.as_tensor(values, dtype=g.dtype, device=g.device)).sum()

    # direct construction rather than dataclasses.replace: these run thousands of times per
    # cost evaluation, and replace's field introspection was a third of its time
    def with_channels(self, channels):
        shape = EffectiveShape(channels, self.sizes, self.resolution_gates)
        for name in ("height", "width"):
            if name in self.__dict__:
                shape.__dict__[name] = self.__dict__[name]
        return shape

    def strided(self, stride):
        if stride == 1:
            return self  # shapes are not changed in place
        sizes = [(math.ceil(h / stride), math.ceil(w / stride)) for h, w in self.sizes]
        return EffectiveShape(self.channels, sizes, self.resolution_gates)

    def pooled(self):
        return EffectiveShape(self.channels, [(1, 1)] * len(self.sizes), self.resolution_gates)


@dataclasses.dataclass
class Cost:
    """FLOPs and params; and, for a supernet with a latency table, its expected latency in
    nanoseconds (so that, as FLOPs and params, it is reported in millions: ms), the network's
    as a whole (layers have none)."""

    flops: torch.Tensor
    params: torch.Tensor
    latency: torch.Tensor | None = None

    def __add__(self, other):
        latency = None
        if self.latency is not None and other.latency is not None:
            latency = self.latency + other.latency
        return Cost(self.flops + other.flops, self.params + other.params, latency)

    def scaled(self, weight):
        latency = None if self.latency is None else self.latency * weight
        return Cost(self.flops * weight, self.params * weight, latency)

    def of(self, metric):
        """The cost in `metric` ('flops', 'params' or 'latency')."""
        if metric not in ("flops", "params", "latency"):
            raise ValueError(f"Unknown cost metric {metric!r}: use flops, params or latency.")
        value = getattr(self, metric)
        if value is None:
            raise ValueError(
                "This cost has no latency: the supernet has no latency table (NAS.COST.LUT, "
                "or Supernet(..., latency_table=...))."
            )
        return value


def conv_cost(out_shape, in_channels, out_channels, kernel_size=1, groups=1):
    """Eq. 10: k^2 h w C_in C_out / groups FLOPs, k^2 C_in C_out / groups params.

    `out_shape` gives the output's spatial size; `groups="depthwise"` means one filter per
    channel (C_in = C_out = the effective channels, passed through, Eq. 9).
    """
    k2 = kernel_size * kernel_size
    if groups == "depthwise":
        weights = k2 * out_channels
    else:
        weights = k2 * in_channels * out_channels / groups
    return Cost(flops=weights * out_shape.height * out_shape.width, params=weights)


def layer_cost(conv, in_shape, in_channels, out_channels):
    """(Cost, output shape) of the conv module `conv` (at its max width) run on `in_shape` with
    `in_channels` effective input and `out_channels` effective output channels. Its kernel,
    stride and groups are read from the module; a depthwise conv passes its effective input
    channels through (Eq. 9) whatever `out_channels` says."""
    out_shape = in_shape.strided(conv.stride[0])
    if conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels:
        cost = conv_cost(out_shape, in_channels, in_channels, conv.kernel_size[0], "depthwise")
        return cost, out_shape.with_channels(in_channels)
    cost = conv_cost(out_shape, in_channels, out_channels, conv.kernel_size[0], conv.groups)
    return cost, out_shape.with_channels(out_channels)


def global_pool_cost(in_shape):
    """One op per element entering a global average pool; no params."""
    flops = in_shape.channels * in_shape.height * in_shape.width
    return Cost(flops=flops, params=torch.zeros_like(flops))


def roll_up(named_values):
    """{name: sum} over every module and its ancestors ("" = the total) of (qualified module
    name, value) pairs, values being Costs or numbers. The one place costs are rolled up."""
    totals = collections.OrderedDict()
    for name, value in named_values:
        parts = name.split(".") if name else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            totals[key] = totals[key] + value if key in totals else value
    return totals
