"""Latency tables (mobile_cv_nas/search/latency): the configurations of a space, the file
format, grid interpolation, a resumable build (the timer replaced by a function of the
configuration), and the checks that refuse a table that does not fit. No timing is asserted:
measured figures belong to the benchmark."""

import json
import platform

import pytest
from engine_helpers import tool
from latency_helpers import curved_ms, fake_table, log_ms, multilinear_ms

from mobile_cv_nas.search.latency import (
    BlockConfig,
    GridIndex,
    LatencyTable,
    LatencyTableError,
    build_latency_table,
    build_module,
    check_table,
    grid_configs,
    load_latency_table,
    space_configs,
)
from mobile_cv_nas.search.latency.grid import spread
from mobile_cv_nas.search.space import as_search_space

#: A small space: 3 widths x 2 rates x 2 resolutions, an identity-or-projection skip.
SMALL_SPACE = {
    "name": "small",
    "resolutions": [16, 12],
    "width_divisor": 8,
    "num_classes": 4,
    "stages": [
        [{"op": "conv_k3_hs", "channels": [8, 16, 8], "stride": 2}],
        [{"ops": ["ir_k3", "ir_k5", "skip"], "channels": [8, 24, 8], "expansion": [1, 3, 2]}],
        [{"ops": ["ir_k3_se_hs", "skip"], "channels": [16, 24, 8], "stride": 2}],
    ],
}


# ---------------------------------------------------------------------------- configurations


def test_keys_name_every_field_and_parse_back():
    config = BlockConfig("ir_k5_se_hs", 24, 40, 2, 28, 72)
    assert config.key == "ir_k5_se_hs|in=24|out=40|s=2|hw=28|mid=72"
    assert BlockConfig("skip", 8, 8, 1, 7).key == "skip|in=8|out=8|s=1|hw=7"
    for c in space_configs("tiny"):
        assert BlockConfig.from_key(c.key) == c
    for bad in ("ir_k3|in=8|out=8|s=1", "ir_k3|in=8|out=8|s=1|hw=4|x=2", "ir_k3|in=8", "a|b"):
        with pytest.raises(ValueError, match="is not op"):
            BlockConfig.from_key(bad)


def test_space_configurations_follow_the_strides_and_decisions():
    configs = space_configs(SMALL_SPACE)
    stems = {c.key for c in configs if c.op == "conv_k3_hs"}
    assert stems == {f"conv_k3_hs|in=3|out={w}|s=2|hw={r}" for w in (8, 16) for r in (16, 12)}
    # stage 1 (stride 1) sees 8 and 6 pixels, its own widths 8..24, rates 1 (no expansion conv
    # kept: searched with one, so mid = in with the conv), 2, 3
    ir = {c for c in configs if c.op == "ir_k3"}
    assert {c.hw for c in ir} == {8, 6}
    assert BlockConfig("ir_k3", 16, 24, 1, 8, 16) in ir  # rate 1: mid = in, conv kept
    assert BlockConfig("ir_k3", 16, 24, 1, 8, 48) in ir  # rate 3
    assert BlockConfig("skip", 16, 16, 1, 8) in configs  # identity
    # the last stage: stride 2 from 8 / 6 pixels; the classifier at 4 / 3
    assert {c.hw for c in configs if c.op == "ir_k3_se_hs"} == {8, 6}
    heads = {c.key for c in configs if c.op == "classifier"}
    assert heads == {f"classifier|in={w}|out=4|s=1|hw={h}" for w in (16, 24) for h in (4, 3)}


# ---------------------------------------------------------------------------- format


def test_table_file_round_trips_and_records_what_it_was_measured_on(tmp_path):
    path = tmp_path / "lut.json"
    table = fake_table("tiny", path)
    data = json.loads(path.read_text())
    assert data["format"] == "mobile_cv_nas.latency_table" and data["version"] == 1
    meta = data["meta"]
    assert meta["space"]["name"] == "tiny" and len(meta["space"]["sha256"]) == 64
    assert meta["space"]["definition"]["width_divisor"] == 8
    assert (meta["device"], meta["threads"], meta["batch"], meta["dtype"]) == (
        "cpu",
        1,
        1,
        "float32",
    )
    assert meta["torch"] and meta["machine"]["cpu"] and meta["machine"]["cpu_cores"] >= 1
    assert meta["complete"] and meta["planned"] == len(data["entries"]) == meta["configurations"]
    assert "build_latency_lut.py --space tiny" in meta["command"]
    assert platform.node() not in path.read_text()  # no host name
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries and loaded.meta == table.meta
    for key, ms in loaded.entries.items():
        assert ms == multilinear_ms(BlockConfig.from_key(key))


