"""The DMaskingNAS supernet: plain blocks from the block registry, at their widest, made
searchable by their adapters (channel masks), with an input-resolution sampler around them.

Decisions (all `Decision` modules, registered once: searched ones in `decisions`, one-option
ones in `fixed_decisions`):
  * `op:<block>`         micro choice of a block (conventional DNAS over ops, Gumbel-weighted)
  * `expansion:<block>`  expansion rate of the block, shared by its candidates that expand;
                         mid width = rate x the block's input width (see `channels.py`)
  * `out:<n>`            output width; one per block, or per run of blocks (the space's
                         `channel_decisions`, see `space.py`)
  * `resolution`         input resolution, one for the whole network
A block's input width is the previous block's output decision.

Sampling (`sampling`, the config's NAS.SAMPLING):
  * "mixture" (the paper): every candidate op of a block and every input resolution runs,
    weighted by the Gumbel-softmax gates;
  * "single_path" (GDAS, Dong & Yang 2019): where the sampler draws soft gates, `sample()`
    draws hard ones instead, one-hot(argmax((alpha + G) / tau)) forward with the gradient of
    the soft gates (straight-through), from the same noise. Only the sampled op of each block
    and the sampled resolution run, forward and backward (a candidate whose gate is exactly
    0 is skipped); the alphas get their gradient through the sampled options' gates. Channel
    and expansion masks are computed from the gates as in the mixture (one-hot masks).
    Every rank draws its own noise (gumbel.py), so under DDP each rank runs its own path and
    the weights of candidates no rank sampled get no gradient: wrap the model with
    find_unused_parameters=True.

State: `state_dict()` holds the weights, every alpha, and the sampler's temperature, mode and
noise position (extra state), so a reloaded supernet samples exactly the gates the original
would have sampled next.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .adapters import SearchAdapterError
from .channels import ChannelChoice
from .effective_shape import Cost, EffectiveShape, conv_cost, global_pool_cost, roll_up
from .gumbel import Decision, GumbelSampler
from .resolution_sampler import ResolutionSampler
from .search_block import SearchBlock
from .space import SearchSpace, SearchSpaceError, as_search_space

SAMPLINGS = ("mixture", "single_path")


class SearchHead(nn.Module):
    """Global average pool + 1x1 conv classifier, averaging only over real pixels.

    With resolution search the last feature map holds the small map's pixels interspersed
    with zeros; dividing by the effective pixel count makes the average that of the small map.
    """

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.avg_pool = PixelAverage()
        self.conv = nn.Conv2d(in_channels, num_classes, 1, bias=True)

    def forward(self, x, pixels=None):
        return self.conv(self.avg_pool(x, pixels)).flatten(1)


class PixelAverage(nn.Module):
    """Global average over `pixels` real pixels (all of them when None)."""

    def forward(self, x, pixels=None):
        if pixels is None or x.shape[-2:] == (1, 1):
            return x.mean((2, 3), keepdim=True)
        return x.sum((2, 3), keepdim=True) / pixels


class SearchBackbone(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.stages = nn.Sequential(collections.OrderedDict((b.name, b) for b in blocks))

    def forward(self, x):
        return self.stages(x)


class Supernet(nn.Module):
    """A supernet over a search space (a `SearchSpace`, mapping, shipped name or YAML path).

    `forward` samples every decision once (unless `auto_sample` is False) and returns logits;
    `effective_cost()` then gives the expected FLOPs/params of that sample (differentiable in
    every alpha); `cost()` the one named by the space (`flops` or `params`).

    `in_channels` (default: the space's) is the number of image channels; `norm` (a name or
    callable, see `mobile_cv_nas.layers.norm`) is every block's norm layer; `latency_table`
    (a `latency.LatencyTable` or its path, see `set_latency_table`) adds the expected latency
    to `effective_cost()`.
    """

    def __init__(
        self,
        space: SearchSpace | dict[str, Any] | str | os.PathLike,
        sampler: GumbelSampler | None = None,
        in_channels: int | None = None,
        norm: str | Callable[[int], nn.Module] | None = "bn",
        sampling: str = "mixture",
        latency_table: Any = None,
    ) -> None:
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"Unknown sampling {sampling!r}: use one of {', '.join(SAMPLINGS)}.")
        self.sampling = sampling
        space = as_search_space(space)
        self.space = space
        self.sampler = GumbelSampler() if sampler is None else sampler
        self.auto_sample = True
        self.in_channels = space.in_channels if in_channels is None else in_channels
        self.norm = norm
        self.decisions = nn.ModuleDict()
        self.fixed_decisions = nn.ModuleDict()  # one-option decisions: moved with .to()

        def register(decision):
            target = self.fixed_decisions if decision.fixed else self.decisions
            target[decision.name] = decision
            return decision

        resolutions = sorted(space.resolutions, reverse=True)
        resolution = register(Decision(resolutions, name="resolution"))
        blocks = []
        current = register(ChannelChoice([self.in_channels], name="input"))
        out_widths = {}
        total_stride = 1
        for spec in space.blocks():
            if spec.decision_id not in out_widths:
                name = f"out:{spec.decision_id}"
                out_widths[spec.decision_id] = register(ChannelChoice(spec.channels, name=name))
            out_width = out_widths[spec.decision_id]
            op_choice = register(Decision(spec.ops, name=f"op:{spec.name}"))
            expansion = None
            if spec.expansions:
                expansion = register(Decision(spec.expansions, name=f"expansion:{spec.name}"))
            try:
                block = SearchBlock(
                    spec, current, out_width, op_choice, expansion, space.width_divisor, norm
                )
            except SearchAdapterError as e:
                raise SearchSpaceError(f"{space.where(spec)}: {e}") from None
            blocks.append(block)
            current = out_width
            total_stride *= spec.stride
        self.backbone = SearchBackbone(blocks)
        self.head = SearchHead(current.max_channels, space.num_classes)
        self.total_stride = total_stride
        self.__dict__["resolution_sampler"] = (  # no parameters of its own
            None if resolution.fixed else ResolutionSampler(self.backbone, resolution, total_stride)
        )
        single_path = sampling == "single_path"
        for block in blocks:
            block.single_path = single_path
        if self.resolution_sampler is not None:
            self.resolution_sampler.single_path = single_path
        self.latency = None  # a latency.SupernetLatency once a table is set
        self.latency_warnings: list[str] = []
        if latency_table is not None:
            self.set_latency_table(latency_table)

    def set_latency_table(self, table, check=True, space_arg=None):
        """Use `table` (a LatencyTable or a path) for the latency cost. With `check`, the table
        must fit this supernet's space (`latency.check_table`: LatencyTableError otherwise);
        its warnings (another torch version) are kept in `latency_warnings`. `space_arg`: how
        a rebuild command names the space (a search's NAS.SPACE)."""
        from .latency import LatencyTable, SupernetLatency, check_table

        if not isinstance(table, LatencyTable):
            table = LatencyTable.load(table)
        if check:
            self.latency_warnings = check_table(
                table, self.space, in_channels=self.in_channels, space_arg=space_arg
            )
        self.latency = SupernetLatency(self, table)
        return self.latency

    @property
    def resolution_choice(self) -> Decision:
        """The input-resolution decision (registered once, in `decisions` or
        `fixed_decisions`)."""
        if "resolution" in self.decisions:
            return self.decisions["resolution"]
        return self.fixed_decisions["resolution"]

    def blocks(self) -> list[SearchBlock]:
        """The `SearchBlock`s in forward order."""
        return list(self.backbone.stages.children())

    # ---- sampling ----
    def sample(self):
        """Draw this step's gates for every decision (one noise step of the sampler); hard
        gates instead of soft ones when sampling a single path."""
        self.sampler.begin_step()
        single = self.sampling == "single_path" and self.sampler.mode == "soft"
        mode = "hard" if single else None
        for decision in self.decisions.values():
            decision.sample(self.sampler, mode)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The alphas (optimised by Adam on the held-out split)."""
        return [d.alpha for d in self.decisions.values()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything but the alphas (optimised by SGD)."""
        alphas = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in alphas]

    @property
    def max_resolution(self) -> int:
        return max(self.resolution_choice.options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.auto_sample:
            self.sample()
        if self.resolution_sampler is None:
            return self.head(self.backbone(x))
        features = self.resolution_sampler(x)
        return self.head(features, self.resolution_sampler.effective_pixels())

    # ---- costs ----
    def _input_shape(self):
        """The effective shape of the input image under the current resolution gates."""
        gates = self.resolution_choice.current_gates().double()
        r = self.resolution_choice.options
        channels = torch.tensor(float(self.in_channels), dtype=gates.dtype, device=gates.device)
        return EffectiveShape(channels, [(s, s) for s in r], gates)

    def block_input_shapes(self) -> list[tuple[SearchBlock, EffectiveShape]]:
        """[(block, its input EffectiveShape)] in forward order, for the current gates. A
        block's output shape does not depend on its op gates, so these hold whatever op each
        block picks."""
        shape, pairs = self._input_shape(), []
        for block in self.blocks():
            pairs.append((block, shape))
            shape, _ = block.layer_costs(shape)
        return pairs

    def _layer_costs(self):
        """[(layer module, Cost)] for every conv and global pool, in forward order:
        effective-shape propagation through the network (Eq. 4-10) for the current gates."""
        shape = self._input_shape()
        layers = []
        for block in self.blocks():
            shape, block_layers = block.layer_costs(shape)
            layers.extend(block_layers)
        classes = self.space.num_classes
        layers.append((self.head.avg_pool, global_pool_cost(shape)))
        layers.append((self.head.conv, conv_cost(shape.pooled(), shape.channels, classes)))
        return layers

    def layer_costs(self) -> list[tuple[str, Cost]]:
        """[(qualified layer name, Cost)] for every conv and global pool, in forward order."""
        names = {m: n for n, m in self.named_modules()}
        return [(names[layer], cost) for layer, cost in self._layer_costs()]

    def effective_cost(self, by_module: bool = False) -> Cost | tuple[Cost, dict[str, Cost]]:
        """Expected FLOPs/params of the current gates (published convention, float64), and
        the expected latency in ns when a latency table is set, differentiable in every alpha;
        with `by_module`, also a {module name: Cost} for every module and its ancestors (the
        latency only in the total, "")."""
        if by_module:
            per_module = roll_up(self.layer_costs())
            per_module[""] = self._with_latency(per_module[""])
            return per_module[""], per_module
        layers = self._layer_costs()
        total = layers[0][1]
        for _, cost in layers[1:]:
            total = total + cost
        return self._with_latency(total)

    def _with_latency(self, cost):
        if self.latency is None:
            return cost
        return Cost(cost.flops, cost.params, self.latency.expected_ms() * 1e6)

    def cost(self) -> torch.Tensor:
        """The cost term of the loss: effective FLOPs or params, as the space says."""
        total = self.effective_cost()
        return total.flops if self.space.cost == "flops" else total.params
