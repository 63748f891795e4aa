"""Benchmark of search quality: is the searched architecture better than random ones of the
same space at the same FLOPs, and what does a search iteration cost?

With ONE short training schedule on the embedded Fashion-MNIST subset (the same on every
machine), the searched architecture and >= 3 random architectures of the same search space
within +-10% of its FLOPs are trained from scratch through the engine's train task, each in
its own OUTPUT_DIR, with the same config, seed and schedule; the report gives their validation
top-1, the random mean and sample std, and searched minus random mean. It also times a search
iteration (the search trainer's weight step + alpha step) against a training iteration of
the space's largest candidate built as a plain model, same batch, in the same process.

Modules:
  * `sampling`  random architectures of a space within a FLOP window (seeded, distinct)
  * `training`  engine configs and in-process runs (train, and the demo search)
  * `timing`    search iteration vs training iteration of the largest candidate
  * `run`       the whole benchmark -> the results dict (what report.json holds)
  * `report`, `plot`  mean/std, the table and interpretation; the PNG
  * `cli`       `build_parser`, `resolve_args`, `main` (tools/benchmark_search_quality.py)

Import what you need from its module; the package itself exports `main` only.
"""

from .cli import main

__all__ = ["main"]
