#!/usr/bin/env python3
"""How well does a latency table predict the latency of whole networks? Random architectures of a
search space (one uniformly random option per decision, seeded) are built as plain models and
timed end to end exactly as the table's blocks were (same device, threads, batch, dtype and
timer; each the lowest of its times in rounds over all of them, at least --passes and
--min-seconds of them, as a calibration times its models: calibrate.measure_archs); their
predicted latency (`predict_latency`, the sum of their blocks' entries through the table's
calibration line) is compared with the measurement. The architectures the table was calibrated
on are left out, so the figures are on others.

    OMP_NUM_THREADS=1 python tools/build_latency_lut.py --space fbnetv2_f --output f_lut.json
    OMP_NUM_THREADS=1 python tools/benchmark_latency.py --space fbnetv2_f --lut f_lut.json \\
        --num-archs 100 --plot latency_f.png --json latency_f.json

Prints the share of architectures predicted within +-10% and +-5% of their measured latency,
the median and worst error, and the Spearman rank correlation of predicted vs measured
latency next to that of FLOPs vs measured latency (FLOPs as the predictor); draws predicted
and FLOPs against measured (PNG). The table must fit the space and this machine's settings
(it is checked as a search checks it). Exit status 1 with --min-within10 P when fewer than
P% land within +-10%. The share within +-10% of the entries alone (no calibration) is printed
too.
"""

import argparse
import logging
import math
import os
import statistics
import sys

try:
    import mobile_cv_nas  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mobile_cv_nas.cli_quiet import quiet_third_party_imports  # noqa: E402

quiet_third_party_imports()

import torch  # noqa: E402

from mobile_cv_nas.arch import ArchDefError, build_model, load_arch_def  # noqa: E402
from mobile_cv_nas.cli_errors import one_line, one_line_usage_errors  # noqa: E402
from mobile_cv_nas.flops import count_flops  # noqa: E402
from mobile_cv_nas.io import write_json  # noqa: E402
from mobile_cv_nas.search.latency import (  # noqa: E402
    LatencyTableError,
    TimingSettings,
    load_latency_table,
    machine_description,
    predict_latency,
)
from mobile_cv_nas.search.latency.calibrate import (  # noqa: E402
    MIN_SECONDS,
    PASSES,
    arch_fingerprint,
    calibration_archs,
    measure_arch,
    measure_archs,
    sample_archs,
)
from mobile_cv_nas.search.space import SearchSpaceError, as_search_space  # noqa: E402

# tools/benchmarks, beside this file (the search-quality benchmark's rank statistics)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks.search_quality.stats import midranks as ranks  # noqa: E402

logger = logging.getLogger("benchmark_latency")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True, help="a shipped space name or a space YAML")
    p.add_argument("--lut", required=True, help="the latency table of that space")
    p.add_argument("--num-archs", type=int, default=100)
    p.add_argument(
        "--archs",
        nargs="+",
        help="measure these arch YAMLs (e.g. a search's arch.yaml) instead of random ones",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--passes",
        type=int,
        default=PASSES,
        help="rounds over the architectures, at least; each one's time is its lowest",
    )
    p.add_argument(
        "--min-seconds",
        type=float,
        default=MIN_SECONDS,
        help="more rounds until this many seconds of timing (as a calibration times)",
    )
    p.add_argument("--plot", help="write the scatter plot here (PNG)")
    p.add_argument("--json", help="write every architecture's figures here")
    p.add_argument(
        "--no-drift-check",
        action="store_true",
        help="do not time the calibration's networks again (the drift since the calibration)",
    )
    p.add_argument(
        "--min-within10",
        type=float,
        help="exit 1 when fewer than this percentage is predicted within +-10%%",
    )
    one_line_usage_errors(p)
    args = p.parse_args(argv)
    if args.num_archs < 3 and not args.archs:
        p.error("--num-archs must be >= 3 (a rank correlation needs a few)")
    if args.passes < 1 or not args.min_seconds >= 0:
        p.error("--passes must be >= 1, --min-seconds >= 0")
    return args


# ------------------------------------------------------------------------------ figures


