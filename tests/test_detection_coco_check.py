"""A COCO json is checked before a detection run (mobile_cv_nas.detection.coco_check and
engine/detection_task.check_coco_datasets): each bad input is one line naming the json, the
entry and the fix; tools/train_net.py exits 2 with it and writes nothing. The data: three tiny
PNGs and a json with non-contiguous category ids (1, 2, 5), built in tmp_path."""

import copy
import json
import subprocess
import sys

import pytest
from engine_helpers import REPO_ROOT, TOOLS, one_line_error, subprocess_env, train_net
from PIL import Image

from mobile_cv_nas.detection import (
    DetectionDataError,
    check_coco_json,
    check_image_files,
)

CONFIG_DIR = REPO_ROOT / "configs" / "detection"
FPN = CONFIG_DIR / "faster_rcnn_fbnetv2_f4_fpn.yaml"
MASK = CONFIG_DIR / "mask_rcnn_fbnetv2_f4_fpn.yaml"
RETINANET = CONFIG_DIR / "retinanet_fbnetv2_f4.yaml"
SQUARE = [[2, 2, 12, 2, 12, 12, 2, 12]]


def _annotation(ident, image_id, category_id, box, **extra):
    x, y, w, h = box
    return dict(
        id=ident,
        image_id=image_id,
        category_id=category_id,
        bbox=box,
        area=w * h,
        iscrowd=0,
        segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]],
        **extra,
    )


BASE = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
        {"id": 3, "file_name": "c.png", "width": 30, "height": 40},
    ],
    "categories": [
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
        {"id": 5, "name": "bird"},
    ],
    "annotations": [
        _annotation(1, 1, 1, [2, 3, 10, 12]),
        _annotation(2, 1, 5, [20, 5, 15, 20]),
        _annotation(3, 2, 2, [0, 0, 40, 30]),
        _annotation(4, 3, 1, [5, 5, 20, 30]),
    ],
}


def _images(root):
    folder = root / "img"
    folder.mkdir(exist_ok=True)
    for image in BASE["images"]:
        size = (image["width"], image["height"])
        Image.new("RGB", size, (90, 120, 200)).save(folder / image["file_name"])
    return folder


def _write(root, data, name="ann.json"):
    path = root / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _check(tmp_path, data, decode=True, **kwargs):
    """check_coco_json + check_image_files on `data` (a json object or the file's text)."""
    folder = _images(tmp_path)
    path = _write(tmp_path, data)
    checked = check_coco_json(str(path), str(folder), **kwargs)
    check_image_files(checked, decode=decode)
    return checked


def _edit(change):
    data = copy.deepcopy(BASE)
    change(data)
    return data


def _set(section, index, **values):
    return lambda d: d[section][index].update(values)


def _pop(section, index, key):
    return lambda d: d[section][index].pop(key)


