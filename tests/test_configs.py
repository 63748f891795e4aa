"""Every shipped run config (configs/search/*.yaml, configs/train/*.yaml, found by glob, so a
new config is covered without touching this file) loads, and every runnable one runs a few
iterations through tools/train_net.py's cli() on a tiny generated ImageFolder.

The runs keep the config's own model and input resolution (the F/L/P supernets at 224-288
pixels): only the data, the device, the length, the batch and the norm are overridden. The
ImageNet search recipes are also checked against the paper's Sec. 4.1 without running them."""

import contextlib
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from detectron2.engine import default_argument_parser
from engine_helpers import tool
from latency_helpers import fake_table
from PIL import Image

from mobile_cv_nas.arch import load_arch_def
from mobile_cv_nas.engine import new_config, setup_cfg
from mobile_cv_nas.search.space import as_search_space

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs"
CONFIG_FILES = sorted([*CONFIGS.glob("search/*.yaml"), *CONFIGS.glob("train/*.yaml")])
#: Base-*.yaml hold the keys their configs share; they are checked through those.
RUNNABLE = [p for p in CONFIG_FILES if not p.name.startswith("Base-")]
IMAGENET_SEARCHES = {
    "fbnetv2_f": ("fbnetv2_f_imagenet.yaml", "flops"),
    "fbnetv2_l": ("fbnetv2_l_imagenet.yaml", "flops"),
    "fbnetv2_p": ("fbnetv2_p_imagenet.yaml", "params"),
}
#: The ImageNet runs build the real model at 224-288 pixels: the slow tier (pytest.ini), and
#: the searches run at batch 1, the F/L/P supernets' activations being most of their memory
#: (the P search peaked at 7.5 GB RSS at batch 2). The CPU configs run at batch 2.
PAPER_SCALE = {p for p in RUNNABLE if "imagenet" in p.name}
#: Batch 1 (memory), and the plain argmax: after one iteration the alphas are still
#: uniform, the budget derivation's worst case (up to a minute and a half in these spaces;
#: it is tested in tests/test_search_budget.py).
PAPER_SEARCH_OPTS = ["SOLVER.IMS_PER_BATCH", "1", "NAS.DERIVE", "argmax"]

CLASSES, IMAGES_PER_CLASS, SIZE = 4, 6, 40
#: A small zoo architecture for the train configs (their own ARCH is a search's output).
TRAIN_ARCH = "FBNetV2_F1"
#: Iterations of each run (each search iteration is a weight step and an alpha step).
ITERS = 1
#: What every run overrides: data, device, length, batch, norm (SyncBN needs a process
#: group), workers. Never the resolution: the run builds the recipe's own model.
COMMON_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.MOBILE_CV_NAS.NORM", "bn",
    "DATA.CLASS_FRACTION", "1.0",  # 10% of 4 classes would leave 1
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.EPOCHS", "1",
    "SOLVER.EPOCH_ITERS", str(ITERS),
    "NAS.ALPHA_START_EPOCH", "0",
    "DATALOADER.NUM_WORKERS", "0",
    "SOLVER.WARMUP_ITERS", "0",  # the ImageNet recipe's warm-up is longer than these runs
]  # fmt: skip


def _rel(path):
    return str(path.relative_to(REPO_ROOT))


def _shipped(path):
    """The config file as written (with its _BASE_), no command-line changes."""
    cfg = new_config()
    cfg.merge_from_file(str(path))
    return cfg


def _cfg(path, *opts):
    args = default_argument_parser().parse_args(["--config-file", str(path), *opts])
    return setup_cfg(args)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """train/ and val/ of CLASSES class folders with IMAGES_PER_CLASS random RGB PNGs each."""
    root = tmp_path_factory.mktemp("image_folder")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(CLASSES):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(IMAGES_PER_CLASS):
                pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_configs_are_found():
    names = {_rel(p) for p in CONFIG_FILES}
    for file_name, _ in IMAGENET_SEARCHES.values():
        assert f"configs/search/{file_name}" in names
    assert "configs/train/imagenet.yaml" in names


