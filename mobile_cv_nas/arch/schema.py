"""The arch-def schema, its validation and its (de)serialisation.

An arch def is a mapping (YAML or dict):

    name: FBNetV2_F1            # optional
    input_size: 128             # training/eval crop; positive int
    in_channels: 3              # channels of the input images (default 3)
    width_divisor: 8            # rounding of mid/SE widths (default 1)
    num_classes: 1000           # classifier outputs (default 1000; 0 = pooled features)
    block_defaults: {zero_last_bn_gamma: true}   # options given to every block that takes them
    stages:                     # list of stages; each stage is a list of block rows
      - - {op: conv_k3_hs, out_channels: 8, stride: 2}
      - - {op: ir_k5, out_channels: 8, expansion: 1}
        - {op: ir_k5, out_channels: 24, stride: 2, expansion: 5.4566, repeat: 1}

A block row needs `op` (a name in BLOCK_REGISTRY) and `out_channels`; `stride` (default 1),
`repeat` (default 1; copies after the first use stride 1) and `expansion` are optional; any
other key is an option of that op's builder (e.g. `bias`, `pwl_groups`, `mid_channels`,
`norm`). A `block_defaults` key must be an option of at least one op of the arch (a typo would
otherwise be ignored everywhere). Errors name the stage, block and field at fault.
"""

import copy
import dataclasses
import difflib
from typing import Any

import yaml

from ..blocks import BLOCK_REGISTRY
from ..io import load_yaml
from ..layers import norm_name
from ..validation import check_positive_int, error_location, is_int

_TOP_FIELDS = {
    "name",
    "input_size",
    "in_channels",
    "width_divisor",
    "num_classes",
    "block_defaults",
    "stages",
}
_ROW_FIELDS = {"op", "out_channels", "stride", "repeat", "expansion"}


def block_name(stage, index):
    """`xif<stage>_<index>`: the official module name of block `index` of stage `stage`, used by
    plain models, search spaces and the supernet alike."""
    return f"xif{stage}_{index}"


class ArchDefError(ValueError):
    """A malformed arch def; the message names the stage/block/field at fault."""


@dataclasses.dataclass
class BlockDef:
    """One block after repeats are expanded: what the builder makes at `xif<stage>_<index>`."""

    stage: int
    index: int
    op: str
    out_channels: int
    stride: int = 1
    expansion: float | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self):
        return block_name(self.stage, self.index)


@dataclasses.dataclass
class ArchDef:
    stages: list[list[dict[str, Any]]]
    name: str | None = None
    input_size: int = 224
    in_channels: int = 3
    width_divisor: int = 1
    num_classes: int = 1000
    block_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)

    def blocks(self):
        """Blocks in forward order, repeats expanded (only the first copy keeps the stride)."""
        out = []
        for s, stage in enumerate(self.stages):
            index = 0
            for row in stage:
                options = {k: v for k, v in row.items() if k not in _ROW_FIELDS}
                for r in range(row.get("repeat", 1)):
                    out.append(
                        BlockDef(
                            stage=s,
                            index=index,
                            op=row["op"],
                            out_channels=row["out_channels"],
                            stride=row.get("stride", 1) if r == 0 else 1,
                            expansion=row.get("expansion"),
                            options=dict(options),
                        )
                    )
                    index += 1
        return out

    def to_dict(self):
        d = {"name": self.name} if self.name else {}
        d["input_size"] = self.input_size
        if self.in_channels != 3:
            d["in_channels"] = self.in_channels
        d.update(width_divisor=self.width_divisor, num_classes=self.num_classes)
        if self.block_defaults:
            d["block_defaults"] = copy.deepcopy(self.block_defaults)
        d["stages"] = copy.deepcopy(self.stages)
        return d

    def to_yaml(self):
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def check_num_classes(value, where, error=ValueError):
    """num_classes is an int >= 0; 0 means "no classifier: return pooled features" (timm's
    convention)."""
    if not is_int(value) or value < 0:
        raise error(
            f"{where}: must be an integer >= 0 (0 = no classifier, the model returns pooled "
            f"features), got {value!r}."
        )


def _where(arch_name, stage=None, block=None, field=None):
    subject = f"arch {arch_name!r}" if arch_name else "arch def"
    return error_location(subject, stage, ("block", block), field)


def _check_positive_int(value, where):
    check_positive_int(value, where, ArchDefError)