def spearman(a, b):
    """Spearman's rank correlation: Pearson's correlation of the ranks (ties averaged)."""
    ra, rb = ranks(a), ranks(b)
    n = len(ra)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va and vb else float("nan")


def summary(rows, drift=None):
    """The figures of `rows`; with `drift` (the calibration's networks' median time now / then
    - 1) also the share within +-10% of the predictions moved by it."""
    errors = [r["predicted_ms"] / r["measured_ms"] - 1 for r in rows]
    measured = [r["measured_ms"] for r in rows]
    absolute = sorted(abs(e) for e in errors)
    raw = [r.get("entries_sum_ms", r["predicted_ms"]) / r["measured_ms"] - 1 for r in rows]
    return {
        "archs": len(rows),
        "within_10pct": 100.0 * sum(e <= 0.10 for e in absolute) / len(rows),
        "within_5pct": 100.0 * sum(e <= 0.05 for e in absolute) / len(rows),
        "median_abs_error_pct": 100.0 * absolute[len(absolute) // 2],
        "worst_abs_error_pct": 100.0 * absolute[-1],
        "mean_error_pct": 100.0 * sum(errors) / len(errors),
        "within_10pct_uncalibrated": 100.0 * sum(abs(e) <= 0.10 for e in raw) / len(rows),
        "mean_error_uncalibrated_pct": 100.0 * sum(raw) / len(raw),
        "spearman_predicted": spearman([r["predicted_ms"] for r in rows], measured),
        "spearman_flops": spearman([r["flops"] for r in rows], measured),
        "measured_ms_range": [min(measured), max(measured)],
        "drift_since_calibration_pct": None if drift is None else 100.0 * drift,
        "within_10pct_drift_corrected": None
        if drift is None
        else 100.0
        * sum(abs(r["predicted_ms"] * (1 + drift) / r["measured_ms"] - 1) <= 0.10 for r in rows)
        / len(rows),
    }


# ------------------------------------------------------------------------------ the run


def run(args):
    space = as_search_space(args.space)
    table, warnings_ = load_latency_table(args.lut, space, machine=machine_description())
    for warning in warnings_:
        logger.warning(warning)
    meta = table.meta
    if meta["device"] == "cuda" and not torch.cuda.is_available():
        raise LatencyTableError(f"{table.where} was measured on cuda; CUDA is not available here.")
    torch.set_num_threads(meta["threads"])
    settings = TimingSettings(**meta["timing"]) if meta.get("timing") else TimingSettings()
    calibration = meta.get("calibration") or {}
    if args.archs:
        archs = [load_arch_def(path) for path in args.archs]
    else:  # the calibration's architectures left out: the figures are on ones it never saw
        archs = sample_archs(space, args.num_archs, args.seed, calibration.get("arch_sha256", ()))
    print(
        f"{len(archs)} architectures, each timed whole in rounds over all of them (at least "
        f"{args.passes}, {args.min_seconds:g} s), its lowest time kept",
        file=sys.stderr,
    )
    probes, then = ([], []) if args.no_drift_check else calibration_archs(space, calibration)
    if probes:
        print(
            f"and the calibration's {len(probes)} networks again, in the same rounds: how far "
            f"the machine moved since the calibration",
            file=sys.stderr,
        )
    measured = measure_archs(
        archs + probes,
        lambda arch: measure_arch(arch, meta, settings),
        args.passes,
        sys.stderr,
        min_seconds=args.min_seconds,
    )
    measured, now = measured[: len(archs)], measured[len(archs) :]
    drift = statistics.median(n / t for n, t in zip(now, then, strict=True)) - 1 if now else None
    rows = []
    for arch, ms in zip(archs, measured, strict=True):
        predicted = predict_latency(arch, table)
        rows.append(
            {
                "arch": arch.name,
                "sha256": arch_fingerprint(arch),
                "input_size": arch.input_size,
                "predicted_ms": predicted,
                "entries_sum_ms": (predicted - table.offset_ms) / table.scale,
                "measured_ms": ms,
            }
        )
        print(
            f"{arch.name}: predicted {predicted:.3f} ms, measured {ms:.3f} ms "
            f"({100 * (predicted / ms - 1):+.1f}%)",
            file=sys.stderr,
        )
    # FLOPs after every timing: fvcore's tracing left later timings in the same process 6-10%
    # slower (F space, 2-core CPU)
    for row, arch in zip(rows, archs, strict=True):
        row["flops"] = count_flops(build_model(arch), arch.input_size).flops
    stats = summary(rows, drift) if len(rows) >= 3 else None
    return rows, stats, dict(meta, drift=drift)


def plot(rows, stats, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r["measured_ms"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    left.scatter(measured, [r["predicted_ms"] for r in rows], s=12)
    low, high = min(measured), max(measured)
    line = [low * 0.9, high * 1.1]
    left.plot(line, line, color="black", linewidth=0.8, label="predicted = measured")
    for band in (0.9, 1.1):
        left.plot(line, [x * band for x in line], color="grey", linestyle="--", linewidth=0.6)
    left.set_xlabel("measured latency (ms)")
    left.set_ylabel("predicted latency (ms)")
    left.set_title(
        f"table: {stats['within_10pct']:.0f}% within +-10%, "
        f"Spearman {stats['spearman_predicted']:.3f}"
    )
    left.legend(loc="upper left", fontsize=8)
    right.scatter(measured, [r["flops"] / 1e6 for r in rows], s=12, color="tab:orange")
    right.set_xlabel("measured latency (ms)")
    right.set_ylabel("MFLOPs")
    right.set_title(f"FLOPs: Spearman {stats['spearman_flops']:.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rows, stats, meta = run(args)
    except (LatencyTableError, SearchSpaceError, ArchDefError, OSError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    where = (
        f"{meta['device']}, {meta['threads']} thread(s), batch {meta['batch']}, "
        f"{meta['dtype']}, torch {torch.__version__}, {meta.get('machine', {}).get('cpu')}"
    )
    if stats is None:  # a few given architectures: their lines above are the result
        if meta["drift"] is not None:
            print(
                f"the calibration's networks now measure {100 * meta['drift']:+.1f}% against "
                f"their calibration times (the machine moved)"
            )
        if args.json:
            write_json(args.json, {"space": args.space, "setting": where, "archs": rows})
        return 0
    kind = "given" if args.archs else "random"
    print(f"{args.space}: {stats['archs']} {kind} architectures ({where})")
    calibration = meta.get("calibration")
    if calibration:
        print(
            f"  table calibrated on {calibration['measured_archs']} other whole models "
            f"({calibration['offset_ms']:.3g} ms + {calibration['scale']:.3f} x entries); the "
            f"entries alone: "
            f"{stats['within_10pct_uncalibrated']:.0f}% within +-10%, mean error "
            f"{stats['mean_error_uncalibrated_pct']:+.1f}%"
        )
    else:
        print("  table not calibrated (tools/build_latency_lut.py --calibrate K)")
    print(
        f"  predicted within +-10%: {stats['within_10pct']:.0f}%, within +-5%: "
        f"{stats['within_5pct']:.0f}%; median |error| {stats['median_abs_error_pct']:.1f}%, "
        f"worst {stats['worst_abs_error_pct']:.1f}%, mean error {stats['mean_error_pct']:+.1f}%"
    )
    print(
        f"  Spearman rank correlation with the measured latency: table "
        f"{stats['spearman_predicted']:.3f}, FLOPs {stats['spearman_flops']:.3f}"
    )
    if meta["drift"] is not None:
        drift = meta["drift"]
        print(
            f"  the calibration's networks now measure {100 * drift:+.1f}% against their "
            f"calibration times (the machine moved); predictions moved by that: "
            f"{stats['within_10pct_drift_corrected']:.0f}% within +-10%"
            + (
                "; recalibrate (tools/build_latency_lut.py ... --recalibrate) on a settled machine"
                if abs(drift) > 0.05
                else ""
            )
        )
    if args.json:
        write_json(
            args.json,
            {
                "space": args.space,
                "setting": where,
                "calibration": meta.get("calibration"),
                "summary": stats,
                "archs": rows,
            },
        )
    if args.plot:
        plot(rows, stats, args.plot, f"{args.space}: {where}")
        print(f"  plot: {args.plot}")
    if args.min_within10 is not None and stats["within_10pct"] < args.min_within10:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
