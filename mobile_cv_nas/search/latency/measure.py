"""Measuring one configuration: its module built alone, in eval mode without autograd, timed
with `torch.utils.benchmark.Timer` (warm-up, then the median of repeated blocks, the thread
count fixed), and a description of the machine the numbers belong to.

Timing. A first call (allocations, oneDNN primitive creation) sets how many calls make a block
of at least `block_s`; `warmup_s` of calls follow untimed; then blocks are timed until
`min_run_s` has passed (at least `min_blocks`, at most `max_blocks`), and the median of the
blocks' per-call times is the entry. Medians of blocks of a millisecond or more keep timer
overhead out of the figure and shrug off another process's burst on a shared machine.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform

import torch
from torch.utils.benchmark import Timer

from ...arch.builder import ClassifierHead
from ...blocks import BLOCK_REGISTRY
from .configs import BlockConfig, op_kind


@dataclasses.dataclass(frozen=True)
class TimingSettings:
    """How long each configuration is timed (see the module doc)."""

    warmup_s: float = 0.01
    block_s: float = 0.001
    min_run_s: float = 0.04
    min_blocks: int = 5
    max_blocks: int = 50


def build_module(config: BlockConfig, width_divisor: int) -> torch.nn.Module:
    """The module `config` describes, as the plain builder makes it (norms at their defaults)."""
    kind = op_kind(config.op)
    if kind == "classifier":
        return ClassifierHead(config.c_in, config.c_out)
    options = {"stride": config.stride, "width_divisor": width_divisor}
    if kind == "ir":
        options["mid_channels"] = config.c_in if config.mid is None else config.mid
        options["force_pw"] = config.mid is not None
        if config.no_identity:
            options["residual"] = False
    elif kind == "skip" and config.no_identity:
        options["projection"] = True
    elif kind == "pool":
        options["mid_channels"] = config.mid
    builder = BLOCK_REGISTRY.get(config.op)
    return builder(config.c_in, config.c_out, **BLOCK_REGISTRY.select_options(config.op, options))


def time_module(module, inputs, threads, settings=None) -> float:
    """Median seconds per call of `module(inputs)` (see the module doc); autograd off."""
    settings = TimingSettings() if settings is None else settings
    timer = Timer(
        stmt="module(inputs)",
        globals={"module": module, "inputs": inputs},
        num_threads=threads,
    )
    with torch.inference_mode():
        first = timer.timeit(1).times[0]
        number = max(1, math.ceil(settings.block_s / max(first, 1e-9)))
        warm = max(1, math.ceil(settings.warmup_s / max(first * number, 1e-9)))
        timer.timeit(number * warm)
        times, spent = [], 0.0
        while len(times) < settings.max_blocks and (
            len(times) < settings.min_blocks or spent < settings.min_run_s
        ):
            t = timer.timeit(number).times[0]
            times.append(t)
            spent += t * number
    times.sort()
    mid = len(times) // 2
    return times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2


class Measurer:
    """Measures configurations on one device, thread count, batch and dtype: `measurer(config)`
    is its median latency in milliseconds."""

    def __init__(
        self,
        width_divisor,
        device="cpu",
        threads=1,
        batch=1,
        dtype=torch.float32,
        settings=None,
    ):
        self.width_divisor, self.device = width_divisor, torch.device(device)
        self.threads, self.batch, self.dtype = threads, batch, dtype
        self.settings = TimingSettings() if settings is None else settings
        torch.set_num_threads(threads)

    def __call__(self, config: BlockConfig) -> float:
        module = build_module(config, self.width_divisor).eval()
        module = module.to(device=self.device, dtype=self.dtype)
        inputs = torch.randn(
            self.batch, config.c_in, config.hw, config.hw, device=self.device, dtype=self.dtype
        )
        return time_module(module, inputs, self.threads, self.settings) * 1e3


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device="cpu") -> dict:
    """What the numbers were measured on, without naming the host: CPU model and core count,
    architecture and OS (and the GPU's name on CUDA)."""
    out = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "arch": platform.machine(),
        "system": platform.system(),
    }
    if torch.device(device).type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out