def test_unreadable_tables_are_refused_in_one_line(tmp_path):
    with pytest.raises(LatencyTableError, match="does not exist: build it with"):
        LatencyTable.load(tmp_path / "none.json")
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(LatencyTableError, match="is not a latency table"):
        LatencyTable.load(other)
    path = tmp_path / "lut.json"
    fake_table(SMALL_SPACE, path)
    data = json.loads(path.read_text())
    data["version"] = 99
    other.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="format version 99"):
        LatencyTable.load(other)
    data["version"] = 1
    data["entries"]["ir_k3|in=8|out=8|s=1|hw=8"] = -1
    other.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="not a time in ms"):
        LatencyTable.load(other)


# ---------------------------------------------------------------------------- interpolation


def test_spread_keeps_both_ends_and_every_width_when_few():
    assert spread([8, 12, 16, 20, 24], 3) == [8, 16, 24]
    assert spread([8, 12, 16, 20, 24], 2) == [8, 24]
    assert spread([24, 8, 16], 3) == [8, 16, 24]
    assert spread([8, 12, 16], 0) == [8, 12, 16]


def test_grid_interpolation_is_exact_on_the_grid_and_for_multilinear_latency(tmp_path):
    table = fake_table("tiny", tmp_path / "lut.json", grid=2)
    configs = space_configs("tiny")
    assert len(table.entries) == len(grid_configs(configs, 2)) < len(configs)
    interpolated = 0
    for c in configs:
        ms, measured = table.find(c)
        assert ms == pytest.approx(multilinear_ms(c), rel=1e-12)
        if c.key in table.entries:
            assert measured and ms == table.entries[c.key]
        else:
            interpolated += 1
            assert not measured
    assert interpolated > 100


@pytest.mark.parametrize("space", ["tiny", "fashion_mnist", "fbnetv2_f"])
def test_every_configuration_of_a_shipped_space_lies_in_its_grid(space):
    configs = space_configs(space)
    for points in (2, 3):
        index = GridIndex(dict.fromkeys(grid_configs(configs, points), 1.0))
        assert [c.key for c in configs if index.lookup(c) is None] == []


def test_grid_points_of_equal_widths_keep_their_groups_structure(tmp_path):
    """Where a stride-1 block's input and output ranges overlap, a grid corner of equal widths
    is measured without the residual add (a skip: with its projection)."""
    space = {
        "name": "overlap",
        "resolutions": [16],
        "width_divisor": 8,
        "num_classes": 4,
        "stages": [
            [{"op": "conv_k3_hs", "channels": [8, 24, 8], "stride": 2}],
            [{"ops": ["ir_k3", "skip"], "channels": [8, 40, 8], "expansion": [2, 3, 1]}],
        ],
    }
    plan = grid_configs(space_configs(space), 2)
    corner = BlockConfig("ir_k3", 8, 8, 1, 8, 16, no_identity=True)
    assert corner in plan and corner.key == "ir_k3|in=8|out=8|s=1|hw=8|mid=16|id=0"
    assert BlockConfig("skip", 8, 8, 1, 8, no_identity=True) in plan
    assert BlockConfig.from_key(corner.key) == corner
    assert corner.group() == BlockConfig("ir_k3", 8, 24, 1, 8, 16).group()
    assert corner.group() != BlockConfig("ir_k3", 8, 8, 1, 8, 16).group()
    assert not build_module(corner, 8).use_residual
    assert build_module(BlockConfig("ir_k3", 8, 8, 1, 8, 16), 8).use_residual
    assert build_module(BlockConfig("skip", 8, 8, 1, 8, no_identity=True), 8).conv is not None
    assert build_module(BlockConfig("skip", 8, 8, 1, 8), 8).conv is None
    table = fake_table(space, tmp_path / "lut.json", grid=2)
    interpolated = 0
    for c in space_configs(space):
        ms, measured = table.find(c)
        assert ms == pytest.approx(multilinear_ms(c), rel=1e-12)
        interpolated += not measured
    assert interpolated > 10


@pytest.mark.parametrize("measure, sign", [(curved_ms, 1), (log_ms, -1)])
def test_interpolation_between_grid_points_stays_within_the_corners(tmp_path, measure, sign):
    """Convex latency is overestimated, concave underestimated, and never beyond the values
    at the grid points around."""
    table = fake_table("tiny", tmp_path / "lut.json", measure=measure, grid=2)
    checked = 0
    for c in space_configs("tiny"):
        if c.key in table.entries:
            continue
        ms, measured = table.find(c)
        assert not measured and sign * (ms - measure(c)) >= -1e-12
        corners = [
            v for k, v in table.entries.items() if BlockConfig.from_key(k).group() == c.group()
        ]
        assert min(corners) - 1e-12 <= ms <= max(corners) + 1e-12
        checked += 1
    assert checked > 100


