"""tools/train_net.py with TASK detection, with the real detectron2: every config under
configs/detection builds its model; Faster R-CNN FPN and C4 and RetinaNet train a few
iterations on a tiny COCO-format dataset (registered from the config, DATASETS.COCO_JSON) and
are COCO-evaluated; --eval-only and --resume; bad input exits 2 writing nothing."""

import hashlib
import json
import logging
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2 import model_zoo as d2_model_zoo
from detectron2.modeling import build_model
from detectron2.utils.logger import _LOG_COUNTER
from engine_helpers import (
    REPO_ROOT,
    one_line_error,
    snapshot,
    start_train_net,
    train_net,
    wait_for_checkpoint,
)
from PIL import Image

from mobile_cv_nas import model_zoo
from mobile_cv_nas.arch import build_model as build_classifier
from mobile_cv_nas.data import build_classification_dataset
from mobile_cv_nas.detection import check_registered_names
from mobile_cv_nas.engine import new_config, parse_args, setup_cfg
from mobile_cv_nas.engine.errors import ConfigError

CONFIG_DIR = REPO_ROOT / "configs" / "detection"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("Base-"))
FPN = CONFIG_DIR / "faster_rcnn_fbnetv2_f4_fpn.yaml"
C4 = CONFIG_DIR / "faster_rcnn_fbnetv2_f4_c4.yaml"
RETINANET = CONFIG_DIR / "retinanet_fbnetv2_f4.yaml"
#: Fashion-MNIST classes pasted as objects (T-shirt/top, Trouser, Sneaker).
CLASSES = {0: "tshirt", 1: "trouser", 7: "sneaker"}
COCO_AP_KEYS = {"AP", "AP50", "AP75", "APs", "APm", "APl"}


def _write_split(root, split, items, count, rng):
    """`count` 96x128 noisy RGB images with 1-2 pasted, tinted Fashion-MNIST items each; the
    COCO json of their boxes."""
    folder = root / split
    folder.mkdir()
    category_of = {label: i + 1 for i, label in enumerate(CLASSES)}
    images, annotations = [], []
    for image_id in range(1, count + 1):
        canvas = rng.integers(0, 60, size=(96, 128, 3)).astype(np.uint8)
        for _ in range(int(rng.integers(1, 3))):
            picture, label = items[int(rng.integers(len(items)))]
            size = int(rng.integers(24, 44))
            patch = np.asarray(picture.resize((size, size)), dtype=np.float32) / 255.0
            tint = np.array([(label * 70) % 256, 200, 255 - (label * 30) % 256], np.float32)
            x, y = int(rng.integers(0, 128 - size)), int(rng.integers(0, 96 - size))
            canvas[y : y + size, x : x + size] = (patch[..., None] * tint).astype(np.uint8)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=category_of[label],
                    bbox=[x, y, size, size],
                    area=size * size,
                    iscrowd=0,
                )
            )
        name = f"{image_id:03d}.png"
        Image.fromarray(canvas).save(folder / name)
        images.append(dict(id=image_id, file_name=name, height=96, width=128))
    categories = [dict(id=category_of[k], name=v) for k, v in CLASSES.items()]
    json_file = root / f"{split}.json"
    json_file.write_text(
        json.dumps(dict(images=images, annotations=annotations, categories=categories))
    )
    return str(json_file), str(folder)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A tiny COCO-format dataset: 12 train and 6 val images, 3 classes."""
    root = tmp_path_factory.mktemp("tiny_coco")
    source = build_classification_dataset("fashion_mnist_subset_train")
    items = []
    for i in range(len(source)):
        picture, label = source[i]
        if label in CLASSES:
            items.append((picture, label))
        if len(items) == 30:
            break
    rng = np.random.default_rng(0)
    train = _write_split(root, "train", items, 12, rng)
    val = _write_split(root, "val", items, 6, rng)
    return {"root": root, "train": train, "val": val}


def tiny_opts(coco, out, *, retinanet=False):
    """Overrides for a tiny CPU run on the tiny dataset."""
    registry = json.dumps([["tiny_coco_train", *coco["train"]], ["tiny_coco_val", *coco["val"]]])
    classes = "MODEL.RETINANET.NUM_CLASSES" if retinanet else "MODEL.ROI_HEADS.NUM_CLASSES"
    return [
        "MODEL.DEVICE", "cpu",
        "MODEL.WEIGHTS", "",
        "DATASETS.COCO_JSON", registry,
        "DATASETS.TRAIN", '("tiny_coco_train",)',
        "DATASETS.TEST", '("tiny_coco_val",)',
        classes, "3",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", "2",
        "SOLVER.STEPS", "()",
        "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.BASE_LR", "0.001",
        "SOLVER.CHECKPOINT_PERIOD", "100",
        "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TRAIN", "(96,)",
        "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "96",
        "INPUT.MAX_SIZE_TEST", "128",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",  # untrained: still detections to score
        "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
        "MODEL.RPN.PRE_NMS_TOPK_TEST", "100",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "20",
        "TEST.DETECTIONS_PER_IMAGE", "20",
        "OUTPUT_DIR", str(out),
    ]  # fmt: skip


def _ap(metrics):
    """The COCO box metrics of a run's metrics.json / metrics_eval.json."""
    return metrics["results"]["tiny_coco_val"]["bbox"]


