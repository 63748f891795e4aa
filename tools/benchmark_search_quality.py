#!/usr/bin/env python3
"""Search quality, measured: train the searched architecture and random architectures of the
same space within +-10% of its FLOPs with one short schedule, compare validation accuracy,
and time a search iteration against a training iteration of the space's largest candidate.

    export OMP_NUM_THREADS=1
    python tools/benchmark_search_quality.py --search-dir output/search_fashion_mnist
    python tools/benchmark_search_quality.py --run-search --num-random 5
    python tools/benchmark_search_quality.py --search-dir DIR --output output/sq_quick \\
        SOLVER.EPOCHS 1 SOLVER.EPOCH_ITERS 20

Prints a table, the random mean +- std, searched minus random mean and the iteration-time
ratio; writes OUTPUT/report.json and OUTPUT/accuracy_vs_mflops.png (default
output/search_quality). Trailing KEY VALUE pairs override the train config in every run. The
logic lives in tools/benchmarks/search_quality/; see its docstring.
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
