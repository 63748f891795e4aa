"""The command line of tools/benchmark_search.py.

`main(argv)` parses and resolves the options, runs the benchmark, prints the report (the
program's output, on stdout) and writes the JSON and the plot. Progress goes through `logging`;
when nothing configured logging, `main` sets up a plain stderr handler for it.
"""

import argparse
import json
import os
import time

import torch

from .. import setup_logging
from .network import DEFAULT_LAYOUT, NUM_CLASSES, QUICK_LAYOUT, VARIANTS
from .plot import write_plot
from .report import format_report
from .run import run_benchmark

DEFAULT_KS = (1, 2, 4, 8, 16, 32)
DEFAULT_RESOLUTION_SETS = ((64,), (64, 56), (64, 56, 48), (64, 56, 48, 40))
DEFAULT_OUTPUT_DIR = os.path.join("output", "benchmark_search")

#: The logger of the benchmark's modules (`benchmarks.search_cost.*`).
PACKAGE_LOGGER = __name__.rpartition(".")[0]


def _int_list(text):
    return [int(v) for v in text.replace(",", " ").split()]


def _res_sets(text):
    """'64;64,56;64,56,48' -> [[64], [64, 56], [64, 56, 48]]."""
    return [_int_list(part) for part in text.split(";") if part.strip()]


def build_parser():
    p = argparse.ArgumentParser(
        description="Benchmark channel search by masking (DMaskingNAS) against the plain "
        "max-width network and conventional DNAS; and resolution search.",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 32; quick 4)")
    p.add_argument("--size", type=int, default=None, help="input size (default 64; quick 32)")
    p.add_argument(
        "--ks",
        type=_int_list,
        default=None,
        help="channel option counts, e.g. '1,2,4,8,16,32' (the default)",
    )
    p.add_argument(
        "--resolutions",
        dest="resolution_sets",
        type=_res_sets,
        default=None,
        help="resolution option sets, ';'-separated, max first and = --size "
        "(default '64;64,56;64,56,48;64,56,48,40'); '' to skip",
    )
    p.add_argument(
        "--variants",
        type=lambda t: t.replace(",", " ").split(),
        default=list(VARIANTS),
        help="subset of masked,plain,dnas",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="warm-up steps before the saved-bytes step (itself a forward + "
        "backward) and the timed steps (default 1)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed steps (default 10)")
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds of timed steps per config; slow configs run fewer repeats, at "
        "least --min-repeats (default 6; 0 = always --repeats)",
    )
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker (default: OMP_NUM_THREADS, else 1)",
    )
    p.add_argument(
        "--isolation",
        choices=("subprocess", "none"),
        default=None,
        help="run each config in a fresh process (default) or in this one (quick)",
    )
    p.add_argument(
        "--no-pair",
        dest="paired",
        action="store_false",
        help="time the masked supernet alone (ratios against the separate plain "
        "run) instead of alternating its steps with the plain network's",
    )
    p.add_argument(
        "--malloc",
        choices=("steady", "default"),
        default="steady",
        help="glibc malloc in the worker processes: 'steady' keeps freed memory "
        "(no trim / fresh mmap per step, see STEADY_MALLOC_TUNABLES; default) or "
        "glibc's 'default' (page-fault churn adds load-dependent time)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes for tests: batch 4, 32x32, k 1,4, resolutions 32;32,24, "
        "in-process, 1 warm-up + 2 steps",
    )
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR)
    p.add_argument(
        "--json",
        default=None,
        help="write results here (default OUTPUT_DIR/results.json; '' = none)",
    )
    p.add_argument(
        "--plot", default=None, help="write the plot here (default OUTPUT_DIR/benchmark.png)"
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 if any target FAILs")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def resolve_args(ns):
    """The parsed options (Namespace or mapping) with every default filled in, as a dict."""
    args = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    quick = args["quick"]
    defaults = {
        "batch": 4 if quick else 32,
        "size": 32 if quick else 64,
        "ks": [1, 4] if quick else list(DEFAULT_KS),
        "warmup": 1,
        "repeats": 2 if quick else 10,
        "time_budget": 0 if quick else 6.0,
        "isolation": "none" if quick else "subprocess",
    }
    for key, value in defaults.items():
        if args.get(key) is None:
            args[key] = value
    if args.get("resolution_sets") is None:
        args["resolution_sets"] = (
            [[32], [32, 24]] if quick else [list(s) for s in DEFAULT_RESOLUTION_SETS]
        )
    args["repeats"] = max(1, args["repeats"])
    args["min_repeats"] = min(max(1, args["min_repeats"]), args["repeats"])
    if args.get("threads") is None:
        try:
            args["threads"] = int(os.environ.get("OMP_NUM_THREADS", "1"))
        except ValueError:
            args["threads"] = 1
    args["layout"] = [list(r) for r in (QUICK_LAYOUT if quick else DEFAULT_LAYOUT)]
    args.setdefault("num_classes", NUM_CLASSES)
    unknown = [v for v in args["variants"] if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"Unknown variant(s) {unknown}; choose from {VARIANTS}.")
    if "plain" not in args["variants"]:
        raise SystemExit("The 'plain' variant is the reference of every ratio; keep it.")
    if args["device"].startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available.")
    if args["json"] is None:  # "" = do not write
        args["json"] = os.path.join(args["output_dir"], "results.json")
    args["plot"] = (
        None
        if args["no_plot"]
        else (args["plot"] or os.path.join(args["output_dir"], "benchmark.png"))
    )
    return args


def main(argv=None):
    t0 = time.perf_counter()
    args = resolve_args(build_parser().parse_args(argv))
    setup_logging(PACKAGE_LOGGER)
    torch.set_num_threads(args["threads"])
    results = run_benchmark(args)
    results["total_wall_s"] = time.perf_counter() - t0
    print(format_report(results))
    print(f"\nwall time {results['total_wall_s']:.1f}s")
    if args["json"]:
        os.makedirs(os.path.dirname(os.path.abspath(args["json"])), exist_ok=True)
        with open(args["json"], "w") as f:
            json.dump(results, f, indent=1)
        print(f"JSON: {args['json']}")
    if args["plot"]:
        print(f"plot: {write_plot(results, args['plot'])}")
    failed = [t for t in results["targets"] if not t["pass"]]
    return 1 if args["strict"] and failed else 0
