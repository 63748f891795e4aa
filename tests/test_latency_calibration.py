"""Whole-model calibration of a latency table (search/latency/calibrate.py): the line it fits,
how every prediction goes through it (predict_latency, the supernet's expected latency and
its cost range), how a build calibrates and keeps a calibration, and the benchmark leaving
the calibration's architectures out. Whole models are timed by stand-ins that are known
functions of the entries; the timed figures live in tools/benchmark_latency.py's output."""

import copy
import json
import math

import pytest
import torch
from engine_helpers import tool
from latency_helpers import curved_ms, fake_table

from mobile_cv_nas.search import Supernet, derive_arch
from mobile_cv_nas.search.cost_bounds import argmax_cost, cost_range
from mobile_cv_nas.search.latency import (
    LatencyTable,
    LatencyTableError,
    build_latency_table,
    calibrate_table,
    latency_breakdown,
    load_latency_table,
    predict_latency,
    sample_archs,
)
from mobile_cv_nas.search.latency.calibrate import (
    PASSES,
    arch_fingerprint,
    fit_line,
    is_calibrated,
    measure_archs,
)
from mobile_cv_nas.search.space import as_search_space

OFFSET, SCALE = 0.4, 1.25


def uncalibrated(table):
    meta = copy.deepcopy(table.meta)
    meta.pop("calibration", None)
    return LatencyTable(meta, table.entries)


def line_measure(table, offset=OFFSET, scale=SCALE, calls=None):
    """A whole-model 'timer': offset + scale x the sum of the arch's entries."""
    raw = uncalibrated(table)

    def measure(arch):
        if calls is not None:
            calls.append(arch.name)
        return offset + scale * predict_latency(arch, raw)

    return measure


@pytest.fixture
def table(tmp_path):
    return fake_table("tiny", tmp_path / "lut.json", measure=curved_ms)


# ---------------------------------------------------------------------------- the fit


def test_fit_line_recovers_a_line_and_ignores_one_slowed_model():
    sums = [3.0, 5.0, 4.0, 8.0, 6.5, 7.0, 9.0, 2.5, 5.5]
    measured = [OFFSET + SCALE * s for s in sums]
    assert fit_line(sums, measured) == pytest.approx((OFFSET, SCALE), rel=1e-12)
    measured[3] *= 1.8  # another process slowed one model down
    assert fit_line(sums, measured) == pytest.approx((OFFSET, SCALE), rel=1e-12)


def test_fit_line_falls_back_to_a_ratio_through_zero():
    sums = [2.0, 4.0, 6.0]
    # the line would cross below zero (offset < 0): the median ratio instead
    measured = [2 * s - 1 for s in sums]
    ratios = sorted(m / s for s, m in zip(sums, measured, strict=True))
    assert fit_line(sums, measured) == (0.0, pytest.approx(ratios[1]))
    assert fit_line([5.0], [6.0]) == (0.0, pytest.approx(1.2))  # one model: no slope
    assert fit_line([5.0, 5.0], [6.0, 7.0]) == (0.0, pytest.approx(1.3))  # no spread in sums


def test_measure_archs_keeps_each_models_lowest_time_over_rounds(table):
    archs = sample_archs(as_search_space("tiny"), 3, seed=0)
    times = {a.name: iter(t) for a, t in zip(archs, [[5, 4, 6], [2, 3, 1], [7, 7, 7]], strict=True)}
    order = []

    def measure(arch):
        order.append(arch.name)
        return next(times[arch.name])

    assert measure_archs(archs, measure, passes=3, min_seconds=0) == [4, 1, 7]
    names = [a.name for a in archs]
    assert order == names * 3  # rounds over all of them, not repeats back to back


