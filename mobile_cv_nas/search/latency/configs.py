"""Block configurations: what one latency-table entry measures, and every configuration a
search space (or a plain arch def) can produce.

A configuration is one module run alone at one input size: a block of the arch-def schema (op,
input, output and mid widths, stride, input resolution), or the classifier (global pool + 1x1
conv, op `classifier`). Its canonical key is the table's entry name, e.g.

    ir_k5_se_hs|in=24|out=40|s=2|hw=28|mid=72      an inverted residual with an expansion conv
    ir_k3|in=16|out=16|s=1|hw=112                  no expansion conv (mid = in)
    skip|in=40|out=40|s=1|hw=14                    an identity
    conv_k3_hs|in=3|out=16|s=2|hw=224               the stem
    classifier|in=1984|out=1000|s=1|hw=7           pool + classifier of the plain model

`hw` is the input's height (= width: inputs are square); `id=0` marks a grid point of equal
widths at stride 1 built without the residual add / identity (see grid.py; no arch has one);
`mid` is given only where the block has
an expansion (1x1) conv or a pool block's expansion, and is then its width. A user's op (not
an inverted residual, pool block, skip or conv) is described by its op, widths, stride and size
alone: it is measured with its builder's defaults, and its expansion cannot be searched.
Everything else a module depends on is the space's (its width divisor, which sets
squeeze-excite widths) and is recorded in the table's meta.

Two paths give configurations, and must agree exactly (the tests check it): `arch_configs`
(a plain arch def, the builder's rules: `mid_channels`, `force_pw`, `expansion`) and
`space_axes` (a search space, the supernet's rules: mid = `expanded_width(in, rate)`, an
expansion conv wherever the candidate was built with one), so the expected latency of one-hot
gates is the predicted latency of the derived arch def.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

from ...arch import parse_arch_def
from ...blocks import BLOCK_REGISTRY, InvertedPool, InvertedResidual, Skip
from ...blocks.inverted_residual import mid_width
from ...blocks.ops import conv_block, skip_block
from ..channels import expanded_width
from ..space import as_search_space
from .errors import LatencyTableError

CLASSIFIER = "classifier"  # the plain model's head: global average pool + 1x1 conv + flatten

#: Row options of an arch def that do not change what a block computes at inference.
INERT_OPTIONS = frozenset({"zero_last_bn_gamma", "bn_eps", "norm"})
#: Row options the configuration describes (the derived arch defs' own).
DESCRIBED_OPTIONS = frozenset({"mid_channels", "force_pw"})


@dataclasses.dataclass(frozen=True, order=True)
class BlockConfig:
    """One measured module: see the module doc for the fields."""

    op: str
    c_in: int
    c_out: int
    stride: int
    hw: int
    mid: int | None = None  # the expansion width, where the block has an expansion conv
    # A grid point only (never a block of an arch): equal widths at stride 1, built as blocks
    # of differing widths are (an inverted residual without its residual add, a skip with its
    # projection), so that the grid of a group of such blocks has its corners (see grid.py).
    no_identity: bool = False

    @property
    def key(self) -> str:
        parts = [self.op, f"in={self.c_in}", f"out={self.c_out}", f"s={self.stride}"]
        parts.append(f"hw={self.hw}")
        if self.mid is not None:
            parts.append(f"mid={self.mid}")
        if self.no_identity:
            parts.append("id=0")
        return "|".join(parts)

    @classmethod
    def from_key(cls, key: str) -> BlockConfig:
        op, *fields = key.split("|")
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        required = {"in", "out", "s", "hw"}
        unknown = set(values) - required - {"mid", "id"}
        if len(values) != len(fields) or unknown or required - set(values):
            raise ValueError(
                f"Latency table key {key!r} is not op|in=..|out=..|s=..|hw=..[|mid=..][|id=0]."
            )
        mid = values.get("mid")
        return cls(
            op,
            int(values["in"]),
            int(values["out"]),
            int(values["s"]),
            int(values["hw"]),
            None if mid is None else int(mid),
            values.get("id") == "0",
        )

    # ---- the interpolation grid (see grid.py)
    @property
    def has_identity(self) -> bool:
        """Input and output widths agree at stride 1 where that changes the block: an inverted
        residual adds its input, a skip is the identity."""
        return (
            self.c_in == self.c_out
            and self.stride == 1
            and not self.no_identity
            and op_kind(self.op) in ("ir", "skip")
        )

    def group(self) -> tuple:
        """What must match exactly for two configurations to share an interpolation grid."""
        return (self.op, self.stride, self.hw, self.has_identity, self.mid is None)

    def coordinates(self) -> tuple[int, ...]:
        """The widths interpolated over: in, [mid], [out] (out is in where the block has its
        identity path)."""
        coords = (self.c_in,)
        if self.mid is not None:
            coords += (self.mid,)
        if not self.has_identity:
            coords += (self.c_out,)
        return coords

    def with_coordinates(self, coords) -> BlockConfig:
        """The configuration of this one's group at `coords`."""
        coords = list(coords)
        c_in = coords.pop(0)
        mid = coords.pop(0) if self.mid is not None else None
        identity = self.has_identity
        c_out = c_in if identity else coords.pop(0)
        point = dataclasses.replace(self, c_in=c_in, mid=mid, c_out=c_out, no_identity=False)
        if not identity and point.has_identity:  # keep the group's structure
            point = dataclasses.replace(point, no_identity=True)
        return point


