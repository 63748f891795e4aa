"""`python -m mobile_cv_nas.benchmarks.search_cost`: the same as tools/benchmark_search.py."""

import sys

from .cli import main

sys.exit(main())
