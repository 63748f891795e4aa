"""The predicted latency of a plain arch def: the sum of its blocks' table entries (measured
or interpolated) and the classifier's, times the table's calibration scale, plus its offset.

Blocks are measured alone, so the sum leaves out what joins them in the whole model (the
Sequential's calls, caches that held the block's own data the call before); the
calibration (`calibrate`, measured on whole models) puts that back, and the benchmark compares the
predictions with whole-model measurements of other architectures.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from ...arch import parse_arch_def
from .configs import BlockConfig, arch_configs, op_kind
from .table import LatencyTable, LatencyTableError, load_latency_table

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class BlockLatency:
    """One block's share of a predicted latency."""

    name: str  # xif<stage>_<index>, or "head" (pool + classifier)
    config: BlockConfig
    ms: float  # the entry times the table's scale: this block's share inside the model
    measured: bool  # False: interpolated between grid points


def as_table(table) -> LatencyTable:
    """A LatencyTable from a table or a path (a path's table is checked: complete, and its
    warnings logged)."""
    if isinstance(table, LatencyTable):
        return table
    if isinstance(table, (str, os.PathLike)):
        table, warnings = load_latency_table(table)
        for warning in warnings:
            logger.warning(warning)
        return table
    raise TypeError(f"Expected a LatencyTable or a path, got {type(table).__name__}.")


def latency_breakdown(arch_def, table) -> list[BlockLatency]:
    """[BlockLatency] of every block and the head of `arch_def` (an ArchDef or mapping),
    from `table` (a LatencyTable or a path)."""
    table = as_table(table)
    arch = parse_arch_def(arch_def)
    configs = arch_configs(arch)
    expands = any(op_kind(c.op) in ("ir", "pool") for _, c in configs)
    if expands and arch.width_divisor != table.width_divisor:
        raise LatencyTableError(
            f"arch {arch.name!r} rounds widths to {arch.width_divisor}, {table.where} was "
            f"measured with width divisor {table.width_divisor} (it sets the squeeze-excite "
            f"widths): use an arch of the table's space, or a table of a space with its divisor."
        )
    table.check_covers(
        [c for _, c in configs],
        f"arch {arch.name!r}",
        f"the arch is not of the table's space {table.meta.get('space', {}).get('name')!r}, "
        f"or takes another input size or number of classes",
    )
    out, scale = [], table.scale
    for name, config in configs:
        ms, measured = table.find(config)
        out.append(BlockLatency(name, config, ms * scale, measured))
    return out


def predict_latency(arch_def, table) -> float:
    """The predicted latency of `arch_def` (an ArchDef or mapping) in milliseconds: the sum of
    its blocks' and its classifier's entries in `table` (a LatencyTable, or a path: then the
    table is checked and its warnings logged) times the table's calibration scale, plus its
    offset. LatencyTableError when the table lacks one."""
    table = as_table(table)
    total = table.offset_ms
    for block in latency_breakdown(arch_def, table):
        total = total + block.ms
    return total