# (id, the json (an edit of BASE, or the file's text), check_coco_json keywords, what the one
# line names after the json: the entry, and the words of the problem and of the fix)
BROKEN = [
    ("not_json", "{images: [", {}, ["not valid JSON (line 1, column 2", "fix the file"]),
    ("empty_file", "", {}, ["the file is empty"]),
    ("array", "[]", {}, ["holds a JSON array", '"images": [...]']),
    ("results_file", '[{"image_id": 1, "score": 0.9}]', {}, ["detection results"]),
    ("string", '"coco"', {}, ["holds a JSON string"]),
    ("no_images", _edit(lambda d: d.pop("images")), {}, ['no "images" list', '"categories"']),
    ("no_categories", _edit(lambda d: d.pop("categories")), {}, ['no "categories" list']),
    ("no_annotations", _edit(lambda d: d.pop("annotations")), {}, ['no "annotations" list']),
    ("images_object", _edit(lambda d: d.update(images={})), {}, ['"images" is a JSON object']),
    ("no_image", _edit(lambda d: d.update(images=[])), {}, ['"images" is empty']),
    ("no_category", _edit(lambda d: d.update(categories=[])), {}, ['"categories" is empty']),
    ("image_not_object", _edit(lambda d: d["images"].append(7)), {},
     ["images[3] is a JSON number, not an object"]),
    ("image_id_twice", _edit(_set("images", 1, id=1)), {},
     ["images[1] (id 1): id 1 is also images[0] (id 1)'s", "its own id"]),
    ("image_id_missing", _edit(_pop("images", 2, "id")), {}, ["images[2] has no id"]),
    ("image_id_string", _edit(_set("images", 0, id="1")), {}, ["images[0] has id '1'"]),
    ("category_id_twice", _edit(_set("categories", 2, id=2)), {},
     ["categories[2] (id 2): id 2 is also categories[1] (id 2)'s"]),
    ("category_no_name", _edit(_pop("categories", 1, "name")), {},
     ["categories[1] (id 2) has no name"]),
    ("category_name_twice", _edit(_set("categories", 2, name="cat")), {},
     ["categories[2] (id 5): name 'cat' is also categories[0] (id 1)'s"]),
    ("width_missing", _edit(_pop("images", 0, "width")), {},
     ["images[0] (id 1) (a.png): no width;", "positive integers"]),
    ("height_zero", _edit(_set("images", 1, height=0)), {}, ["images[1] (id 2) (b.png): height 0"]),
    ("height_fraction", _edit(_set("images", 1, height=30.5)), {}, ["height 30.5"]),
    ("width_float", _edit(_set("images", 1, width=40.0)), {}, ["width 40.0", "480.0 fails"]),
    ("file_name_missing", _edit(_pop("images", 1, "file_name")), {},
     ['images[1] (id 2) has no "file_name"']),
    ("file_name_twice", _edit(_set("images", 1, file_name="a.png")), {},
     ["images[1] (id 2): file_name 'a.png' is also images[0] (id 1)'s"]),
    ("annotation_not_object", _edit(lambda d: d["annotations"].insert(1, [1, 2])), {},
     ["annotations[1] is a JSON array, not an object"]),
    ("annotation_id_twice", _edit(_set("annotations", 3, id=2)), {},
     ["annotations[3] (id 2): id 2 is also annotations[1] (id 2)'s"]),
    ("unknown_image", _edit(_set("annotations", 1, image_id=99)), {},
     ['annotations[1] (id 2): image_id 99 is not an id of "images"', "detectron2 drops"]),
    ("no_image_id", _edit(_pop("annotations", 1, "image_id")), {},
     ["annotations[1] (id 2): no image_id: give the id of its image"]),
    ("unknown_category", _edit(_set("annotations", 2, category_id=3)), {},
     ['annotations[2] (id 3): category_id 3 is not an id of "categories" (1, 2, 5)']),
    ("category_id_list", _edit(_set("annotations", 2, category_id=[1])), {},
     ["annotations[2] (id 3): category_id [1]"]),
    ("no_bbox", _edit(_pop("annotations", 0, "bbox")), {}, ['annotations[0] (id 1): no "bbox"']),
    ("bbox_3_numbers", _edit(_set("annotations", 0, bbox=[1, 2, 3])), {},
     ["annotations[0] (id 1): bbox [1, 2, 3] is not 4 numbers", "[x, y, width, height]"]),
    ("bbox_strings", _edit(_set("annotations", 0, bbox=["1", 2, 3, 4])), {},
     ["bbox ['1', 2, 3, 4] is not 4 numbers"]),
    ("bbox_bool", _edit(_set("annotations", 0, bbox=[True, 2, 3, 4])), {}, ["is not 4 numbers"]),
    ("bbox_nan", _edit(_set("annotations", 0, bbox=[1, 2, float("nan"), 4])), {},
     ["bbox [1, 2, nan, 4] is not finite"]),
    ("bbox_zero_width", _edit(_set("annotations", 1, bbox=[5, 5, 0, 4])), {},
     ["annotations[1] (id 2): bbox [5, 5, 0, 4] has width 0", "detectron2 drops an empty box"]),
    ("bbox_negative_height", _edit(_set("annotations", 1, bbox=[5, 5, 4, -3])), {},
     ["has height -3"]),
    ("bbox_outside", _edit(_set("annotations", 2, bbox=[45, 5, 10, 10])), {},
     ["annotations[2] (id 3): bbox [45, 5, 10, 10] reaches (45, 5) to (55, 15), outside the "
      "40x30 image"]),
    ("bbox_negative_x", _edit(_set("annotations", 2, bbox=[-3, 5, 10, 10])), {},
     ["reaches (-3, 5)"]),
    ("bbox_xyxy", _edit(_set("annotations", 1, bbox=[20, 5, 35, 25])), {},
     ["outside the 40x30 image (if it is [x1, y1, x2, y2], convert it)"]),
    ("iscrowd_string", _edit(_set("annotations", 0, iscrowd="0")), {},
     ["annotations[0] (id 1): iscrowd '0': use 0", "or 1"]),
    ("iscrowd_2", _edit(_set("annotations", 0, iscrowd=2)), {}, ["iscrowd 2"]),
    ("ignore", _edit(_set("annotations", 3, ignore=1)), {},
     ['annotations[3] (id 4): "ignore" 1', "iscrowd 1"]),
    ("only_crowd", _edit(lambda d: [a.update(iscrowd=1) for a in d["annotations"]]), {},
     ["only iscrowd 1 annotations, nothing to train on"]),
    ("no_annotation", _edit(lambda d: d.update(annotations=[])), {},
     ["no annotations, nothing to train on", "DATASETS.TRAIN"]),
    ("eval_no_area", _edit(_pop("annotations", 2, "area")), {"evaluate": True},
     ["annotations[2] (id 3): no area", "COCO evaluation"]),
    ("eval_area_nan", _edit(_set("annotations", 2, area=float("nan"))), {"evaluate": True},
     ["area nan"]),
    ("eval_no_iscrowd", _edit(_pop("annotations", 2, "iscrowd")), {"evaluate": True},
     ['annotations[2] (id 3): no iscrowd', '"iscrowd": 0']),
    ("segm_flat", _edit(_set("annotations", 0, segmentation=[1, 2, 3, 4, 5, 6])), {},
     ["annotations[0] (id 1): segmentation is a flat list of numbers", "[[x1, y1"]),
    ("segm_odd", _edit(_set("annotations", 0, segmentation=[[1, 2, 3, 4, 5, 6, 7]])), {},
     ["has 7 numbers, an odd count", 'Fix it, or remove "segmentation"']),
    ("segm_two_points", _edit(_set("annotations", 0, segmentation=[[1, 2, 3, 4]])), {},
     ["no polygon of 3 points or more", "box included"]),
    ("segm_string", _edit(_set("annotations", 0, segmentation="mask")), {},
     ["segmentation is a JSON string"]),
    ("segm_nan", _edit(_set("annotations", 0, segmentation=[[1, 2, 3, float("inf"), 5, 6]])), {},
     ["is not finite"]),
    ("rle_size", _edit(_set("annotations", 0, segmentation={"size": [40, 30], "counts": "x"})),
     {}, ["segmentation RLE has size [40, 30], the image is [30, 40] (height, width)"]),
    ("rle_counts", _edit(_set("annotations", 0, segmentation={"size": [30, 40], "counts": [5]})),
     {}, ["RLE counts do not add up to height * width = 1200"]),
    ("rle_no_counts", _edit(_set("annotations", 0, segmentation={"size": [30, 40]})), {},
     ['RLE has no "counts"']),
    ("mask_no_segm", _edit(_pop("annotations", 3, "segmentation")), {"need_masks": True},
     ["annotations[3] (id 4): no segmentation, which a mask model needs", "MODEL.MASK_ON"]),
    ("mask_rle_polygon_format",
     _edit(_set("annotations", 0, segmentation={"size": [30, 40], "counts": [600, 600]})),
     {"need_masks": True}, ["is RLE", "INPUT.MASK_FORMAT bitmask"]),
    ("mask_eval_crowd_no_segm",
     _edit(lambda d: d["annotations"][3].update(iscrowd=1, segmentation=[])),
     {"need_masks": True, "evaluate": True}, ["no segmentation, which COCO mask evaluation"]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "kwargs", "expected"), [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])  # fmt: skip
