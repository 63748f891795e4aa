"""Conventional DNAS over channel widths (FBNetV2 Eq. 1), in place of the supernet's masks.

With its per-option convs set to slices of the shared weights it computes exactly the
masked supernet (Eq. 1 == Eq. 3 with shared weights); what differs is the cost: k convs and
k feature maps per searched layer instead of one.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mobile_cv_nas.search import MaskedChannel


def masked_layers(model):
    """[(parent module, child name, masked layer)] for every `MaskedChannel` of `model`."""
    return [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, MaskedChannel)
    ]


def option_widths(masked):
    """The channel count of each option of a masked layer (its width source's), as ints."""
    return tuple(int(w) for w in masked.channels.widths())


class ConventionalChannel(nn.Module):
    """Conventional DNAS over the widths of one masked layer (Eq. 1).

    One conv (+BN) per option width on the same input (a depthwise conv sees the first c_i
    input channels); each output zero-padded to max width, weighted by its Gumbel gate and
    summed; then the layer's activation. Weights start as slices of the masked layer's
    shared weights, so that at creation it computes exactly what the masked layer does.
    """

    def __init__(self, masked):
        super().__init__()
        conv, bn, act = masked.parts()
        source = masked.channels  # the supernet's width source: gates resampled every step
        self.__dict__["_gates"] = source.width_gates  # not registered
        self.label = getattr(source, "name", type(source).__name__)
        self.widths = option_widths(masked)
        self.max_width = conv.out_channels
        self.depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if conv.groups != 1 and not self.depthwise:
            raise NotImplementedError("ConventionalChannel handles dense and depthwise convs only.")
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList() if bn is not None else None
        with torch.no_grad():
            for w in self.widths:
                c = nn.Conv2d(
                    w if self.depthwise else conv.in_channels,
                    w,
                    conv.kernel_size,
                    stride=conv.stride,
                    padding=conv.padding,
                    groups=w if self.depthwise else 1,
                    bias=conv.bias is not None,
                )
                c.weight.copy_(conv.weight[:w])
                if conv.bias is not None:
                    c.bias.copy_(conv.bias[:w])
                self.convs.append(c)
                if bn is not None:
                    b = nn.BatchNorm2d(
                        w,
                        eps=bn.eps,
                        momentum=bn.momentum,
                        affine=bn.affine,
                        track_running_stats=bn.track_running_stats,
                    )
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        if getattr(bn, name) is not None:
                            getattr(b, name).copy_(getattr(bn, name)[:w])
                    self.bns.append(b)
        self.act = act

    def forward(self, x):
        gates = self._gates()
        out = None
        for i, w in enumerate(self.widths):
            y = self.convs[i](x[:, :w] if self.depthwise else x)
            if self.bns is not None:
                y = self.bns[i](y)
            if w < self.max_width:
                y = F.pad(y, (0, 0, 0, 0, 0, self.max_width - w))
            y = y * gates[i]  # Eq. 1: g_i * zero-padded output of option i
            out = y if out is None else out + y
        if self.act is not None:
            out = self.act(out)
        return out

    def extra_repr(self):
        return f"decision={self.label!r}, widths={list(self.widths)}"


def to_conventional(supernet):
    """Replace every masked layer of `supernet` (in place) by a ConventionalChannel."""
    for parent, name, child in masked_layers(supernet):
        setattr(parent, name, ConventionalChannel(child))
    return supernet