# ------------------------------------------------------------------------------ op kinds


@functools.cache
def op_kind(op: str) -> str:
    """'ir' (inverted residual), 'pool' (inverted pool), 'skip', 'conv', 'classifier' or
    'other' (a user's op)."""
    if op == CLASSIFIER:
        return "classifier"
    builder = BLOCK_REGISTRY.get(op)
    target = getattr(builder, "func", builder)
    if isinstance(target, type) and issubclass(target, InvertedResidual):
        return "ir"
    if isinstance(target, type) and issubclass(target, InvertedPool):
        return "pool"
    if target is skip_block or (isinstance(target, type) and issubclass(target, Skip)):
        return "skip"
    if target is conv_block:
        return "conv"
    return "other"


def output_size(op: str, hw: int, stride: int) -> int:
    """The output height of a block (the effective-shape convention: ceil(hw / stride)); a
    pool block pools globally."""
    return 1 if op_kind(op) == "pool" else math.ceil(hw / stride)


def make_config(op, c_in, c_out, stride, hw, mid=None) -> BlockConfig:
    """The configuration of a block given its mid width (None: no expansion conv); only
    inverted residuals and pool blocks have one."""
    if op_kind(op) not in ("ir", "pool"):
        mid = None
    return BlockConfig(op, int(c_in), int(c_out), int(stride), int(hw), mid)


# ------------------------------------------------------------------------- a plain arch def


def _arch_block_config(arch, block, c_in, hw) -> BlockConfig:
    unknown = sorted(set(block.options) - INERT_OPTIONS - DESCRIBED_OPTIONS)
    if unknown:
        raise LatencyTableError(
            f"Block {block.name} ({block.op}) sets {unknown}: a latency table describes blocks "
            f"by op, widths, stride and input size only (the blocks a search space derives), "
            f"so its latency would be a guess."
        )
    kind = op_kind(block.op)
    if kind == "other" and block.expansion is not None:
        raise LatencyTableError(
            f"Block {block.name} ({block.op}) sets an expansion: a latency table describes a "
            f"user's op by its widths, stride and input size only."
        )
    expansion = block.expansion
    if expansion is None:
        expansion = BLOCK_REGISTRY.default_option(block.op, "expansion")
    mid = None
    if kind == "ir":  # the InvertedResidual builder's rule
        mid = block.options.get("mid_channels")
        if mid is None:
            mid = mid_width(c_in, 1.0 if expansion is None else expansion, arch.width_divisor)
        if mid == c_in and not block.options.get("force_pw", False):
            mid = None  # no expansion conv
    elif kind == "pool":  # the InvertedPool builder's rule
        mid = block.options.get("mid_channels")
        if mid is None:
            mid = mid_width(c_in, expansion, arch.width_divisor)
    return make_config(block.op, c_in, block.out_channels, block.stride, hw, mid)


def arch_configs(arch) -> list[tuple[str, BlockConfig]]:
    """[(block name, BlockConfig)] of a plain arch def (an ArchDef or mapping) in forward
    order, the classifier last (name `head`)."""
    arch = parse_arch_def(arch)
    out, c_in, hw = [], arch.in_channels, arch.input_size
    for block in arch.blocks():
        config = _arch_block_config(arch, block, c_in, hw)
        out.append((block.name, config))
        c_in, hw = block.out_channels, output_size(block.op, hw, block.stride)
    out.append(("head", make_config(CLASSIFIER, c_in, arch.num_classes, 1, hw)))
    return out


# ----------------------------------------------------------------------------- a search space


