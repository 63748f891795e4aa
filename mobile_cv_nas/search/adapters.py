"""Search adapters: how each kind of block is searched, in one place per kind.

The supernet never asks a block its class. For every candidate op of a searchable block it
builds the op's module with the block registry (at the widest widths) and looks up the
adapter registered for that module's type in `SEARCH_OP_REGISTRY`. The adapter says

  * `build_options`: extra builder arguments for the widest candidate (e.g. `mid_channels`);
  * `mask`: which layers get a `MaskedChannel`, and from which width source; it returns the
    module to search (the block itself, its layers replaced, or a wrapper);
  * `identity`: whether the block passes its input on when input and output widths agree:
    "add" (a residual add, e.g. an inverted residual), "replace" (the block IS the identity
    then, e.g. `skip`), or None. The supernet applies it with weight
    P(in width == out width), so the one-hot supernet has a residual exactly where the
    derived block has one (see `channels.same_width_probability`);
  * `costs`: the effective cost of every conv / global pool of the block (Eq. 10);
  * `output_shape`: the effective output shape (default: strided by the block's stride);
  * `derive`: the arch-def row options of the argmax block (beyond op, out_channels, stride);
  * `inherit`: copying the supernet's weights into the derived block (default: the leading
    corner of every tensor, as the masks keep the first channels).

A user's block becomes searchable by registering an adapter (see the README):

    @SEARCH_OP_REGISTRY.register()
    class MyBlockAdapter(BlockAdapter):
        block_type = MyBlock
        def mask(self, block, ctx): ...   # returns the block, its layers masked
        def costs(self, block, ctx, shape): ...

`mobile_cv_nas.search.testing` checks an adapter: the derived model must compute the argmax
supernet at exactly its effective cost (`check_derived_computes_argmax_supernet`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import torch
import torch.nn as nn

from ..blocks import BLOCK_REGISTRY, InvertedPool, InvertedResidual, Skip
from ..blocks.inverted_residual import se_width
from ..layers import ConvBNAct
from .channels import (
    ChannelChoice,
    ChannelSource,
    ExpandedChannels,
    certain_same_width,
    same_width_probability,
)
from .effective_shape import Cost, EffectiveShape, global_pool_cost, layer_cost
from .gumbel import Decision
from .masked_channel import MaskedChannel
from .registry import SEARCH_OP_REGISTRY


class SearchAdapterError(TypeError):
    """A block that the search cannot handle; the message says what is missing."""


@dataclasses.dataclass(eq=False)
class BlockContext:
    """What an adapter knows of one candidate op of one supernet block."""

    name: str  # xif<stage>_<index>
    op: str
    stride: int
    in_width: ChannelChoice  # the block's input width (the previous block's output decision)
    out_width: ChannelChoice  # the block's output width decision
    expansion: Decision | None  # the block's expansion-rate decision; None: the op default
    width_divisor: int
    norm: Any = "bn"  # the supernet's norm (a name or a callable; see layers.build_norm)

    def __post_init__(self) -> None:
        if self.expansion is not None and BLOCK_REGISTRY.uses_expansion(self.op):
            rates = self.expansion
        else:  # the op's own default (IR 1, pool block 6); none for ops without expansion
            rates = BLOCK_REGISTRY.default_option(self.op, "expansion") or 1.0
        options = rates.options if isinstance(rates, Decision) else (rates,)
        # without expansion (every rate 1) the mid width is the input width itself
        self.mid_width: ChannelSource = (
            self.in_width
            if all(r == 1 for r in options)
            else ExpandedChannels(self.in_width, rates, self.width_divisor)
        )

    def same_width(self) -> float | torch.Tensor:
        """P(input width == output width) under the current gates (0 for a strided block)."""
        if self.stride != 1:
            return 0.0
        return same_width_probability(self.in_width, self.out_width)

    def always_same(self) -> bool:
        """Input and output widths agree whatever is sampled (so the block may be an identity)."""
        return self.stride == 1 and certain_same_width(self.in_width, self.out_width) == 1.0

    @staticmethod
    def mask(module: nn.Module, child: str, channels: ChannelSource, groups: int = 1) -> None:
        """Replace `module.<child>` (a conv-norm-act layer) by its masked form, unless the
        width it would mask is not searched."""
        if not channels.fixed:
            setattr(module, child, MaskedChannel(getattr(module, child), channels, groups))


class BlockAdapter:
    """How one kind of block (`block_type`) is searched; see the module doc."""

    block_type: type[nn.Module] | None = None
    identity: Literal["add", "replace"] | None = None

    def build_options(self, ctx: BlockContext) -> dict[str, Any]:
        """Extra builder arguments for the widest candidate."""
        return {}

    def mask(self, block: nn.Module, ctx: BlockContext) -> nn.Module:
        """Mask the block's searched layers (`ctx.mask`); return the module to search."""
        raise NotImplementedError

    def costs(
        self, block: nn.Module, ctx: BlockContext, shape: EffectiveShape
    ) -> list[tuple[nn.Module, Cost]]:
        """[(layer module, Cost)] of every conv / global pool, for an input of effective
        `shape` (use `layer_cost` and `global_pool_cost`)."""
        raise NotImplementedError

    def output_shape(
        self, block: nn.Module, ctx: BlockContext, shape: EffectiveShape
    ) -> EffectiveShape:
        """The effective output shape (default: strided by the block's stride, at the output
        width)."""
        return shape.strided(ctx.stride).with_channels(ctx.out_width.expected())

    def derive(self, block: nn.Module, ctx: BlockContext, in_channels: int) -> dict[str, Any]:
        """Arch-def row options of the argmax block beyond op, out_channels and stride;
        `in_channels` is the derived block's input width."""
        return {}

    def inherit(self, block: nn.Module, target: nn.Module, ctx: BlockContext) -> None:
        """Copy the supernet block's weights into the derived block `target` (default: the
        leading corner of every tensor)."""
        copy_leading_corner(target, block)