def _check_row(row, name, s, b):
    if not isinstance(row, dict):
        raise ArchDefError(
            f"{_where(name, s, b)}: a block row must be a mapping with 'op' and "
            f"'out_channels', got {row!r}."
        )
    for field in ("op", "out_channels"):
        if field not in row:
            raise ArchDefError(f"{_where(name, s, b, field)}: missing required field.")
    op = row["op"]
    try:
        BLOCK_REGISTRY.get(op)
    except KeyError as e:
        raise ArchDefError(f"{_where(name, s, b, 'op')}: {e.args[0]}") from None
    _check_positive_int(row["out_channels"], _where(name, s, b, "out_channels"))
    _check_positive_int(row.get("stride", 1), _where(name, s, b, "stride"))
    _check_positive_int(row.get("repeat", 1), _where(name, s, b, "repeat"))
    expansion = row.get("expansion")
    if expansion is not None and (
        isinstance(expansion, bool) or not isinstance(expansion, (int, float)) or expansion <= 0
    ):
        raise ArchDefError(
            f"{_where(name, s, b, 'expansion')}: must be a positive number or null, "
            f"got {expansion!r}."
        )
    accepted = BLOCK_REGISTRY.accepted_options(op)
    for key in row:
        if key in _ROW_FIELDS:
            continue
        if accepted is not None and key not in accepted:
            raise ArchDefError(
                f"{_where(name, s, b, key)}: op {op!r} takes no option {key!r}; "
                f"it takes {sorted(accepted - {'stride', 'expansion'})}."
            )
    if expansion is not None and not BLOCK_REGISTRY.takes_option(op, "expansion"):
        raise ArchDefError(f"{_where(name, s, b, 'expansion')}: op {op!r} has no expansion.")
    if "norm" in row:
        _check_norm(row["norm"], _where(name, s, b, "norm"))


def _check_norm(value, where):
    if callable(value) and not isinstance(value, str):
        return
    try:
        norm_name(value)
    except (TypeError, ValueError) as e:
        raise ArchDefError(f"{where}: {e}") from None


#: Row fields that describe one block's place, not an option every block may share.
_NOT_DEFAULTS = {"op", "out_channels", "stride", "repeat", "in_channels"}


def _check_block_defaults(defaults, stages, name):
    where = _where(name, field="block_defaults")
    if not isinstance(defaults, dict):
        raise ArchDefError(f"{where}: must be a mapping of block options, got {defaults!r}.")
    ops = sorted({row["op"] for stage in stages for row in stage})
    takers = [BLOCK_REGISTRY.accepted_options(op) for op in ops]
    known = None if any(t is None for t in takers) else set().union(*takers)
    for key in defaults:
        if key in _NOT_DEFAULTS:
            raise ArchDefError(
                f"{where}: {key!r} belongs in each block row, not in block_defaults."
            )
        if known is not None and key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ArchDefError(
                f"{where}: {key!r} is an option of no op of this arch ({', '.join(ops)}), so it "
                f"would be ignored.{hint} Options they take: {', '.join(sorted(known))}."
            )
    if "norm" in defaults:
        _check_norm(defaults["norm"], f"{where}, key 'norm'")


def parse_arch_def(data, name=None):
    """Validate a mapping and return an ArchDef. Raises ArchDefError naming the fault."""
    if isinstance(data, ArchDef):
        return data
    if not isinstance(data, dict):
        raise ArchDefError(f"{_where(name)}: expected a mapping, got {type(data).__name__}.")
    name = data.get("name", name)
    unknown = set(data) - _TOP_FIELDS
    if unknown:
        raise ArchDefError(
            f"{_where(name)}: unknown top-level field(s) {sorted(unknown)}; "
            f"allowed: {sorted(_TOP_FIELDS)}."
        )
    if "stages" not in data:
        raise ArchDefError(f"{_where(name, field='stages')}: missing required field.")
    stages = data["stages"]
    if not isinstance(stages, list) or not stages:
        raise ArchDefError(f"{_where(name, field='stages')}: must be a non-empty list of stages.")
    for s, stage in enumerate(stages):
        if not isinstance(stage, list) or not stage:
            raise ArchDefError(
                f"{_where(name, s)}: a stage must be a non-empty list of block rows, got {stage!r}."
            )
        for b, row in enumerate(stage):
            _check_row(row, name, s, b)
    for field, default in (("input_size", 224), ("in_channels", 3), ("width_divisor", 1)):
        _check_positive_int(data.get(field, default), _where(name, field=field))
    num_classes = data.get("num_classes", 1000)
    check_num_classes(num_classes, _where(name, field="num_classes"), ArchDefError)
    defaults = data.get("block_defaults", {})
    defaults = {} if defaults is None else defaults
    _check_block_defaults(defaults, stages, name)
    return ArchDef(
        stages=copy.deepcopy(stages),
        name=name,
        input_size=data.get("input_size", 224),
        in_channels=data.get("in_channels", 3),
        width_divisor=data.get("width_divisor", 1),
        num_classes=data.get("num_classes", 1000),
        block_defaults=copy.deepcopy(defaults),
    )


def load_arch_def(path):
    """Read an arch def from a YAML file (any iopath path)."""
    data = load_yaml(path, "Arch def", ArchDefError)
    return parse_arch_def(data, name=str(path))
