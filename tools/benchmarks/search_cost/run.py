"""Running the whole benchmark: the list of configurations, their measurement (each in its
own worker process by default), and the results dict (what --json writes).

Resolution search: the supernet at fixed (max) channels with only the resolution decision,
against the plain network at the max resolution; the target bound on its time ratio is
sum_i (r_i / r_max)^2 * TARGET_RESOLUTION_SLACK, shown next to the FLOP ratio
sum_i FLOPs(r_i) / FLOPs(r_max) (`mobile_cv_nas.flops.count_flops` of the plain model).
"""

import logging
import platform
import time
import warnings

import torch

from .measure import peak_minus_build
from .network import plain_model
from .report import build_notes, fmt_bytes, this_run_reference
from .targets import evaluate_targets, resolution_time_bound
from .workers import measure_function

logger = logging.getLogger(__name__)


def flop_ratio(layout, num_classes, resolutions):
    """(sum_i FLOPs(r_i) / FLOPs(r_max), {r: FLOPs}) of the plain model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation chatter of fvcore's tracing
        from mobile_cv_nas.flops import count_flops

        model = plain_model(layout, num_classes, max(resolutions))
        flops = {r: count_flops(model, r).flops for r in resolutions}
    return sum(flops.values()) / flops[max(resolutions)], flops


def _config_weight(variant, k, n_res):
    """Rough relative wall time of a configuration (fitted on the default CPU run), for the ETA."""
    if variant == "dnas":
        return 1.2 + 0.15 * k
    if variant == "masked":
        return 1.4 if n_res == 1 else 1.6
    return 1.0


class _Progress:
    """Logs '[i/n] label (elapsed, ETA)' before each configuration."""

    def __init__(self, total, level=logging.INFO):
        self.total, self.done, self.level = total, 0, level
        self.start = time.perf_counter()
        self.weights_done = 0.0

    def begin(self, label, remaining_weight):
        elapsed = time.perf_counter() - self.start
        if self.weights_done > 0:
            eta = f"ETA {elapsed / self.weights_done * remaining_weight:.0f}s"
        else:
            eta = "ETA ?"
        logger.log(
            self.level,
            "[%d/%d] %s (elapsed %.0fs, %s)",
            self.done + 1,
            self.total,
            label,
            elapsed,
            eta,
        )

    def end(self, weight):
        self.done += 1
        self.weights_done += weight


def benchmark_configs(ks, variants, size, resolution_sets):
    """[(variant, k, resolutions)] to measure, the plain network first and each once."""
    plain_key = ("plain", 1, (size,))  # the max-width network: the same for every k
    configs = [plain_key]
    for k in ks:
        for variant in variants:
            key = plain_key if variant == "plain" else (variant, k, (size,))
            if key not in configs:
                configs.append(key)
    for s in resolution_sets:
        if max(s) != size:
            raise ValueError(f"Resolution set {s} must have the input size {size} as its max.")
        key = ("masked", 1, tuple(s))
        if key not in configs:
            configs.append(key)
    return configs


def run_benchmark(args):
    """Run every configuration; returns the results dict (also what --json writes).

    `args`: the resolved options (`cli.resolve_args`). Progress is logged at INFO (DEBUG with
    `quiet`) on this module's logger.
    """
    args = dict(args)
    layout = tuple(tuple(r) for r in args["layout"])
    size = args["size"]
    resolution_sets = [sorted(s, reverse=True) for s in args["resolution_sets"]]
    base = {
        "batch": args["batch"],
        "size": size,
        "device": args["device"],
        "warmup": args["warmup"],
        "repeats": args["repeats"],
        "time_budget": args["time_budget"],
        "min_repeats": args["min_repeats"],
        "threads": args["threads"],
        "seed": args["seed"],
        "malloc": args["malloc"],
        "layout": [list(r) for r in layout],
        "num_classes": args["num_classes"],
    }
    configs = benchmark_configs(args["ks"], args["variants"], size, resolution_sets)
    plain_key = configs[0]
    measure = measure_function(args["isolation"])
    progress = _Progress(len(configs), logging.DEBUG if args.get("quiet") else logging.INFO)
    weights = [_config_weight(v, k, len(r)) for v, k, r in configs]
    measured = {}
    t0 = time.perf_counter()
    for i, (variant, k, res) in enumerate(configs):
        progress.begin(f"{variant} k={k} resolutions={list(res)}", sum(weights[i:]))
        cfg = dict(
            base,
            variant=variant,
            k=k,
            resolutions=list(res),
            paired=args["paired"] and variant == "masked",
        )
        m = measured[(variant, k, res)] = measure(cfg)
        logger.debug(
            "  saved %s MiB, %.1f ms/step over %d steps",
            fmt_bytes(m["saved_bytes"]),
            m["step_time_s"] * 1e3,
            m["repeats"],
        )
        progress.end(weights[i])
    wall = time.perf_counter() - t0
    plain = measured[plain_key]

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    isolated = args["isolation"] == "subprocess"

    def peak_ratio(a, b):  # peaks in one shared process mean nothing
        return ratio(peak_minus_build(a), peak_minus_build(b)) if isolated else None

    def time_ratio(m):  # paired (alternating steps in one process) where measured so
        if "paired_time_ratio" in m:
            return m["paired_time_ratio"]
        return ratio(m["step_time_s"], plain["step_time_s"])

    channel_rows = []
    for k in args["ks"]:
        row = {"k": k}
        for variant in args["variants"]:
            m = plain if variant == "plain" else measured[(variant, k, (size,))]
            row[variant] = m
            row[f"{variant}_saved_vs_plain"] = ratio(m["saved_bytes"], plain["saved_bytes"])
            row[f"{variant}_time_vs_plain"] = time_ratio(m)
            row[f"{variant}_time_ratio_paired"] = "paired_time_ratio" in m
            row[f"{variant}_peak_vs_plain"] = peak_ratio(m, plain)
        channel_rows.append(row)

    resolution_rows = []
    for s in resolution_sets:
        s = tuple(s)
        m = measured[("masked", 1, s)]
        pixel_ratio, time_bound = resolution_time_bound(s, size)
        flops_x, flops = flop_ratio(layout, args["num_classes"], s)
        resolution_rows.append(
            {
                "resolutions": list(s),
                "n": len(s),
                "supernet": m,
                "time_vs_plain": time_ratio(m),
                "time_ratio_paired": "paired_time_ratio" in m,
                "saved_vs_plain": ratio(m["saved_bytes"], plain["saved_bytes"]),
                "peak_vs_plain": peak_ratio(m, plain),
                "pixel_ratio": pixel_ratio,
                "time_bound": time_bound,
                "flop_ratio": flops_x,
                "flops_per_resolution": {str(r): f for r, f in flops.items()},
            }
        )

    results = {
        "settings": {
            "batch": args["batch"],
            "size": size,
            "device": args["device"],
            "ks": list(args["ks"]),
            "resolution_sets": [list(s) for s in resolution_sets],
            "warmup": args["warmup"],
            "repeats": args["repeats"],
            "time_budget_s": args["time_budget"],
            "threads": args["threads"],
            "isolation": args["isolation"],
            "layout": [list(r) for r in layout],
            "num_classes": args["num_classes"],
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "paired": args["paired"],
            "malloc": args["malloc"],
        },
        "notes": build_notes(args["paired"], args["malloc"], isolated),
        "plain": plain,
        "channels": channel_rows,
        "resolution": resolution_rows,
        "measure_wall_s": wall,
    }
    results["targets"] = evaluate_targets(results)
    results["this_run_reference"] = this_run_reference(results)
    logger.log(progress.level, "Measured %d configurations in %.0fs.", len(configs), wall)
    return results
