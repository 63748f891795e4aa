"""Every config key has a value rule (engine/config_rules.py), a bad value is refused before
anything is written with one line naming the key, and --resume refuses a changed config
(engine/run_config.py) but for the documented safe changes."""

from pathlib import Path

import pytest

from mobile_cv_nas.engine import check_output_dir, new_config, parse_args, setup_cfg
from mobile_cv_nas.engine.config_rules import check_values, rule_of, walk
from mobile_cv_nas.engine.errors import ConfigError, OutputDirError
from mobile_cv_nas.engine.run_config import SAFE_RESUME_CHANGES, resume_differences

REPO_ROOT = Path(__file__).resolve().parent.parent
SEARCH = str(REPO_ROOT / "configs/search/fashion_mnist_cpu.yaml")
TRAIN = str(REPO_ROOT / "configs/train/fashion_mnist_cpu.yaml")
DETECTION = str(REPO_ROOT / "configs/detection/faster_rcnn_fbnetv2_f4_fpn.yaml")
RUN_CONFIGS = ("configs/search", "configs/train", "configs/detection")
ALL_CONFIGS = sorted(str(p) for d in RUN_CONFIGS for p in (REPO_ROOT / d).glob("*.yaml"))


def _cfg(*opts, config=SEARCH, flags=()):
    return setup_cfg(parse_args([*flags, "--config-file", config, "MODEL.DEVICE", "cpu", *opts]))


def test_every_key_has_a_rule():
    """The guard that keeps the checker complete: a key added to the defaults (the
    project's, or detectron2's) without a rule fails here."""
    missing = [key for key, _ in walk(new_config()) if rule_of(key) is None]
    assert missing == []


def test_a_key_without_a_rule_is_the_projects_error():
    cfg = new_config()
    cfg.NAS.NEW_KEY = 3
    with pytest.raises(LookupError, match="NAS.NEW_KEY"):
        check_values(cfg)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: Path(p).name)
def test_shipped_configs_pass_the_rules(path):
    cfg = new_config()
    cfg.merge_from_file(path)
    check_values(cfg)


BAD = [
    # (overrides, key named in the message)
    (["SOLVER.EPOCHS", "0", "SOLVER.MAX_ITER", "0"], "SOLVER.MAX_ITER"),
    (["SOLVER.EPOCHS", "-1"], "SOLVER.EPOCHS"),
    (["SOLVER.BASE_LR", "0.0"], "SOLVER.BASE_LR"),
    (["SOLVER.BASE_LR", "-0.1"], "SOLVER.BASE_LR"),
    (["SOLVER.MOMENTUM", "1.5"], "SOLVER.MOMENTUM"),
    (["SOLVER.WEIGHT_DECAY", "-1e-4"], "SOLVER.WEIGHT_DECAY"),
    (["SOLVER.CHECKPOINT_PERIOD", "0"], "SOLVER.CHECKPOINT_PERIOD"),
    (["SOLVER.STEPS", "(30, 10)"], "SOLVER.STEPS"),
    (["SOLVER.LR_SCHEDULER_NAME", "Cosine"], "SOLVER.LR_SCHEDULER_NAME"),
    (["SOLVER.WARMUP_FACTOR", "0.0"], "SOLVER.WARMUP_FACTOR"),
    (["SOLVER.EMA.DECAY", "1.0"], "SOLVER.EMA.DECAY"),
    (["TEST.EVAL_PERIOD", "-1"], "TEST.EVAL_PERIOD"),
    (["DATALOADER.NUM_WORKERS", "-2"], "DATALOADER.NUM_WORKERS"),
    (["NAS.TAU.START", "0.0"], "NAS.TAU.START"),
    (["NAS.TAU.DECAY", "1.5"], "NAS.TAU.DECAY"),
    (["NAS.TAU.MIN", "9.0"], "NAS.TAU.MIN"),  # above TAU.START
    (["NAS.COST.TARGET_M", "-0.5"], "NAS.COST.TARGET_M"),
    (["NAS.COST.TOLERANCE", "0.0"], "NAS.COST.TOLERANCE"),
    (["NAS.ALPHA_OPTIMIZER.BASE_LR", "0.0"], "NAS.ALPHA_OPTIMIZER.BASE_LR"),
    (["NAS.ALPHA_OPTIMIZER.BETAS", "(0.9,)"], "NAS.ALPHA_OPTIMIZER.BETAS"),
    (["NAS.WEIGHT_FRACTION", "1.0"], "NAS.WEIGHT_FRACTION"),
    (["NAS.LOG_PERIOD", "0"], "NAS.LOG_PERIOD"),
    (["NAS.SAMPLING", "random"], "NAS.SAMPLING"),
    (["DATA.CLASS_FRACTION", "2.5"], "DATA.CLASS_FRACTION"),
    (["DATA.STD", "[0.0]", "DATA.MEAN", "[0.5]"], "DATA.STD"),
    (["DATA.RESOLUTION", "-32"], "DATA.RESOLUTION"),
    (["DATA.TRAIN", "''"], "DATA.TRAIN"),
    (["SEED", "-7"], "SEED"),
    (["MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR", "-8"], "MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR"),
    (["MODEL.ROI_HEADS.NUM_CLASSES", "0"], "MODEL.ROI_HEADS.NUM_CLASSES"),
    (["MODEL.RPN.IOU_THRESHOLDS", "[0.7, 0.3]"], "MODEL.RPN.IOU_THRESHOLDS"),
    (["MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIMax"], "MODEL.ROI_BOX_HEAD.POOLER_TYPE"),
    (["INPUT.FORMAT", "HSV"], "INPUT.FORMAT"),
    (["MODEL.PIXEL_STD", "[1.0, 0.0, 1.0]"], "MODEL.PIXEL_STD"),
]


