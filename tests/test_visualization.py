"""Architecture figures and search curves: the bar specs against a hand-read zoo arch and the
built model's widths, every zoo arch, derived and custom archs, the decision selection of the
curves, missing keys, and the CLI's errors."""

import importlib.util
import math

import matplotlib.image
import pytest

from mobile_cv_nas import model_zoo
from mobile_cv_nas.arch import ArchDef, build_model
from mobile_cv_nas.blocks import BLOCK_REGISTRY
from mobile_cv_nas.visualization import (
    bar_specs,
    draw_architecture,
    draw_search_curves,
    plot_architecture,
    plot_search_curves,
    select_decisions,
)


def decode_png(path):
    """The decoded image; fails unless it is a real, non-blank picture."""
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert 250 <= height <= 3000 and 400 <= width <= 4000, image.shape
    assert image[..., :3].std() > 0.05, "blank image"
    return image


def test_bar_specs_of_fbnetv2_f1_match_its_yaml():
    """Read off model_zoo/archs/FBNetV2_F1.yaml by hand (the two skips project 56->80 and
    144->224, so they are 1x1 convs, not identities)."""
    bars = bar_specs(model_zoo.get_arch_def("FBNetV2_F1"))
    assert [b.kernel for b in bars] == [3, 5, 5, 5, 5, 5, 5, 3, 3, 1, 5, 5, 3, 5, 5, 1, None]
    T, F = True, False
    assert [b.se for b in bars] == [F, F, F, F, T, T, F, F, T, F, T, T, T, T, T, F, F]
    assert [b.hswish for b in bars] == [T, F, F, F, F, F, T, T, T, F, T, T, T, T, T, F, T]
    assert not any(b.skip for b in bars)
    assert [b.out_channels for b in bars] == [
        8, 8, 24, 24, 32, 24, 56, 56, 56, 80, 80, 80, 144, 144, 144, 224, 1600
    ]  # fmt: skip
    assert [b.stride for b in bars] == [2, 1, 2, 1, 2, 1, 2] + [1] * 5 + [2] + [1] * 4
    assert [b.note for b in bars][-3:] == ["", "skip 1x1", "pool"]
    # conv 1; ir_k5 e1 on 8 ch: 8/8; e5.4566 on 8 ch: 43.7 rounds up to 48 (divisor 8); pool e6
    assert [bars[i].height for i in (0, 1, 2, 16)] == [1.0, 1.0, 6.0, 6.0]


def test_heights_are_the_built_models_mid_widths():
    """Drawn to scale: height * in channels is the mid width the builder made."""
    arch = model_zoo.get_arch_def("FBNetV2_F1")
    stages = build_model(arch).backbone.stages
    for bar in bar_specs(arch):
        mid = getattr(getattr(stages, bar.name), "mid_channels", None)
        if mid is not None:
            assert math.isclose(bar.height * bar.in_channels, mid), bar


def test_one_bar_per_block_for_every_zoo_arch():
    for name in model_zoo.list_models():
        arch = model_zoo.get_arch_def(name)
        fig = draw_architecture(arch, flops_m=123.4)
        (ax,) = fig.axes
        assert len(ax.containers) == len(arch.blocks()), name
        assert f"input {arch.input_size}x{arch.input_size}" in ax.get_title()
        assert "123 MFLOPs" in ax.get_title()
        channels = [t.get_text() for t in ax.get_xticklabels()]
        assert channels == [str(b.out_channels) for b in arch.blocks()], name


def test_plot_architecture_writes_a_png(tmp_path):
    path = tmp_path / "sub" / "f4.png"
    assert plot_architecture(model_zoo.get_arch_def("FBNetV2_F4"), path) == str(path)
    decode_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["f4.png"]  # no temp file left behind


def test_derived_tiny_arch_shows_its_skips(tmp_path):
    from mobile_cv_nas.search import Supernet, derive_arch
    from mobile_cv_nas.search.testing import favour

    net = favour(Supernet("tiny"), **{"op:xif2_1": "skip", "op:xif3_0": "ir_k3_se_hs"})
    arch = derive_arch(net)
    bars = bar_specs(arch)
    assert [b.name for b in bars if b.skip] == ["xif2_1"]
    assert bars[4].se and bars[4].hswish and bars[4].kernel == 3
    fig = draw_architecture(arch)
    (ax,) = fig.axes
    assert len(ax.containers) == len(bars)
    skip_bar, se_bar = (ax.containers[i].patches[0] for i in (3, 4))  # xif2_1, xif3_0
    assert skip_bar.get_width() < se_bar.get_width() and se_bar.get_hatch() == "///"
    assert "skip" in [t.get_text() for t in ax.texts]
    assert "(1 skip)" in ax.get_title()
    decode_png(plot_architecture(arch, tmp_path / "tiny.png"))


