"""The search-quality benchmark (tools/benchmarks/search_quality): seeded random
architectures of the fashion_mnist space, distinct and within the FLOP window; the rank test
against hand-computed U statistics and p-values; the share beaten; the plot; the CLI end to
end on tiny settings (a fake search folder; the multi-budget flow with --modes mixture, 2
random archs, 2 seeds, 2 training iterations), and a rerun reusing every finished run. No
timing assertions."""

import json
import logging
import math
import os

import pytest

from benchmarks.search_quality import cli
from benchmarks.search_quality.plot import write_plot
from benchmarks.search_quality.report import format_report, mean_std
from benchmarks.search_quality.sampling import (
    SamplingError,
    arch_key,
    cost_of,
    sample_random_archs,
    space_for_arch,
)
from benchmarks.search_quality.stats import (
    compare,
    mann_whitney_greater,
    midranks,
    share_beaten,
    u_statistic,
)
from benchmarks.search_quality.training import SUBSET_DATA, check_overrides
from mobile_cv_nas.arch import build_model, parse_arch_def
from mobile_cv_nas.engine import new_config
from mobile_cv_nas.engine.errors import ConfigError, OutputDirError
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


def test_mean_std():
    assert mean_std([70.0, 72.0, 74.0]) == pytest.approx((72.0, 2.0))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_u_statistic_by_hand():
    # every x above every y: U = 3 * 2; x = [1, 2, 3] vs y = [1, 2, 3, 4]: 1 -> 0.5,
    # 2 -> 1 + 0.5, 3 -> 2 + 0.5, total 4.5
    assert u_statistic([3, 4, 5], [1, 2]) == 6
    assert u_statistic([1, 2, 3], [1, 2, 3, 4]) == 4.5
    assert u_statistic([1], [2]) == 0
    assert midranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]


def test_mann_whitney_exact_p_by_hand():
    # no ties: P(U >= u) is the share of the C(n, n_x) equally likely assignments
    top = mann_whitney_greater([3, 4, 5], [1, 2])
    assert (top["u"], top["method"]) == (6, "exact")
    assert top["p"] == pytest.approx(1 / 10)  # only the top assignment of C(5, 3)
    # two of {1, 2, 3} against the third: U = 2 for {2, 3}, 1 for {1, 3}, 0 for {1, 2}
    assert mann_whitney_greater([2, 3], [1])["p"] == pytest.approx(1 / 3)
    assert mann_whitney_greater([1, 3], [2])["p"] == pytest.approx(2 / 3)
    assert mann_whitney_greater([1, 2], [3])["p"] == pytest.approx(1.0)
    # 3 seeds vs 8 random archs, searched above all: 1 / C(11, 3)
    assert mann_whitney_greater([90, 91, 92], range(80, 88))["p"] == pytest.approx(1 / 165)
    # ties: x = [1, 2] vs y = [2, 3]: pooled mid-ranks 1, 2.5, 2.5, 4; U of x = 0.5; the six
    # pairs of ranks give U = R - 3 = 0.5, 0.5, 2, 2, 3.5, 3.5: P(U >= 0.5) = 1
    tied = mann_whitney_greater([1, 2], [2, 3])
    assert tied["u"] == 0.5 and tied["p"] == pytest.approx(1.0)
    assert mann_whitney_greater([2, 3], [1, 2])["p"] == pytest.approx(2 / 6)


def test_mann_whitney_normal_approximation():
    # n_x = n_y = 10 without ties: mean 50, variance 10 * 10 * 21 / 12 = 175; U = 100
    x, y = range(10, 20), range(10)
    res = mann_whitney_greater(x, y, exact_limit=10)
    assert res["method"] == "normal" and res["u"] == 100
    z = (100 - 50 - 0.5) / math.sqrt(175)
    assert res["p"] == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    # close to the exact value for moderate samples
    x, y = [1, 4, 5, 8, 9, 12], [0, 2, 3, 6, 7, 10]
    exact, normal = mann_whitney_greater(x, y), mann_whitney_greater(x, y, exact_limit=1)
    assert exact["method"] == "exact" and abs(exact["p"] - normal["p"]) < 0.03