def test_broken_json(tmp_path, data, kwargs, expected):
    with pytest.raises(DetectionDataError) as info:
        _check(tmp_path, data, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'ann.json'}: "), message
    for words in expected:
        assert words in message, message


def test_binary_json_file(tmp_path):
    folder = _images(tmp_path)
    path = tmp_path / "ann.json"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(DetectionDataError, match=r"ann\.json: not UTF-8 text"):
        check_coco_json(str(path), str(folder))


def test_more_problems_are_counted(tmp_path):
    """The first bad entry is shown, and how many more of its list have problems."""
    data = _edit(lambda d: [a.update(bbox=[1, 1, 0, 1]) for a in d["annotations"][1:]])
    with pytest.raises(DetectionDataError) as info:
        _check(tmp_path, data)
    assert "annotations[1] (id 2): bbox [1, 1, 0, 1] has width 0" in str(info.value)
    assert str(info.value).endswith("(2 more annotations with problems; the first is shown)")


def test_accepted(tmp_path):
    """What detectron2 reads as meant: non-contiguous category ids (mapped in order), an image
    without annotations, a crowd region in RLE (not trained on), a box reaching 0.5 px past
    the image (clipped), a 2-point polygon beside a real one (no area), a test json without
    "annotations" (a warning: no AP). (A run of the mask config on this json trains and
    evaluates.)"""
    data = copy.deepcopy(BASE)
    data["images"].append({"id": 9, "file_name": "a_again.png", "width": 40, "height": 30})
    data["annotations"][1]["bbox"] = [20, 5, 20.5, 20]
    data["annotations"][0]["segmentation"].append([1, 1, 2, 2])
    crowd = {"size": [30, 40], "counts": [100, 50, 1050]}
    data["annotations"].append(
        dict(id=77, image_id=2, category_id=5, bbox=[1, 1, 5, 5], area=50, iscrowd=1,
             segmentation=crowd)
    )  # fmt: skip
    Image.new("RGB", (40, 30)).save(_images(tmp_path) / "a_again.png")
    checked = _check(tmp_path, data, train=True, evaluate=True, need_masks=True)
    assert checked.classes == ["cat", "dog", "bird"]  # by id: 1, 2, 5
    assert checked.num_annotations == 5 and len(checked.images) == 4 and not checked.warnings
    test_only = _edit(lambda d: d.pop("annotations"))
    checked = _check(tmp_path, test_only, train=False, evaluate=True)
    assert len(checked.warnings) == 1 and "cannot be COCO-evaluated" in checked.warnings[0]


