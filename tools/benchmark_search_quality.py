#!/usr/bin/env python3
"""Search quality at several budgets, in one command: search at three FLOP budgets across the
space's range with each sampling mode, train each searched architecture with three seeds and
eight random architectures of the same space within +-10% of its FLOPs with one short
schedule, and test whether the search beats random; time a search iteration (and its weight
step, and peak memory) per mode against a training iteration of the largest candidate.

    export OMP_NUM_THREADS=1
    python tools/benchmark_search_quality.py                       # the README table
    python tools/benchmark_search_quality.py --modes mixture --budgets-m 0.1,0.3
    python tools/benchmark_search_quality.py --search-dir output/search_fashion_mnist
    python tools/fetch_fashion_mnist.py && python tools/benchmark_search_quality.py --data full

Prints, per budget and mode, the share of random architectures beaten and a one-sided
Mann-Whitney U test, and the cost ratios next to the single-path targets; writes
OUTPUT/report.json and OUTPUT/pareto.png (default output/search_quality). Rerun with the same
--output to continue a killed benchmark: finished runs are reused. Trailing KEY VALUE pairs
override the config of every search and training run. The logic lives in
tools/benchmarks/search_quality/; see its docstring.
"""

import os
import sys
import warnings

# detectron2 0.6's model_zoo imports pkg_resources, which warns on import; fvcore's
# import-time torch.jit.script calls warn on recent torch. Nothing to act on here.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning
)

try:
    import mobile_cv_nas  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.search_quality.cli import main  # noqa: E402  (tools/benchmarks, beside this file)

if __name__ == "__main__":
    sys.exit(main())
