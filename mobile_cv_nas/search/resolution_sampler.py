"""Resolution search by subsampling (FBNetV2 Sec. 3.2, Fig. 2, 4, 5).

For each input-resolution option r_i the input is nearest-neighbour subsampled to r_i, the
wrapped module runs on the small map, and its output is scattered back into the full-size
output grid at the pixels it came from, zeros elsewhere (interspersed zero padding, not
periphery padding), then the options are summed with their Gumbel weights. Receptive fields
stay those of the small map; the cost of option i is that of running at r_i.
"""

import math

import torch
import torch.nn as nn


def subsample_indices(full, small, device=None):
    """Nearest-neighbour source index of each of `small` samples out of `full`."""
    return torch.div(torch.arange(small, device=device) * full, small, rounding_mode="floor")


def scatter_positions(full, small, stride, device=None):
    """Where output pixel j (of the run at `small`) sits in the full-resolution output grid.

    Output pixel j looks at subsampled input pixel j * stride, which came from full input
    pixel floor(j * stride * full / small); in the full output that is that // stride.
    """
    j = torch.arange(math.ceil(small / stride), device=device)
    return torch.div(
        torch.div(j * stride * full, small, rounding_mode="floor"), stride, rounding_mode="floor"
    )


class ResolutionSampler(nn.Module):
    """Wrap `module` (total stride `stride`) with a decision over input resolutions.

    The input must be at the largest option. Options with gate exactly 0 and no gradient
    (argmax evaluation), or with gate exactly 0 at all when `single_path` (set by the
    supernet), are not run.
    """

    single_path = False

    def __init__(self, module, choice, stride):
        super().__init__()
        self.module = module
        self.__dict__["choice"] = choice  # registered once by the supernet
        self.stride = stride
        self.resolutions = tuple(choice.options)
        self.active_gate = None

    @property
    def max_resolution(self):
        return max(self.resolutions)

    def output_size(self, resolution):
        return math.ceil(resolution / self.stride)

    def forward(self, x):
        full_h, full_w = (int(s) for s in x.shape[-2:])
        if max(full_h, full_w) != self.max_resolution:
            raise ValueError(
                f"ResolutionSampler expects inputs at the largest option "
                f"{self.max_resolution}, got {tuple(x.shape[-2:])}."
            )
        gates = self.choice.current_gates()
        out = None
        self._output_pixels = []
        for i, r in enumerate(self.resolutions):
            rh = round(r * full_h / self.max_resolution)
            rw = round(r * full_w / self.max_resolution)
            self._output_pixels.append(self.output_size(rh) * self.output_size(rw))
            if (self.single_path or not gates.requires_grad) and float(gates[i].detach()) == 0:
                continue
            small = x
            if (rh, rw) != (full_h, full_w):
                small = x.index_select(2, subsample_indices(full_h, rh, x.device))
                small = small.index_select(3, subsample_indices(full_w, rw, x.device))
            self.active_gate = gates[i]  # read by the effective-cost analysis
            y = self.module(small) * gates[i]
            if out is None:
                out_h = 1 if y.shape[-2] == 1 else self.output_size(full_h)
                out_w = 1 if y.shape[-1] == 1 else self.output_size(full_w)
                out = y.new_zeros(y.shape[0], y.shape[1], out_h, out_w)
            ph = scatter_positions(full_h, rh, self._stride_for(y, rh), x.device)
            pw = scatter_positions(full_w, rw, self._stride_for(y, rw, dim=-1), x.device)
            out = _scatter_add(out, y, ph, pw)
        self.active_gate = None
        return out

    def _stride_for(self, y, size, dim=-2):
        # a module ending in a global pool has one output pixel whatever the input
        return size if y.shape[dim] == 1 else self.stride

    def effective_pixels(self):
        """sum_i g_i h_i w_i of the wrapped module's (spatial) output in the last forward: the
        pooling denominator that makes a global average over the scattered map equal the
        small map's average."""
        gates = self.choice.current_gates()
        sizes = getattr(self, "_output_pixels", None) or [
            self.output_size(r) ** 2 for r in self.resolutions
        ]
        return (gates * torch.as_tensor(sizes, dtype=gates.dtype, device=gates.device)).sum()


def _scatter_add(out, y, ph, pw):
    """out + y placed at rows ph, columns pw (interspersed); differentiable in y."""
    index = (slice(None), slice(None), ph[:, None], pw[None, :])
    placed = torch.zeros_like(out)
    placed[index] = y
    return out + placed
