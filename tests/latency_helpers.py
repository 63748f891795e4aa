"""Stand-ins for measured latencies: deterministic functions of a block configuration, so
that tables are built in milliseconds and every figure a test checks is known exactly."""

import math

from mobile_cv_nas.arch import parse_arch_def
from mobile_cv_nas.search.latency import arch_configs, build_latency_table


def multilinear_ms(config):
    """A latency multilinear in the widths (what grid interpolation reproduces exactly),
    different for every op, stride and input size."""
    mid = config.c_in if config.mid is None else config.mid
    k = 25 if "k5" in config.op else 9
    se = 0.3 if "_se" in config.op else 0.0
    pixels = config.hw * config.hw / config.stride**2
    work = (k * mid + mid * config.c_out) * pixels
    if config.mid is not None:  # the expansion conv
        work += config.c_in * mid * config.hw**2
    if config.op == "skip" and config.has_identity:  # an identity
        work = 0.0
    return 0.01 + se + 1e-3 * len(config.op) + 1e-5 * work


def curved_ms(config):
    """A latency with a convex term in the input width (interpolation overestimates it)."""
    return multilinear_ms(config) + 1e-4 * config.c_in**2


def log_ms(config):
    """A latency concave in every width (interpolation underestimates it): positive,
    different for every configuration."""
    mid = config.c_in if config.mid is None else config.mid
    return 0.05 + math.log(config.c_in * mid * config.c_out) * config.hw / 100.0


def whole_model_ms(measure, offset=0.1, scale=1.2):
    """A whole-model 'timer': offset + scale x the sum of `measure` over the arch's blocks."""

    def measure_arch(arch):
        return offset + scale * sum(measure(c) for _, c in arch_configs(parse_arch_def(arch)))

    return measure_arch


def fake_table(space, path, measure=multilinear_ms, grid=0, calibrated=False, **kwargs):
    """A complete table of `space` at `path` with `measure` standing in for the timer
    (`calibrated`: and calibrated on 4 networks timed by `whole_model_ms(measure)`)."""
    if calibrated:
        kwargs.update(calibrate=4, measure_arch=whole_model_ms(measure), calibrate_seconds=0)
    return build_latency_table(space, path, grid=grid, measure=measure, progress=None, **kwargs)
