"""The DMaskingNAS supernet: plain blocks from the block registry, at their widest, with
channel masks and an input-resolution sampler around them.

Decisions (all `Decision` modules, registered once in `Supernet.decisions`):
  * `op:<block>`        micro choice of a block (conventional DNAS over ops, Gumbel-weighted)
  * `mid:<block>`       expansion (mid) width of the block, shared by its IR candidates
  * `out:<n>`           output width, shared by all blocks joined by residual adds
  * `resolution`        input resolution, one for the whole network
A block's input width is the previous block's output decision; a residual add (or an
identity skip) is used only where input and output share one decision, so masks agree.
Mid widths are the space's expansion rates applied to the widest input.
"""

import collections

import torch
import torch.nn as nn

from ..blocks import BLOCK_REGISTRY, InvertedPool, InvertedResidual, Skip
from ..layers import ConvBNAct, make_divisible
from ..blocks.inverted_residual import se_width
from .effective_shape import (
    EffectiveShape,
    conv_cost,
    global_pool_cost,
)
from .gumbel import Decision, GumbelSampler
from .masked_channel import ChannelChoice, MaskedChannel
from .resolution_sampler import ResolutionSampler
from .space import load_search_space, parse_search_space


def _default_expansion(ops):
    """The expansion a row without `expansion` gets: its ops' builder default (IR 1, pool 6)."""
    defaults = [BLOCK_REGISTRY.default_option(op, "expansion") for op in ops]
    return max([e for e in defaults if isinstance(e, (int, float))] or [1.0])


def _mask(module, name, choice, widths=None):
    """Replace child `name` of `module` by its MaskedChannel form when `choice` is searched."""
    if not choice.fixed:
        setattr(module, name, MaskedChannel(getattr(module, name), choice, widths))


