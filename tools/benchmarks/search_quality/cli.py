"""The command line of tools/benchmark_search_quality.py.

`main(argv)` parses and resolves the options, runs the benchmark, prints the report (the
program's output, on stdout; the engine's runs log to stdout too, as tools/train_net.py does)
and writes the JSON and the plot. User errors (bad config, search folder, no random arch in
the window, a folder holding another benchmark's run, --data full without the full set)
print one line and exit with status 2.
"""

import argparse
import os
import sys
import time

from mobile_cv_nas.engine.errors import USER_ERRORS
from mobile_cv_nas.io import write_json

from .. import setup_logging
from .plot import write_plot
from .report import format_report
from .run import SearchDirError, run_benchmark
from .sampling import DEFAULT_MAX_TRIES, DEFAULT_TOLERANCE, SamplingError
from .training import check_overrides

DEFAULT_SEARCH_CONFIG = os.path.join("configs", "search", "fashion_mnist_cpu.yaml")
DEFAULT_TRAIN_CONFIG = os.path.join("configs", "train", "fashion_mnist_cpu.yaml")
DEFAULT_OUTPUT = os.path.join("output", "search_quality")
#: Log-scale fractions of the space's FLOP range: its geometric middle (the engine's default
#: target) and two above, where uniformly random architectures are dense enough to draw 8
#: within +-10% of a searched one (fashion_mnist: 90% of them lie between 0.41 and 0.82,
#: 0.14..0.77 MFLOPs, and searches land at or below their budget).
DEFAULT_BUDGETS = [0.5, 0.65, 0.8]
DEFAULT_MODES = ["mixture", "single_path"]
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


def _floats(text):
    return [float(v) for v in text.replace(",", " ").split()]


def _names(text):
    return [v for v in text.replace(",", " ").split() if v]


def build_parser():
    p = argparse.ArgumentParser(
        description="Search quality at several budgets: search at each FLOP budget with each "
        "sampling mode, train every searched architecture with several seeds and random "
        "architectures of the same space within +-10% of its FLOPs with one short schedule; "
        "report the share of random archs beaten and a one-sided rank test, draw accuracy "
        "against MFLOPs, and time a search iteration against a training iteration of the "
        "space's largest candidate. A rerun with the same --output reuses finished runs.",
        epilog="Trailing KEY VALUE pairs override the config of every search and training run "
        "(e.g. SOLVER.EPOCHS 1).",
    )
    p.add_argument(
        "--search-dir",
        help="OUTPUT_DIR of one finished search to evaluate instead of running the searches",
    )
    budgets = p.add_mutually_exclusive_group()
    budgets.add_argument(
        "--budgets",
        type=_floats,
        default=DEFAULT_BUDGETS,
        help="budgets as fractions of the space's FLOP range on a log scale (0: the cheapest "
        "architecture, 1: the dearest; default 0.5,0.65,0.8)",
    )
    budgets.add_argument("--budgets-m", type=_floats, help="budgets in MFLOPs, e.g. 0.1,0.2,0.4")
    p.add_argument(
        "--modes",
        type=_names,
        default=DEFAULT_MODES,
        help="sampling modes of the search (NAS.SAMPLING), default mixture,single_path",
    )
    p.add_argument(
        "--data",
        choices=("subset", "full"),
        default="subset",
        help="the embedded Fashion-MNIST subset (default) or the full set (install it with "
        "python tools/fetch_fashion_mnist.py)",
    )
    p.add_argument("--search-config", default=DEFAULT_SEARCH_CONFIG)
    p.add_argument("--train-config", default=DEFAULT_TRAIN_CONFIG, help="the short schedule")
    p.add_argument("--num-random", type=int, default=8, help="random archs per budget (8)")
    p.add_argument(
        "--searched-seeds", type=int, default=3, help="training seeds of a searched arch (3)"
    )
    p.add_argument(
        "--random-seeds", type=int, default=1, help="training seeds of a random arch (1)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed and the first run seed")
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
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of every run")
    return p


def resolve_args(ns):
    """The parsed options (Namespace or mapping) with paths and defaults filled in, a dict."""
    args = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    if args["num_random"] < 2:
        raise SystemExit("--num-random must be >= 2 (8 by default).")
    if args["searched_seeds"] < 1 or args["random_seeds"] < 1:
        raise SystemExit("--searched-seeds and --random-seeds must be >= 1.")
    if not args["modes"]:
        raise SystemExit("--modes needs at least one sampling mode.")
    if not 0 < args["tolerance"] < 1:
        raise SystemExit(f"--tolerance must be in (0, 1), got {args['tolerance']}.")
    if args["max_tries"] < 1 or args["timing_iters"] < 0 or args["timing_warmup"] < 0:
        raise SystemExit("--max-tries must be >= 1, --timing-iters and --timing-warmup >= 0.")
    args["search_config"] = _repo_file(args["search_config"])
    args["train_config"] = _repo_file(args["train_config"])
    args["overrides"] = list(args.pop("opts") or [])
    args["json"] = os.path.join(args["output"], "report.json")
    args["plot"] = None if args["no_plot"] else os.path.join(args["output"], "pareto.png")
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
    write_json(args["json"], results)
    print(format_report(results))
    print(f"\nwall time {results['total_wall_s']:.0f}s; JSON: {args['json']}")
    if args["plot"]:
        print(f"plot: {write_plot(results, args['plot'])}")
    return 0