@pytest.mark.parametrize("opts,key", BAD, ids=[key for _, key in BAD])
def test_a_bad_value_is_refused_naming_its_key(opts, key):
    with pytest.raises(ConfigError) as e:
        _cfg(*opts)
    message = str(e.value)
    assert message.startswith(key) and "\n" not in message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_number_that_is_not_finite_is_refused(tmp_path, value):
    config = tmp_path / "c.yaml"
    config.write_text(f"_BASE_: {SEARCH}\nNAS:\n  COST:\n    BETA: {value}\n")
    with pytest.raises(ConfigError, match=r"^NAS.COST.BETA = .*: must be a finite number"):
        setup_cfg(parse_args(["--config-file", str(config)]))


def test_a_whole_number_for_a_float_key_is_a_float():
    """yacs refuses `SOLVER.BASE_LR 1` (int for a float key); the user meant 1.0."""
    cfg = _cfg("SOLVER.BASE_LR", "1", "NAS.COST.TARGET_M", "2")
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.NAS.COST.TARGET_M == 2.0


def test_a_type_mismatch_in_a_file_says_what_the_key_takes(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"_BASE_: {SEARCH}\nSOLVER:\n  BASE_LR: 1\n")
    with pytest.raises(ConfigError, match=r"SOLVER.BASE_LR = 1 is a int.*takes a float.*1\.0"):
        setup_cfg(parse_args(["--config-file", str(config)]))


def test_eval_only_without_weights_is_refused():
    with pytest.raises(ConfigError, match="--eval-only evaluates MODEL.WEIGHTS"):
        _cfg(config=TRAIN, flags=["--eval-only"])


# ------------------------------------------------------------------------------ resume


def _saved_run(tmp_path, *opts, config=SEARCH):
    """An OUTPUT_DIR holding a run's config.yaml (as detectron2's default_setup writes it)
    and a checkpoint, and the config that wrote it."""
    out = tmp_path / "run"
    out.mkdir()
    cfg = _cfg("OUTPUT_DIR", str(out), *opts, config=config)
    check_output_dir(cfg, resume=False)
    (out / "config.yaml").write_text(cfg.dump())
    (out / "last_checkpoint").write_text("model_0000009.pth")
    return out, cfg


def _resume(out, *opts, config=SEARCH):
    cfg = _cfg("OUTPUT_DIR", str(out), *opts, config=config, flags=["--resume"])
    check_output_dir(cfg, resume=True)
    return cfg


def test_resume_with_the_same_config_keeps_the_runs_seed(tmp_path):
    out, saved = _saved_run(tmp_path, "SEED", "-1")
    assert saved.SEED >= 0  # drawn once, saved in config.yaml
    assert _resume(out, "SEED", "-1").SEED == saved.SEED


