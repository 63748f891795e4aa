"""The benchmarks behind tools/benchmark_search.py (`search_cost`),
tools/benchmark_search_quality.py (`search_quality`) and tools/benchmark_detection.py
(`detection`). Speed and memory targets live here, printed as ratios measured in one run, never
in timed unit tests.

Not part of the installed package: they use mobile_cv_nas through its public API only. The
scripts in tools/ import them as the top-level package `benchmarks` (a script's folder is the
first entry of sys.path); the tests get tools/ on sys.path from pytest.ini (`pythonpath`)."""

import logging
import sys


def setup_logging(logger_name):
    """A plain stderr handler for a benchmark's progress (INFO and up from `logger_name`, its
    modules' logger), unless the caller configured logging."""
    if logging.getLogger().handlers:
        return  # the caller configured logging: leave it to them
    logging.basicConfig(stream=sys.stderr, format="%(message)s")  # WARNING for other libraries
    logging.getLogger(logger_name).setLevel(logging.INFO)