# ----------------------------------------------------------------------------- configs


def _arch_yaml(tmp_path):
    path = tmp_path / "searched_arch.yaml"
    path.write_text(model_zoo.get_arch_def("FBNetV2_F4").to_yaml())
    return str(path)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds(name, tmp_path):
    cfg = new_config()
    cfg.merge_from_file(str(CONFIG_DIR / name))
    assert cfg.TASK == "detection"
    assert cfg.INPUT.FORMAT == "RGB"
    assert list(cfg.MODEL.PIXEL_MEAN) == [123.675, 116.28, 103.53]
    assert list(cfg.MODEL.PIXEL_STD) == [58.395, 57.12, 57.375]
    assert 224 <= cfg.INPUT.MIN_SIZE_TEST <= 320 and cfg.INPUT.MAX_SIZE_TEST <= 533
    arch = cfg.MODEL.MOBILE_CV_NAS.ARCH
    if arch in model_zoo.list_models():
        assert cfg.MODEL.WEIGHTS == f"fbnet_zoo://{arch}"
    else:  # the searched example names the arch.yaml of a search: use a stand-in
        assert arch.endswith("arch.yaml")
        cfg.MODEL.MOBILE_CV_NAS.ARCH = _arch_yaml(tmp_path)
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    check_registered_names(cfg)
    model = build_model(cfg).eval()
    assert type(model).__name__ == cfg.MODEL.META_ARCHITECTURE
    assert model.backbone.size_divisibility in (0, 32)
    with torch.no_grad():
        (out,) = model([{"image": torch.zeros(3, 96, 128), "height": 96, "width": 128}])
    assert "instances" in out
    if cfg.MODEL.MASK_ON:
        assert model.roi_heads.mask_on


# ----------------------------------------------------------------------------- runs


