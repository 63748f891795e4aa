"""Benchmarks the project ships (their command lines are in tools/). Speed and memory targets
live here, printed as ratios measured in one run, never in timed unit tests."""