def test_measure_archs_adds_rounds_until_its_minimum_time():
    archs = sample_archs(as_search_space("tiny"), 2, seed=0)
    now = [0.0]
    calls = []

    def measure(arch):  # one second per measurement, the last round the quickest
        now[0] += 1.0
        calls.append(arch.name)
        return 10.0 - len(calls) / 10

    def clock():
        return now[0]

    best = measure_archs(archs, measure, passes=3, min_seconds=9, clock=clock)
    assert len(calls) == 2 * 5  # a round takes 2 s: 5 rounds make 9 s
    assert best == [10.0 - 9 / 10, 10.0 - 10 / 10]
    calls.clear()
    measure_archs(archs, measure, passes=3, min_seconds=1, clock=clock)
    assert len(calls) == 2 * 3  # never fewer than `passes`


# ---------------------------------------------------------------------------- predictions


def test_calibration_puts_every_prediction_on_the_fitted_line(table):
    raw = uncalibrated(table)
    space = as_search_space("tiny")
    calibration = calibrate_table(
        table, space, num_archs=8, measure=line_measure(table), min_seconds=0
    )
    assert calibration["offset_ms"] == pytest.approx(OFFSET, rel=1e-9)
    assert calibration["scale"] == pytest.approx(SCALE, rel=1e-12)
    assert calibration["max_abs_error"] < 1e-9 and len(calibration["arch_sha256"]) == 8
    assert (table.offset_ms, table.scale) == (calibration["offset_ms"], calibration["scale"])
    for arch in sample_archs(space, 5, seed=7):
        assert predict_latency(arch, table) == pytest.approx(
            OFFSET + SCALE * predict_latency(arch, raw), rel=1e-12
        )
        blocks, raw_blocks = latency_breakdown(arch, table), latency_breakdown(arch, raw)
        for b, r in zip(blocks, raw_blocks, strict=True):
            assert b.config == r.config and b.ms == pytest.approx(table.scale * r.ms, rel=1e-15)
    assert "calibrated on 8 whole models (0.4 ms + 1.250 x entries)" in table.describe()
    assert "not calibrated" in raw.describe()


@pytest.mark.parametrize("seed", [0, 1])
def test_one_hot_expected_latency_is_the_calibrated_prediction_exactly(table, seed):
    calibrate_table(
        table, as_search_space("tiny"), num_archs=6, measure=line_measure(table), min_seconds=0
    )
    net = Supernet("tiny", latency_table=table)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for d in net.decisions.values():
            d.alpha.copy_(torch.randn(d.alpha.shape, generator=g))
    for decision in net.decisions.values():
        gates = torch.zeros(len(decision.options))
        gates[int(decision.alpha.argmax())] = 1.0
        decision.set_gates(gates)
    assert float(net.latency.expected_ms()) == predict_latency(derive_arch(net), table)
    assert float(argmax_cost(net).latency) / 1e6 == pytest.approx(
        predict_latency(derive_arch(net), table), rel=1e-15
    )


def test_the_cost_range_and_its_extremes_follow_the_calibration(table):
    raw_low, raw_high = cost_range(Supernet("tiny", latency_table=uncalibrated(table)), "latency")
    calibrate_table(
        table, as_search_space("tiny"), num_archs=6, measure=line_measure(table), min_seconds=0
    )
    net = Supernet("tiny", latency_table=table)
    low, high = cost_range(net, "latency")  # ns
    assert low == pytest.approx(OFFSET * 1e6 + SCALE * raw_low, rel=1e-9)
    assert high == pytest.approx(OFFSET * 1e6 + SCALE * raw_high, rel=1e-9)
    ms, choices = net.latency.extreme(cheapest=True)
    for name, index in choices.items():
        net.decisions[name].set_argmax(index)
    assert predict_latency(derive_arch(net), table) == pytest.approx(ms, rel=1e-12)


# ---------------------------------------------------------------------------- the file


