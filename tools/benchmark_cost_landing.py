#!/usr/bin/env python3
"""Does the cost term land a search on its budget anywhere in a space's range? For each space
and metric, targets spread geometrically over the space's exact cost range, the alphas are
optimised on the cost term alone (no data: costs come from effective shapes) and derived as
a search derives (mobile_cv_nas/search/cost_only.py). Prints, per target, the plain argmax's,
the expected and the derived architecture's miss and the decisions the derivation moved.

    OMP_NUM_THREADS=1 python tools/benchmark_cost_landing.py            # F, L, P x FLOPs,
                                                                        # params x 5 targets
    python tools/benchmark_cost_landing.py --spaces fashion_mnist --json out.json

Exit status 1 when a derived architecture misses by more than --tolerance (unless --no-strict).
"""

import argparse
import json
import logging
import os
import sys
import time
import warnings

warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning
)

try:
    import mobile_cv_nas  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mobile_cv_nas.io import atomic_write  # noqa: E402
from mobile_cv_nas.search import Supernet  # noqa: E402
from mobile_cv_nas.search.cost_bounds import cost_range  # noqa: E402
from mobile_cv_nas.search.cost_only import cost_only_search, spread_targets  # noqa: E402

logger = logging.getLogger("benchmark_cost_landing")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spaces", default="fbnetv2_f,fbnetv2_l,fbnetv2_p")
    p.add_argument("--metrics", default="flops,params")
    p.add_argument("--targets", type=int, default=5, help="targets per space and metric")
    p.add_argument("--steps", type=int, default=60, help="Adam steps on the cost term")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--tolerance", type=float, default=0.02, help="relative miss allowed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--no-strict", action="store_true", help="exit 0 even when a target misses")
    args = p.parse_args(argv)
    if args.targets < 1 or args.steps < 2 or not args.tolerance > 0:
        p.error("--targets must be >= 1, --steps >= 2 and --tolerance > 0.")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    cases = [
        (space, metric) for space in args.spaces.split(",") for metric in args.metrics.split(",")
    ]
    rows, started = [], time.perf_counter()
    print(f"{'space':<14}{'metric':<8}{'target (M)':>12}{'argmax':>9}{'expected':>10}"
          f"{'derived':>9}{'moved':>7}")  # fmt: skip
    for n, (space, metric) in enumerate(cases):
        net = Supernet(space)
        low, high = cost_range(net, metric)
        for target in spread_targets(low, high, args.targets):
            result = cost_only_search(
                net, metric, target, args.steps, args.lr, tolerance=args.tolerance, seed=args.seed
            )
            row = {
                "space": space,
                "metric": metric,
                "target_m": target / 1e6,
                "range_m": [low / 1e6, high / 1e6],
                "argmax_miss": result.miss("argmax"),
                "expected_miss": result.miss("expected"),
                "derived_miss": result.miss(),
                "moved": [str(c) for c in result.changes],
            }
            rows.append(row)
            print(f"{space:<14}{metric:<8}{target / 1e6:>12.4g}{row['argmax_miss']:>+9.1%}"
                  f"{row['expected_miss']:>+10.1%}{row['derived_miss']:>+9.2%}"
                  f"{len(result.changes):>7}", flush=True)  # fmt: skip
        elapsed = time.perf_counter() - started
        eta = elapsed / (n + 1) * (len(cases) - n - 1)
        logger.info("%d of %d space/metric pairs done, ETA %.0f s", n + 1, len(cases), eta)
    landed = sum(abs(r["derived_miss"]) <= args.tolerance for r in rows)
    argmax = sum(abs(r["argmax_miss"]) <= args.tolerance for r in rows)
    print(f"derived within +-{args.tolerance:.0%}: {landed} of {len(rows)}; "
          f"plain argmax: {argmax} of {len(rows)}")  # fmt: skip
    if args.json:
        text = json.dumps({"args": vars(args), "rows": rows}, indent=1)
        atomic_write(args.json, lambda f: f.write(text), "w")
    return 0 if args.no_strict or landed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
