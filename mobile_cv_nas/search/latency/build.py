"""Building a latency table: every configuration a space can produce (or a grid of them, see
grid.py) measured alone, with progress and an ETA, resumable.

Resuming: the table is written atomically every `save_every_s` seconds (and when the build is
interrupted), so a killed build loses at most that much; run again with the same output it
reads what is there and measures only what is missing, provided the table was measured under
the same conditions (space, device, threads, batch, dtype, torch, grid, machine) - otherwise
it refuses rather than mix two machines' numbers in one table.

ETA: the configurations are measured in a fixed shuffled order, so the mean time per
configuration so far is a fair estimate for the rest (in a sorted order the big early-stage
blocks would come together).

Rechecking (`recheck` > 0): on a shared machine another process can slow a measurement down
(never speed it up), and a grid point measured slow spoils every interpolation around it. Once
the grid is measured, each group's points are fitted by least squares with a multilinear
function of their widths (`grid.suspect_points`); a point more than `recheck` (relative)
above its fit is measured again and keeps the lower of its two medians; `recheck_rounds`
rounds. On the fashion_mnist table built on a loaded 2-core machine, 57 of 1006 entries were
8% or more above their fit, and 50 of them measured lower the second time (median -12%).

Calibration (`calibrate` > 0): last, that many random architectures are timed end to end and
the table's scale set from them (see calibrate.py); a complete table built again with the
same command is calibrated only if it was not, for these entries, already (`recalibrate`:
again all the same).

The interpolation error (`check_interpolation` > 0): that many configurations off the grid,
drawn at random (seeded), are measured too (kept apart, in `holdout`; one measured more than
`recheck` above its interpolation is measured again, as grid points are) and compared with
their interpolated values; the figures go to `meta["interpolation_check"]`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import time

import torch

from ..space import as_search_space
from .calibrate import MIN_SECONDS, calibrate_table, is_calibrated
from .configs import BlockConfig, space_configs
from .grid import grid_configs, suspect_points
from .measure import Measurer, TimingSettings, machine_description
from .progress import Progress
from .table import (
    LatencyTable,
    LatencyTableError,
    build_command,
    now,
    space_fingerprint,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _conditions(meta):
    """What must be equal for a build to continue an existing table."""
    machine = meta.get("machine", {})
    return {
        "space": meta.get("space", {}).get("sha256"),
        "device": meta.get("device"),
        "threads": meta.get("threads"),
        "batch": meta.get("batch"),
        "dtype": meta.get("dtype"),
        "torch": meta.get("torch"),
        "grid_points": meta.get("grid_points"),
        "cpu": machine.get("cpu"),
        "gpu": machine.get("gpu"),
    }


def _resume(output, meta):
    """The table at `output` to continue, or None; LatencyTableError if it was measured under
    other conditions."""
    if not os.path.exists(output):
        return None
    table = LatencyTable.load(output, check_calibration=False)
    if table.calibration_problem():  # calibrated again at the end
        del table.meta["calibration"]
    have, want = _conditions(table.meta), _conditions(meta)
    differs = [k for k in want if have[k] != want[k]]
    if differs:
        what = ", ".join(f"{k} {have[k]!r} there, {want[k]!r} now" for k in differs)
        raise LatencyTableError(
            f"{output!r} holds a latency table measured under other conditions ({what}); "
            f"a build continues only its own table: choose another --output, or delete it to "
            f"start over."
        )
    return table


def interpolation_error(table, space_config_list=None):
    """Relative errors interpolated / measured - 1 of the table's held-out configurations,
    and their summary (or None without any)."""
    errors = []
    for key, measured in sorted(table.holdout.items()):
        found = table.find(BlockConfig.from_key(key))
        if found is not None and measured > 0:
            errors.append(found[0] / measured - 1)
    if not errors:
        return None
    magnitudes = sorted(abs(e) for e in errors)
    n = len(magnitudes)

    def quantile(q):
        return magnitudes[min(n - 1, max(0, math.ceil(q * n) - 1))]

    return {
        "count": n,
        "mean_error": sum(errors) / n,
        "median_abs_error": quantile(0.5),
        "p90_abs_error": quantile(0.9),
        "max_abs_error": magnitudes[-1],
        "within_5pct": sum(m <= 0.05 for m in magnitudes) / n,
        "within_10pct": sum(m <= 0.10 for m in magnitudes) / n,
    }


def build_latency_table(
    space,
    output,
    *,
    device="cpu",
    threads=1,
    batch=1,
    dtype="float32",
    grid=3,
    num_classes=None,
    in_channels=None,
    check_interpolation=0,
    recheck=0.08,
    recheck_rounds=2,
    measure=None,
    timing=None,
    save_every_s=10.0,
    progress=sys.stderr,
    space_arg=None,
    seed=0,
    calibrate=0,
    recalibrate=False,
    measure_arch=None,
    calibrate_seconds=MIN_SECONDS,
):
    """Build (or continue) the latency table of `space` at `output`; returns the LatencyTable.

    `grid`: widths per coordinate measured (0: every configuration); `num_classes` /
    `in_channels`: override the space's (a search on a class subset); `check_interpolation`:
    held-out configurations measured to estimate the interpolation error; `recheck`,
    `recheck_rounds`: entries measured again (0: none; see the module doc); `measure`: a
    function BlockConfig -> ms (default: `measure.Measurer` on `device`); `space_arg`: how
    the recorded rebuild command names the space (default its name); `calibrate`: random
    architectures timed whole to set the table's scale (0: none, and an existing calibration
    is dropped); `recalibrate`: calibrate even a table calibrated already (the machine's load
    changed); `measure_arch`: a function ArchDef -> ms (default: timed as the blocks);
    `calibrate_seconds`: the calibration's least timing time (`calibrate.measure_archs`)."""
    timing = TimingSettings() if timing is None else timing
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}.")
    for name, value in (("threads", threads), ("batch", batch)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"--{name} must be an integer >= 1, got {value!r}.")
    if not (isinstance(grid, int) and grid >= 0 and grid != 1):
        raise ValueError(f"--grid must be 0 (every width) or an integer >= 2, got {grid!r}.")
    if not (isinstance(calibrate, int) and calibrate >= 0):
        raise ValueError(f"--calibrate must be an integer >= 0, got {calibrate!r}.")
    space = as_search_space(space)
    overrides = {}
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if in_channels is not None:
        overrides["in_channels"] = in_channels
    space = dataclasses.replace(space, **overrides)
    output = os.fspath(output)
    configs = space_configs(space)
    plan = grid_configs(configs, grid)
    build_args = {
        "space": space_arg or space.name,
        "grid": grid,
        "calibrate": calibrate,
        **overrides,
    }
    meta = {
        "space": space_fingerprint(space),
        "device": str(torch.device(device)),
        "threads": threads,
        "batch": batch,
        "dtype": dtype,
        "torch": torch.__version__,
        "machine": machine_description(device),
        "grid_points": grid,
        "configurations": len(configs),
        "planned": len(plan),
        "complete": False,
        "timing": dataclasses.asdict(timing),
        "created": now(),
        "build_seconds": 0.0,
        "build_args": build_args,
        "command": build_command(
            space_arg or space.name,
            output,
            str(torch.device(device)),
            threads,
            batch,
            grid,
            overrides.get("num_classes"),
            overrides.get("in_channels"),
            calibrate,
        ),
    }
    table = _resume(output, meta)
    if table is None:
        table = LatencyTable(meta, path=output)
    else:
        kept_keys = ("created", "build_seconds", "recheck", "interpolation_check")
        for kept in (*kept_keys, "holdout_rechecked", "calibration"):
            if kept in table.meta:
                meta[kept] = table.meta[kept]
        table.meta = meta
    if measure is None:
        measure = Measurer(space.width_divisor, device, threads, batch, DTYPES[dtype], timing)

    order = sorted(plan)
    random.Random(seed).shuffle(order)
    pending = [c for c in order if c.key not in table.entries]
    done = len(plan) - len(pending)
    if progress is not None:
        grid_text = "every width" if grid == 0 else f"a grid of {grid} widths per coordinate"
        progress.write(
            f"{space.name}: {len(configs)} configurations; measuring {len(plan)} ({grid_text}) "
            f"on {meta['device']}, {threads} thread(s), batch {batch}, {dtype}: "
            f"{done} measured already, {len(pending)} to go -> {output}\n"
        )
    _measure_all(table, pending, measure, done, len(plan), save_every_s, progress, "grid")
    if recheck > 0:
        _recheck(table, measure, recheck, recheck_rounds, save_every_s, progress)
    table.check_covers(configs, f"search space {space.name!r}", "its grid misses them")
    table.meta["complete"] = True

    if check_interpolation > 0:
        on_grid = {c.key for c in plan}
        off_grid = sorted(c for c in configs if c.key not in on_grid)
        rng = random.Random(seed + 1)
        chosen = rng.sample(off_grid, min(check_interpolation, len(off_grid)))
        todo = [c for c in chosen if c.key not in table.holdout]
        if progress is not None:
            progress.write(
                f"interpolation check: {len(chosen)} configurations off the grid "
                f"({len(todo)} to measure)\n"
            )
        _measure_all(
            table, todo, measure, len(chosen) - len(todo), len(chosen), save_every_s,
            progress, "holdout",
        )  # fmt: skip
        if recheck > 0 and not table.meta.get("holdout_rechecked"):
            slow = [
                c
                for c in map(BlockConfig.from_key, sorted(table.holdout))
                if table.holdout[c.key] > table.find(c)[0] * (1 + recheck)
            ]
            _measure_all(table, slow, measure, 0, len(slow), save_every_s, progress, "holdout")
            table.meta["holdout_rechecked"] = True
        summary = interpolation_error(table)
        if summary is not None:
            table.meta["interpolation_check"] = summary
    if calibrate == 0:
        table.meta.pop("calibration", None)
    elif recalibrate or not is_calibrated(table, calibrate):
        table.save(output)  # the measurements are kept should the calibration be interrupted
        calibrate_table(
            table,
            space,
            calibrate,
            measure=measure_arch,
            progress=progress,
            min_seconds=calibrate_seconds,
        )
    table.save(output)
    if progress is not None:
        progress.write(f"done: {output} ({len(table.entries)} entries, {table.describe()})\n")
        state = table.meta.get("recheck")
        if state:
            progress.write(
                f"rechecked: {state['remeasured']} entries measured again, {state['lowered']} "
                f"of them lower the second time\n"
            )
        check = table.meta.get("interpolation_check")
        if check:
            progress.write(
                f"interpolation error over {check['count']} held-out configurations: median "
                f"{check['median_abs_error']:.1%}, 90th percentile {check['p90_abs_error']:.1%}, "
                f"max {check['max_abs_error']:.1%}, mean (signed) {check['mean_error']:+.1%}\n"
            )
    return table