def test_no_extrapolation_beyond_the_measured_widths(tmp_path):
    table = fake_table(SMALL_SPACE, tmp_path / "lut.json", grid=2)
    outside = BlockConfig("ir_k3", 8, 40, 1, 8, 16)  # output 40: beyond the measured 24
    assert table.find(outside) is None
    with pytest.raises(LatencyTableError, match=r"no entry for ir_k3\|in=8\|out=40.*rebuild"):
        table.lookup(outside)


def test_interpolation_check_measures_held_out_configurations(tmp_path):
    table = fake_table("tiny", tmp_path / "lut.json", measure=curved_ms, grid=2,
                       check_interpolation=12)  # fmt: skip
    check = table.meta["interpolation_check"]
    assert check["count"] == len(table.holdout) == 12
    errors = []
    for key, ms in table.holdout.items():
        assert key not in table.entries and ms == curved_ms(BlockConfig.from_key(key))
        errors.append(table.find(BlockConfig.from_key(key))[0] / ms - 1)
    assert check["max_abs_error"] == pytest.approx(max(abs(e) for e in errors))
    assert check["mean_error"] == pytest.approx(sum(errors) / 12) and check["mean_error"] > 0


# ---------------------------------------------------------------------------- building


class Interrupting:
    """A stand-in timer that stops the build (as a Ctrl-C would) after `limit` measurements."""

    def __init__(self, limit, value=1.0):
        self.limit, self.value, self.calls = limit, value, []

    def __call__(self, config):
        if len(self.calls) == self.limit:
            raise KeyboardInterrupt
        self.calls.append(config.key)
        return self.value


def test_an_interrupted_build_is_saved_and_continued(tmp_path):
    path = tmp_path / "lut.json"
    first = Interrupting(20, value=1.0)
    with pytest.raises(KeyboardInterrupt):
        build_latency_table(SMALL_SPACE, path, measure=first, progress=None, save_every_s=1e9)
    saved = LatencyTable.load(path)
    assert not saved.meta["complete"] and sorted(saved.entries) == sorted(first.calls)
    with pytest.raises(LatencyTableError, match="incomplete: its build stopped after 20 of"):
        check_table(saved)
    second = Interrupting(10**6, value=2.0)
    table = build_latency_table(SMALL_SPACE, path, measure=second, progress=None, recheck=0)
    planned = len(grid_configs(space_configs(SMALL_SPACE), 3))
    assert len(second.calls) == planned - 20 and not set(second.calls) & set(first.calls)
    assert table.meta["complete"] and len(table.entries) == planned
    assert all(table.entries[k] == 1.0 for k in first.calls)  # not measured again
    assert LatencyTable.load(path).entries == table.entries


def test_entries_slowed_while_measured_are_measured_again(tmp_path):
    """A grid point measured 30% slow (another process on the machine) stands out of its
    group's multilinear fit, is measured again and keeps the lower figure; points on the fit
    are measured once."""
    slowed, calls = "ir_k3_se_hs|in=12|out=24|s=2|hw=14|mid=40", []

    def measure(config):
        calls.append(config.key)
        slow = config.key == slowed and calls.count(slowed) == 1
        return multilinear_ms(config) * (1.3 if slow else 1.0)

    table = fake_table("tiny", tmp_path / "lut.json", measure=measure, grid=3)
    assert slowed in table.entries and calls.count(slowed) == 2
    assert table.entries[slowed] == multilinear_ms(BlockConfig.from_key(slowed))
    recheck = table.meta["recheck"]
    assert (recheck["remeasured"], recheck["lowered"], recheck["threshold"]) == (1, 1, 0.08)
    assert len(calls) == len(table.entries) + 1


def test_a_killed_build_loses_at_most_the_last_save_interval(tmp_path):
    """With saves after every measurement, the file always holds all but the current one."""
    path = tmp_path / "lut.json"
    seen = []

    def measure(config):
        if seen:
            assert sorted(LatencyTable.load(path).entries) == sorted(seen)
        seen.append(config.key)
        return 1.0

    build_latency_table(SMALL_SPACE, path, grid=2, measure=measure, progress=None,
                        save_every_s=0.0)  # fmt: skip
    assert len(seen) > 10