@pytest.mark.parametrize(
    "config", [FPN, C4, RETINANET], ids=["faster_rcnn_fpn", "faster_rcnn_c4", "retinanet"]
)
def test_train_and_evaluate(config, coco, tmp_path):
    out = tmp_path / "run"
    argv = ["--config-file", config, *tiny_opts(coco, out, retinanet=config == RETINANET)]
    # detectron2 logs a class histogram once per process (log_first_n, keyed on the text); a
    # tools/train_net.py run is one process, the tests run many in this one
    _LOG_COUNTER.clear()
    status, err = train_net(argv)
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "detection" and metrics["iterations"] == 2
    assert COCO_AP_KEYS <= set(_ap(metrics))
    assert (out / "model_final.pth").is_file() and (out / "events.json").is_file()
    assert (out / "inference" / "tiny_coco_val" / "coco_instances_results.json").is_file()
    if config != FPN:
        return
    _training_log_says_what_detectron2_logs(out, coco)
    # --eval-only with the trained weights in the training run's OUTPUT_DIR (the README's
    # form): it writes into OUTPUT_DIR/eval, the run's own files stay byte for byte
    before = snapshot(out)
    weights = out / "model_final.pth"
    eval_argv = [*argv, "MODEL.WEIGHTS", str(weights)]
    status, err = train_net(["--eval-only", *eval_argv])
    assert status == 0, err
    after = snapshot(out)
    assert {k: after[k] for k in before} == before
    written = sorted(set(after) - set(before))
    assert written == [
        "eval/config.yaml",
        "eval/inference/tiny_coco_val/coco_instances_results.json",
        "eval/inference/tiny_coco_val/instances_predictions.pth",
        "eval/log.txt",
        "eval/metrics_eval.json",
    ]
    evaluated = out / "eval"
    assert f"Loaded 360 of the model's 360 keys from '{weights}'" in _log(evaluated)
    result = json.loads((evaluated / "metrics_eval.json").read_text())
    assert result["task"] == "eval" and result["weights"] == str(weights)
    trained, again = _ap(metrics), _ap(result)
    assert again.keys() == trained.keys()
    for key, value in trained.items():  # None: a metric COCOeval cannot compute (no objects)
        assert (again[key] is None) if value is None else again[key] == pytest.approx(value)
    # --resume continues the run to a longer schedule; without it the folder is refused
    status, err = train_net([*argv, "SOLVER.MAX_ITER", "3"])
    assert status == 2 and "--resume" in err
    status, err = train_net(["--resume", *argv, "SOLVER.MAX_ITER", "3"])
    assert status == 0, err
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["iterations"] == 3 and COCO_AP_KEYS <= set(_ap(resumed))
    assert "Starting training from iteration 2" in (out / "log.txt").read_text()
    _changed_checkpoint_is_refused(out, argv, eval_argv)


def _log(out):
    """The lines of a run's log.txt, without detectron2's colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", (out / "log.txt").read_text())


def _training_log_says_what_detectron2_logs(out, coco):
    """log.txt has detectron2's lines about the data and the model (logged while the run was
    checked, before log.txt existed), the fitted schedule and the frozen random stages."""
    log = _log(out)
    for line in (
        f"Loaded 12 images in COCO format from {coco['train'][0]}",
        "Removed 0 images with no usable annotations. 12 images left.",
        "Distribution of instances among all 3 categories:",
        "[DatasetMapper] Augmentations used in training: [ResizeShortestEdge(",
        "d2.engine.defaults INFO: Model:\nGeneralizedRCNN(",
        "training with a learning rate of 0.000125 (linear scaling;",  # 0.001 * 2 / 16
        "WARNING: MODEL.BACKBONE.FREEZE_AT 2 freezes 4 parameters "
        "(backbone.bottom_up.stages.xif0_0 (2), backbone.bottom_up.stages.xif1_0 (2)) that "
        'MODEL.WEIGHTS "" (no weights) does not fill',
    ):
        assert line in log, line
    events = [json.loads(line) for line in (out / "events.json").read_text().splitlines()]
    assert [e["lr"] for e in events if "lr" in e][-1] == pytest.approx(0.000125)


def _changed_checkpoint_is_refused(out, argv, eval_argv):
    """model_final.pth (what last_checkpoint names) has its sha256 beside it; with 400 bytes
    changed, --resume and --eval-only refuse it in one line, writing nothing."""
    final = out / "model_final.pth"
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    digest = hashlib.sha256(final.read_bytes()).hexdigest()
    assert (out / "model_final.pth.sha256").read_text() == f"{digest}  model_final.pth\n"
    data = bytearray(final.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 400] = bytes(400)
    final.write_bytes(bytes(data))
    status, err = train_net(["--resume", *argv, "SOLVER.MAX_ITER", "4"])
    assert status == 2
    line = one_line_error(err)
    assert f"Checkpoint {str(final)!r} changed since it was written" in line
    assert "The run cannot resume from it." in line and "last_checkpoint" in line
    status, err = train_net(["--eval-only", *eval_argv, "TEST.EVAL_ONLY_DIR", "ev"])
    assert status == 2
    line = one_line_error(err)
    assert "changed since it was written" in line and "Pass another file as MODEL.WEIGHTS" in line
    assert not (out / "ev").exists()


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _losses(out):
    """{iteration: {loss name: value}} of a run's events.json (the training lines)."""
    lines = [json.loads(line) for line in (out / "events.json").read_text().splitlines()]
    return {
        e["iteration"]: {k: v for k, v in e.items() if k.startswith("loss") or k == "total_loss"}
        for e in lines
        if "total_loss" in e
    }


