"""The command line of tools/benchmark_search_quality.py.

`main(argv)` parses and resolves the options, runs the benchmark, prints the report (the
program's output, on stdout; the engine's runs log to stdout too, as tools/train_net.py does)
and writes the JSON and the plot. User errors (bad config, search folder, no random arch in
the window, an OUTPUT_DIR holding a run) print one line and exit with status 2.
"""

import argparse
import json
import os
import sys
import time

import torch

from mobile_cv_nas.engine.errors import USER_ERRORS

from .. import setup_logging
from .plot import write_plot
from .report import format_report
from .run import SearchDirError, run_benchmark
from .sampling import DEFAULT_MAX_TRIES, DEFAULT_TOLERANCE, SamplingError
from .training import check_overrides

DEFAULT_SEARCH_CONFIG = os.path.join("configs", "search", "fashion_mnist_cpu.yaml")
DEFAULT_TRAIN_CONFIG = os.path.join("configs", "train", "fashion_mnist_cpu.yaml")
DEFAULT_OUTPUT = os.path.join("output", "search_quality")
ERRORS = (*USER_ERRORS, SamplingError, SearchDirError)

#: The logger of the benchmark's modules (`benchmarks.search_quality.*`).
PACKAGE_LOGGER = __name__.rpartition(".")[0]


def _repo_file(path):
    """`path` as given when it exists, else relative to the checkout holding tools/benchmarks
    (so the default configs resolve from any working folder)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    candidate = os.path.join(root, path)
    return candidate if os.path.exists(candidate) else path


def _seeds(text):
    return [int(v) for v in text.replace(",", " ").split()]


def build_parser():
    p = argparse.ArgumentParser(
        description="Search quality: train the searched architecture and random architectures "
        "of the same space within +-10% of its FLOPs with one short schedule; compare their "
        "validation accuracy, and time a search iteration against a training iteration of the "
        "space's largest candidate.",
        epilog="Trailing KEY VALUE pairs override the train config in every training run "
        "(e.g. SOLVER.EPOCHS 1).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--search-dir", help="OUTPUT_DIR of a finished search (arch.yaml, config)")
    src.add_argument(
        "--run-search",
        action="store_true",
        help="run the demo search (--search-config, on the embedded Fashion-MNIST subset) "
        "into OUTPUT/search first",
    )
    p.add_argument("--search-config", default=DEFAULT_SEARCH_CONFIG)
    p.add_argument("--train-config", default=DEFAULT_TRAIN_CONFIG, help="the short schedule")
    p.add_argument("--num-random", type=int, default=3, help="random architectures (>= 3)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed and every run's SEED")
    p.add_argument(
        "--noise-seeds",
        type=_seeds,
        default=[],
        help="also train the searched arch with these seeds (e.g. '1,2'), to show the "
        "seed-to-seed spread of one architecture",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="FLOP window of the random archs, a fraction of the searched arch's (0.1)",
    )
    p.add_argument("--max-tries", type=int, default=DEFAULT_MAX_TRIES, help="random draws")
    p.add_argument(
        "--timing-iters", type=int, default=20, help="timed iterations of each kind (0: none)"
    )
    p.add_argument("--timing-warmup", type=int, default=3)
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="folder of runs, JSON and plot")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of training")
    return p


def resolve_args(ns):
    """The parsed options (Namespace or mapping) with paths and defaults filled in, a dict."""
    args = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    if args["num_random"] < 3:
        raise SystemExit("--num-random must be >= 3 (a mean and a spread need a few samples).")
    if not 0 < args["tolerance"] < 1:
        raise SystemExit(f"--tolerance must be in (0, 1), got {args['tolerance']}.")
    if args["max_tries"] < 1 or args["timing_iters"] < 0 or args["timing_warmup"] < 0:
        raise SystemExit("--max-tries must be >= 1, --timing-iters and --timing-warmup >= 0.")
    args["search_config"] = _repo_file(args["search_config"])
    args["train_config"] = _repo_file(args["train_config"])
    if args["run_search"]:
        args["search_dir"] = os.path.join(args["output"], "search")
    args["overrides"] = list(args.pop("opts") or [])
    args["threads"] = torch.get_num_threads()
    args["json"] = os.path.join(args["output"], "report.json")
    args["plot"] = (
        None if args["no_plot"] else os.path.join(args["output"], "accuracy_vs_mflops.png")
    )
    return args


def main(argv=None):
    t0 = time.perf_counter()
    args = resolve_args(build_parser().parse_args(argv))
    setup_logging(PACKAGE_LOGGER)
    try:
        check_overrides(args["overrides"])
        results = run_benchmark(args)
    except ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results["total_wall_s"] = time.perf_counter() - t0
    os.makedirs(args["output"], exist_ok=True)
    with open(args["json"], "w") as f:
        json.dump(results, f, indent=1)
    print(format_report(results))
    print(f"\nwall time {results['total_wall_s']:.0f}s; JSON: {args['json']}")
    if args["plot"]:
        print(f"plot: {write_plot(results, args['plot'])}")
    return 0
