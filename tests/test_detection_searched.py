"""A backbone searched and published by the launcher works in a detection config by name:
a search over the paper's F space (one iteration, on a tiny generated RGB ImageFolder), the
train task on its arch.yaml, tools/publish_model.py into a user catalog, then Faster R-CNN FPN
with MODEL.MOBILE_CV_NAS.ARCH <name> and MODEL.WEIGHTS fbnet_zoo://<name>, trained and
COCO-evaluated through tools/train_net.py."""

import json

import numpy as np
import pytest
from engine_helpers import REPO_ROOT, tool, train_net
from PIL import Image
from test_detection_train import COCO_AP_KEYS, FPN, _ap, coco, tiny_opts  # noqa: F401

from mobile_cv_nas import model_zoo

ONE_ITERATION = [
    "MODEL.DEVICE", "cpu",
    "SOLVER.WARMUP_ITERS", "0",  # the ImageNet recipe's warm-up is longer than this run
    "MODEL.MOBILE_CV_NAS.NORM", "bn",
    "DATA.CLASS_FRACTION", "1.0",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.EPOCHS", "1",
    "SOLVER.EPOCH_ITERS", "1",
    "NAS.ALPHA_START_EPOCH", "0",
    "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip


@pytest.fixture
def rgb_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(3):
            folder = tmp_path / "images" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(5):
                pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return tmp_path / "images"


@pytest.mark.slow  # the F supernet at 224 pixels
def test_searched_published_backbone_by_name(coco, rgb_folder, tmp_path):  # noqa: F811
    data = ["DATA.TRAIN", str(rgb_folder / "train"), "DATA.TEST", str(rgb_folder / "val")]
    search, train, catalog = tmp_path / "search", tmp_path / "train", tmp_path / "zoo"
    search_config = REPO_ROOT / "configs/search/fbnetv2_f_imagenet.yaml"
    # batch 1: the F supernet's activations at 224 pixels are most of this test's memory
    search_opts = [*ONE_ITERATION, "SOLVER.IMS_PER_BATCH", "1"]
    status, err = train_net(
        ["--config-file", search_config, *search_opts, *data, "OUTPUT_DIR", search]
    )
    assert status == 0, err
    train_config = REPO_ROOT / "configs/train/imagenet.yaml"
    arch = ["MODEL.MOBILE_CV_NAS.ARCH", str(search / "arch.yaml")]
    status, err = train_net(
        ["--config-file", train_config, *ONE_ITERATION, *data, *arch, "OUTPUT_DIR", train]
    )
    assert status == 0, err
    publish = tool("publish_model").main
    assert publish(["--name", "searched_f", "--catalog", str(catalog), "--run", str(train)]) == 0

    model_zoo.add_catalog(catalog)
    try:
        out = tmp_path / "detection"
        status, err = train_net(
            [
                "--config-file", FPN, *tiny_opts(coco, out),
                "MODEL.MOBILE_CV_NAS.ARCH", "searched_f",
                "MODEL.WEIGHTS", "fbnet_zoo://searched_f",
            ]
        )  # fmt: skip
    finally:
        model_zoo.remove_catalog(catalog)
    assert status == 0, err
    log = (out / "log.txt").read_text()
    # fbnet_zoo://searched_f resolved to the published copy, every backbone block loaded
    loaded = f"keys from classification checkpoint '{catalog / 'weights' / 'searched_f.pth'}'"
    assert loaded in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert COCO_AP_KEYS <= set(_ap(metrics))