def _assert_same_weights(a, b, name):
    a, b = _state(a / name), _state(b / name)
    assert a.keys() == b.keys()
    for key in a:  # max abs difference 0
        assert torch.equal(a[key], b[key]), (name, key, (a[key] - b[key]).abs().max())


def _results(out):
    return json.loads((out / "metrics.json").read_text())["results"]


def test_same_seed_same_run_and_exact_resume(coco, tmp_path):
    """On CPU, one SEED is one run: two runs of one config (the loader in this process, then
    in 2 worker processes) give the same weights at every checkpoint, the same losses in
    events.json and the same COCO AP; the same run killed (SIGKILL) after its first checkpoint
    and continued with --resume ends with the same weights and AP (events.json's losses are
    medians over the iterations of this process: not comparable). The seed is set
    before the model and the loader are built (tests/conftest.py reseeds every test; each run
    here starts from another global RNG state)."""
    argv = ["--config-file", FPN, "SEED", "7", "SOLVER.MAX_ITER", "6"]
    argv += ["SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.BASE_LR", "0.01"]

    def command(out, workers=0):
        return [*argv[:2], *tiny_opts(coco, out), *argv[2:], "DATALOADER.NUM_WORKERS", workers]

    whole, again = tmp_path / "whole", tmp_path / "again"
    for seed, (out, workers) in enumerate([(whole, 0), (again, 2)]):
        torch.manual_seed(seed + 1)  # another global RNG state for each run
        status, err = train_net(command(out, workers))
        assert status == 0, err
    checkpoints = ["model_0000001.pth", "model_0000003.pth", "model_final.pth"]
    for name in checkpoints:
        _assert_same_weights(whole, again, name)
    losses = _losses(whole)
    assert losses and all(losses[i] for i in losses)
    assert losses == _losses(again)
    assert _results(whole) == _results(again)
    assert COCO_AP_KEYS <= set(_results(whole)["tiny_coco_val"]["bbox"])

    killed = tmp_path / "killed"
    with open(tmp_path / "child.log", "w") as log:
        child = start_train_net(command(killed), log)
        try:
            wait_for_checkpoint(child, killed, tmp_path / "child.log", timeout=120)
            running = child.poll() is None
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
    assert running and child.returncode == -signal.SIGKILL
    stopped_at = (killed / "last_checkpoint").read_text().strip()
    assert stopped_at in checkpoints[:2] and not (killed / "model_final.pth").exists()
    torch.manual_seed(3)
    status, err = train_net(["--resume", *command(killed)])
    assert status == 0, err
    resumed_from = int(stopped_at[len("model_") : -len(".pth")]) + 1
    assert f"Starting training from iteration {resumed_from}" in (killed / "log.txt").read_text()
    for name in checkpoints[checkpoints.index(stopped_at) + 1 :]:
        _assert_same_weights(whole, killed, name)
    assert _results(killed) == _results(whole)


