"""The search-quality benchmark (tools/benchmarks/search_quality): seeded random
architectures of the fashion_mnist space, distinct and within the FLOP window; the report's
mean/std and interpretation on fake results; the CLI end to end on a tiny setting (a fake
search folder, 3 random archs, 2 training iterations each). No timing assertions."""

import json
import logging
import os

import pytest

from benchmarks.search_quality import cli
from benchmarks.search_quality.report import (
    format_report,
    interpretation,
    mean_std,
    summarize,
)
from benchmarks.search_quality.sampling import (
    SamplingError,
    arch_key,
    cost_of,
    sample_random_archs,
    space_for_arch,
)
from benchmarks.search_quality.training import SUBSET_DATA, check_overrides
from mobile_cv_nas.arch import build_model, parse_arch_def
from mobile_cv_nas.engine import new_config
from mobile_cv_nas.engine.errors import ConfigError
from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.search import Supernet, derive_arch
from mobile_cv_nas.search.space import as_search_space

TARGET = 0.3e6  # FLOPs: about the demo search's result


@pytest.fixture(scope="module")
def space():
    return as_search_space("fashion_mnist")


@pytest.fixture(scope="module")
def drawn(space):
    return sample_random_archs(space, TARGET, 4, seed=0)


def test_random_archs_distinct_within_window_and_in_the_space(space, drawn):
    assert len(drawn) == 4
    assert len({arch_key(c.arch) for c in drawn}) == 4
    ops = {op for stage in space.stages for row in stage for op in row.ops}
    for c in drawn:
        report = count_flops(build_model(c.arch), c.arch.input_size)
        assert report.flops == c.flops  # the published count at the arch's input size
        assert abs(c.flops - TARGET) <= 0.1 * TARGET
        assert c.arch.input_size in space.resolutions
        assert {b.op for b in c.arch.blocks()} <= ops
        assert set(c.choices) == set(Supernet(space).decisions)


def test_random_archs_seeded(space, drawn):
    again = sample_random_archs(space, TARGET, 4, seed=0)
    assert [arch_key(c.arch) for c in again] == [arch_key(c.arch) for c in drawn]
    (other,) = sample_random_archs(space, TARGET, 1, seed=1)
    assert arch_key(other.arch) != arch_key(drawn[0].arch)


def test_random_archs_exclude_and_tolerance(space, drawn):
    # the same seed without the first arch it draws: the second comes first
    kept = sample_random_archs(space, TARGET, 1, seed=0, exclude=[drawn[0].arch])
    assert arch_key(kept[0].arch) == arch_key(drawn[1].arch)
    (narrow,) = sample_random_archs(space, TARGET, 1, seed=0, tolerance=0.02)
    assert abs(narrow.flops - TARGET) <= 0.02 * TARGET


def test_random_archs_unreachable_target_is_a_clear_error(space):
    with pytest.raises(SamplingError, match=r"Found 0 of 3 .* in 40 draws"):
        sample_random_archs(space, 1e3, 3, max_tries=40)


def test_mean_std_and_summary():
    assert mean_std([70.0, 72.0, 74.0]) == pytest.approx((72.0, 2.0))
    assert mean_std([5.0]) == (5.0, 0.0)
    s = summarize(75.0, [70.0, 72.0, 74.0], seed_top1s=[75.0, 74.0])
    assert s["random_mean_top1"] == pytest.approx(72.0)
    assert s["random_std_top1"] == pytest.approx(2.0)
    assert s["searched_minus_random_mean"] == pytest.approx(3.0)
    assert s["diff_in_random_stds"] == pytest.approx(1.5)
    assert s["random_beaten"] == 3
    assert s["searched_seed_std_top1"] == pytest.approx(0.5**0.5)


@pytest.mark.parametrize(
    ("searched", "randoms", "words"),
    [
        (80.0, [70.0, 71.0, 72.0], "consistent with the search finding"),
        (75.0, [70.0, 72.0, 74.0], "but not by more than twice the spread: this run does not"),
        (80.0, [70.0, 70.0, 81.0], "not above every random one (1 of 3 score as high"),
        (70.0, [72.0, 73.0, 74.0], "shows no advantage"),
    ],
)
def test_interpretation_claims_no_more_than_the_numbers(searched, randoms, words):
    text = " ".join(interpretation(summarize(searched, randoms)))
    assert words in text
    assert "only 3 random architectures" in text