def test_progress_shows_the_count_and_an_eta(tmp_path):
    import io

    out = io.StringIO()
    build_latency_table(SMALL_SPACE, tmp_path / "lut.json", grid=2, measure=multilinear_ms,
                        progress=out)  # fmt: skip
    text = out.getvalue()
    planned = len(grid_configs(space_configs(SMALL_SPACE), 2))
    assert f"measuring {planned} (a grid of 2 widths per coordinate)" in text
    assert f"[{planned}/{planned}] 100.0%" in text and "ETA" in text


def test_a_build_does_not_continue_a_table_of_other_conditions(tmp_path):
    path = tmp_path / "lut.json"
    with pytest.raises(KeyboardInterrupt):
        build_latency_table(SMALL_SPACE, path, measure=Interrupting(5), progress=None, threads=2)
    with pytest.raises(LatencyTableError, match="threads 2 there, 1 now.*another --output"):
        build_latency_table(SMALL_SPACE, path, measure=multilinear_ms, progress=None)
    with pytest.raises(LatencyTableError, match="grid_points 3 there, 0 now"):
        build_latency_table(SMALL_SPACE, path, measure=multilinear_ms, progress=None,
                            threads=2, grid=0)  # fmt: skip


# ---------------------------------------------------------------------------- fit checks


def test_a_table_of_another_space_is_refused_naming_the_difference(tmp_path):
    table = fake_table("tiny", tmp_path / "lut.json")
    check_table(table, as_search_space("tiny"))  # its own space fits
    with pytest.raises(LatencyTableError) as e:
        check_table(table, as_search_space("fashion_mnist"))
    message = str(e.value)
    assert "measured for search space 'tiny', not for 'fashion_mnist'" in message
    assert "in_channels 3 in the table, 1 here" in message
    assert "resolutions [32, 28, 24] in the table, [28, 24, 20] here" in message
    assert "build_latency_lut.py --space fashion_mnist" in message and "\n" not in message


def test_a_table_lacking_entries_is_refused_naming_them(tmp_path):
    table = fake_table(SMALL_SPACE, tmp_path / "lut.json")
    del table.entries["skip|in=16|out=16|s=1|hw=8"]
    table._index = None
    with pytest.raises(LatencyTableError) as e:
        check_table(table, as_search_space(SMALL_SPACE))
    assert "lacks 1 configuration(s) of search space 'small' (skip|in=16|out=16|s=1|hw=8)" in str(
        e.value
    )
    assert "build_latency_lut.py --space small" in str(e.value)


def test_another_device_thread_count_or_batch_is_refused_another_torch_warned(tmp_path):
    table = fake_table(SMALL_SPACE, tmp_path / "lut.json", calibrated=True)
    assert check_table(table, device="cpu", threads=1, batch=1, dtype="float32") == []
    for asked, text in (
        ({"device": "cuda"}, "device 'cpu', not 'cuda'.*--device cuda"),
        ({"threads": 2}, "threads 1, not 2.*--threads 2"),
        ({"batch": 8}, "batch 1, not 8.*--batch 8"),
    ):
        with pytest.raises(LatencyTableError, match=text):
            check_table(table, **asked)
    table.meta["torch"] = "1.0.0"
    (warning,) = check_table(table)
    assert "torch 1.0.0, this is torch" in warning and "rebuild" in warning
    with pytest.raises(LatencyTableError, match="torch 1.0.0"):
        check_table(table, strict=True)
    machine = dict(table.meta["machine"], cpu="Another CPU")
    (_, warning) = check_table(table, machine=machine)
    assert "another machine (cpu" in warning and "'Another CPU'" in warning


def test_load_latency_table_checks_and_returns_the_warnings(tmp_path):
    path = tmp_path / "lut.json"
    fake_table(SMALL_SPACE, path, calibrated=True)
    table, warnings = load_latency_table(path, as_search_space(SMALL_SPACE), threads=1)
    assert warnings == [] and table.path == str(path)
    fake_table(SMALL_SPACE, path, calibrate=0)  # the calibration dropped
    table, warnings = load_latency_table(path, as_search_space(SMALL_SPACE), threads=1)
    assert len(warnings) == 1 and "is not calibrated on whole networks" in warnings[0]
    assert "--calibrate 20" in warnings[0]
    with pytest.raises(LatencyTableError, match="not for 'tiny'"):
        load_latency_table(path, as_search_space("tiny"))


# ---------------------------------------------------------------------------- the tool


def test_build_tool_dry_run_and_one_line_errors(capsys, tmp_path):
    build = tool("build_latency_lut")
    assert build.main(["--space", "tiny", "--output", str(tmp_path / "x.json"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 1006 configurations; every width: 1006 to measure" in out
    assert not (tmp_path / "x.json").exists()
    assert build.main(["--space", "nope", "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