def test_diverged_run_names_its_last_good_checkpoint(coco, tmp_path):
    """A run whose weights or loss become NaN or infinite (a learning rate far too high) ends
    with one line, exit status 1 and no traceback, naming the last good checkpoint: every
    weight of it finite, nothing saved after it."""
    out = tmp_path / "run"
    opts = [*tiny_opts(coco, out), "SOLVER.BASE_LR", "1e6", "SOLVER.MAX_ITER", "20"]
    status, err = train_net(["--config-file", FPN, *opts, "SOLVER.CHECKPOINT_PERIOD", "1"])
    assert status == 1, err
    line = one_line_error(err)
    assert "Traceback" not in (out / "log.txt").read_text()
    last = (out / "last_checkpoint").read_text().strip()
    done = int(last[len("model_") : -len(".pth")]) + 1
    assert sorted(p.name for p in out.glob("model_*.pth")) == [
        f"model_{i:07d}.pth" for i in range(done)
    ]
    assert all(torch.isfinite(v).all() for v in _state(out / last).values())
    assert line.startswith("error: Non-finite ")
    assert f"at iteration {done}: the run stopped." in line
    assert f"The last good checkpoint is {out / last}." in line
    assert "SOLVER.BASE_LR" in line


def test_amp_flag_reaches_the_trainer(coco, tmp_path):
    """SOLVER.AMP.ENABLED picks detectron2's AMPTrainer for the step (SimpleTrainer without
    it). detectron2 0.6's AMPTrainer needs CUDA, so on the CPU the flag is a config error,
    one line, before anything is written."""
    from detectron2.engine import AMPTrainer, SimpleTrainer

    from mobile_cv_nas.engine.detection_task import DetectionTrainer, register_coco_json

    out = tmp_path / "never_written"
    for amp, step in (("True", AMPTrainer), ("False", SimpleTrainer)):
        cfg = new_config()
        cfg.merge_from_file(str(FPN))
        cfg.merge_from_list([*tiny_opts(coco, out), "SOLVER.AMP.ENABLED", amp])
        register_coco_json(cfg)
        trainer = DetectionTrainer(cfg)
        assert type(trainer._trainer) is step
    assert not out.exists()
    if torch.cuda.is_available():
        return
    err = _error(coco, tmp_path, FPN, "SOLVER.AMP.ENABLED", "True")
    assert len(err.strip().splitlines()) == 1
    assert "SOLVER.AMP.ENABLED" in err and "CUDA" in err and "MODEL.DEVICE" in err


def test_schedule_fits_the_batch_and_length():
    """SOLVER.REFERENCE_IMS_PER_BATCH 16 (the shipped configs): the README's CPU recipe (batch
    2, 20 iterations) trains with BASE_LR 0.02 * 2 / 16 and a 2-iteration warm-up; 0 keeps
    detectron2's values. The config given is not changed (config.yaml keeps it)."""
    from mobile_cv_nas.engine.detection_schedule import fit_schedule

    cfg = new_config()
    cfg.merge_from_file(str(FPN))
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "20"])
    cfg.freeze()
    fitted = fit_schedule(cfg)
    assert fitted.SOLVER.BASE_LR == pytest.approx(0.0025) and fitted.SOLVER.WARMUP_ITERS == 2
    assert fitted.is_frozen() and (cfg.SOLVER.BASE_LR, cfg.SOLVER.WARMUP_ITERS) == (0.02, 1000)
    full = cfg.clone()
    full.defrost()
    full.SOLVER.IMS_PER_BATCH, full.SOLVER.MAX_ITER = 16, 90000  # the reference: as given
    assert fit_schedule(full) is full
    full.SOLVER.REFERENCE_IMS_PER_BATCH, full.SOLVER.IMS_PER_BATCH, full.SOLVER.MAX_ITER = 0, 2, 20
    assert fit_schedule(full) is full