class SearchBlock(nn.Module):
    """One searchable block: a candidate module per op, summed with the op gates.

    Every BatchNorm whose channels are searched is masked after it (a BN in training mode
    would otherwise renormalise zeroed channels back to its bias).
    """

    def __init__(self, spec, in_choice, out_choice, op_choice, mid_choice, width_divisor):
        super().__init__()
        self.spec = spec
        self.stride = spec.stride
        self.width_divisor = width_divisor
        for name, value in (("in_choice", in_choice), ("out_choice", out_choice),
                            ("op_choice", op_choice), ("mid_choice", mid_choice)):
            self.__dict__[name] = value  # registered once by the supernet
        self.chained = in_choice is out_choice and spec.stride == 1
        self.candidates = nn.ModuleDict()
        for op in spec.ops:
            self.candidates[op] = self._build_candidate(op)

    @property
    def name(self):
        return f"xif{self.spec.stage}_{self.spec.index}"

    def _build_candidate(self, op):
        cin, cout = self.in_choice.max_channels, self.out_choice.max_channels
        builder = BLOCK_REGISTRY.get(op)
        accepted = BLOCK_REGISTRY.accepted_options(op) or set()
        kwargs = {"stride": self.stride}
        if "width_divisor" in accepted:
            kwargs["width_divisor"] = self.width_divisor
        if "projection" in accepted:  # skip
            module = builder(cin, cout, projection=not self.chained, **kwargs)
            if module.conv is not None:
                _mask(module, "conv", self.out_choice)
            return module
        if "mid_channels" in accepted:
            mid = self.mid_choice.max_channels
            kwargs["mid_channels"] = mid
            if "force_pw" in accepted:
                kwargs.update(force_pw=mid != cin or not self.mid_choice.fixed,
                              residual=self.chained)
            return self._mask_expanding(builder(cin, cout, **kwargs))
        module = builder(cin, cout, **kwargs)
        if isinstance(module, ConvBNAct):
            return module if self.out_choice.fixed else MaskedChannel(module, self.out_choice)
        raise TypeError(
            f"Op {op!r} builds a {type(module).__name__}, which the supernet cannot search; "
            f"searchable ops build InvertedResidual, InvertedPool, Skip or ConvBNAct."
        )

    def mid_source(self, module):
        """The decision that sets a candidate's mid width: its own, or the input's if no pw."""
        return self.mid_choice if module.pw is not None else self.in_choice

    def se_widths(self, source):
        return [se_width(m, self.width_divisor) for m in source.options]

    def _mask_expanding(self, module):
        if isinstance(module, InvertedResidual):
            source = self.mid_source(module)
            if module.pw is not None:
                _mask(module, "pw", source)
            _mask(module, "dw", source)
            if module.se is not None:
                _mask(module.se.se, "0", source, self.se_widths(source))
            _mask(module, "pwl", self.out_choice)
        elif isinstance(module, InvertedPool):
            _mask(module, "pw", self.mid_choice)
            _mask(module, "pwl", self.out_choice)
        return module

    def forward(self, x):
        if len(self.candidates) == 1:
            return next(iter(self.candidates.values()))(x)
        gates = self.op_choice.current_gates()
        out = None
        for gate, candidate in zip(gates, self.candidates.values()):
            if not gates.requires_grad and float(gate) == 0.0:
                continue  # argmax evaluation: skip ops that contribute nothing
            y = candidate(x) * gate
            out = y if out is None else out + y
        return out

    # ---- effective shape propagation (Eq. 4-10) ----
    def output_shape(self, shape):
        first = next(iter(self.candidates.values()))
        out = shape.pooled() if isinstance(first, InvertedPool) else shape.strided(self.stride)
        return out.with_channels(self.out_choice.expected())

    def layer_costs(self, shape):
        """(output effective shape, [(layer, Cost)]): the expected cost of every conv and
        global pool of the block, candidates weighted by their op gates (Eq. 10)."""
        out_c = self.out_choice.expected()
        gates = self.op_choice.current_gates()
        layers = []
        for gate, candidate in zip(gates, self.candidates.values()):
            for layer, cost in self._candidate_costs(candidate, shape, out_c):
                layers.append((layer, cost if len(self.candidates) == 1 else cost.scaled(gate)))
        return self.output_shape(shape), layers

    def _candidate_costs(self, module, shape, out_c):
        cin = shape.channels
        out_shape = shape.strided(self.stride)
        if isinstance(module, Skip):
            return [] if module.conv is None else [(module.conv.conv, conv_cost(out_shape, cin, out_c))]
        if isinstance(module, InvertedResidual):
            source = self.mid_source(module)
            mid = source.expected()
            costs = []
            if module.pw is not None:
                costs.append((module.pw.conv, conv_cost(shape, cin, mid, 1, groups=module.pw.conv.groups)))
            costs.append((module.dw.conv, conv_cost(out_shape, mid, mid, module.kernel_size, groups="depthwise")))
            if module.se is not None:
                se = source.expected(self.se_widths(source))
                pooled = out_shape.pooled()
                costs.append((module.se.avg_pool, global_pool_cost(out_shape.with_channels(mid))))
                costs.append((module.se.se[0].conv, conv_cost(pooled, mid, se)))
                costs.append((module.se.se[1], conv_cost(pooled, se, mid)))
            costs.append((module.pwl.conv, conv_cost(out_shape, mid, out_c, 1, groups=module.pwl.conv.groups)))
            return costs
        if isinstance(module, InvertedPool):
            mid = self.mid_choice.expected()
            return [
                (module.pw.conv, conv_cost(shape, cin, mid)),
                (module.dw, global_pool_cost(shape.with_channels(mid))),
                (module.pwl.conv, conv_cost(shape.pooled(), mid, out_c)),
            ]
        conv = module.conv
        return [(conv, conv_cost(out_shape, cin, out_c, conv.kernel_size[0], groups=conv.groups))]

    def chosen(self):
        """(op, candidate module) with the largest op logit."""
        op = self.op_choice.argmax()
        return op, self.candidates[op]


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
    """A supernet over a search space (a `SearchSpace`, mapping, name or YAML path).

    `forward` samples every decision once (unless `auto_sample` is False) and returns logits;
    `effective_cost()` then gives the expected FLOPs/params of that sample (differentiable in
    every alpha); `cost()` the one named by the space (`flops` or `params`).
    """

    def __init__(self, space, sampler=None, in_channels=3):
        super().__init__()
        if isinstance(space, (str, bytes)) or hasattr(space, "__fspath__"):
            space = load_search_space(space)
        elif isinstance(space, dict):
            space = parse_search_space(space)
        self.space = space
        self.sampler = sampler or GumbelSampler()
        self.auto_sample = True
        self.decisions = nn.ModuleDict()
        self.in_channels = in_channels
        d = space.width_divisor

        self.fixed_decisions = nn.ModuleDict()  # one-option decisions: moved with .to()

        def register(decision):
            target = self.fixed_decisions if decision.fixed else self.decisions
            target[decision.name] = decision
            return decision

        resolutions = sorted(space.resolutions, reverse=True)
        self.resolution_choice = register(Decision(resolutions, name="resolution"))

        blocks = []
        current = register(ChannelChoice([in_channels], name="input"))
        out_choices = {}
        total_stride = 1
        for spec in space.blocks():
            name = f"xif{spec.stage}_{spec.index}"
            if spec.decision_id not in out_choices:
                out_choices[spec.decision_id] = register(
                    ChannelChoice(spec.channels, name=f"out:{spec.decision_id}")
                )
            out_choice = out_choices[spec.decision_id]
            op_choice = register(Decision(spec.ops, name=f"op:{name}"))
            expansions = spec.expansions or [_default_expansion(spec.ops)]
            mids = {make_divisible(current.max_channels * e, d) for e in expansions}
            mid_choice = register(ChannelChoice(mids, name=f"mid:{name}"))
            block = SearchBlock(spec, current, out_choice, op_choice, mid_choice, d)
            blocks.append(block)
            current = out_choice
            total_stride *= spec.stride
        self.backbone = SearchBackbone(blocks)
        self.head = SearchHead(current.max_channels, space.num_classes)
        self.total_stride = total_stride
        self.__dict__["resolution_sampler"] = (  # no parameters of its own
            None
            if self.resolution_choice.fixed
            else ResolutionSampler(self.backbone, self.resolution_choice, total_stride)
        )

    # ---- sampling ----
    def sample(self):
        for decision in self.decisions.values():
            decision.sample(self.sampler)

    def arch_parameters(self):
        """The alphas (optimised by Adam on the held-out split)."""
        return [d.alpha for d in self.decisions.values()]

    def weight_parameters(self):
        """Everything but the alphas (optimised by SGD)."""
        alphas = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in alphas]

    @property
    def max_resolution(self):
        return max(self.resolution_choice.options)

    def forward(self, x):
        if self.auto_sample:
            self.sample()
        if self.resolution_sampler is None:
            return self.head(self.backbone(x))
        features = self.resolution_sampler(x)
        return self.head(features, self.resolution_sampler.effective_pixels())

    # ---- costs ----
    def _layer_costs(self):
        """[(layer module, Cost)] for every conv and global pool, in forward order:
        effective-shape propagation through the network (Eq. 4-10) for the current gates."""
        gates = self.resolution_choice.current_gates()
        one = torch.ones((), dtype=gates.dtype, device=gates.device)
        r = self.resolution_choice.options
        shape = EffectiveShape(one * self.in_channels, [(s, s) for s in r], gates)
        layers = []
        for block in self.backbone.stages.children():
            shape, block_layers = block.layer_costs(shape)
            layers.extend(block_layers)
        layers.append((self.head.avg_pool, global_pool_cost(shape)))
        layers.append((self.head.conv, conv_cost(shape.pooled(), shape.channels, self.space.num_classes)))
        return layers

    def layer_costs(self):
        """[(qualified layer name, Cost)] for every conv and global pool, in forward order."""
        names = {m: n for n, m in self.named_modules()}
        return [(names[layer], cost) for layer, cost in self._layer_costs()]

    def effective_cost(self, by_module=False):
        """Expected FLOPs/params of the current gates (published convention), differentiable
        in every alpha; with `by_module`, also a {module name: Cost} for every ancestor."""
        layers = self.layer_costs() if by_module else self._layer_costs()
        total = layers[0][1]
        for _, cost in layers[1:]:
            total = total + cost
        if not by_module:
            return total
        per_module = collections.OrderedDict()
        for name, cost in layers:
            parts = name.split(".")
            for i in range(len(parts) + 1):
                key = ".".join(parts[:i])
                per_module[key] = per_module[key] + cost if key in per_module else cost
        return total, per_module

    def cost(self):
        total = self.effective_cost()
        return total.flops if self.space.cost == "flops" else total.params