REQUIRED_METHODS = ("mask", "costs")


def adapter_for(module: nn.Module, op: str = "?") -> BlockAdapter:
    """The adapter registered for `module`'s type (the nearest class in its MRO)."""
    adapters = {}
    for _, adapter in SEARCH_OP_REGISTRY:
        adapter = adapter() if isinstance(adapter, type) else adapter
        if isinstance(adapter, BlockAdapter) and adapter.block_type is not None:
            adapters.setdefault(adapter.block_type, adapter)
    for cls in type(module).__mro__:
        if cls in adapters:
            adapter = adapters[cls]
            missing = [
                m for m in REQUIRED_METHODS if getattr(type(adapter), m) is getattr(BlockAdapter, m)
            ]
            if missing:
                raise SearchAdapterError(
                    f"The search adapter {type(adapter).__name__} of {cls.__name__} (op {op!r}) "
                    f"lacks {', '.join(f'{m}()' for m in missing)}: implement "
                    f"{' and '.join(missing)} (see mobile_cv_nas/search/adapters.py)."
                )
            if adapter.identity not in (None, "add", "replace"):
                raise SearchAdapterError(
                    f"{type(adapter).__name__}.identity must be None, 'add' or 'replace', got "
                    f"{adapter.identity!r}."
                )
            return adapter
    raise SearchAdapterError(
        f"Op {op!r} builds a {type(module).__name__}, which no search adapter handles, so it "
        f"cannot be searched. Register a BlockAdapter subclass with block_type = "
        f"{type(module).__name__} in SEARCH_OP_REGISTRY (it says how the block is masked and "
        f"what it costs; see the README, 'Searchable custom blocks')."
    )


# --------------------------------------------------------------------------- weight slicing


def copy_leading_corner(
    target: nn.Module,
    source: nn.Module,
    grouped: Mapping[str, int] | Iterable[tuple[str, int]] = (),
) -> None:
    """Copy into every tensor of `target`'s state_dict the leading corner of the tensor of the
    same name in `source` (masks keep the first channels). Names under a prefix in `grouped`
    (a {prefix: groups} mapping) are sliced per group along dim 0 (a grouped conv's blocks).
    Refuses a source smaller than its target in any dimension (that would broadcast)."""
    grouped = dict(grouped)
    source_state = source.state_dict()
    with torch.no_grad():
        for key, tensor in target.state_dict().items():
            if key not in source_state:
                if key.endswith("num_batches_tracked"):  # a frozen norm has no counter
                    continue
                raise KeyError(f"Cannot inherit {key!r}: the supernet block has no such tensor.")
            src = source_state[key]
            if tensor.dim() != src.dim() or any(
                t > s for t, s in zip(tensor.shape, src.shape, strict=True)
            ):
                raise ValueError(
                    f"Cannot inherit {key!r}: supernet shape {tuple(src.shape)} does not cover "
                    f"the derived shape {tuple(tensor.shape)} (slicing would broadcast)."
                )
            if tensor.dim() == 0:
                tensor.copy_(src)
                continue
            groups = next((g for p, g in grouped.items() if key.startswith(p)), 1)
            if groups > 1:
                src = _group_rows(src, tensor.shape[0], groups)
            tensor.copy_(src[tuple(slice(0, n) for n in tensor.shape)])


def _group_rows(src, rows, groups):
    """The first rows/groups rows of each of the `groups` row blocks of `src`."""
    full, keep = src.shape[0] // groups, rows // groups
    index = torch.cat([torch.arange(g * full, g * full + keep) for g in range(groups)])
    return src.index_select(0, index.to(src.device))


# --------------------------------------------------------------------------- built-in kinds


