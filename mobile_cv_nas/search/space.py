"""Search spaces as data: the YAML schema, its validation, and the parsed API.

A search space is a mapping (YAML or dict) shaped like an arch def (see
`mobile_cv_nas.arch.schema`), except that each row lists *options* instead of one choice:

    name: fbnetv2_l        # optional; defaults to the name passed in / the file's stem
    cost: flops            # flops | params: what the search's resource loss counts (default flops)
    resolutions: [256, 224, 192, 160]   # input-resolution options (required, non-empty, unique);
                                        # one decision for the whole network; kept max first
    in_channels: 3         # image channels (default 3)
    width_divisor: 8       # rounding of mid / SE widths (default 8, as in FBNetV2)
    num_classes: 1000      # classifier outputs (default 1000)
    channel_decisions: per_stage   # per_stage | per_block: who shares an output-width decision
    stages:                # list of stages; each stage is a non-empty list of rows
      - - {op: conv_k3_hs, channels: 16, stride: 2}                              # stem
      - - {ops: &micro [ir_k3, ir_k5, skip], channels: [12, 16, 4], expansion: 1}
      - - {ops: *micro, channels: [16, 28, 4], expansion: [0.75, 3.25, 0.5], stride: 2}
        - {ops: *micro, channels: [16, 28, 4], expansion: [0.75, 3.25, 0.5], repeat: 2}
      - - {op: conv_k1_hs, channels: 1984}

The classifier (global pool + 1x1 conv to `num_classes`) follows the last row and is added by
the builder, so it is not listed.

Row fields (any other key is an error):

* `ops`: non-empty list of distinct op names registered in `BLOCK_REGISTRY` (a YAML anchor /
  alias keeps a shared micro list short); `op: name` is shorthand for a one-op list. Give one
  of the two, not both. Every op must be searchable: its module type needs an adapter in
  `SEARCH_OP_REGISTRY` (checked when the supernet is built, see `adapters.py`).
* `channels` (required): output-channel options; a positive int (no choice) or
  `[low, high, step]` = low, low + step, ... up to high (high is included when reachable);
  all positive ints, low <= high, step > 0.
* `expansion` (optional): expansion-rate options; a positive number or `[low, high, step]` of
  positive numbers, inclusive like `channels`. Leave it out for rows whose ops have no expansion
  (plain convs); ops that take but ignore one (`skip`) are not expanded. Rows of IR ops that
  omit it (or give null) use the op's default expansion (IR 1, pool block 6).
  Mid widths: rate e x the block's INPUT width c, rounded to the width divisor as the plain
  builder rounds it (`make_divisible(c * e)`; e = 1 keeps mid = c, no expansion conv). When
  the input width is itself searched, each (c_i, e_j) pair is one mid width with weight
  g_i h_j (see `channels.ExpandedChannels`), so a rate means the same whatever c is picked.
* `stride` (default 1) and `repeat` (default 1): positive ints; repeats are copies of the row
  whose stride is 1 after the first.

Errors are `SearchSpaceError` (a `ValueError`) whose message names the space, stage index,
row index and field, e.g. "space 'fbnetv2_f', stage 3, row 0, field 'channels': low 40 > high 16".

Parsed API: `parse_search_space(mapping)` / `load_search_space(name_or_path)` return a
`SearchSpace`, whose `stages` hold `RowSpace`s (options as ascending lists) and whose
`blocks()` expands repeats into `BlockSpace`s in forward order; `decisions()` lists every
independent decision with its number of options; `largest_arch_def()` gives an arch def of the
biggest candidate. `available_search_spaces()` names the shipped spaces
(`configs/search_spaces/*.yaml`).

Output-width decisions (`channel_decisions`):

* `per_stage` (default): a block continues the previous block's decision
  (`shares_output_with_previous=True`) when it has stride 1 and the same channel options:
  repeat copies of a row, and a stride-1 row that follows a row of the same range (Table 2
  splits a stage into its stride-2 first layer and the rest, with one channel range). Blocks
  sharing a decision always have equal widths, so their residual adds (and identity skips)
  always hold: a supernet that trains like the plain network.
* `per_block`: every block has its own output-width decision, as the paper counts its space
  ("32^22" for 22 layers) and as the published FBNetV2 models vary (F1 goes 32 -> 24 inside a
  stage). A stride-1 block has its residual add (an identity skip) only when the widths
  picked agree.

In both modes the supernet gives a block's input weight P(in width == out width) (1 within a
shared decision, 0 where the options cannot agree; see `search_block.py`), so the argmax
supernet and the derived model have residuals in the same places.

Each `BlockSpace.decision_id` (0, 1, ... in forward order) names its output decision; blocks
with equal ids get equal widths.

Counting (`count_architectures`, log10 of `num_architectures`). The candidates are the
product, over independent decisions, of their numbers of options:

    N = R * prod_over_blocks(C_b) * prod_over_output_decisions(K_d)

where R = number of resolution options; C_b = number of (op, expansion) pairs of block b:
sum over its ops of (number of expansion options if the op uses an expansion and the row
lists expansions, else 1), so `skip` and plain convs count once; K_d = number of
output-channel options of decision d (counted once per decision, not per block sharing it).
Fixed parts (a one-op stem, the head) contribute factors of 1.
"""

