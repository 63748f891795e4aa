"""tools/benchmark_latency.py: its rank correlation and summary figures, and a run end to end
on the tiny space with a table of known numbers and a stand-in for the end-to-end timer (the
timed figures themselves live in the benchmark's output, not in tests)."""

import json
import math

import pytest
from engine_helpers import tool
from latency_helpers import fake_table, multilinear_ms

from mobile_cv_nas.search.space import as_search_space


def test_spearman_is_pearson_of_ranks_with_ties_averaged():
    bench = tool("benchmark_latency")
    assert bench.ranks([10, 30, 20, 20]) == [1.0, 4.0, 2.5, 2.5]
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # textbook: d = (0, -1, 1, 0, 0) -> 1 - 6 * 2 / (5 * 24) = 0.9
    assert bench.spearman([1, 2, 3, 4, 5], [1, 3, 2, 4, 5]) == pytest.approx(0.9)
    assert math.isnan(bench.spearman([1, 1, 1], [1, 2, 3]))


def test_summary_counts_the_shares_within_the_bands():
    bench = tool("benchmark_latency")
    rows = [
        {"predicted_ms": p, "measured_ms": 1.0, "flops": f}
        for p, f in [(1.04, 1), (0.92, 2), (1.2, 3), (1.0, 4)]
    ]
    stats = bench.summary(rows)
    assert stats["within_5pct"] == 50.0 and stats["within_10pct"] == 75.0
    assert stats["worst_abs_error_pct"] == pytest.approx(20.0)


def test_end_to_end_on_a_table_of_known_numbers(tmp_path, monkeypatch, capsys):
    """Every architecture measured at exactly 1.08 x its prediction: all within +-10%, none
    within +-5%, and the table's ranks are the measured ones."""
    bench = tool("benchmark_latency")
    lut = tmp_path / "tiny.json"
    fake_table(as_search_space("tiny"), str(lut), measure=multilinear_ms)

    def measured(arch, meta, settings):
        return 1.08 * bench.predict_latency(arch, bench.load_latency_table(str(lut))[0])

    monkeypatch.setattr(bench, "measure_arch", measured)
    out = tmp_path / "bench.json"
    argv = ["--space", "tiny", "--lut", str(lut), "--num-archs", "6", "--json", str(out)]
    argv += ["--min-seconds", "0"]
    assert bench.main([*argv, "--plot", str(tmp_path / "plot.png")]) == 0
    report = json.loads(out.read_text())
    stats = report["summary"]
    assert stats["archs"] == 6 and stats["within_10pct"] == 100.0 and stats["within_5pct"] == 0.0
    assert stats["spearman_predicted"] == pytest.approx(1.0)
    names = {r["arch"] for r in report["archs"]}
    assert len(names) == 6  # distinct architectures
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert "within +-10%: 100%" in capsys.readouterr().out


def test_a_table_of_another_space_is_refused(tmp_path, capsys):
    bench = tool("benchmark_latency")
    lut = tmp_path / "tiny.json"
    fake_table(as_search_space("tiny"), str(lut))
    assert bench.main(["--space", "fashion_mnist", "--lut", str(lut), "--num-archs", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "fashion_mnist" in err[0]


@pytest.mark.parametrize("bad", [["--passes", "0"], ["--min-seconds", "-1"], ["--num-archs", "2"]])
def test_bad_arguments_are_one_line_with_status_2(bad, capsys):
    bench = tool("benchmark_latency")
    with pytest.raises(SystemExit) as info:
        bench.main(["--space", "tiny", "--lut", "lut.json", *bad])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