# ----------------------------------------------------------------------------- image files


def _image_error(tmp_path, change, decode=True):
    folder = _images(tmp_path)
    data = copy.deepcopy(BASE)
    change(folder, data)
    checked = check_coco_json(str(_write(tmp_path, data)), str(folder))
    with pytest.raises(DetectionDataError) as info:
        check_image_files(checked, decode=decode)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'ann.json'}: ")
    return message


def test_image_missing(tmp_path):
    message = _image_error(tmp_path, lambda folder, d: (folder / "b.png").unlink())
    assert f"images[1] (id 2): image file '{tmp_path / 'img' / 'b.png'}' does not exist" in message
    assert "file_name" in message


def test_image_folder_wrong(tmp_path):
    message = _image_error(tmp_path, lambda f, d: [i.update(file_name="x/" + i["file_name"])
                                                   for i in d["images"]])  # fmt: skip
    assert "none of its 3 image files exists" in message and "image folder" in message


def test_image_not_decodable(tmp_path):
    def change(folder, data):
        (folder / "c.png").write_text("<html>not found</html>")
        (folder / "b.png").write_bytes(b"")

    message = _image_error(tmp_path, change)
    assert "images[1] (id 2): image file" in message and "the file is empty" in message
    assert "cannot be read as an image" in message and "(1 more images" in message


def test_truncated_image(tmp_path):
    """A PNG cut short after its header: the default check decodes it and finds it; the
    "header" check only reads its size."""

    def change(folder, data):
        path = folder / "a.png"
        Image.effect_noise((40, 30), 60).convert("RGB").save(path)
        path.write_bytes(path.read_bytes()[:200])

    message = _image_error(tmp_path, change)
    assert "images[0] (id 1): image file" in message and "cannot be read as an image" in message
    checked = check_coco_json(str(tmp_path / "ann.json"), str(tmp_path / "img"))
    check_image_files(checked, decode=False)


def test_image_size_mismatch(tmp_path):
    message = _image_error(tmp_path, lambda f, d: d["images"][2].update(width=31), decode=False)
    assert "images[2] (id 3): image file" in message
    assert "is 30x40, the json says 31x40 (width x height)" in message


