"""A table of the user's mistakes, each run through tools/train_net.py or tools/publish_model.py
in a process of its own (tests/tool_runner.py: one import of torch for the whole table): each
ends with exit status 2, one line on stderr starting `error: `, no traceback, and nothing
written anywhere (the case's output folder, its files and its working folder are unchanged).

Two cases also run as a plain `python tools/<tool>.py` subprocess, so the runner is checked
against the real thing; an internal error (not the user's) keeps its traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import REPO_ROOT, SEARCH_CONFIG, TRAIN_CONFIG, snapshot, subprocess_env

DETECTION_CONFIG = str(REPO_ROOT / "configs/detection/faster_rcnn_fbnetv2_f4_fpn.yaml")
CPU = ["MODEL.DEVICE", "cpu"]
ZOO_ARCH = ["MODEL.MOBILE_CV_NAS.ARCH", "FBNetV2_F0"]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _cases(root):
    """{case id: (tool, argv)}; every file a case needs is made under root/<case id>/, and
    `OUT` stands for the case's OUTPUT_DIR, root/<case id>/out."""

    def folder(name):
        (root / name).mkdir(parents=True, exist_ok=True)
        return root / name

    search = ["--config-file", SEARCH_CONFIG, *CPU]
    train = ["--config-file", TRAIN_CONFIG, *CPU]
    cases = {
        "unknown key": ("train_net", [*search, "SOLVER.BASE_LRR", "0.1"]),
        "negative lr": ("train_net", [*search, "SOLVER.BASE_LR", "-0.1"]),
        "zero iterations": ("train_net", [*search, "SOLVER.EPOCHS", "0", "SOLVER.MAX_ITER", "0"]),
        "tau start 0": ("train_net", [*search, "NAS.TAU.START", "0"]),
        "negative cost target": ("train_net", [*search, "NAS.COST.TARGET_M", "-1"]),
        "checkpoint period 0": ("train_net", [*search, "SOLVER.CHECKPOINT_PERIOD", "0"]),
        "eval period -1": ("train_net", [*search, "TEST.EVAL_PERIOD", "-1"]),
        "string for a float": ("train_net", [*search, "SOLVER.BASE_LR", "fast"]),
        "unknown task": ("train_net", [*search, "TASK", "distill"]),
        "not a device": ("train_net", [*search, "MODEL.DEVICE", "tpu"]),
        "seed too large": ("train_net", [*search, "SEED", str(2**40)]),
        "whole run is warm-up": (
            "train_net",
            [*search, "SOLVER.WARMUP_ITERS", "100000", "SOLVER.WARMUP_FACTOR", "0.1"],
        ),
        "input below the arch's stride": ("train_net", [*train, *ZOO_ARCH, "DATA.RESOLUTION", "8"]),
        "unknown norm": ("train_net", [*search, "MODEL.MOBILE_CV_NAS.NORM", "LayerNorm2"]),
        "key the task does not read": ("train_net", [*search, "SOLVER.AMP.ENABLED", "True"]),
        "resize below the crop": ("train_net", [*search, "DATA.RESIZE", "8"]),
        "unknown space": ("train_net", [*search, "NAS.SPACE", "no_such_space"]),
        "unreachable cost target": ("train_net", [*search, "NAS.COST.TARGET_M", "1e-9"]),
        "alphas never train": ("train_net", [*search, "NAS.ALPHA_START_EPOCH", "99"]),
        "missing data folder": ("train_net", [*search, "DATA.TRAIN", str(root / "no_data")]),
        "missing config file": ("train_net", ["--config-file", str(root / "nope.yaml")]),
        "flag after overrides": ("train_net", [*search, "SEED", "1", "--resume"]),
        "bad flag value": ("train_net", ["--num-gpus", "two", *search]),
        "zero processes": ("train_net", ["--num-gpus", "0", *search]),
        "batch not divisible": ("train_net", ["--num-gpus", "3", *search]),
        "machine rank out of range": (
            "train_net",
            ["--num-machines", "2", "--machine-rank", "2", *search],
        ),
        "bad dist url": ("train_net", ["--num-gpus", "2", "--dist-url", "localhost", *search]),
        "eval without weights": ("train_net", ["--eval-only", *train]),
        "eval weights missing": (
            "train_net",
            ["--eval-only", *train, *ZOO_ARCH, "MODEL.WEIGHTS", str(root / "no.pth")],
        ),
        "unknown zoo arch": ("train_net", [*train, "MODEL.MOBILE_CV_NAS.ARCH", "FBNetV9_Z"]),
        "detection dataset unknown": (
            "train_net",
            ["--config-file", DETECTION_CONFIG, *CPU, "DATASETS.TRAIN", "('no_such_set',)"],
        ),
    }
    d = folder("yaml syntax error")
    cases["yaml syntax error"] = (
        "train_net",
        ["--config-file", _write(d / "c.yaml", "SOLVER:\n  BASE_LR: [0.1\n")],
    )
    d = folder("base loop")
    _write(d / "a.yaml", "_BASE_: b.yaml\n")
    cases["base loop"] = ("train_net", ["--config-file", _write(d / "b.yaml", "_BASE_: a.yaml\n")])
    d = folder("output dir is a file")
    notes = _write(d / "notes.txt", "my notes\n")
    cases["output dir is a file"] = ("train_net", [*search, "OUTPUT_DIR", notes])
    d = folder("output dir under a file")
    under = os.path.join(_write(d / "notes.txt", "my notes\n"), "run")
    cases["output dir under a file"] = ("train_net", [*search, "OUTPUT_DIR", under])
    d = folder("another run there")
    _write(d / "out" / "config.yaml", "TASK: search\n")
    _write(d / "out" / "last_checkpoint", "checkpoint_0000009.pth")
    cases["another run there"] = ("train_net", [*search, "OUTPUT_DIR", "OUT"])
    d = folder("resume without the runs config")
    _write(d / "out" / "last_checkpoint", "checkpoint_0000009.pth")
    cases["resume without the runs config"] = (
        "train_net",
        ["--resume", *search, "OUTPUT_DIR", "OUT"],
    )
    d = folder("resume with another lr")
    from mobile_cv_nas.engine import parse_args, setup_cfg

    saved = setup_cfg(parse_args([*search, "OUTPUT_DIR", str(d / "out")]))
    _write(d / "out" / "config.yaml", saved.dump())
    _write(d / "out" / "last_checkpoint", "checkpoint_0000009.pth")
    cases["resume with another lr"] = (
        "train_net",
        ["--resume", *search, "OUTPUT_DIR", "OUT", "SOLVER.BASE_LR", "0.5"],
    )

    d = folder("publish files")
    arch = _write(d / "arch.yaml", (REPO_ROOT / "model_zoo/archs/FBNetV2_F0.yaml").read_text())
    not_weights = _write(d / "model.pth", "not a checkpoint")
    not_yaml = _write(d / "arch_bad.yaml", "name: [unclosed\nstages: 1\n")
    cases.update(
        {
            "publish: missing argument": ("publish_model", ["--name", "m"]),
            "publish: missing run folder": (
                "publish_model",
                ["--name", "m", "--catalog", "OUT", "--run", str(root / "no_run")],
            ),
            "publish: arch without weights": (
                "publish_model",
                ["--name", "m", "--catalog", "OUT", "--arch", arch],
            ),
            "publish: weights not a checkpoint": (
                "publish_model",
                ["--name", "m", "--catalog", "OUT", "--arch", arch, "--weights", not_weights],
            ),
            "publish: arch not yaml": (
                "publish_model",
                ["--name", "m", "--catalog", "OUT", "--arch", not_yaml, "--weights", not_weights],
            ),
            "publish: bad name": (
                "publish_model",
                ["--name", "../m", "--catalog", "OUT", "--arch", arch, "--weights", not_weights],
            ),
        }
    )
    return cases


