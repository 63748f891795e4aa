"""Benchmark of search quality at several budgets: does the search find better architectures
than random sampling of the same space at the same FLOPs, and what does a search iteration
cost, per sampling mode (NAS.SAMPLING: mixture, single_path)?

The searches run through the engine's search task in this process, one per budget
(NAS.COST.TARGET_M, by default at 0.5, 0.65 and 0.8 of the space's FLOP range on a log scale)
and mode, each in its own OUTPUT_DIR (or one finished search is read: --search-dir). At each,
random architectures within +-10% of the searched one's FLOPs are drawn, and every
architecture is trained from scratch through the engine's train task with one short schedule
(the searched ones with several seeds). The report gives, per budget and mode, the share of
random archs that the searched arch's mean accuracy beats and a one-sided Mann-Whitney U test
(searched seeds vs random archs); the plot, accuracy against MFLOPs. Runs are resumable
(folders named by a fingerprint of their config).

Modules:
  * `sampling`  random architectures of a space within a FLOP window (seeded, distinct)
  * `training`  engine configs (data, sampling mode) and in-process engine runs
  * `jobs`      resumable runs (fingerprinted folders) and progress with ETA
  * `timing`    search iteration / weight step / peak memory vs a training iteration
  * `stats`     share beaten, Mann-Whitney U with exact or normal p-value (stdlib only)
  * `run`       the whole benchmark -> the results dict (what report.json holds)
  * `report`, `plot`  the printed tables and verdict; the Pareto PNG
  * `cli`       `build_parser`, `resolve_args`, `main` (tools/benchmark_search_quality.py)

Import what you need from its module; the package itself exports `main` only.
"""

from .cli import main

__all__ = ["main"]
