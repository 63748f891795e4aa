"""Latency-aware search: latency tables (LUTs) of a search space's blocks, measured on the
target hardware, the predicted latency of a plain arch def, and the expected latency of a
supernet's gates as a search cost (NAS.COST.METRIC latency, NAS.COST.LUT).

Modules: `configs` (what one entry measures; every configuration of a space or arch def),
`grid` (which widths are measured, multilinear interpolation of the rest), `measure`
(timing one module with torch.utils.benchmark), `build` (building a table, resumable),
`table` (the file format, look-ups, the checks that refuse a table that does not fit),
`calibrate` (one scale from blocks timed alone to whole models), `predict`
(`predict_latency`), `expected` (the supernet's differentiable expected latency).
"""

from .build import build_latency_table, interpolation_error
from .calibrate import calibrate_table, measure_arch, sample_archs
from .configs import CLASSIFIER, BlockAxes, BlockConfig, arch_configs, space_axes, space_configs
from .expected import SupernetLatency
from .grid import GridIndex, grid_configs
from .measure import Measurer, TimingSettings, build_module, machine_description, time_module
from .predict import BlockLatency, latency_breakdown, predict_latency
from .table import (
    LatencyTable,
    LatencyTableError,
    check_table,
    load_latency_table,
    space_fingerprint,
)

__all__ = [
    "CLASSIFIER",
    "BlockAxes",
    "BlockConfig",
    "BlockLatency",
    "GridIndex",
    "LatencyTable",
    "LatencyTableError",
    "Measurer",
    "SupernetLatency",
    "TimingSettings",
    "arch_configs",
    "build_latency_table",
    "build_module",
    "calibrate_table",
    "check_table",
    "grid_configs",
    "interpolation_error",
    "latency_breakdown",
    "load_latency_table",
    "machine_description",
    "measure_arch",
    "predict_latency",
    "sample_archs",
    "space_axes",
    "space_configs",
    "space_fingerprint",
    "time_module",
]