def run_cases(cases):
    """Each (tool, argv, cwd) of `cases` through tests/tool_runner.py: their results."""
    payload = [{"tool": t, "argv": a, "cwd": c} for t, a, c in cases]
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "tool_runner.py")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """{case id: (result, snapshot of its folder before, after, its empty working folder)}."""
    root = tmp_path_factory.mktemp("bad_inputs")
    cases = _cases(root / "cases")
    runs, before = [], {}
    for case_id, (tool, argv) in cases.items():
        case_dir = root / "cases" / case_id
        case_dir.mkdir(parents=True, exist_ok=True)
        cwd = root / "cwd" / case_id
        cwd.mkdir(parents=True)
        argv = [str(case_dir / "out") if a == "OUT" else a for a in argv]
        if tool == "train_net" and "OUTPUT_DIR" not in argv and "--config-file" in argv:
            argv = [*argv, "OUTPUT_DIR", str(case_dir / "out")]
        before[case_id] = snapshot(case_dir)
        runs.append((case_id, (tool, argv, str(cwd))))
    results = run_cases([r for _, r in runs])
    return {
        case_id: (
            result,
            before[case_id],
            snapshot(root / "cases" / case_id),
            root / "cwd" / case_id,
        )
        for (case_id, _), result in zip(runs, results, strict=True)
    }


def _case_ids():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return list(_cases(Path(tmp)))


@pytest.mark.parametrize("case_id", _case_ids())
def test_a_user_error_is_one_line_and_writes_nothing(table, case_id):
    result, before, after, cwd = table[case_id]
    err = result["stderr"]
    assert result["status"] == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert after == before, f"{case_id}: files written or changed"
    assert list(cwd.iterdir()) == [], f"{case_id}: wrote into the working folder"


def test_the_runner_agrees_with_a_plain_subprocess(tmp_path):
    """The same bad inputs through `python tools/<tool>.py` (a fresh interpreter)."""
    cases = [
        ("train_net", ["--config-file", SEARCH_CONFIG, *CPU, "SOLVER.BASE_LR", "-1"]),
        ("publish_model", ["--name", "m"]),
    ]
    forked = run_cases([(t, a, str(tmp_path)) for t, a in cases])
    for (tool, argv), result in zip(cases, forked, strict=True):
        plain = subprocess.run(
            [sys.executable, str(REPO_ROOT / "tools" / f"{tool}.py"), *argv],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            cwd=tmp_path,
            timeout=300,
        )
        assert (plain.returncode, plain.stderr) == (result["status"], result["stderr"])


def test_an_internal_error_keeps_its_traceback(tmp_path):
    """Not the user's mistake: the traceback is what a bug report needs. A stand-in for a bug
    in the project: the config check replaced by one that fails."""
    code = (
        "import runpy, sys\n"
        "import mobile_cv_nas.engine.run_config as run_config\n"
        "def bug(cfg):\n"
        "    raise RuntimeError('internal bug')\n"
        "run_config.check_config = bug\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    train_net = str(REPO_ROOT / "tools" / "train_net.py")
    argv = ["--config-file", SEARCH_CONFIG, *CPU, "OUTPUT_DIR", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-c", code, train_net, *argv],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "RuntimeError: internal bug" in done.stderr
