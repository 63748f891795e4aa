"""One block of the supernet: a candidate module per op, summed with the op gates (the op
choice is a conventional DNAS mixture, as in the paper), each made searchable by its adapter.

Where the input and output widths may agree (stride 1), the block passes its input on with
weight p = P(in width == out width): an "add" candidate (inverted residual) returns
body(x) + p x, a "replace" candidate (skip) returns (1 - p) body(x) + p x. With one-hot gates p
is 0 or 1, so the supernet has a residual exactly where the derived block has one; when the
input and output share one width decision p is exactly 1, when they cannot agree exactly 0.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arch.schema import block_name
from ..blocks import BLOCK_REGISTRY
from .adapters import BlockContext, SearchAdapterError, adapter_for


def _fit_channels(x, channels):
    """`x` with `channels` channels: zero-padded or cut (only masked-out channels are cut)."""
    have = x.shape[1]
    if have == channels:
        return x
    if have < channels:
        return F.pad(x, (0, 0, 0, 0, 0, channels - have))
    return x[:, :channels]


def build_candidate(ctx):
    """The op's module at the widest widths, made searchable by its adapter: (module, adapter)."""
    builder = BLOCK_REGISTRY.get(ctx.op)
    base = {"stride": ctx.stride, "width_divisor": ctx.width_divisor, "norm": ctx.norm}
    cin, cout = ctx.in_width.max_channels, ctx.out_width.max_channels
    try:
        with torch.device("meta"):  # only its type is needed, to find its adapter
            probe = builder(cin, cout, **BLOCK_REGISTRY.select_options(ctx.op, base))
    except Exception:  # a builder that needs real tensors: probe on the CPU
        probe = builder(cin, cout, **BLOCK_REGISTRY.select_options(ctx.op, base))
    adapter = adapter_for(probe, ctx.op)
    extra = adapter.build_options(ctx)
    untaken = [k for k in extra if not BLOCK_REGISTRY.takes_option(ctx.op, k)]
    if untaken:
        raise SearchAdapterError(
            f"Op {ctx.op!r}: its search adapter {type(adapter).__name__} builds the widest "
            f"candidate with {untaken}, which the op's builder does not take; add them to the "
            f"builder's arguments."
        )
    module = builder(cin, cout, **BLOCK_REGISTRY.select_options(ctx.op, base), **extra)
    return adapter.mask(module, ctx), adapter


class SearchBlock(nn.Module):
    single_path = False  # set by the supernet: run only the candidates with a nonzero gate

    def __init__(self, spec, in_width, out_width, op_choice, expansion, width_divisor, norm="bn"):
        super().__init__()
        self.spec = spec
        self.stride = spec.stride
        # decisions are registered once, by the supernet
        self.__dict__.update(
            in_width=in_width, out_width=out_width, op_choice=op_choice, expansion=expansion
        )
        self.candidates = nn.ModuleDict()
        self.__dict__["contexts"], self.__dict__["adapters"] = {}, {}
        for op in spec.ops:
            ctx = BlockContext(
                self.name, op, spec.stride, in_width, out_width, expansion, width_divisor, norm
            )
            self.candidates[op], self.adapters[op] = build_candidate(ctx)
            self.contexts[op] = ctx

    @property
    def name(self):
        return block_name(self.spec.stage, self.spec.index)

    def same_width(self):
        return next(iter(self.contexts.values())).same_width()

    def _run(self, op, x, p):
        candidate, identity = self.candidates[op], self.adapters[op].identity
        if identity is None or (isinstance(p, float) and p == 0.0):
            return candidate(x)
        passed = _fit_channels(x, self.out_width.max_channels)
        if identity == "replace":
            if isinstance(p, float) and p == 1.0:
                return passed
            return (1 - p) * candidate(x) + p * passed
        return candidate(x) + p * passed

    def forward(self, x):
        p = self.same_width()
        if len(self.candidates) == 1:
            return self._run(self.spec.ops[0], x, p)
        gates = self.op_choice.current_gates()
        out = None
        for gate, op in zip(gates, self.candidates, strict=True):
            if (self.single_path or not gates.requires_grad) and float(gate.detach()) == 0:
                continue  # argmax evaluation or single path: skip ops that contribute nothing
            y = self._run(op, x, p) * gate
            out = y if out is None else out + y
        return out

    # ---- effective shape propagation (Eq. 4-10) ----
    def layer_costs(self, shape):
        """(output effective shape, [(layer, Cost)]): the expected cost of every conv and
        global pool of the block, candidates weighted by their op gates (Eq. 10)."""
        p = self.same_width()
        gates = self.op_choice.current_gates()
        layers = []
        for gate, op in zip(gates, self.candidates, strict=True):
            if not torch.is_grad_enabled() and float(gate) == 0:
                continue  # costs of one-hot gates (derivation): a zero share adds nothing
            adapter, ctx = self.adapters[op], self.contexts[op]
            weight = gate if len(self.candidates) > 1 else None
            if adapter.identity == "replace" and not (isinstance(p, float) and p == 0.0):
                weight = (1 - p) if weight is None else weight * (1 - p)
            for layer, cost in adapter.costs(self.candidates[op], ctx, shape):
                layers.append((layer, cost if weight is None else cost.scaled(weight)))
        op = self.spec.ops[0]
        out_shape = self.adapters[op].output_shape(self.candidates[op], self.contexts[op], shape)
        return out_shape, layers

    # ---- derivation ----
    def chosen_op(self):
        return self.op_choice.argmax()

    def derive_row(self, in_channels):
        """(arch-def row of the argmax block, its output width), given its input width."""
        op = self.chosen_op()
        out = self.out_width.argmax()
        row = {"op": op, "out_channels": out}
        if self.stride != 1:
            row["stride"] = self.stride
        row.update(self.adapters[op].derive(self.candidates[op], self.contexts[op], in_channels))
        return row, out

    def inherit_into(self, target):
        """Copy the argmax candidate's weights into `target`, the derived block."""
        op = self.chosen_op()
        self.adapters[op].inherit(self.candidates[op], target, self.contexts[op])