def test_a_calibration_round_trips_and_a_malformed_one_is_refused(table, tmp_path):
    calibrate_table(
        table, as_search_space("tiny"), num_archs=4, measure=line_measure(table), min_seconds=0
    )
    table.save()
    loaded, warnings = load_latency_table(table.path)
    assert loaded.meta["calibration"] == table.meta["calibration"] and warnings == []
    assert (loaded.offset_ms, loaded.scale) == (table.offset_ms, table.scale)
    for field, value, text in (
        ("scale", 0, "meta.calibration.scale is 0, not a number > 0"),
        ("scale", "1.2", "meta.calibration.scale is '1.2'"),
        ("offset_ms", -0.5, "meta.calibration.offset_ms is -0.5, not a number >= 0"),
        ("offset_ms", float("nan"), "meta.calibration.offset_ms is nan"),
        ("offset_ms", None, "meta.calibration.offset_ms is None"),
    ):
        data = json.loads(open(table.path).read())
        data["meta"]["calibration"][field] = value
        bad = tmp_path / f"bad_{field}.json"
        bad.write_text(json.dumps(data))
        with pytest.raises(LatencyTableError) as info:
            LatencyTable.load(bad)
        message = str(info.value)
        assert (
            text in message and "calibrate it again: python tools/build_latency_lut.py" in message
        )
        assert "--calibrate 4" in message and "\n" not in message


def test_a_calibration_of_other_entries_is_warned_about(table):
    calibrate_table(
        table, as_search_space("tiny"), num_archs=4, measure=line_measure(table), min_seconds=0
    )
    key = sorted(table.entries)[0]
    table.entries[key] *= 2
    table.save()
    _, warnings = load_latency_table(table.path)
    assert any("calibration was measured for other entries" in w for w in warnings)


# ---------------------------------------------------------------------------- the build


def test_a_build_calibrates_last_once_and_drops_it_when_asked(tmp_path):
    path = tmp_path / "lut.json"
    calls = []
    probe = fake_table("tiny", tmp_path / "probe.json", measure=curved_ms)
    measure = line_measure(probe, calls=calls)
    args = {"grid": 0, "measure": curved_ms, "progress": None, "calibrate_seconds": 0}
    table = build_latency_table("tiny", path, calibrate=5, measure_arch=measure, **args)
    rounds = 5 * PASSES  # 5 architectures, PASSES rounds
    assert len(calls) == rounds
    assert table.scale == pytest.approx(SCALE) and is_calibrated(table, 5)
    assert LatencyTable.load(path).meta["calibration"] == table.meta["calibration"]
    assert "--calibrate 5" in table.meta["command"]
    build_latency_table("tiny", path, calibrate=5, measure_arch=measure, **args)
    assert len(calls) == rounds  # calibrated already, for these entries: nothing timed again
    build_latency_table("tiny", path, calibrate=5, recalibrate=True, measure_arch=measure, **args)
    assert len(calls) == 2 * rounds  # asked to: timed again
    build_latency_table("tiny", path, calibrate=6, measure_arch=measure, **args)
    assert len(calls) == 2 * rounds + 6 * PASSES
    assert LatencyTable.load(path).meta["calibration"]["archs"] == 6
    table = build_latency_table("tiny", path, calibrate=0, measure_arch=measure, **args)
    assert "calibration" not in LatencyTable.load(path).meta and table.scale == 1.0


def test_a_build_recalibrates_a_table_whose_calibration_is_malformed(tmp_path):
    path = tmp_path / "lut.json"
    probe = fake_table("tiny", tmp_path / "probe.json", measure=curved_ms)
    args = {"grid": 0, "measure": curved_ms, "progress": None, "calibrate_seconds": 0}
    build_latency_table("tiny", path, calibrate=3, measure_arch=line_measure(probe), **args)
    data = json.loads(path.read_text())
    data["meta"]["calibration"]["scale"] = -1
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="scale is -1"):
        LatencyTable.load(path)
    table = build_latency_table("tiny", path, calibrate=3, measure_arch=line_measure(probe), **args)
    assert table.scale == pytest.approx(SCALE) and LatencyTable.load(path).scale == table.scale