def test_share_beaten_and_compare():
    assert share_beaten(75.0, [70.0, 72.0, 75.0, 80.0]) == (0.5, 2, 1)
    s = compare([75.0, 77.0], [70.0, 72.0, 74.0, 80.0])
    assert s["searched_mean_top1"] == 76.0 and s["share_beaten"] == 0.75
    assert s["random_beaten"] == 3 and s["num_seeds"] == 2 and s["num_random"] == 4
    assert s["mann_whitney_u"] == 6  # each seed beats 3 of 4
    with pytest.raises(ValueError):
        share_beaten(1.0, [])


def _fake_results():
    def row(flops, top1, seed=0):
        return dict(name="a", flops_m=flops, params_m=0.01, input_size=20, val_top1=top1, seed=seed)

    points = []
    for mode, shift in (("mixture", 0.0), ("single_path", 1.0)):
        for budget in (0.1, 0.3):
            searched = [row(budget, 80 + shift + s, s) for s in range(3)]
            randoms = [row(budget * (1 + 0.01 * i), 75 + i) for i in range(4)]
            stats = compare([r["val_top1"] for r in searched], [r["val_top1"] for r in randoms])
            points.append(
                dict(mode=mode, budget_m=budget, searched=searched, random=randoms, stats=stats)
            )
    return {"points": points, "timing": None}