@SEARCH_OP_REGISTRY.register()
class InvertedResidualAdapter(BlockAdapter):
    """pw (mid width, per group when grouped), dw (mid), SE (its width from mid), pwl (out);
    the residual add is the supernet's (built without one)."""

    block_type = InvertedResidual
    identity = "add"

    def build_options(self, ctx):
        mid = ctx.mid_width
        return {
            "mid_channels": mid.max_channels,
            "force_pw": mid is not ctx.in_width,
            "residual": False,
        }

    def mask(self, block, ctx):
        mid = ctx.mid_width
        grouped = (block.pw is not None and block.pw.conv.groups > 1) or block.shuffle is not None
        if grouped and not ctx.in_width.fixed:
            raise SearchAdapterError(
                f"Op {ctx.op!r} in block {ctx.name}: its grouped 1x1 expansion / channel shuffle "
                f"sees the input width, which is searched here; a grouped conv over a narrower "
                f"input is not a masked wide one. Fix the input width (one channel option in the "
                f"block before) or leave the op out of this row."
            )
        if block.pwl.conv.groups > 1 and not (mid.fixed and ctx.out_width.fixed):
            raise SearchAdapterError(
                f"Op {ctx.op!r} in block {ctx.name}: a grouped 1x1 projection cannot be searched "
                f"over its widths; fix the block's widths or leave the op out of this row."
            )
        if block.pw is not None:
            ctx.mask(block, "pw", mid, groups=block.pw.conv.groups)
        ctx.mask(block, "dw", mid)
        if block.se is not None:
            ctx.mask(block.se.se, "0", self._se_width(ctx))
        ctx.mask(block, "pwl", ctx.out_width)
        return block

    def costs(self, block, ctx, shape):
        mid = ctx.mid_width.expected()
        layers = []
        if block.pw is not None:
            cost, shape = layer_cost(block.pw.conv, shape, shape.channels, mid)
            layers.append((block.pw.conv, cost))
        cost, shape = layer_cost(block.dw.conv, shape, mid, mid)
        layers.append((block.dw.conv, cost))
        if block.se is not None:
            se = self._se_width(ctx).expected()
            layers.append((block.se.avg_pool, global_pool_cost(shape)))
            cost, pooled = layer_cost(block.se.se[0].conv, shape.pooled(), mid, se)
            layers.append((block.se.se[0].conv, cost))
            layers.append((block.se.se[1], layer_cost(block.se.se[1], pooled, se, mid)[0]))
        cost, _ = layer_cost(block.pwl.conv, shape, mid, ctx.out_width.expected())
        layers.append((block.pwl.conv, cost))
        return layers

    @staticmethod
    def _se_width(ctx):
        """Squeeze-excite widths follow the mid width, by the builder's own rule."""
        return ctx.mid_width.mapped(functools.partial(se_width, width_divisor=ctx.width_divisor))

    def derive(self, block, ctx, in_channels):
        mid = ctx.mid_width.argmax()
        row = {"mid_channels": mid}
        if block.pw is not None and mid == in_channels:
            row["force_pw"] = True  # searched with an expansion conv; mid == in would drop it
        return row

    def inherit(self, block, target, ctx):
        groups = block.pw.conv.groups if block.pw is not None else 1
        copy_leading_corner(target, block, grouped={"pw.": groups} if groups > 1 else {})


@SEARCH_OP_REGISTRY.register()
class InvertedPoolAdapter(BlockAdapter):
    """pw (mid width), global pool, pwl (out width, no norm)."""

    block_type = InvertedPool

    def build_options(self, ctx):
        return {"mid_channels": ctx.mid_width.max_channels}

    def mask(self, block, ctx):
        ctx.mask(block, "pw", ctx.mid_width)
        ctx.mask(block, "pwl", ctx.out_width)
        return block

    def costs(self, block, ctx, shape):
        mid = ctx.mid_width.expected()
        pw, expanded = layer_cost(block.pw.conv, shape, shape.channels, mid)
        pwl, _ = layer_cost(block.pwl.conv, expanded.pooled(), mid, ctx.out_width.expected())
        return [(block.pw.conv, pw), (block.dw, global_pool_cost(expanded)), (block.pwl.conv, pwl)]

    def output_shape(self, block, ctx, shape):
        return shape.pooled().with_channels(ctx.out_width.expected())

    def derive(self, block, ctx, in_channels):
        return {"mid_channels": ctx.mid_width.argmax()}


@SEARCH_OP_REGISTRY.register()
class SkipAdapter(BlockAdapter):
    """The identity where widths agree; a 1x1 projection (out width) where they may not."""

    block_type = Skip
    identity = "replace"

    def build_options(self, ctx):
        return {"projection": not ctx.always_same()}

    def mask(self, block, ctx):
        if block.conv is not None:
            ctx.mask(block, "conv", ctx.out_width)
        return block

    def costs(self, block, ctx, shape):
        if block.conv is None:
            return []
        cost, _ = layer_cost(block.conv.conv, shape, shape.channels, ctx.out_width.expected())
        return [(block.conv.conv, cost)]


@SEARCH_OP_REGISTRY.register()
class ConvAdapter(BlockAdapter):
    """A plain conv-norm-act op: its output width is masked."""

    block_type = ConvBNAct

    def mask(self, block, ctx):
        return block if ctx.out_width.fixed else MaskedChannel(block, ctx.out_width)

    def costs(self, block, ctx, shape):
        cost, _ = layer_cost(block.conv, shape, shape.channels, ctx.out_width.expected())
        return [(block.conv, cost)]