def test_imagenet_train_takes_the_f_search_result():
    """configs/train/imagenet.yaml trains what configs/search/fbnetv2_f_imagenet.yaml writes."""
    search = _shipped(CONFIGS / "search" / "fbnetv2_f_imagenet.yaml")
    train = _shipped(CONFIGS / "train" / "imagenet.yaml")
    assert train.TASK == "train"
    assert train.MODEL.MOBILE_CV_NAS.ARCH == f"{search.OUTPUT_DIR}/arch.yaml"
    assert train.DATA.TRAIN == search.DATA.TRAIN and train.DATA.TEST == search.DATA.TEST


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_rel)
def test_config_loads(path):
    cfg = _cfg(path, "MODEL.DEVICE", "cpu")
    assert cfg.TASK in ("search", "train")


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p in PAPER_SCALE else p for p in RUNNABLE],
    ids=_rel,
)
def test_config_runs(path, image_folder, tmp_path, no_network):
    task = _cfg(path, "MODEL.DEVICE", "cpu").TASK
    out = tmp_path / "run"
    argv = ["--config-file", str(path), *COMMON_OPTS]
    if path in PAPER_SCALE and task == "search":
        argv += PAPER_SEARCH_OPTS  # the later value wins
    argv += ["DATA.TRAIN", str(image_folder / "train"), "DATA.TEST", str(image_folder / "val")]
    argv += ["OUTPUT_DIR", str(out)]
    if task == "train":
        argv += ["MODEL.MOBILE_CV_NAS.ARCH", TRAIN_ARCH]
    shipped = _cfg(path, "MODEL.DEVICE", "cpu")
    if shipped.NAS.COST.LUT:  # a latency search: a table of its space for this data
        lut = tmp_path / "lut.json"
        space = as_search_space(shipped.NAS.SPACE)
        fake_table(space, str(lut), num_classes=CLASSES, in_channels=3)
        argv += ["NAS.COST.LUT", str(lut)]
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err):
        status = tool("train_net").cli(argv)
    seconds = time.perf_counter() - start
    assert status == 0, err.getvalue()[-5000:]
    assert not no_network

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task
    assert metrics["iterations"] == ITERS
    if task == "search":
        arch = load_arch_def(str(out / "arch.yaml"))
        assert arch.num_classes == CLASSES
        assert metrics["space"] == _cfg(path, "MODEL.DEVICE", "cpu").NAS.SPACE
    else:
        assert (out / "model_final.pth").is_file()
        assert metrics["val_count"] == CLASSES * IMAGES_PER_CLASS
    print(f"{_rel(path)}: {task} ran in {seconds:.1f} s")


@pytest.mark.parametrize("space", sorted(IMAGENET_SEARCHES))
def test_imagenet_search_is_the_papers_recipe(space):
    """Wan et al., FBNetV2, Sec. 4.1: 10% of ImageNet's classes, 90 epochs, 80% of the
    training images for the weights (SGD) and 20% for alpha (Adam), tau from 5.0 annealed by
    exp(-0.045) per epoch, 8 GPUs; Sec. 4.4: F and L constrain FLOPs, P parameters."""
    file_name, metric = IMAGENET_SEARCHES[space]
    cfg = _shipped(CONFIGS / "search" / file_name)
    assert cfg.TASK == "search"
    assert cfg.NAS.SPACE == space
    assert cfg.DATA.CLASS_FRACTION == 0.1
    assert cfg.SOLVER.EPOCHS == 90
    assert cfg.SOLVER.EPOCH_ITERS == 0  # an epoch is a pass over the weight split
    assert cfg.NAS.WEIGHT_FRACTION == 0.8
    assert cfg.NAS.TAU.START == 5.0
    assert abs(cfg.NAS.TAU.DECAY - math.exp(-0.045)) < 1e-6
    assert cfg.NAS.COST.METRIC == metric
    assert cfg.NAS.COST.TARGET_M > 0
    assert cfg.DATA.AUGMENT == "imagenet"
    assert cfg.MODEL.DEVICE == "cuda"
    assert cfg.SOLVER.IMS_PER_BATCH % 8 == 0  # the total batch splits over the 8 GPUs
