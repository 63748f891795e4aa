"""Channel search by masking (FBNetV2 Sec. 3.1, Eq. 3).

One conv at the maximum width; its output is multiplied by M = sum_i g_i 1_i, where 1_i keeps
the first c_i channels. `ChannelChoice` is the decision (alpha over channel counts, the mask,
the effective width sum_i g_i c_i); `MaskedChannel` applies it to one conv-BN-act layer.

The mask is folded into the BatchNorm's affine parameters (weight * M, bias * M), which is
exactly BN-then-mask, so autograd keeps no extra copy of the feature map for backward. A
layer without BN multiplies its (small) output instead. The mask sits after BN, before the
activation: BN in training mode would otherwise renormalise the mask away, and relu(0) =
hswish(0) = 0 keeps dropped channels at zero.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gumbel import Decision
from .registry import SEARCH_OP_REGISTRY
from .space import range_options


def channel_options(spec):
    """Options from an int or a (low, high, step) tuple, high included when reached."""
    return range_options(spec, "channel options", "int")


class ChannelChoice(Decision):
    """A decision over channel counts (ascending); one per group of layers that must agree."""

    def __init__(self, options, name=""):
        options = sorted(int(c) for c in options)
        super().__init__(options, name=name)

    @property
    def max_channels(self):
        return self.options[-1]

    def mask(self, widths=None):
        """M = sum_i g_i 1_{c < widths_i}: a vector over max(widths) channels.

        Computed once per sampled gates and widths, however many layers share the choice.
        """
        widths = tuple(self.options if widths is None else widths)
        gates = self.current_gates()
        if self.__dict__.get("_masks_for") is not gates:
            self.__dict__["_masks_for"], self.__dict__["_masks"] = gates, {}
        masks = self.__dict__["_masks"]
        key = (widths, torch.is_grad_enabled())  # a mask made under no_grad has no graph
        if key not in masks:
            masks[key] = gates @ self._indicators(widths, gates.device, gates.dtype)
        return masks[key]

    def _indicators(self, widths, device, dtype):
        """The (options x channels) matrix of the 1_i, built once per widths/device/dtype."""
        cache = self.__dict__.setdefault("_indicator_cache", {})
        key = (widths, device, dtype)
        if key not in cache:
            channels = torch.arange(max(widths), device=device)
            cache[key] = (channels[None, :] < torch.tensor(widths, device=device)[:, None]).to(dtype)
        return cache[key]

    def effective_channels(self, widths=None):
        return self.expected(widths)


def masked_batch_norm(bn, x, mask):
    """`bn(x) * mask` computed as a batch norm with masked affine parameters (exact)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or bn.running_mean is None
    track = not bn.training or bn.track_running_stats
    return F.batch_norm(
        x,
        bn.running_mean if track else None,
        bn.running_var if track else None,
        bn.weight * mask,
        bn.bias * mask,
        use_batch_stats,
        momentum,
        bn.eps,
    )


@SEARCH_OP_REGISTRY.register()
class MaskedChannel(nn.Module):
    """A conv(-BN)(-act) layer at max width whose output channels are masked by a choice.

    It takes over the layer's children (`conv`, `bn`, `relu`), so state_dict keys stay those
    of the plain layer. `widths` gives the channel count of each option when it differs from
    the choice's own options (e.g. squeeze-excite widths derived from mid widths).
    """

    def __init__(self, layer, choice, widths=None):
        super().__init__()
        for name, child in layer.named_children():
            self.add_module(name, child)
        self.__dict__["choice"] = choice  # shared, registered once by the supernet
        self.widths = tuple(choice.options if widths is None else widths)
        if max(self.widths) != self.conv.out_channels:
            raise ValueError(
                f"MaskedChannel: widest option {max(self.widths)} != layer width "
                f"{self.conv.out_channels}."
            )

    def forward(self, x):
        mask = self.choice.mask(self.widths)
        y = self.conv(x)
        if "bn" in self._modules:
            y = masked_batch_norm(self.bn, y, mask)
        else:
            y = y * mask.view(1, -1, 1, 1)
        if "relu" in self._modules:
            y = self.relu(y)
        return y

    def extra_repr(self):
        return f"choice={self.choice.name!r}, widths={list(self.widths)}"