import copy
import dataclasses
import itertools
import math
import os
from fractions import Fraction

from ..arch.schema import block_name
from ..blocks import BLOCK_REGISTRY
from ..data_files import configs_dir
from ..io import load_yaml
from ..validation import check_positive_int, error_location, is_int

__all__ = [
    "CHANNEL_DECISIONS",
    "COSTS",
    "BlockSpace",
    "SpaceDecision",
    "RowSpace",
    "SearchSpace",
    "SearchSpaceError",
    "available_search_spaces",
    "count_architectures",
    "load_search_space",
    "num_architectures",
    "as_search_space",
    "parse_search_space",
    "range_options",
    "search_spaces_dir",
]

COSTS = ("flops", "params")
CHANNEL_DECISIONS = ("per_stage", "per_block")

_TOP_FIELDS = (
    "name",
    "cost",
    "resolutions",
    "in_channels",
    "width_divisor",
    "num_classes",
    "channel_decisions",
    "stages",
)
_ROW_FIELDS = ("op", "ops", "channels", "expansion", "stride", "repeat")
_SUBDIR = "search_spaces"


class SearchSpaceError(ValueError):
    """A malformed search space; the message names the space/stage/row/field at fault."""


def _num_op_choices(ops, expansions):
    """Number of (op, expansion) pairs: an op with an expansion counts once per rate."""
    n_exp = len(expansions) if expansions else 1
    return sum(n_exp if BLOCK_REGISTRY.uses_expansion(op) else 1 for op in ops)


@dataclasses.dataclass
class RowSpace:
    """One row of a stage: options for `repeat` blocks (copies after the first use stride 1)."""

    ops: list[str]
    channels: list[int]  # ascending output-channel options
    expansions: list[float] | None = None  # ascending expansion options; None = not searched
    stride: int = 1
    repeat: int = 1

    def num_op_choices(self):
        """Number of (op, expansion) pairs a block of this row chooses from."""
        return _num_op_choices(self.ops, self.expansions)

    def to_dict(self):
        d = {"ops": list(self.ops), "channels": _compact(self.channels)}
        if self.expansions is not None:
            d["expansion"] = _compact(self.expansions)
        if self.stride != 1:
            d["stride"] = self.stride
        if self.repeat != 1:
            d["repeat"] = self.repeat
        return d


@dataclasses.dataclass
class BlockSpace:
    """One block after repeats are expanded: what the supernet makes at `xif<stage>_<index>`."""

    stage: int
    index: int  # position within the stage, repeats expanded (as in the arch-def schema)
    ops: list[str]
    channels: list[int]
    expansions: list[float] | None
    stride: int
    shares_output_with_previous: bool
    decision_id: int  # id of this block's output-channel decision (shared by repeat copies)
    row: int = 0  # row index within the stage

    @property
    def name(self):
        return block_name(self.stage, self.index)

    def num_op_choices(self):
        return _num_op_choices(self.ops, self.expansions)


@dataclasses.dataclass
class SpaceDecision:
    """One independent decision of the space: `kind` is resolution | op | channels."""

    kind: str
    key: object  # None for the resolution; the block name for op; the decision_id for channels
    num_options: int


