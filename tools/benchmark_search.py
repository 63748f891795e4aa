#!/usr/bin/env python3
"""Benchmark channel search by masking (DMaskingNAS) against the plain max-width network and
conventional DNAS, and resolution search against the plain network at the max resolution.

    OMP_NUM_THREADS=1 python tools/benchmark_search.py                  # the full run (CPU)
    python tools/benchmark_search.py --quick --json /tmp/bench.json     # tiny, for tests
    python tools/benchmark_search.py --device cuda --batch 128 --size 128

Prints a table, PASS/FAIL rows for the targets, and writes JSON and a plot (default
output/benchmark_search/); progress goes to stderr (logging). Exit status 0 unless --strict and
a target FAILs. The logic lives in tools/benchmarks/search_cost/; see its docstring for what is
measured and how, and which module holds what.
"""

import os
import sys

try:
    import mobile_cv_nas  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mobile_cv_nas.cli_quiet import quiet_third_party_imports  # noqa: E402

quiet_third_party_imports()

from benchmarks.search_cost.cli import main  # noqa: E402  (tools/benchmarks, beside this file)

if __name__ == "__main__":
    sys.exit(main())