def _recheck(table, measure, threshold, rounds, save_every_s, progress):
    """Measure the entries above their group's fit again (see the module doc)."""
    state = table.meta.setdefault(
        "recheck", {"threshold": threshold, "rounds_done": 0, "remeasured": 0, "lowered": 0}
    )
    while state["rounds_done"] < rounds:
        entries = {BlockConfig.from_key(k): v for k, v in table.entries.items()}
        suspects = suspect_points(entries, threshold)
        if progress is not None:
            progress.write(
                f"recheck {state['rounds_done'] + 1}/{rounds}: {len(suspects)} entries more than "
                f"{threshold:.0%} above the fit of their group, measured again\n"
            )
        _measure_all(table, suspects, measure, 0, len(suspects), save_every_s, progress, "grid")
        state["rounds_done"] = rounds if not suspects else state["rounds_done"] + 1


def _keep_lower(store, config, ms, table):
    """A second measurement keeps the lower median (contention only adds time)."""
    old = store.get(config.key)
    if old is not None and "recheck" in table.meta and store is table.entries:
        table.meta["recheck"]["remeasured"] += 1
        table.meta["recheck"]["lowered"] += ms < old
    return ms if old is None else min(old, ms)


def _measure_all(table, configs, measure, done, total, save_every_s, progress, where):
    """Measure `configs` into table.entries (where='grid') or table.holdout, saving the table
    every `save_every_s` seconds and when interrupted; a configuration measured before keeps
    the lower of its medians."""
    bar = Progress(progress, total, done)
    start = last_save = time.monotonic()
    try:
        for config in configs:
            ms = float(measure(config))
            if where == "grid":
                table.add(config, _keep_lower(table.entries, config, ms, table))
            else:
                table.holdout[config.key] = _keep_lower(table.holdout, config, ms, table)
            done += 1
            bar(done, config.key)
            if time.monotonic() - last_save >= save_every_s:
                _account(table, start)
                start = last_save = time.monotonic()
                table.save()
        bar(done, force=True)
    except BaseException:
        _account(table, start)
        table.save()
        raise
    _account(table, start)


def _account(table, start):
    table.meta["build_seconds"] = table.meta.get("build_seconds", 0.0) + time.monotonic() - start
