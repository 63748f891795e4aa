"""Search spaces as data: the shipped YAML spaces, the schema's errors, counting and sharing."""

import copy
import math
import os
import subprocess
import sys

import pytest
import yaml

from mobile_cv_nas.blocks import BLOCK_REGISTRY
from mobile_cv_nas.blocks.ops import PAPER_MICRO_OPS
from mobile_cv_nas.search.space import (
    SearchSpace,
    SearchSpaceError,
    available_search_spaces,
    count_architectures,
    load_search_space,
    num_architectures,
    parse_search_space,
)

SHIPPED = ("fbnetv2_f", "fbnetv2_l", "fbnetv2_p", "tiny")


def _tiny_inline():
    """2 ops with 2 expansions + skip, 3 channel options, 2 resolutions."""
    return {
        "name": "inline",
        "resolutions": [32, 24],
        "stages": [
            [{"op": "conv_k3", "channels": 8, "stride": 2}],
            [{"ops": ["ir_k3", "ir_k5", "skip"], "channels": [8, 16, 4], "expansion": [1, 2, 1]}],
        ],
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_load(name):
    space = load_search_space(name)
    assert isinstance(space, SearchSpace)
    assert space.name == name
    assert name in available_search_spaces()
    assert space.resolutions == sorted(space.resolutions, reverse=True)
    assert space.blocks()
    # Every op of every row is registered; the F/L/P micro lists are the paper's Table 3.
    for b in space.blocks():
        for op in b.ops:
            BLOCK_REGISTRY.get(op)
        if name != "tiny" and len(b.ops) > 1:
            assert tuple(b.ops) == PAPER_MICRO_OPS


# The paper's Table 2, row by row: (filters (low, high, step) or a fixed width, expansion
# (low, high, step) or a fixed rate or None, n, s). Stem and head are fixed; the rest are
# "TBS" blocks over the 9 micro ops of Table 3.
TABLE_2 = [
    (16, None, 1, 2),  # 3x3 conv stem
    ((12, 16, 4), 1, 1, 1),
    ((16, 28, 4), (0.75, 3.25, 0.5), 1, 2),
    ((16, 28, 4), (0.75, 3.25, 0.5), 2, 1),
    ((16, 40, 8), (0.75, 3.25, 0.5), 1, 2),
    ((16, 40, 8), (0.75, 3.25, 0.5), 2, 1),
    ((48, 96, 8), (0.75, 3.75, 0.5), 1, 2),
    ((48, 96, 8), (0.75, 3.75, 0.5), 2, 1),
    ((72, 128, 8), (0.75, 4.5, 0.75), 4, 1),
    ((112, 216, 8), (0.75, 4.5, 0.75), 1, 2),
    ((112, 216, 8), (0.75, 4.5, 0.75), 3, 1),
    (1984, None, 1, 1),  # 1x1 conv head (then avg pool and fc, added by the builder)
]


def _options(spec, kind):
    if not isinstance(spec, tuple):
        return [spec]
    low, high, step = spec
    n = round((high - low) / step) + 1
    return [kind(low + i * step) for i in range(n)]


@pytest.mark.parametrize(
    "name, max_res, cost",
    [("fbnetv2_f", 224, "flops"), ("fbnetv2_l", 256, "flops"), ("fbnetv2_p", 288, "params")],
)
def test_paper_spaces_are_table_2_row_by_row(name, max_res, cost):
    space = load_search_space(name)
    assert space.max_resolution == max_res == space.resolutions[0]
    assert space.cost == cost
    assert space.num_classes == 1000 and space.in_channels == 3 and space.width_divisor == 8
    rows = [row for stage in space.stages for row in stage]
    assert len(rows) == len(TABLE_2)
    for i, (row, (filters, expansion, n, s)) in enumerate(zip(rows, TABLE_2, strict=True)):
        assert row.channels == _options(filters, int), i
        assert row.stride == s and row.repeat == n, i
        if expansion is None:
            assert row.expansions is None, i
        else:
            assert row.expansions == pytest.approx(_options(expansion, float)), i
        if 0 < i < len(TABLE_2) - 1:
            assert tuple(row.ops) == PAPER_MICRO_OPS, i
    stem, head = rows[0], rows[-1]
    assert stem.ops == ["conv_k3_hs"] and head.ops == ["conv_k1_hs"]
    # one stage per feature-map resolution, as the published models are staged
    assert [len(stage) for stage in space.stages] == [1, 1, 2, 2, 3, 2, 1]


def test_paper_space_sizes_in_both_channel_decision_modes():
    """The candidates of the Table 2 space, counted by hand: R resolutions x per-block
    (op, expansion) pairs x output-width options per decision."""
    ops = 9 * 49**3 * 49**3 * 57**3 * 49**4 * 49**4  # 8 IR ops x |e| + skip, per TBS block
    per_stage = 4 * ops * (2 * 4 * 4 * 7 * 8 * 14)  # one width per run of equal ranges
    per_block = 4 * ops * (2 * 4**3 * 4**3 * 7**3 * 8**4 * 14**4)  # one width per block
    space = load_search_space("fbnetv2_f")
    assert space.channel_decisions == "per_stage"
    assert num_architectures(space) == per_stage
    assert count_architectures(space) == pytest.approx(34.886, abs=1e-3)
    data = space.to_dict()
    data["channel_decisions"] = "per_block"
    assert num_architectures(parse_search_space(data)) == per_block
    assert count_architectures(parse_search_space(data)) == pytest.approx(45.132, abs=1e-3)


def test_load_by_path_equals_load_by_name(repo_root):
    path = os.path.join(repo_root, "configs", "search_spaces", "fbnetv2_f.yaml")
    assert load_search_space(path) == load_search_space("fbnetv2_f")


def test_tiny_space_is_small():
    import torch

    from mobile_cv_nas.arch import build_model
    from mobile_cv_nas.flops import count_flops

    space = load_search_space("tiny")
    assert space.num_classes == 10 and space.cost == "flops"
    searchable = [b for b in space.blocks() if b.num_op_choices() > 1]
    assert 4 <= len(searchable) <= 6
    for b in space.blocks():
        if b.num_op_choices() > 1:
            assert 3 <= len(b.channels) <= 4 and max(b.channels) <= 24
            assert 2 <= len(b.expansions) <= 3
    # The biggest candidate builds and is a few MFLOPs (CPU-friendly).
    model = build_model(space.largest_arch_def())
    x = torch.randn(8, 3, space.max_resolution, space.max_resolution)
    assert model(x).shape == (8, 10)
    assert count_flops(model).mflops < 5


def test_count_formula_by_hand():
    space = parse_search_space(_tiny_inline())
    # resolutions 2 x stem (1 op, 1 width) x block ((2 ops x 2 expansions + skip) = 5)
    # x 3 output-channel options.
    assert num_architectures(space) == 2 * 1 * 5 * 3 == 30
    assert count_architectures(space) == pytest.approx(math.log10(30))
    # A repeat copy adds an op choice but no new channel decision.
    data = _tiny_inline()
    data["stages"][1][0]["repeat"] = 2
    assert num_architectures(parse_search_space(data)) == 2 * 5 * 5 * 3
    # A second stride-1 row of the same range continues the decision: only ops multiply.
    data = _tiny_inline()
    data["stages"][1].append(copy.deepcopy(data["stages"][1][0]))
    assert num_architectures(parse_search_space(data)) == 2 * 5 * 5 * 3
    # A second row with another range adds both.
    data["stages"][1][1]["channels"] = [16, 24, 8]
    assert num_architectures(parse_search_space(data)) == 2 * 5 * 3 * 5 * 2


# Output-width decision of each block of the Table 2 spaces, stage by stage, written out.
PER_STAGE_IDS = [[0], [1], [2, 2, 2], [3, 3, 3], [4, 4, 4, 5, 5, 5, 5], [6, 6, 6, 6], [7]]


def test_per_stage_decisions_of_the_paper_space():
    space = load_search_space("fbnetv2_f")
    blocks = space.blocks()
    ids = [[b.decision_id for b in blocks if b.stage == s] for s in range(len(space.stages))]
    assert ids == PER_STAGE_IDS
    names = [b.name for b in blocks if b.stage == 2]
    assert names == ["xif2_0", "xif2_1", "xif2_2"]
    shares = [b.shares_output_with_previous for b in blocks if b.stage == 4]
    assert shares == [False, True, True, False, True, True, True]


def test_per_block_decisions_give_every_block_its_own_width():
    data = load_search_space("fbnetv2_f").to_dict()
    data["channel_decisions"] = "per_block"
    blocks = parse_search_space(data).blocks()
    assert [b.decision_id for b in blocks] == list(range(len(blocks)))
    assert not any(b.shares_output_with_previous for b in blocks)


def test_options_parsed():
    space = parse_search_space(_tiny_inline())
    row = space.stages[1][0]
    assert row.channels == [8, 12, 16]
    assert row.expansions == [1, 2]
    assert space.stages[0][0].ops == ["conv_k3"] and space.stages[0][0].expansions is None
    # high is included only when reachable; float ranges include an exact high.
    data = _tiny_inline()
    data["stages"][1][0].update(channels=[8, 18, 4], expansion=[0.75, 3.25, 0.5])
    row = parse_search_space(data).stages[1][0]
    assert row.channels == [8, 12, 16]
    assert row.expansions == [0.75, 1.25, 1.75, 2.25, 2.75, 3.25]
    assert parse_search_space(data).resolutions == [32, 24]


def _bad(mutate):
    data = _tiny_inline()
    mutate(data)
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(data)
    return str(info.value)


def _row(data):
    return data["stages"][1][0]


@pytest.mark.parametrize(
    "mutate, field, words",
    [
        (lambda d: _row(d).update(ops=["ir_k3", "ir_k9_nope"]), "ops", "ir_k9_nope"),
        (lambda d: _row(d).update(channels=[40, 16, 8]), "channels", "low 40 > high 16"),
        (lambda d: _row(d).update(channels=[8, 16, 0]), "channels", "step must be > 0"),
        (lambda d: _row(d).update(channels=[8, 16, -4]), "channels", "step must be > 0"),
        (lambda d: _row(d).update(expansion=[1, 2, 0]), "expansion", "step must be > 0"),
        (lambda d: _row(d).update(expansion=[3, 2, 1]), "expansion", "low 3 > high 2"),
        (lambda d: _row(d).pop("channels"), "channels", "missing"),
        (lambda d: _row(d).update(kernel=3), "kernel", "unknown field"),
        (lambda d: _row(d).update(channels=[8, 16]), "channels", "[low, high, step]"),
        (lambda d: _row(d).update(channels=12.5), "channels", "positive integer"),
        (lambda d: _row(d).update(ops=[]), "ops", "non-empty"),
        (lambda d: _row(d).update(op="skip"), "op", "not both"),
        (lambda d: _row(d).update(stride=0), "stride", "positive integer"),
        (lambda d: _row(d).update(repeat=True), "repeat", "positive integer"),
    ],
)
def test_malformed_rows_name_stage_row_field(mutate, field, words):
    msg = _bad(mutate)
    assert msg.startswith(f"space 'inline', stage 1, row 0, field '{field}': "), msg
    assert words in msg


def test_malformed_row_position_is_exact():
    def mutate(d):
        d["stages"][1].append({"ops": ["ir_k3"], "channels": [40, 16, 4]})

    assert _bad(mutate) == "space 'inline', stage 1, row 1, field 'channels': low 40 > high 16."


def test_expansion_on_op_without_one():
    msg = _bad(lambda d: d["stages"][0][0].update(expansion=2))
    assert msg.startswith("space 'inline', stage 0, row 0, field 'expansion': ")
    assert "conv_k3" in msg


@pytest.mark.parametrize(
    "mutate, field, words",
    [
        (lambda d: d.update(resolutions=[]), "resolutions", "non-empty"),
        (lambda d: d.pop("resolutions"), "resolutions", "missing"),
        (lambda d: d.update(resolutions=[32, 32]), "resolutions", "duplicate"),
        (lambda d: d.update(resolutions=[32, 0]), "resolutions", "positive integer"),
        (lambda d: d.update(cost="latency"), "cost", "flops, params"),
        (lambda d: d.update(input_size=224), "input_size", "unknown top-level field"),
        (lambda d: d.update(stages=[]), "stages", "non-empty"),
        (lambda d: d.update(width_divisor=0), "width_divisor", "positive integer"),
        (lambda d: d.update(in_channels=0), "in_channels", "positive integer"),
        (lambda d: d.update(num_classes=0), "num_classes", "positive integer"),
        (lambda d: d.update(channel_decisions="per_row"), "channel_decisions", "per_stage"),
    ],
)
def test_malformed_top_level(mutate, field, words):
    msg = _bad(mutate)
    assert msg.startswith(f"space 'inline', field '{field}': "), msg
    assert words in msg


def test_errors_are_value_errors():
    assert issubclass(SearchSpaceError, ValueError)


def test_missing_file_lists_available(tmp_path):
    with pytest.raises(SearchSpaceError) as info:
        load_search_space("no_such_space")
    msg = str(info.value)
    assert "no_such_space.yaml" in msg
    for name in SHIPPED:
        assert name in msg
    with pytest.raises(SearchSpaceError, match="does not exist"):
        load_search_space(str(tmp_path / "missing.yaml"))


def test_round_trip_to_dict():
    for name in SHIPPED:
        space = load_search_space(name)
        again = parse_search_space(yaml.safe_load(yaml.safe_dump(space.to_dict())))
        assert again == space


def _start_cli(*args):
    tool = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools", "space_info.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, tool, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_cli_subprocess(tmp_path):
    """The script as users run it: a summary for a good space, exit 2 for a bad file.
    Both run at once (each start costs a torch import)."""
    bad = tmp_path / "bad.yaml"
    data = _tiny_inline()
    _row(data)["channels"] = [40, 16, 4]
    bad.write_text(yaml.safe_dump(data))
    good_proc, bad_proc = _start_cli("fbnetv2_f"), _start_cli(str(bad))
    out, err = good_proc.communicate(timeout=120)
    bad_out, bad_err = bad_proc.communicate(timeout=120)

    assert good_proc.returncode == 0, err
    assert "name: fbnetv2_f" in out and "cost: flops" in out
    assert "resolutions: 224, 192, 160, 128" in out
    expected = count_architectures(load_search_space("fbnetv2_f"))
    assert f"log10(#architectures) = {expected:.2f}" in out

    assert bad_proc.returncode == 2, (bad_out, bad_err)
    assert "stage 1, row 0, field 'channels': low 40 > high 16" in bad_err


def test_cli_missing_file_exits_2(tmp_path, capsys):
    # In-process (a subprocess costs a torch import): same entry point as the script.
    import importlib.util

    tool = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools", "space_info.py")
    spec = importlib.util.spec_from_file_location("space_info", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "fbnetv2_f" in err
    assert module.main(["tiny"]) == 0
    assert "log10(#architectures) = " in capsys.readouterr().out


def test_cli_writes_the_largest_candidate(tmp_path, capsys):
    """--largest-arch: the arch YAML a training-iteration baseline is timed on (README), as
    large as any architecture of the space."""
    import importlib.util

    from mobile_cv_nas.arch import build_model, load_arch_def
    from mobile_cv_nas.flops import count_flops
    from mobile_cv_nas.search import Supernet
    from mobile_cv_nas.search.cost_bounds import cost_range

    tool = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools", "space_info.py")
    spec = importlib.util.spec_from_file_location("space_info", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "largest.yaml"
    assert module.main(["fashion_mnist", "--largest-arch", str(path)]) == 0
    assert f"largest candidate: 1.32 MFLOPs, 0.04816 M params, input 28: {path}" in (
        capsys.readouterr().out
    )
    arch = load_arch_def(str(path))
    assert (arch.input_size, arch.in_channels, arch.num_classes) == (28, 1, 10)
    flops = count_flops(build_model(arch), arch.input_size).flops
    assert flops >= 0.8 * cost_range(Supernet("fashion_mnist"), "flops")[1]