@dataclasses.dataclass
class SearchSpace:
    name: str | None
    cost: str
    resolutions: list[int]  # descending: max first
    width_divisor: int
    num_classes: int
    stages: list[list[RowSpace]]
    in_channels: int = 3
    channel_decisions: str = "per_stage"

    @property
    def max_resolution(self):
        return self.resolutions[0]

    def where(self, block):
        """ "space 'x', stage s, row r, field 'ops'": where a block's ops are, for errors."""
        return _where(self.name, block.stage, block.row, "ops")

    def blocks(self):
        """Blocks in forward order with repeats expanded; see the module doc for sharing."""
        out = []
        decision = -1
        per_stage = self.channel_decisions == "per_stage"
        for s, stage in enumerate(self.stages):
            index = 0
            for r, row in enumerate(stage):
                for k in range(row.repeat):
                    stride = row.stride if k == 0 else 1
                    shares = (
                        per_stage and bool(out) and stride == 1 and out[-1].channels == row.channels
                    )
                    if not shares:
                        decision += 1
                    out.append(
                        BlockSpace(
                            stage=s,
                            index=index,
                            ops=list(row.ops),
                            channels=list(row.channels),
                            expansions=None if row.expansions is None else list(row.expansions),
                            stride=stride,
                            shares_output_with_previous=shares,
                            decision_id=decision,
                            row=r,
                        )
                    )
                    index += 1
        return out

    def decisions(self):
        """Every independent decision with its number of options (including 1-option ones)."""
        out = [SpaceDecision("resolution", None, len(self.resolutions))]
        seen = set()
        for b in self.blocks():
            out.append(SpaceDecision("op", b.name, b.num_op_choices()))
            if b.decision_id not in seen:
                seen.add(b.decision_id)
                out.append(SpaceDecision("channels", b.decision_id, len(b.channels)))
        return out

    def num_searchable_decisions(self):
        """Decisions with more than one option."""
        return sum(1 for d in self.decisions() if d.num_options > 1)

    def largest_arch_def(self, in_channels=3):
        """An arch-def mapping (see `mobile_cv_nas.arch.schema`) of the biggest candidate:
        max resolution, max widths and expansions, and in each block the op whose block has the
        most parameters at those widths (ties: the first listed). For smoke tests and memory
        estimates."""
        stages = []
        prev = in_channels
        for b in self.blocks():
            if b.index == 0:
                stages.append([])
            out = b.channels[-1]
            op = _largest_op(b.ops, prev, out, b.stride, b.expansions, self.width_divisor)
            row = {"op": op, "out_channels": out, "stride": b.stride}
            if b.expansions and BLOCK_REGISTRY.uses_expansion(op):
                row["expansion"] = b.expansions[-1]
            stages[-1].append(row)
            prev = out
        d = {"name": f"{self.name}_largest"} if self.name else {}
        d.update(
            input_size=self.max_resolution,
            in_channels=self.in_channels,
            width_divisor=self.width_divisor,
            num_classes=self.num_classes,
            stages=stages,
        )
        return d

    def to_dict(self):
        d = {"name": self.name} if self.name else {}
        d.update(
            cost=self.cost,
            resolutions=list(self.resolutions),
            in_channels=self.in_channels,
            width_divisor=self.width_divisor,
            num_classes=self.num_classes,
            channel_decisions=self.channel_decisions,
            stages=[[row.to_dict() for row in stage] for stage in self.stages],
        )
        return d


def _largest_op(ops, in_channels, out_channels, stride, expansions, width_divisor):
    if len(ops) == 1:
        return ops[0]
    best, best_n = ops[0], -1
    for op in ops:
        options = {"stride": stride, "width_divisor": width_divisor}
        if expansions and BLOCK_REGISTRY.uses_expansion(op):
            options["expansion"] = expansions[-1]
        module = BLOCK_REGISTRY.get(op)(
            in_channels, out_channels, **BLOCK_REGISTRY.select_options(op, options)
        )
        n = sum(p.numel() for p in module.parameters())
        if n > best_n:
            best, best_n = op, n
    return best


def num_architectures(space):
    """Exact number of candidate architectures (see the module doc for the formula)."""
    space = parse_search_space(space)
    n = 1
    for d in space.decisions():
        n *= d.num_options
    return n


def count_architectures(space):
    """log10 of the number of candidate architectures (see the module doc for the formula)."""
    return math.log10(num_architectures(space))


# ------------------------------------------------------------------------------- validation


def _where(space, stage=None, row=None, field=None):
    subject = f"space {space!r}" if space else "search space"
    return error_location(subject, stage, ("row", row), field)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _compact(options):
    """Options back to YAML form: a scalar, [low, high, step] if evenly spaced, else a list."""
    if len(options) == 1:
        return options[0]
    step = options[1] - options[0]
    if all(math.isclose(b - a, step) for a, b in itertools.pairwise(options)):
        if all(is_int(o) for o in options):
            return [options[0], options[-1], step]
        return [options[0], options[-1], round(step, 10)]
    return list(options)