@pytest.mark.parametrize(
    "opts,keys",
    [
        (["SOLVER.IMS_PER_BATCH", "16"], ["SOLVER.IMS_PER_BATCH"]),
        (["SOLVER.BASE_LR", "0.5", "SOLVER.EPOCHS", "9"], ["SOLVER.BASE_LR", "SOLVER.EPOCHS"]),
        (["SEED", "123"], ["SEED"]),
        (["NAS.COST.TARGET_M", "0.3"], ["NAS.COST.TARGET_M"]),
    ],
)
def test_resume_with_a_changed_config_names_the_keys(tmp_path, opts, keys):
    out, _ = _saved_run(tmp_path)
    with pytest.raises(OutputDirError) as e:
        _resume(out, *opts)
    message = str(e.value)
    assert f"{len(keys)} key(s) differ" in message and "\n" not in message
    for key in keys:
        assert f"{key}: " in message


def test_resume_allows_the_safe_changes(tmp_path):
    out, _ = _saved_run(tmp_path)
    cfg = _resume(
        out, "TEST.EVAL_PERIOD", "7", "SOLVER.CHECKPOINT_PERIOD", "3", "NAS.LOG_PERIOD", "2"
    )
    assert cfg.TEST.EVAL_PERIOD == 7
    assert {"TEST.EVAL_PERIOD", "SOLVER.CHECKPOINT_PERIOD", "NAS.LOG_PERIOD"} <= set(
        SAFE_RESUME_CHANGES
    )


def test_a_longer_multistep_schedule_is_the_same_run(tmp_path):
    """Under WarmupMultiStepLR the learning rate of the iterations already trained does not
    depend on SOLVER.MAX_ITER: the run may grow; a cosine schedule's may not."""
    multistep = ["SOLVER.EPOCHS", "0", "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR"]
    saved = _cfg(*multistep, "SOLVER.MAX_ITER", "20")
    for length, scheduler, allowed in [
        ("30", "WarmupMultiStepLR", True),
        ("10", "WarmupMultiStepLR", False),
        ("30", "WarmupCosineLR", False),
    ]:
        opts = ["SOLVER.EPOCHS", "0", "SOLVER.LR_SCHEDULER_NAME", scheduler]
        cfg = _cfg(*opts, "SOLVER.MAX_ITER", length, "SEED", str(saved.SEED))
        keys = [k for k, _, _ in resume_differences(cfg, saved)]
        assert ("SOLVER.MAX_ITER" not in keys) == allowed


def test_an_unreadable_saved_config_is_named(tmp_path):
    out, _ = _saved_run(tmp_path)
    (out / "config.yaml").write_text("SOLVER: [unclosed\n")
    with pytest.raises(OutputDirError, match="config.yaml.*does not load"):
        _resume(out)


@pytest.mark.parametrize(
    "config,opts,key",
    [
        (SEARCH, ["SOLVER.AMP.ENABLED", "True"], "SOLVER.AMP.ENABLED"),
        (SEARCH, ["MODEL.ROI_HEADS.NUM_CLASSES", "3"], "MODEL.ROI_HEADS.NUM_CLASSES"),
        (TRAIN, ["NAS.COST.TARGET_M", "0.3"], "NAS.COST.TARGET_M"),
        (TRAIN, ["MODEL.MOBILE_CV_NAS.HEAD_NORM", "GN"], "MODEL.MOBILE_CV_NAS.HEAD_NORM"),
        (DETECTION, ["DATA.AUGMENT", "flip"], "DATA.AUGMENT"),
        (DETECTION, ["SOLVER.EMA.ENABLED", "True"], "SOLVER.EMA.ENABLED"),
    ],
)
def test_a_key_the_task_does_not_read_is_refused(config, opts, key):
    """A valid value that would silently do nothing: the key is not read by the task."""
    with pytest.raises(ConfigError, match=rf"^{key} = .* is not read by TASK"):
        _cfg(*opts, config=config)


def test_keys_the_task_reads_and_defaults_pass():
    _cfg("SOLVER.EMA.ENABLED", "True", "SOLVER.LABEL_SMOOTHING", "0.1", config=TRAIN)
    _cfg("NAS.COST.TARGET_M", "0.3", "SOLVER.AMP.ENABLED", "False", config=SEARCH)