def test_no_detections_score_zero(coco, tmp_path, caplog):
    """A model that detects nothing scores AP 0 where the data has objects (not NaN, which
    is left to metrics without any: APl, no object here is large), and the log says so."""
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, Instances

    from mobile_cv_nas.engine.detection_task import (
        DetectionTrainer,
        _ap_line,
        _flat,
        register_coco_json,
    )

    cfg = new_config()
    cfg.merge_from_file(str(FPN))
    cfg.merge_from_list(tiny_opts(coco, tmp_path / "run"))
    register_coco_json(cfg)
    DatasetCatalog.get("tiny_coco_val")  # as the test loader does: the class names are known
    evaluator = DetectionTrainer.build_evaluator(cfg, "tiny_coco_val")
    evaluator.reset()
    nothing = Instances((96, 128), pred_boxes=Boxes(torch.zeros(0, 4)), scores=torch.zeros(0))
    nothing.pred_classes = torch.zeros(0, dtype=torch.int64)
    evaluator.process([{"image_id": i} for i in range(1, 7)], [{"instances": nothing}] * 6)
    caplog.set_level("WARNING", logger="mobile_cv_nas.detection.coco_evaluation")
    logging.getLogger("mobile_cv_nas.detection.coco_evaluation").addHandler(caplog.handler)
    try:
        results = {"tiny_coco_val": evaluator.evaluate()}
    finally:
        logging.getLogger("mobile_cv_nas.detection.coco_evaluation").removeHandler(caplog.handler)
    box = _flat(results)["tiny_coco_val"]["bbox"]
    assert box == {
        "AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "APm": 0.0, "APl": None,
        "AP-tshirt": 0.0, "AP-trouser": 0.0, "AP-sneaker": 0.0,
    }  # fmt: skip
    predictions = tmp_path / "run" / "inference" / "tiny_coco_val" / "coco_instances_results.json"
    assert json.loads(predictions.read_text()) == []
    assert _ap_line(results) == "tiny_coco_val bbox AP 0.00 AP50 0.00"
    assert (
        "The model made no detections on 'tiny_coco_val': its COCO bbox AP is 0; APl stays "
        "undefined (NaN: no ground truth to find)." in caplog.text
    )


def test_a_detectron2_config_runs_as_detection(coco, tmp_path):
    """detectron2's own R-50 FPN config sets no TASK: its keys make it a detection run, with
    detectron2's ResNet backbone."""
    config = d2_model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
    out = tmp_path / "run"
    opts = [*tiny_opts(coco, out), "MODEL.BACKBONE.FREEZE_AT", "0"]
    status, err = train_net(["--config-file", config, *opts])
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "detection" and metrics["iterations"] == 2
    assert COCO_AP_KEYS <= set(_ap(metrics))
    assert "build_resnet_fpn_backbone" in _log(out)


@pytest.mark.parametrize(
    "opts,named",
    [
        (["NAS.SPACE", "fbnetv2_f"], "NAS.SPACE to search/train"),
        (["DATA.TRAIN", "my_images"], "DATA.TRAIN to search/train"),
    ],
)
def test_a_config_mixing_tasks_is_refused(opts, named):
    """No TASK, and keys of detection and of the classification tasks: one line naming
    both; with TASK set, the other task's keys are named as not read."""
    config = d2_model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
    with pytest.raises(ConfigError) as e:
        setup_cfg(parse_args(["--config-file", config, "MODEL.DEVICE", "cpu", *opts]))
    message = str(e.value)
    assert "point to two tasks" in message and named in message
    assert "MODEL.META_ARCHITECTURE" in message or "MODEL.BACKBONE.NAME" in message
    with pytest.raises(ConfigError, match=r"is not read by TASK detection"):
        setup_cfg(
            parse_args(["--config-file", config, "MODEL.DEVICE", "cpu", "TASK", "detection", *opts])
        )


