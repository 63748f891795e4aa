"""The expected latency of a supernet's current gates, differentiable in every alpha.

Each block's latency (its entry times the table's calibration scale, as `predict_latency`
counts it; the calibration's offset is added once, to the network's) is a function of the
decisions it depends on: its op, its input width (the previous block's output decision), its
expansion rate, its output width and the input resolution. Per block that is a constant tensor
LAT[op, in, rate, out, resolution] (or LAT[op, width, rate, resolution] where input and output
share one width decision), filled from the table (`configs.BlockAxes`); the classifier's is
LAT[in, resolution]. The decisions are independent, so the expected latency of a block is the
contraction of its tensor with the gates of its decisions,

    E[LAT_b] = sum_{o,i,e,j,r} LAT_b[o,i,e,j,r] g_op[o] g_in[i] g_rate[e] g_out[j] g_res[r]

(`torch.einsum`), and the network's is the sum over blocks: exact for the product
distribution the gates define (each block's decisions are distinct; the resolution is one
decision for all). The gates are whatever the decisions hold: the step's Gumbel-softmax ones,
softmax(alpha / tau) for the target loss (`cost_bounds.expected_cost`), one-hot ones for an
architecture's cost, where it is exactly `predict_latency` of the derived arch def.

`extreme` finds the cheapest (or dearest) architecture exactly, by dynamic programming along
the chain of width decisions, per resolution.
"""

from __future__ import annotations

import torch

from .configs import space_axes
from .errors import LatencyTableError


class SupernetLatency:
    """Expected latency (ms) of a supernet's current gates from a latency table."""

    def __init__(self, supernet, table):
        blocks = supernet.blocks()
        axes, head = space_axes(supernet.space, supernet.in_channels)
        if len(axes) != len(blocks):
            raise LatencyTableError("The supernet's blocks are not its space's blocks.")
        configs = {c for a in axes + [head] for _, c in a.configs()}
        table.check_covers(
            sorted(configs),
            f"search space {supernet.space.name!r}",
            "it was built for another space or num_classes/in_channels",
        )
        cache, scale = {}, table.scale

        def value(config):  # as predict_latency counts it: the entry times the scale
            if config not in cache:
                cache[config] = table.lookup(config) * scale
            return cache[config]

        self.table = table
        self.supernet_blocks = blocks
        self.axes = axes
        self.tensors = []
        for block, a in zip(blocks, axes, strict=True):
            self._check_alignment(supernet, block, a)
            lat = torch.zeros(a.shape(), dtype=torch.float64)
            for index, config in a.configs():
                lat[index] = value(config)
            self.tensors.append(lat)
        self.head_axes = head
        self.head_tensor = torch.tensor(
            [[value(head.config(0, i, 0, 0, r)) for r in range(len(head.sizes))]
             for i in range(len(head.in_widths))],
            dtype=torch.float64,
        )  # fmt: skip
        self._supernet = supernet
        self._on_device = {}

    @staticmethod
    def _check_alignment(supernet, block, axes):
        """The axes must be the decisions' options, in their order."""
        rates = list(block.expansion.options) if block.expansion is not None else [None]
        checks = [
            ("ops", list(block.op_choice.options), axes.ops),
            ("input widths", list(block.in_width.widths()), axes.in_widths),
            ("expansions", rates, axes.rates),
            ("output widths", list(block.out_width.widths()), axes.out_widths),
            ("shared widths", block.in_width is block.out_width, axes.shared),
            ("resolutions", len(supernet.resolution_choice.options), len(axes.sizes)),
        ]
        for what, have, want in checks:
            if have != want:
                raise LatencyTableError(
                    f"Block {block.name}: the supernet's {what} {have} are not its space's "
                    f"{want}; the latency of this supernet cannot be looked up."
                )

    def _tensor(self, index, device):
        key = (index, device)
        if key not in self._on_device:
            source = self.head_tensor if index == "head" else self.tensors[index]
            self._on_device[key] = source.to(device)
        return self._on_device[key]

    @staticmethod
    def _gates(decision):
        return decision.current_gates().double() if decision is not None else None

    def block_expected(self, index) -> torch.Tensor:
        """E[latency] of block `index` (ms, float64) under the current gates."""
        net = self._supernet
        block, axes = self.supernet_blocks[index], self.axes[index]
        g_op = self._gates(block.op_choice)
        g_in = block.in_width.width_gates().double()
        g_res = self._gates(net.resolution_choice)
        if block.expansion is not None:
            g_rate = self._gates(block.expansion)
        else:
            g_rate = torch.ones(1, dtype=torch.float64, device=g_op.device)
        lat = self._tensor(index, g_op.device)
        if axes.shared:
            return torch.einsum("oier,o,i,e,r->", lat, g_op, g_in, g_rate, g_res)
        g_out = block.out_width.width_gates().double()
        return torch.einsum("oiejr,o,i,e,j,r->", lat, g_op, g_in, g_rate, g_out, g_res)

    def head_expected(self) -> torch.Tensor:
        net = self._supernet
        g_in = self.supernet_blocks[-1].out_width.width_gates().double()
        g_res = self._gates(net.resolution_choice)
        return torch.einsum("ir,i,r->", self._tensor("head", g_in.device), g_in, g_res)

    def expected_ms(self) -> torch.Tensor:
        """E[latency] in ms (0-d float64 tensor), differentiable in every alpha the gates
        come from; the blocks summed in forward order, then the classifier."""
        total = self.block_expected(0) + self.table.offset_ms
        for index in range(1, len(self.tensors)):
            total = total + self.block_expected(index)
        return total + self.head_expected()

    # ---- the extreme architectures
    def extreme(self, cheapest=True):
        """(ms, {decision name: option index}) of the architecture of least (or most)
        latency, exactly: per resolution, a dynamic programme over the chain of width
        decisions, each block's op and rate picked best for its (input, output) widths.
        Only searched decisions (the supernet's `decisions`) are named."""
        net = self._supernet
        better = (lambda a, b: a < b) if cheapest else (lambda a, b: a > b)
        searched = set(net.decisions)
        best = None
        for r in range(len(net.resolution_choice.options)):
            # input-width option -> (ms so far, choices)
            states = {0: (self.table.offset_ms, {})}
            for block, axes, lat in zip(self.supernet_blocks, self.axes, self.tensors, strict=True):
                new = {}
                n_out = len(axes.in_widths) if axes.shared else len(axes.out_widths)
                for j in range(n_out):
                    for i, (so_far, choices) in states.items():
                        if axes.shared and i != j:
                            continue
                        cell = lat[:, i, :, r] if axes.shared else lat[:, i, :, j, r]
                        flat = int(cell.argmin() if cheapest else cell.argmax())
                        o, e = divmod(flat, cell.shape[1])
                        total = so_far + float(cell[o, e])
                        if j in new and not better(total, new[j][0]):
                            continue
                        picked = dict(choices)
                        picked[block.op_choice.name] = o
                        if block.expansion is not None:
                            picked[block.expansion.name] = e
                        picked[block.in_width.name] = i
                        picked[block.out_width.name] = j
                        new[j] = (total, picked)
                states = new
            for i, (so_far, choices) in states.items():
                total = so_far + float(self.head_tensor[i, r])
                if best is None or better(total, best[0]):
                    best = (total, dict(choices, resolution=r))
        ms, choices = best
        return ms, {name: index for name, index in choices.items() if name in searched}