def test_exif_orientation(tmp_path):
    """detectron2 turns an image by its EXIF orientation when reading it: the json's size is
    the turned one."""
    folder = _images(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: a 40x30 file is read as 30x40
    Image.new("RGB", (40, 30)).save(folder / "c.jpg", exif=exif.tobytes())
    data = _edit(lambda d: d["images"][2].update(file_name="c.jpg"))  # c: 30x40 in the json
    check_image_files(check_coco_json(str(_write(tmp_path, data)), str(folder)))
    message = _image_error(tmp_path, lambda f, d: d["images"][1].update(file_name="c.jpg"))
    assert "images[1] (id 2): image file" in message
    assert "is 40x30 with EXIF orientation 6" in message and "reads 30x40" in message


# ----------------------------------------------------------------------------- tools/train_net


def _dataset(tmp_path, data, name):
    folder = _images(tmp_path)
    return [name, str(_write(tmp_path, data, f"{name}.json")), str(folder)]


def _opts(out, datasets, train="tiny_train", test="tiny_val", classes=3):
    return [
        "MODEL.DEVICE", "cpu",
        "MODEL.WEIGHTS", "",
        "DATASETS.COCO_JSON", json.dumps(datasets),
        "DATASETS.TRAIN", f'("{train}",)',
        "DATASETS.TEST", f'("{test}",)' if test else "()",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(classes),
        "MODEL.RETINANET.NUM_CLASSES", str(classes),
        "SOLVER.IMS_PER_BATCH", "2",
        "OUTPUT_DIR", str(out),
    ]  # fmt: skip


def _run_error(tmp_path, config, datasets, *extra, **kwargs):
    out = tmp_path / "never_written"
    status, err = train_net(["--config-file", config, *_opts(out, datasets, **kwargs), *extra])
    assert status == 2, err
    assert not out.exists()
    return one_line_error(err)


@pytest.mark.parametrize("classes", [2, 4])
def test_num_classes_must_match(tmp_path, classes):
    datasets = [_dataset(tmp_path, BASE, "tiny_train"), _dataset(tmp_path, BASE, "tiny_val")]
    line = _run_error(tmp_path, FPN, datasets, classes=classes)
    assert f"MODEL.ROI_HEADS.NUM_CLASSES = {classes}, but dataset 'tiny_train' has 3" in line
    assert "['cat', 'dog', 'bird']" in line and "set MODEL.ROI_HEADS.NUM_CLASSES 3" in line
    line = _run_error(tmp_path, RETINANET, datasets, "MODEL.ROI_HEADS.NUM_CLASSES", "3",
                      classes=classes)  # fmt: skip
    assert f"MODEL.RETINANET.NUM_CLASSES = {classes}" in line


def test_train_and_test_categories_must_agree(tmp_path):
    other = _edit(_set("categories", 2, name="fish"))
    datasets = [_dataset(tmp_path, BASE, "tiny_train"), _dataset(tmp_path, other, "tiny_val")]
    line = _run_error(tmp_path, FPN, datasets)
    assert "Datasets 'tiny_train' and 'tiny_val' have other categories" in line
    assert "['bird'] only in 'tiny_train', ['fish'] only in 'tiny_val'" in line


def test_mask_model_needs_segmentations(tmp_path):
    data = _edit(_pop("annotations", 2, "segmentation"))
    line = _run_error(tmp_path, MASK, [_dataset(tmp_path, data, "tiny_train")], test="")
    assert "DATASETS.COCO_JSON 'tiny_train' (" in line and "tiny_train.json): " in line
    assert "annotations[2] (id 3): no segmentation, which a mask model needs" in line


def test_image_check_value(tmp_path):
    datasets = [_dataset(tmp_path, BASE, "tiny_train")]
    line = _run_error(tmp_path, FPN, datasets, "DATASETS.COCO_JSON_IMAGE_CHECK", "all", test="")
    assert "DATASETS.COCO_JSON_IMAGE_CHECK = 'all': must be one of 'decode', 'header'" in line


def test_bad_image_exits_2_and_writes_nothing(tmp_path):
    """The issue's case: an image of another size than its json entry, in a process of its
    own. Before, it failed in the data loader, leaving config.yaml and log.txt; now nothing is
    written, so the run with corrected data starts in the same folder."""
    data = _edit(_set("images", 1, width=41))
    datasets = [_dataset(tmp_path, data, "tiny_train"), _dataset(tmp_path, BASE, "tiny_val")]
    out = tmp_path / "run"
    argv = ["--config-file", str(FPN), *_opts(out, datasets)]
    done = subprocess.run(
        [sys.executable, str(TOOLS / "train_net.py"), *argv],
        cwd=str(REPO_ROOT),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: DATASETS.COCO_JSON 'tiny_train' ("), (
        lines
    )
    assert "images[1] (id 2): image file" in lines[0] and "json says 41x30" in lines[0]
    assert not out.exists()