def test_epochs_are_refused(coco, tmp_path):
    """A detection run's length is SOLVER.MAX_ITER: SOLVER.EPOCHS is not silently ignored."""
    err = _error(coco, tmp_path, FPN, "SOLVER.EPOCHS", "2")
    assert len(err.strip().splitlines()) == 1
    assert "SOLVER.EPOCHS = 2" in err and "SOLVER.MAX_ITER" in err


def test_classification_weights_load_converted(coco, tmp_path):
    """MODEL.WEIGHTS = an ImageNet-format classification checkpoint of the same arch: its
    blocks are converted onto the C4 backbone and the box head's stage, then training runs."""
    weights = _classification_checkpoint(tmp_path, "FBNetV2_F4")
    out = tmp_path / "run"
    argv = ["--config-file", C4, *tiny_opts(coco, out), "MODEL.WEIGHTS", weights]
    status, err = train_net([*argv, "SOLVER.MAX_ITER", "1"])
    assert status == 0, err
    log = (out / "log.txt").read_text()
    assert f"keys from classification checkpoint '{weights}'" in log
    assert "roi_heads.stages: xif5_0" in log
    assert "random initial values" not in log  # the frozen stages hold ImageNet weights


def test_weights_of_another_detector(coco, tmp_path):
    """A C4 detector's weights in the FPN config: refused (exit 2, the counts and the first
    keys, nothing written). MODEL.ALLOW_PARTIAL_WEIGHTS True loads what fits and says so in
    log.txt (here for --eval-only, the cheaper run)."""
    cfg = new_config()
    cfg.merge_from_file(str(C4))
    cfg.merge_from_list(tiny_opts(coco, tmp_path / "unused"))
    weights = tmp_path / "c4_model_final.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    err = _error(coco, tmp_path, FPN, "MODEL.WEIGHTS", weights)
    line = one_line_error(err)  # the listing of the first keys is joined into it
    assert f"error: Weights '{weights}' do not fit the model: " in line
    assert re.search(r"\d+ checkpoint keys the model does not have, \d+ keys of another shape, "
                     r"\d+ keys of the model's FBNet stages not filled", line)  # fmt: skip
    assert "MODEL.ALLOW_PARTIAL_WEIGHTS True" in line
    assert "backbone.stages.xif0_0.conv.weight" in line and line.count("backbone.") <= 3 * 7
    out = tmp_path / "partial"
    argv = ["--eval-only", "--config-file", FPN, *tiny_opts(coco, out), "MODEL.WEIGHTS", weights]
    status, err = train_net([*argv, "MODEL.ALLOW_PARTIAL_WEIGHTS", "True"])
    assert status == 0, err
    log = _log(out / "eval")
    assert f"WARNING: MODEL.ALLOW_PARTIAL_WEIGHTS True: weights '{weights}' do not fit" in log
    assert "Checkpoint keys the model does not have, not used (301): backbone.stages (239)" in log


def test_eval_only_dir_is_not_the_training_folder(coco, tmp_path):
    out = tmp_path / "never_written"
    argv = ["--eval-only", "--config-file", FPN, *tiny_opts(coco, out), "MODEL.WEIGHTS", FPN]
    status, err = train_net([*argv, "TEST.EVAL_ONLY_DIR", "."])
    assert status == 2 and not out.exists()
    assert "TEST.EVAL_ONLY_DIR '.' is OUTPUT_DIR itself" in one_line_error(err)


@pytest.mark.slow  # two spawned processes
def test_two_cpu_processes(coco, tmp_path):
    """--num-gpus 2 on CPU: gloo, DDP without device_ids, evaluation sharded over both."""
    out = tmp_path / "run"
    status, err = train_net(["--num-gpus", "2", "--config-file", FPN, *tiny_opts(coco, out)])
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert COCO_AP_KEYS <= set(_ap(metrics))
    predictions = out / "inference" / "tiny_coco_val" / "coco_instances_results.json"
    assert {p["image_id"] for p in json.loads(predictions.read_text())} == set(range(1, 7))