def test_format_report_table():
    row = dict(flops_m=0.3, params_m=0.02, input_size=20)
    results = {
        "searched": dict(row, name="s", val_top1=75.0),
        "random": [dict(row, name=f"random_{i}", val_top1=v) for i, v in enumerate((70, 72, 74))],
        "summary": summarize(75.0, [70.0, 72.0, 74.0]),
        "timing": None,
    }
    text = format_report(results)
    assert "| **searched** (s) | 0.3000 | 0.0200 | 20 | 75.00 |" in text
    assert "72.00 +- 2.00%" in text and "+3.00 points (beats 3 of 3)" in text


def test_overrides_checked():
    assert check_overrides(["SOLVER.EPOCHS", "1"]) == ["SOLVER.EPOCHS", "1"]
    with pytest.raises(ConfigError, match="KEY VALUE"):
        check_overrides(["SOLVER.EPOCHS"])
    with pytest.raises(ConfigError, match="--seed"):
        check_overrides(["SEED", "3"])


def _fake_search_dir(folder, repo_root):
    """arch.yaml (the space's first option everywhere) and the search's config.yaml."""
    os.makedirs(folder)
    arch = derive_arch(Supernet(as_search_space("fashion_mnist")), name="fake_searched")
    with open(os.path.join(folder, "arch.yaml"), "w") as f:
        f.write(arch.to_yaml())
    cfg = new_config()
    cfg.merge_from_file(str(repo_root / "configs" / "search" / "fashion_mnist_cpu.yaml"))
    cfg.merge_from_list([*SUBSET_DATA, "SOLVER.IMS_PER_BATCH", 16, "OUTPUT_DIR", folder])
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    return arch


# 2 iterations; a large batch makes the evaluation on the 2000 validation images quick
TINY = ["SOLVER.EPOCHS", "1", "SOLVER.EPOCH_ITERS", "2", "SOLVER.IMS_PER_BATCH", "128"]


def test_cli_tiny_end_to_end(tmp_path, repo_root, capsys, caplog):
    caplog.set_level(logging.INFO, logger="benchmarks.search_quality")
    search_dir, out = str(tmp_path / "search"), str(tmp_path / "out")
    arch = _fake_search_dir(search_dir, repo_root)
    target = cost_of(arch).flops
    argv = ["--search-dir", search_dir, "--output", out, "--num-random", "3"]
    argv += ["--timing-iters", "1", "--timing-warmup", "0", *TINY]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "random mean +- std (n=3" in printed
    # progress still logged after the engine's runs (which reconfigure detectron2's loggers)
    assert sum("val top-1" in r.getMessage() for r in caplog.records) == 4

    with open(os.path.join(out, "report.json")) as f:
        results = json.load(f)
    rows = [results["searched"], *results["random"]]
    assert len(rows) == 4
    assert results["searched"]["name"] == "fake_searched"
    assert len({r["arch_yaml"] for r in rows}) == 4
    keys = set()
    for r in rows:
        assert 0.0 <= r["val_top1"] <= 100.0 and r["val_count"] == 2000
        assert r["iterations"] == 2 and r["seed"] == 0
        assert abs(r["flops_m"] * 1e6 - target) <= 0.1 * target + 1
        with open(os.path.join(out, r["run_dir"], "metrics.json")) as f:
            assert json.load(f)["val_top1"] == r["val_top1"]
        keys.add(arch_key(parse_arch_def(_read_yaml(os.path.join(out, r["arch_yaml"])))))
    assert len(keys) == 4  # the searched and 3 distinct random archs
    assert results["summary"]["num_random"] == 3
    assert results["settings"]["train_data"] == [SUBSET_DATA[1], SUBSET_DATA[3]]
    timing = results["timing"]
    assert timing["search_step_s"] > 0 and timing["train_step_s"] > 0 and timing["batch"] == 16
    assert timing["largest_arch"]["input_size"] == 28
    assert os.path.getsize(os.path.join(out, "accuracy_vs_mflops.png")) > 0

    # the same output again: refused before anything runs, one line, status 2
    assert cli.main(argv) == 2
    assert "holds another run" in capsys.readouterr().err


def test_cli_user_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--search-dir", str(empty), "--output", str(tmp_path / "o"), "--timing-iters", "0"]
    assert cli.main(argv) == 2
    assert "has no arch.yaml" in capsys.readouterr().err
    assert cli.main([*argv, "OUTPUT_DIR", "x"]) == 2
    assert "OUTPUT_DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*argv, "--num-random", "2"])


def _read_yaml(path):
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def test_space_for_arch_takes_the_arch_channels_and_classes():
    arch = parse_arch_def(
        {
            "input_size": 28,
            "in_channels": 3,
            "num_classes": 7,
            "stages": [[{"op": "skip", "out_channels": 3}]],
        }
    )
    space = space_for_arch("fashion_mnist", arch)
    assert (space.in_channels, space.num_classes) == (3, 7)