def test_plot_written_atomically(tmp_path):
    path = tmp_path / "sub" / "pareto.png"
    assert write_plot(_fake_results(), str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["pareto.png"]  # no temporary left


def test_format_report_table_and_verdict():
    text = format_report(_fake_results())
    assert "| mixture | 0.1 | 0.1000 | 81.00 +- 1.00 (n=3) | 76.50 +- 1.29 (n=4) | 4/4 (100%)" in (
        text
    )
    assert "(p = 0.0286 < 0.05): better than random here" in text  # 1 / C(7, 3)
    assert "beats random at 4 of 4 budget/mode points" in text


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


SMALL = ["--num-random", "2", "--searched-seeds", "2", "--modes", "mixture"]


def _check_rows(out, point, target=None):
    keys = set()
    for r in [*point["searched"], *point["random"]]:
        assert 0.0 <= r["val_top1"] <= 100.0 and r["val_count"] == 2000
        assert r["iterations"] == 2
        if target is not None:
            assert abs(r["flops_m"] * 1e6 - target) <= 0.1 * target + 1
        with open(os.path.join(out, r["run_dir"], "metrics.json")) as f:
            assert json.load(f)["val_top1"] == r["val_top1"]
        keys.add((r["name"], r["seed"]))
    assert sorted(r["seed"] for r in point["searched"]) == [0, 1]
    assert len(point["random"]) == 2 and len(keys) == 4


def test_cli_search_dir_end_to_end(tmp_path, repo_root, capsys, caplog):
    caplog.set_level(logging.INFO, logger="benchmarks.search_quality")
    search_dir, out = str(tmp_path / "search"), str(tmp_path / "out")
    arch = _fake_search_dir(search_dir, repo_root)
    target = cost_of(arch).flops
    argv = ["--search-dir", search_dir, "--output", out, *SMALL]
    argv += ["--timing-iters", "1", "--timing-warmup", "0", *TINY]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| mode | budget MFLOPs |" in printed and "target (single_path)" in printed
    # progress still logged after the engine's runs (which reconfigure detectron2's loggers)
    assert any("Progress: run 4 of 4 done" in r.getMessage() for r in caplog.records)

    with open(os.path.join(out, "report.json")) as f:
        results = json.load(f)
    (point,) = results["points"]
    assert point["mode"] == "mixture" and point["searched"][0]["name"] == "fake_searched"
    _check_rows(out, point, target)
    assert point["stats"]["num_seeds"] == 2 and point["stats"]["num_random"] == 2
    assert results["settings"]["train_data"] == [SUBSET_DATA[1], SUBSET_DATA[3]]
    timing = results["timing"]
    m = timing["modes"]["mixture"]
    assert m["search_step_s"] > 0 and m["weight_step_s"] > 0 and m["peak_bytes"] > 0
    assert timing["train_step_s"] > 0 and timing["train_peak_bytes"] > 0
    assert timing["batch"] == 128 and timing["largest_arch"]["input_size"] == 28
    assert os.path.getsize(os.path.join(out, "pareto.png")) > 0


def test_cli_budgets_end_to_end_and_resume(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="benchmarks.search_quality")
    out = str(tmp_path / "out")
    argv = ["--output", out, "--budgets", "0.4,0.6", *SMALL, "--timing-iters", "0", *TINY]
    argv += ["NAS.ALPHA_START_EPOCH", "0"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Overall: the search beats random at" in printed
    with open(os.path.join(out, "report.json")) as f:
        results = json.load(f)
    low, high = results["settings"]["flop_range_m"]
    budgets = [math.exp(math.log(low) + f * math.log(high / low)) for f in (0.4, 0.6)]
    assert results["settings"]["budgets_m"] == pytest.approx(budgets)
    assert [p["mode"] for p in results["points"]] == ["mixture", "mixture"]
    for point, budget in zip(results["points"], budgets, strict=True):
        assert point["budget_m"] == pytest.approx(budget)
        with open(os.path.join(out, point["search_dir"], "metrics.json")) as f:
            assert json.load(f)["cost_target_m"] == pytest.approx(budget)
        _check_rows(out, point)
        assert 0.0 <= point["stats"]["p_value"] <= 1.0
    assert os.path.getsize(os.path.join(out, "pareto.png")) > 0
    finished = sorted(
        os.path.join(root, "metrics.json")
        for root, _, files in os.walk(out)
        if "metrics.json" in files
    )
    stamps = [os.path.getmtime(p) for p in finished]

    # a rerun with the same output reuses every search and training
    caplog.clear()
    assert cli.main(argv) == 0
    capsys.readouterr()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("Training" in m for m in messages)
    assert sum("finished before, reusing" in m for m in messages) >= 2 + 4
    assert [os.path.getmtime(p) for p in finished] == stamps
    with open(os.path.join(out, "report.json")) as f:
        again = json.load(f)
    assert [p["stats"] for p in again["points"]] == [p["stats"] for p in results["points"]]

    # a training killed before its metrics.json: continued (--resume) from its checkpoint
    killed = os.path.join(out, results["points"][0]["random"][0]["run_dir"], "metrics.json")
    os.remove(killed)
    caplog.clear()
    assert cli.main(argv) == 0
    capsys.readouterr()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("continuing the killed run" in m for m in messages) == 1
    assert sum("finished before, reusing" in m for m in messages) >= 2 + 3
    assert os.path.isfile(killed)


def test_job_killed_midway_resumes(tmp_path):
    from benchmarks.search_quality.jobs import SPEC_FILE, Job

    job = Job("train", "x", str(tmp_path / "run"), "c.yaml", [], "abc")
    assert job.state() == "new"
    os.makedirs(job.folder)
    with open(os.path.join(job.folder, SPEC_FILE), "w") as f:
        json.dump(job.spec(), f)
    assert job.state() == "partial"
    with open(os.path.join(job.folder, "metrics.json"), "w") as f:
        f.write("{}")
    assert job.state() == "done"
    with pytest.raises(OutputDirError, match="another benchmark run"):
        Job("train", "x", job.folder, "c.yaml", [], "other").state()


def test_progress_eta():
    from benchmarks.search_quality.jobs import Progress

    p = Progress({"search": 2, "train": 4})
    assert p.record("search", "a", 100.0, True) == (1, 6, 100.0 + 4 * 100.0)
    assert p.record("train", "b", 10.0, True) == (2, 6, 100.0 + 3 * 10.0)
    assert p.record("train", "c", 0.0, False)[2] == 100.0 + 2 * 10.0  # reused: no time


def test_cli_user_errors(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--search-dir", str(empty), "--output", str(tmp_path / "o"), "--timing-iters", "0"]
    argv += ["--modes", "mixture"]
    assert cli.main(argv) == 2
    assert "has no arch.yaml" in capsys.readouterr().err
    assert cli.main([*argv, "OUTPUT_DIR", "x"]) == 2
    assert "OUTPUT_DIR" in capsys.readouterr().err
    assert cli.main([*argv, "NAS.COST.TARGET_M", "1"]) == 2
    assert "--budgets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*argv, "--num-random", "1"])
    # --data full without the full set installed names the fetch command
    import mobile_cv_nas.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "full_set_dir", lambda: None)
    assert cli.main([*argv, "--data", "full"]) == 2
    assert "python tools/fetch_fashion_mnist.py" in capsys.readouterr().err


def test_sampling_mode_override():
    from benchmarks.search_quality.training import sampling_overrides

    if "SAMPLING" in new_config().NAS:
        assert sampling_overrides("single_path") == ["NAS.SAMPLING", "single_path"]
    else:  # an engine before sampling modes: only today's search, without the key
        assert sampling_overrides("mixture") == []
        with pytest.raises(ConfigError, match="--modes mixture"):
            sampling_overrides("single_path")


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