@dataclasses.dataclass
class BlockAxes:
    """The latency of one supernet block as a function of its decisions: axes (op, input
    width, expansion rate, output width, resolution), or (op, width, rate, resolution) where
    the input and output share one width decision (`shared`). `config(...)` gives the
    configuration at option indices."""

    name: str
    ops: list[str]
    in_widths: list[int]
    rates: list  # the block's expansion options, [None] without an expansion decision
    out_widths: list[int]
    sizes: list[int]  # input height per resolution option (the space's order: max first)
    stride: int
    shared: bool
    op_rates: dict  # op -> its rates (None: no expansion conv, mid = in) for ops that expand
    width_divisor: int

    def shape(self):
        if self.shared:
            return (len(self.ops), len(self.in_widths), len(self.rates), len(self.sizes))
        return (
            len(self.ops),
            len(self.in_widths),
            len(self.rates),
            len(self.out_widths),
            len(self.sizes),
        )

    def config(self, op_index, in_index, rate_index, out_index, size_index) -> BlockConfig:
        op = self.ops[op_index]
        c_in = self.in_widths[in_index]
        c_out = c_in if self.shared else self.out_widths[out_index]
        hw = self.sizes[size_index]
        rates = self.op_rates.get(op)
        mid = None
        if rates is not None:  # an op whose candidate has an expansion conv
            rate = rates[rate_index] if len(rates) > 1 else rates[0]
            mid = expanded_width(c_in, rate, self.width_divisor)
        return make_config(op, c_in, c_out, self.stride, hw, mid)

    def configs(self):
        """Every (index tuple, BlockConfig) of the block, in the axes' order."""
        n_op, n_in, n_rate = len(self.ops), len(self.in_widths), len(self.rates)
        n_out = 1 if self.shared else len(self.out_widths)
        for o, i, e, j, r in itertools.product(
            range(n_op), range(n_in), range(n_rate), range(n_out), range(len(self.sizes))
        ):
            index = (o, i, e, r) if self.shared else (o, i, e, j, r)
            yield index, self.config(o, i, e, j, r)


def _op_rates(op, expansions):
    """The rates an op's candidate is expanded by (as the supernet's BlockContext picks them),
    or None when its mid width is its input width (no expansion conv)."""
    if expansions and BLOCK_REGISTRY.uses_expansion(op):
        rates = list(expansions)
    else:
        rates = [BLOCK_REGISTRY.default_option(op, "expansion") or 1.0]
    if all(r == 1 for r in rates):
        return None
    return rates


def space_axes(space, in_channels=None) -> tuple[list[BlockAxes], BlockAxes]:
    """([BlockAxes] of every block, the classifier's BlockAxes) of a search space (a
    SearchSpace, mapping, shipped name or YAML path); `in_channels`: the image channels
    (default the space's)."""
    space = as_search_space(space)
    widths = [space.in_channels if in_channels is None else in_channels]
    sizes = list(space.resolutions)
    blocks = []
    for spec in space.blocks():
        shared = spec.shares_output_with_previous
        op_rates = {}
        for op in spec.ops:
            rates = _op_rates(op, spec.expansions)
            if rates is not None and op_kind(op) == "other":
                raise LatencyTableError(
                    f"{space.where(spec)}: op {op!r} is expanded, and a latency table describes "
                    f"a user's op by its widths, stride and input size only."
                )
            if rates is not None:
                op_rates[op] = rates
        if len({op_kind(op) == "pool" for op in spec.ops}) > 1:
            raise LatencyTableError(
                f"{space.where(spec)}: mixes pool blocks with others, so the blocks after it "
                f"would see inputs of different sizes; a latency table cannot describe it."
            )
        block_rates = list(spec.expansions) if spec.expansions else [None]
        blocks.append(
            BlockAxes(
                name=spec.name,
                ops=list(spec.ops),
                in_widths=list(widths),
                rates=block_rates,
                out_widths=list(spec.channels),
                sizes=list(sizes),
                stride=spec.stride,
                shared=shared,
                op_rates=op_rates,
                width_divisor=space.width_divisor,
            )
        )
        widths = list(spec.channels)
        sizes = [output_size(spec.ops[0], h, spec.stride) for h in sizes]
    head = BlockAxes(
        name="head",
        ops=[CLASSIFIER],
        in_widths=widths,
        rates=[None],
        out_widths=[space.num_classes],
        sizes=sizes,
        stride=1,
        shared=False,
        op_rates={},
        width_divisor=space.width_divisor,
    )
    return blocks, head


def space_configs(space, in_channels=None) -> list[BlockConfig]:
    """Every distinct configuration the space can produce (sorted), the classifier's too."""
    blocks, head = space_axes(space, in_channels)
    found = set()
    for axes in blocks + [head]:
        for _, config in axes.configs():
            found.add(config)
    return sorted(found)
