"""`python -m mobile_cv_nas.benchmarks.search_quality`: the same as
tools/benchmark_search_quality.py."""

import sys

from .cli import main

sys.exit(main())