def range_options(value, where, kind):
    """Options of a scalar or [low, high, step] (high included when reached); kind is 'int'
    (channels) or 'number' (expansions). `where` prefixes the SearchSpaceError messages."""
    ok = is_int if kind == "int" else _is_number
    what = "a positive integer" if kind == "int" else "a positive number"
    if not isinstance(value, (list, tuple)):
        if not ok(value) or value <= 0:
            raise SearchSpaceError(f"{where}: must be {what} or [low, high, step], got {value!r}.")
        return [value]
    if len(value) != 3:
        raise SearchSpaceError(
            f"{where}: a range must be [low, high, step] (3 values), got {list(value)!r}."
        )
    low, high, step = value
    for label, v in (("low", low), ("high", high), ("step", step)):
        if not ok(v):
            raise SearchSpaceError(f"{where}: {label} must be {what}, got {v!r}.")
    if step <= 0:
        raise SearchSpaceError(f"{where}: step must be > 0, got {step!r}.")
    if low <= 0:
        raise SearchSpaceError(f"{where}: low must be > 0, got {low!r}.")
    if low > high:
        raise SearchSpaceError(f"{where}: low {low} > high {high}.")
    if kind == "int":
        return list(range(low, high + 1, step))
    # Exact decimal arithmetic so that e.g. [0.75, 3.25, 0.5] includes 3.25.
    lo, hi, st = (Fraction(str(v)) for v in (low, high, step))
    n = int((hi - lo) / st) + 1
    opts = [lo + i * st for i in range(n)]
    return [int(o) if o.denominator == 1 else float(o) for o in opts]


def _check_positive_int(value, where):
    check_positive_int(value, where, SearchSpaceError)


def _parse_row(row, name, s, r):
    if not isinstance(row, dict):
        raise SearchSpaceError(
            f"{_where(name, s, r)}: a row must be a mapping with 'ops' (or 'op') and "
            f"'channels', got {row!r}."
        )
    for key in row:
        if key not in _ROW_FIELDS:
            raise SearchSpaceError(
                f"{_where(name, s, r, key)}: unknown field; allowed: {', '.join(_ROW_FIELDS)}."
            )
    # ops
    if "op" in row and "ops" in row:
        raise SearchSpaceError(f"{_where(name, s, r, 'op')}: give 'op' or 'ops', not both.")
    if "op" in row:
        field, ops = "op", [row["op"]]
    elif "ops" in row:
        field, ops = "ops", row["ops"]
    else:
        raise SearchSpaceError(f"{_where(name, s, r, 'ops')}: missing required field.")
    if not isinstance(ops, (list, tuple)) or not ops:
        raise SearchSpaceError(
            f"{_where(name, s, r, field)}: must be a non-empty list of op names, got {ops!r}."
        )
    for op in ops:
        if not isinstance(op, str):
            raise SearchSpaceError(
                f"{_where(name, s, r, field)}: op names are strings, got {op!r}."
            )
        try:
            BLOCK_REGISTRY.get(op)
        except KeyError as e:
            raise SearchSpaceError(f"{_where(name, s, r, field)}: {e.args[0]}") from None
    dupes = sorted({op for op in ops if list(ops).count(op) > 1})
    if dupes:
        raise SearchSpaceError(f"{_where(name, s, r, field)}: duplicate op(s) {dupes}.")
    # channels
    if "channels" not in row:
        raise SearchSpaceError(f"{_where(name, s, r, 'channels')}: missing required field.")
    channels = range_options(row["channels"], _where(name, s, r, "channels"), "int")
    # expansion
    expansions = None
    if row.get("expansion") is not None:
        expansions = range_options(row["expansion"], _where(name, s, r, "expansion"), "number")
        without = [op for op in ops if not BLOCK_REGISTRY.takes_option(op, "expansion")]
        if without:
            raise SearchSpaceError(
                f"{_where(name, s, r, 'expansion')}: op(s) {without} have no expansion; "
                f"leave 'expansion' out or list them in a row of their own."
            )
    stride, repeat = row.get("stride", 1), row.get("repeat", 1)
    _check_positive_int(stride, _where(name, s, r, "stride"))
    _check_positive_int(repeat, _where(name, s, r, "repeat"))
    return RowSpace(
        ops=list(ops), channels=channels, expansions=expansions, stride=stride, repeat=repeat
    )


