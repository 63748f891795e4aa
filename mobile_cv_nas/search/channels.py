"""Channel widths under search: where a layer's width comes from, and its mask (Eq. 3, 5).

A *width source* knows the widths a layer may have and how likely each is under the current
gates: `widths()` (one width per combination of the decisions it depends on) and `width_gates()`
(their weights, summing to 1). From those it gives the mask M = sum_i g_i 1_i (Eq. 3), the
effective width sum_i g_i c_i (Eq. 5) and the argmax width. Three kinds:

  * `ChannelChoice`: a decision over widths (a block's output width);
  * `ExpandedChannels`: the mid width of a block, expansion rate x INPUT width. When both the
    input width (decision over c_i) and the expansion (decision over e_j) are searched, the mid
    width of combination (i, j) is `mid_width(c_i, e_j)` (rounded to the width divisor, as the
    plain builder rounds it; e = 1 keeps mid = in, no expansion conv) with weight g_i * h_j.
    So an expansion rate means what it says whatever input width is picked, the derived block
    has exactly the mid width the supernet masked, and the effective mid width is
    sum_ij g_i h_j mid(c_i, e_j), which is e x C_in_eff before rounding (Eq. 5 applied to
    the rate);
  * `MappedChannels`: widths computed from another source's (a squeeze-excite width from the
    mid width).

Masks are computed once per sampled gates (however many layers share a source).
"""

import torch

from ..blocks.inverted_residual import mid_width
from .gumbel import Decision


def expanded_width(in_channels, expansion, width_divisor):
    """Mid width of a block: in x expansion rounded as the plain builder rounds it; an
    expansion of 1 keeps the input width (no expansion conv, whatever the rounding)."""
    if expansion == 1:
        return in_channels
    return mid_width(in_channels, expansion, width_divisor)


class ChannelSource:
    """The interface of a width source (see the module doc)."""

    def widths(self):
        raise NotImplementedError

    def width_gates(self):
        raise NotImplementedError

    def argmax(self):
        raise NotImplementedError

    def _gate_key(self):
        """Tensors whose identity changes whenever the gates are resampled."""
        raise NotImplementedError

    @property
    def max_channels(self):
        return max(self.widths())

    @property
    def fixed(self):
        return len(set(self.widths())) == 1

    def expected(self):
        """Effective width sum_i g_i c_i (Eq. 5), in float64 (exact for one-hot gates)."""
        gates = self.width_gates().double()
        widths = torch.as_tensor(self.widths(), dtype=gates.dtype, device=gates.device)
        return (gates * widths).sum()

    def mask(self, groups=1):
        """M = sum_i g_i 1_i over `max_channels` channels. With `groups` > 1 the channels are
        `groups` equal blocks (a grouped conv's outputs) and 1_i keeps the first c_i / groups
        channels of each block, which a channel shuffle then brings to the front."""
        cache = self.__dict__.setdefault("_mask_cache", {})
        key = self._gate_key()
        cached = cache.get("key")
        if (
            cached is None
            or len(key) != len(cached)
            or any(a is not b for a, b in zip(key, cached, strict=True))
        ):
            cache.clear()
            cache["key"] = key
        slot = (groups, torch.is_grad_enabled())  # a mask made under no_grad has no graph
        if slot not in cache:
            gates = self.width_gates()
            cache[slot] = gates @ self._indicators(groups, gates.device, gates.dtype)
        return cache[slot]

    def _indicators(self, groups, device, dtype):
        """The (options x channels) matrix of the 1_i, built once per groups/device/dtype."""
        cache = self.__dict__.setdefault("_indicator_cache", {})
        widths = tuple(self.widths())
        key = (widths, groups, device, dtype)
        if key not in cache:
            full = self.max_channels
            bad = [w for w in widths + (full,) if w % groups]
            if bad:
                raise ValueError(
                    f"Widths {sorted(set(bad))} are not divisible by the {groups} groups of the "
                    f"layer they mask; pick channel options (or a width divisor) that are."
                )
            channel = torch.arange(full, device=device) % (full // groups)
            per_group = torch.tensor(widths, device=device) // groups
            cache[key] = (channel[None, :] < per_group[:, None]).to(dtype)
        return cache[key]

    def mapped(self, fn):
        """A source with the same gates and widths fn(c) (e.g. squeeze-excite widths)."""
        return MappedChannels(self, fn)


class ChannelChoice(Decision, ChannelSource):
    """A decision over channel counts (ascending); one per group of layers that must agree."""

    def __init__(self, options, name=""):
        super().__init__(sorted(int(c) for c in options), name=name)

    def widths(self):
        return self.options

    def width_gates(self):
        return self.current_gates()

    def _gate_key(self):
        return (self.current_gates(),)

    def effective_channels(self):
        return self.expected()


class ExpandedChannels(ChannelSource):
    """Mid widths expanded from a searched input width by a (searched) expansion rate."""

    def __init__(self, in_channels, expansion, width_divisor):
        """`in_channels`: a ChannelChoice; `expansion`: a Decision over rates, or one rate."""
        self.in_channels = in_channels
        self.expansion = expansion if isinstance(expansion, Decision) else None
        self.rates = tuple(expansion.options) if self.expansion is not None else (expansion,)
        self.width_divisor = width_divisor
        self._options = tuple(
            expanded_width(c, e, width_divisor) for c in in_channels.widths() for e in self.rates
        )

    def widths(self):
        return self._options

    def width_gates(self):
        g_in = self.in_channels.width_gates()
        if self.expansion is None:
            return g_in
        return torch.outer(g_in, self.expansion.current_gates()).flatten()

    def _gate_key(self):
        key = self.in_channels._gate_key()
        return key if self.expansion is None else key + (self.expansion.current_gates(),)

    def argmax(self):
        rate = self.rates[0] if self.expansion is None else self.expansion.argmax()
        return expanded_width(self.in_channels.argmax(), rate, self.width_divisor)


class MappedChannels(ChannelSource):
    def __init__(self, source, fn):
        self.source, self.fn = source, fn
        self._options = tuple(fn(c) for c in source.widths())

    def widths(self):
        return self._options

    def width_gates(self):
        return self.source.width_gates()

    def _gate_key(self):
        return self.source._gate_key()

    def argmax(self):
        return self.fn(self.source.argmax())


def certain_same_width(a, b):
    """1.0 if sources `a` and `b` always have the same width, 0.0 if never, None if it depends
    on the gates (known from their structure alone)."""
    if a is b:
        return 1.0
    wa, wb = a.widths(), b.widths()
    if a.fixed and b.fixed:
        return float(wa[0] == wb[0])
    return None if set(wa) & set(wb) else 0.0


def same_width_probability(a, b):
    """P(width of `a` == width of `b`) under the current gates: 1.0 or 0.0 (Python floats)
    when it is certain, else a differentiable tensor. A block adds (or, a `skip`, passes) its
    input with this weight, so with one-hot gates it has a residual exactly when the derived
    block will."""
    certain = certain_same_width(a, b)
    if certain is not None:
        return certain
    wa, wb = a.widths(), b.widths()
    ga, gb = a.width_gates(), b.width_gates()
    equal = torch.tensor(
        [[float(x == y) for y in wb] for x in wa], dtype=ga.dtype, device=ga.device
    )
    return ga @ equal @ gb