def test_build_tool_refuses_a_negative_calibration_count(capsys, tmp_path):
    build = tool("build_latency_lut")
    with pytest.raises(SystemExit) as info:
        build.main(["--space", "tiny", "--output", str(tmp_path / "t.json"), "--calibrate", "-1"])
    assert info.value.code == 2
    assert "--calibrate must be >= 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the benchmark


def test_sample_archs_leaves_out_the_excluded_architectures():
    space = as_search_space("tiny")
    first = sample_archs(space, 6, seed=3)
    again = sample_archs(space, 6, seed=3, exclude=[arch_fingerprint(a) for a in first[:3]])
    assert [arch_fingerprint(a) for a in again[:3]] == [arch_fingerprint(a) for a in first[3:]]
    assert not {arch_fingerprint(a) for a in first[:3]} & {arch_fingerprint(a) for a in again}


def test_the_benchmark_reports_on_architectures_the_calibration_never_saw(
    table, monkeypatch, capsys, tmp_path
):
    bench = tool("benchmark_latency")
    space = as_search_space("tiny")
    calibrate_table(table, space, num_archs=5, seed=0, measure=line_measure(table), min_seconds=0)
    table.save()
    whole = line_measure(table)
    monkeypatch.setattr(bench, "measure_arch", lambda arch, meta, settings: whole(arch))
    out = tmp_path / "bench.json"
    argv = ["--space", "tiny", "--lut", table.path, "--num-archs", "6", "--seed", "0"]
    assert bench.main([*argv, "--json", str(out), "--passes", "1", "--min-seconds", "0"]) == 0
    report = json.loads(out.read_text())
    seen = set(table.meta["calibration"]["arch_sha256"])  # drawn with the benchmark's seed
    benchmarked = {row["sha256"] for row in report["archs"]}
    assert len(seen) == 5 and len(benchmarked) == 6 and not seen & benchmarked
    stats = report["summary"]
    assert stats["within_10pct"] == 100.0 and stats["within_5pct"] == 100.0
    assert stats["drift_since_calibration_pct"] == pytest.approx(0.0, abs=1e-9)
    for row in report["archs"]:
        assert row["predicted_ms"] == pytest.approx(row["measured_ms"], rel=1e-9)
        raw = row["entries_sum_ms"]
        assert math.isclose(row["measured_ms"], OFFSET + SCALE * raw, rel_tol=1e-9)
    out_text = capsys.readouterr().out
    assert "calibrated on 5 other whole models (0.4 ms + 1.250 x entries)" in out_text


def test_the_benchmark_measures_the_machines_drift_since_the_calibration(
    table, monkeypatch, capsys, tmp_path
):
    """The machine 20% slower than when the table was calibrated: no prediction within +-10%,
    the calibration's networks timed again show +20%, and the predictions moved by it land."""
    bench = tool("benchmark_latency")
    calibrate_table(
        table, as_search_space("tiny"), num_archs=5, measure=line_measure(table), min_seconds=0
    )
    table.save()
    whole = line_measure(table)
    calls = []

    def slower(arch, meta, settings):
        calls.append(arch.name)
        return 1.2 * whole(arch)

    monkeypatch.setattr(bench, "measure_arch", slower)
    out = tmp_path / "bench.json"
    argv = ["--space", "tiny", "--lut", table.path, "--num-archs", "4", "--json", str(out)]
    assert bench.main([*argv, "--passes", "1", "--min-seconds", "0"]) == 0
    assert len(calls) == 4 + 5  # the calibration's 5 networks timed in the same round
    stats = json.loads(out.read_text())["summary"]
    assert stats["within_10pct"] == 0.0
    assert stats["drift_since_calibration_pct"] == pytest.approx(20.0)
    assert stats["within_10pct_drift_corrected"] == 100.0
    assert "now measure +20.0% against their calibration times" in capsys.readouterr().out
    calls.clear()
    assert bench.main([*argv, "--passes", "1", "--min-seconds", "0", "--no-drift-check"]) == 0
    assert len(calls) == 4 and json.loads(out.read_text())["summary"]["within_10pct"] == 0.0
