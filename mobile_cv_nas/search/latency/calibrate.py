"""Whole-model calibration of a latency table: from the sum of blocks timed alone to the
latency of the network they make, `measured = offset + scale * sum of entries`.

Why. A table's entries are blocks timed alone, each over and over: its weights and
activations stay in the CPU's caches from one call to the next. Inside a whole network each
block finds the caches holding the previous blocks' data, and the Sequential adds its calls.
On the F space (2-core CPU, 1 thread) the sum of the entries was 17-26% below the measured
latency of almost every architecture (Spearman 0.954: the ranking was right, the level was
not), more for the small ones; on the small fashion_mnist space 0-6%. A line through the
(sum, measured) points of a few whole models fixes the level: an offset (what every network
pays once) and a scale.

How. `calibrate_table` draws `num_archs` random architectures of the space (seeded with
`CALIBRATION_SEED`, apart from the benchmark's), builds each as a plain model, times it end to
end as the table's blocks were timed (`measure_archs`), and fits the line by Theil-Sen (the
median of the pairwise slopes, then the median offset: one model slowed by another process
does not tilt it). An offset below zero or a slope not above zero (too few models, or too
alike) falls back to a line through zero with the median ratio. Stored in
`meta["calibration"]` with the architectures' fingerprints (so the benchmark leaves them out:
its figures are on architectures the fit never saw) and the entries' hash (a table measured
further is calibrated again). Every prediction (`predict_latency`, a search's expected
latency, its cost range and budget) is `offset + scale * entries`; the interpolation check
compares raw entries with raw entries.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
import time

import torch

from ...arch import build_model
from .errors import LatencyTableError
from .measure import TimingSettings, time_module
from .progress import Progress
from .table import entries_fingerprint, now

#: The seed of the calibration's random architectures (the benchmark's default is 0).
CALIBRATION_SEED = 1_000_003


def arch_fingerprint(arch) -> str:
    """sha256 of an arch def's content without its name: the same network, whatever it is
    called."""
    content = arch.to_dict()
    content.pop("name", None)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sample_archs(space, num, seed, exclude=()):
    """`num` distinct architectures of `space` (fewer if the space has fewer), none of whose
    fingerprints is in `exclude`: one uniformly random option per decision
    (`random.Random(seed)`), derived as a search derives (argmax of one-hot alphas)."""
    from ..derive import derive_arch
    from ..supernet import Supernet

    supernet = Supernet(space)
    rng = random.Random(seed)
    archs, seen, tries = [], set(exclude), 0
    while len(archs) < num and tries < 100 * num:
        tries += 1
        with torch.no_grad():
            for decision in supernet.decisions.values():
                one_hot = torch.zeros(len(decision.options), dtype=decision.alpha.dtype)
                one_hot[rng.randrange(len(decision.options))] = 1.0
                decision.alpha.copy_(one_hot)
        arch = derive_arch(supernet, name=f"{space.name}_random{len(archs) + 1}")
        key = arch_fingerprint(arch)
        if key not in seen:
            seen.add(key)
            archs.append(arch)
    return archs


#: Rounds over the architectures, at least; each one's time is its lowest (`measure_archs`).
PASSES = 5
#: ... and as many more as make this many seconds of timing.
MIN_SECONDS = 10.0


def measure_arch(arch, meta, settings=None) -> float:
    """End-to-end median milliseconds of `arch` built as a plain model, timed as the table
    whose `meta` is given timed its blocks (device, dtype, batch, threads, timer)."""
    if settings is None:
        settings = TimingSettings(**meta["timing"]) if meta.get("timing") else TimingSettings()
    device, dtype = torch.device(meta["device"]), getattr(torch, meta["dtype"])
    model = build_model(arch).eval().to(device=device, dtype=dtype)
    size = arch.input_size
    inputs = torch.randn(meta["batch"], arch.in_channels, size, size, device=device, dtype=dtype)
    return time_module(model, inputs, meta["threads"], settings) * 1e3


def measure_archs(
    archs, measure, passes=PASSES, progress=None, label="", min_seconds=MIN_SECONDS, clock=None
):
    """[ms] of `archs`, each the lowest of its measurements `measure(arch)`, taken in rounds
    over all of them: `passes` rounds, or as many as the first one's time says make
    `min_seconds` (a few small models: many rounds).

    Why the lowest, and why rounds: a whole model's weights do not stay in the caches as one
    block's do, so other processes on the machine slow it more, for seconds to minutes at a
    time (on a shared 2-core machine a run of 30 F-space models measured 15% slower than the
    40 after them, and one small model measured 17% slower in three rounds within 0.2 s than
    in the runs after); contention never speeds a model up, so the lowest time is its own, as
    the build keeps the lower median of an entry it measures twice, and rounds spread over
    seconds are not all slowed together, as repeats back to back are.
    `progress`: a stream for progress lines with an ETA, labelled `label`."""
    clock = time.monotonic if clock is None else clock
    best = [math.inf] * len(archs)
    rounds, start = passes, clock()
    bar = Progress(progress, rounds * len(archs), 0)
    p = 0
    while p < rounds:
        for i, arch in enumerate(archs):
            ms = float(measure(arch))
            best[i] = min(best[i], ms)
            bar(p * len(archs) + i + 1, f"{label}round {p + 1}/{rounds} {arch.name}: {ms:.3f} ms")
        if p == 0:
            first = max(clock() - start, 1e-9)
            rounds = max(passes, math.ceil(min_seconds / first))
            bar.total = rounds * len(archs)
        p += 1
    bar(rounds * len(archs), f"{label}done", force=True)
    return best


def is_calibrated(table, num_archs, seed=CALIBRATION_SEED) -> bool:
    """Whether the table holds a calibration of `num_archs` archs of `seed` for its entries."""
    calibration = table.meta.get("calibration")
    return bool(
        calibration
        and calibration.get("archs") == num_archs
        and calibration.get("seed") == seed
        and calibration.get("passes") == PASSES
        and calibration.get("entries_sha256") == entries_fingerprint(table)
    )


def fit_line(sums, measured):
    """(offset_ms, scale) of `measured ~ offset + scale * sums` (see the module doc)."""
    pairs = list(zip(sums, measured, strict=True))
    slopes = [
        (m2 - m1) / (s2 - s1)
        for i, (s1, m1) in enumerate(pairs)
        for s2, m2 in pairs[i + 1 :]
        if s2 != s1
    ]
    if slopes:
        scale = statistics.median(slopes)
        offset = statistics.median(m - scale * s for s, m in pairs)
        if scale > 0 and offset >= 0:
            return offset, scale
    return 0.0, statistics.median(m / s for s, m in pairs)


def calibration_archs(space, calibration):
    """(archs, their calibration times in ms) of a table's calibration, drawn again from its
    seed, so that they can be timed again and the machine's drift since measured; ([], [])
    where they cannot be drawn again (a calibration of another version's sampler)."""
    if not calibration or not calibration.get("measured_ms"):
        return [], []
    archs = sample_archs(space, calibration["archs"], calibration["seed"])
    if [arch_fingerprint(a) for a in archs] != calibration.get("arch_sha256"):
        return [], []
    return archs, list(calibration["measured_ms"])


def calibrate_table(
    table,
    space,
    num_archs=20,
    seed=CALIBRATION_SEED,
    measure=None,
    progress=None,
    min_seconds=MIN_SECONDS,
):
    """Set `table.meta["calibration"]` from `num_archs` random architectures of `space` (see
    the module doc); returns it. `measure`: arch -> ms (default `measure_arch` with the
    table's settings); `progress`: a stream for progress lines; `min_seconds`: of timing
    (`measure_archs`)."""
    from .predict import predict_latency

    if num_archs < 1:
        raise ValueError(f"calibration needs at least one architecture, got {num_archs}.")
    if measure is None:
        if table.meta["device"].startswith("cuda") and not torch.cuda.is_available():
            raise LatencyTableError(
                f"{table.where} was measured on {table.meta['device']}; CUDA is not available "
                f"here to calibrate it."
            )
        torch.set_num_threads(table.meta["threads"])

        def measure(arch):
            return measure_arch(arch, table.meta)

    table.meta.pop("calibration", None)  # predictions below: the entries alone
    archs = sample_archs(space, num_archs, seed)
    sums = [predict_latency(arch, table) for arch in archs]
    if progress is not None:
        progress.write(
            f"calibration: {len(archs)} random architectures timed whole, in rounds over all "
            f"of them (at least {PASSES}, {min_seconds:g} s)\n"
        )
    measured = measure_archs(archs, measure, PASSES, progress, "calibration ", min_seconds)
    for arch, p, m in zip(archs, sums, measured, strict=True):
        if not (p > 0 and m > 0 and math.isfinite(m)):
            raise LatencyTableError(
                f"calibrating {table.where}: {arch.name} predicted {p!r} ms, measured {m!r} ms; "
                f"both must be > 0."
            )
    offset, scale = fit_line(sums, measured)
    errors = [(offset + scale * p) / m - 1 for p, m in zip(sums, measured, strict=True)]
    calibration = {
        "offset_ms": offset,
        "scale": scale,
        "archs": num_archs,
        "measured_archs": len(archs),
        "seed": seed,
        "passes": PASSES,
        "min_seconds": min_seconds,
        "entries_sum_ms": sums,
        "measured_ms": measured,
        "max_abs_error": max(abs(e) for e in errors),
        "arch_sha256": [arch_fingerprint(arch) for arch in archs],
        "entries_sha256": entries_fingerprint(table),
        "created": now(),
    }
    table.meta["calibration"] = calibration
    if progress is not None:
        progress.write(
            f"calibration: whole model = {offset:.3f} ms + {scale:.3f} x the entries' sum "
            f"(fit on {len(archs)} models, largest error {calibration['max_abs_error']:.1%})\n"
        )
    return calibration