def parse_search_space(data, name=None):
    """Validate a mapping and return a SearchSpace. Raises SearchSpaceError naming the fault."""
    if isinstance(data, SearchSpace):
        return data
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{_where(name)}: expected a mapping, got {type(data).__name__}.")
    name = data.get("name", name)
    if name is not None and not isinstance(name, str):
        raise SearchSpaceError(f"{_where(None, field='name')}: must be a string, got {name!r}.")
    for key in data:
        if key not in _TOP_FIELDS:
            raise SearchSpaceError(
                f"{_where(name, field=key)}: unknown top-level field; "
                f"allowed: {', '.join(_TOP_FIELDS)}."
            )
    cost = data.get("cost", "flops")
    if cost not in COSTS:
        raise SearchSpaceError(
            f"{_where(name, field='cost')}: must be one of {', '.join(COSTS)}, got {cost!r}."
        )
    if "resolutions" not in data:
        raise SearchSpaceError(f"{_where(name, field='resolutions')}: missing required field.")
    res = data["resolutions"]
    if not isinstance(res, (list, tuple)) or not res:
        raise SearchSpaceError(
            f"{_where(name, field='resolutions')}: must be a non-empty list of positive "
            f"integers, got {res!r}."
        )
    for v in res:
        _check_positive_int(v, _where(name, field="resolutions"))
    if len(set(res)) != len(res):
        dupes = sorted({v for v in res if list(res).count(v) > 1})
        raise SearchSpaceError(f"{_where(name, field='resolutions')}: duplicate value(s) {dupes}.")
    for field, default in (("in_channels", 3), ("width_divisor", 8), ("num_classes", 1000)):
        _check_positive_int(data.get(field, default), _where(name, field=field))
    channel_decisions = data.get("channel_decisions", "per_stage")
    if channel_decisions not in CHANNEL_DECISIONS:
        raise SearchSpaceError(
            f"{_where(name, field='channel_decisions')}: must be one of "
            f"{', '.join(CHANNEL_DECISIONS)}, got {channel_decisions!r}."
        )
    if "stages" not in data:
        raise SearchSpaceError(f"{_where(name, field='stages')}: missing required field.")
    stages = data["stages"]
    if not isinstance(stages, list) or not stages:
        raise SearchSpaceError(
            f"{_where(name, field='stages')}: must be a non-empty list of stages."
        )
    parsed = []
    for s, stage in enumerate(stages):
        if not isinstance(stage, list) or not stage:
            raise SearchSpaceError(
                f"{_where(name, s)}: a stage must be a non-empty list of rows, got {stage!r}."
            )
        parsed.append([_parse_row(row, name, s, r) for r, row in enumerate(stage)])
    return SearchSpace(
        name=name,
        cost=cost,
        resolutions=sorted(res, reverse=True),
        width_divisor=data.get("width_divisor", 8),
        num_classes=data.get("num_classes", 1000),
        stages=parsed,
        in_channels=data.get("in_channels", 3),
        channel_decisions=channel_decisions,
    )


# ---------------------------------------------------------------------------------- loading


def search_spaces_dir():
    """The folder of the shipped spaces: `configs/search_spaces/`."""
    return os.path.join(str(configs_dir()), _SUBDIR)


def available_search_spaces():
    """Names of the shipped search spaces (file stems in `configs/search_spaces/`)."""
    try:
        folder = search_spaces_dir()
    except FileNotFoundError:
        return []
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith((".yaml", ".yml"))
    )


def _looks_like_path(s):
    return "/" in s or os.sep in s or "://" in s or s.endswith((".yaml", ".yml"))


def as_search_space(space):
    """A `SearchSpace` from a SearchSpace, a mapping, a shipped space name or a YAML path."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return parse_search_space(space)
    if isinstance(space, (str, os.PathLike)):
        return load_search_space(space)
    available = ", ".join(available_search_spaces()) or "(none)"
    raise TypeError(
        f"Expected a search space: a shipped space name ({available}), a YAML path, a mapping "
        f"or a SearchSpace; got {type(space).__name__} {space!r}."
    )


def load_search_space(name_or_path):
    """Load a shipped space by name ("fbnetv2_f") or any YAML file by path (iopath paths too)."""
    name_or_path = os.fspath(name_or_path)
    if _looks_like_path(name_or_path):
        path = name_or_path
    else:
        try:
            path = os.path.join(search_spaces_dir(), name_or_path + ".yaml")
        except FileNotFoundError as e:
            raise SearchSpaceError(f"Search space {name_or_path!r}: {e}") from None
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        data = load_yaml(path, "Search space", SearchSpaceError)
    except SearchSpaceError as e:
        if "does not exist" not in str(e):
            raise
        available = available_search_spaces()
        raise SearchSpaceError(
            f"{e} Available search spaces: {', '.join(available) if available else '(none)'}."
        ) from None
    if data is None:
        raise SearchSpaceError(f"Search space file {path!r} is empty.")
    return parse_search_space(copy.deepcopy(data), name=stem)