# ----------------------------------------------------------------------------- errors


def _classification_checkpoint(tmp_path, arch):
    model = build_classifier(model_zoo.get_arch_def(arch), num_classes=10)
    path = tmp_path / f"{arch}_imagenet.pth"
    torch.save({"state_dict": model.state_dict(), "model_ema": None}, path)
    return str(path)


def _error(coco, tmp_path, config, *extra):
    out = tmp_path / "never_written"
    argv = ["--config-file", config, *tiny_opts(coco, out), *extra]
    status, err = train_net(argv)
    assert status == 2, err
    assert err.startswith("error: ")
    assert not out.exists(), sorted(os.listdir(out))
    return err


def test_unknown_arch(coco, tmp_path):
    err = _error(coco, tmp_path, FPN, "MODEL.MOBILE_CV_NAS.ARCH", "FBNetV2_X9")
    assert len(err.strip().splitlines()) == 1
    assert "FBNetV2_X9" in err and "FBNetV2_F4" in err and "FBNetV2_L2" in err


def test_missing_feature(coco, tmp_path):
    err = _error(coco, tmp_path, C4, "MODEL.MOBILE_CV_NAS.OUT_FEATURES", '["stage9"]')
    assert len(err.strip().splitlines()) == 1
    assert "stage9" in err and "stage4" in err


def test_rpn_reads_missing_feature(coco, tmp_path):
    err = _error(coco, tmp_path, FPN, "MODEL.RPN.IN_FEATURES", '["p2", "p9"]')
    assert len(err.strip().splitlines()) == 1
    assert "p9" in err and "p6" in err


def test_weights_of_another_arch(coco, tmp_path):
    weights = _classification_checkpoint(tmp_path, "FBNetV2_L2")
    err = _error(coco, tmp_path, FPN, "MODEL.WEIGHTS", weights)
    first = err.splitlines()[0]
    assert "does not fit" in first and "FBNetV2_F4" in first
    assert "mis-shaped" in err or "missing" in err


def test_weights_file_missing(coco, tmp_path):
    err = _error(coco, tmp_path, FPN, "MODEL.WEIGHTS", str(tmp_path / "nothing.pth"))
    assert len(err.strip().splitlines()) == 1 and "nothing.pth" in err


def test_unregistered_dataset(coco, tmp_path):
    err = _error(coco, tmp_path, FPN, "DATASETS.TEST", '("tiny_coco_vall",)')
    assert len(err.strip().splitlines()) == 1
    assert "tiny_coco_vall" in err and "tiny_coco_val" in err and "COCO_JSON" in err


def test_missing_json(coco, tmp_path):
    registry = json.dumps([["tiny_coco_train", str(tmp_path / "nope.json"), coco["train"][1]]])
    err = _error(coco, tmp_path, FPN, "DATASETS.COCO_JSON", registry)
    assert len(err.strip().splitlines()) == 1 and "nope.json" in err


def test_builtin_dataset_without_files(coco, tmp_path):
    from detectron2.data import MetadataCatalog

    if os.path.isfile(MetadataCatalog.get("coco_2017_val").json_file):
        pytest.skip("COCO 2017 is installed here")
    err = _error(coco, tmp_path, FPN, "DATASETS.TEST", '("coco_2017_val",)')
    assert len(err.strip().splitlines()) == 1 and "coco_2017_val" in err


def test_readme_paths_exist():
    """The _BASE_ of every config is inside configs/detection."""
    for name in CONFIGS:
        text = (CONFIG_DIR / name).read_text()
        base = [line.split(":", 1)[1].strip().strip('"') for line in text.splitlines()
                if line.startswith("_BASE_")]  # fmt: skip
        assert base and all(Path(CONFIG_DIR / b).is_file() for b in base), name