@pytest.fixture
def custom_op():
    @BLOCK_REGISTRY.register()
    def viz_test_custom_block(in_channels, out_channels, stride=1, **options):
        raise AssertionError("the figure never builds a block")

    yield "viz_test_custom_block"
    BLOCK_REGISTRY._obj_map.pop("viz_test_custom_block", None)


def test_custom_and_unknown_ops_fall_back_to_grey(custom_op, tmp_path):
    stages = [
        [{"op": "conv_k3", "out_channels": 8, "stride": 2}],
        [
            {"op": custom_op, "out_channels": 16},
            {"op": "not_registered_anywhere", "out_channels": 16},
        ],
    ]
    arch = ArchDef(stages=stages, name="custom", input_size=64)  # built by hand: not validated
    bars = bar_specs(arch)
    for bar in bars[1:]:
        assert (bar.kernel, bar.height, bar.se, bar.skip, bar.note) == (
            None, 1.0, False, False, bar.op
        )  # fmt: skip
    decode_png(plot_architecture(arch, tmp_path / "custom.png"))


def _records(n=20):
    """A search log: tau decays, cost falls to its target, op:a swings most, out:c less,
    op:b hardly; labels only on the first record, epoch missing on one point."""
    records = []
    for i in range(n):
        t = i / (n - 1)
        records.append(
            {
                "iteration": 10 * i,
                "epoch": 0.5 * i,
                "tau": 5.0 * 0.9**i,
                "cost": (2.0 - t) * 1e6,
                "argmax_cost": (2.2 - t) * 1e6,
                "cost_target": 1.0e6,
                "cost_metric": "flops",
                "probs": {
                    "op:a": [0.25 + 0.6 * t, 0.25 - 0.2 * t, 0.25 - 0.2 * t, 0.25 - 0.2 * t],
                    "op:b": [0.5 + 0.02 * t, 0.5 - 0.02 * t],
                    "out:c": [0.5 - 0.3 * t, 0.5 + 0.3 * t],
                },
            }
        )
    records[0]["option_labels"] = {"op:a": ["ir_k3", "ir_k5", "ir_k3_se_hs", "skip"]}
    del records[3]["epoch"]
    return records


def test_curves_show_the_decisions_that_moved_most(tmp_path):
    records = _records()
    chosen = select_decisions(records, max_decisions=2)
    assert [name for name, _ in chosen] == ["op:a", "out:c"]
    assert chosen[0][1] == pytest.approx(0.6)
    fig = draw_search_curves(records, title="tiny search", max_decisions=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["(a) Gumbel-softmax temperature", "(b) flops"]
    assert [t.split(" ")[0] for t in titles[2:]] == ["op:a", "out:c"]
    labels = [line.get_label() for line in fig.axes[2].get_lines()]
    assert labels == ["ir_k3", "ir_k5", "ir_k3_se_hs", "skip"]
    cost_lines = fig.axes[1].get_lines()
    assert [line.get_linestyle() for line in cost_lines] == ["-", "--", "--"]
    assert max(cost_lines[0].get_ydata()) == pytest.approx(2.0)  # in M
    assert any("2 of 3 decisions shown" in t.get_text() and "1 left out" in t.get_text()
               for t in fig.texts)  # fmt: skip
    decode_png(plot_search_curves(records, tmp_path / "curves.png", max_decisions=2))


def test_curves_skip_panels_whose_keys_are_missing(tmp_path):
    only_probs = [{"probs": {"resolution": [0.5, 0.5]}}, {"probs": {"resolution": [0.9, 0.1]}}]
    fig = draw_search_curves(only_probs)
    assert [ax.get_title() for ax in fig.axes] == ["resolution (moved 0.40)"]
    no_probs = [{k: v for k, v in r.items() if k != "probs"} for r in _records()]
    assert len(draw_search_curves(no_probs).axes) == 2
    ragged = [{"tau": 1.0}, {"epoch": 1, "cost": 5e5}, {}]
    assert [ax.get_title() for ax in draw_search_curves(ragged).axes] == [
        "(a) Gumbel-softmax temperature",
        "(b) cost",
    ]
    assert plot_search_curves([], tmp_path / "empty.png") == str(tmp_path / "empty.png")


def _plot_arch_tool(repo_root):
    spec = importlib.util.spec_from_file_location("plot_arch", repo_root / "tools" / "plot_arch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_plots_a_zoo_model_and_exits_2_on_unknown_names(repo_root, tmp_path, capsys):
    tool = _plot_arch_tool(repo_root)
    out = tmp_path / "f0.png"
    assert tool.main(["fbnetv2_f0", "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    decode_png(out)
    for bad in ("FBNetV2_F9", str(tmp_path / "missing.yaml")):
        assert tool.main([bad, "-o", str(tmp_path / "x.png")]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
        assert "Traceback" not in captured.err
    assert not (tmp_path / "x.png").exists()
