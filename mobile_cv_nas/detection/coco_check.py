"""A COCO-format detection json checked before a run uses it, so that a bad entry is one line
naming the json, the entry and the fix, instead of a traceback mid-training (detectron2's
`load_coco_json` and data mapper assert, raise KeyError, or silently drop what they cannot use).

    checked = check_coco_json("ann/train.json", "img/train", train=True, evaluate=False)
    checked.classes            # category names in id order: detectron2's thing_classes
    check_image_files(checked) # every image opens (and decodes) at the size the json states

What detectron2 0.6 does with such a json, and what is therefore refused here:

* it reads "images", "annotations" and "categories"; category ids may be any integers (they
  are mapped, in sorted order, to the contiguous 0..K-1 the model predicts), so K categories
  need NUM_CLASSES = K;
* pycocotools indexes images, annotations and categories by id: a repeated id silently
  replaces the earlier entry;
* an annotation of an image id the json does not list is dropped (a log line); one of an
  unknown category id is a KeyError; "ignore" != 0 is an assertion;
* a bbox is [x, y, width, height] in pixels (XYWH_ABS); the mapper clips it to the image and
  drops it when empty, so a zero, negative or outside box is silently lost, NaN reaches the
  loss;
* a segmentation whose polygons all have fewer than 3 points drops the whole annotation (box
  included, for every model); a mask model needs one on every non-crowd annotation (polygons,
  or RLE with INPUT.MASK_FORMAT "bitmask");
* iscrowd annotations are not trained on (iscrowd is 0 or 1); images without a non-crowd one
  are dropped from training;
* the mapper raises when an image's size (after its EXIF orientation) is not the json's;
* COCO evaluation (DATASETS.TEST) reads every annotation's "area" and "iscrowd", and a mask
  model's evaluation every annotation's segmentation.

Boxes may reach up to 1 px beyond the image (rounding, 1-based converters), as detectron2
clips them; more is refused (often a box written as [x1, y1, x2, y2]).
"""

import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

#: How far (pixels) a box may reach beyond the image: detectron2 clips it.
BOX_TOLERANCE = 1.0
#: Image checks: "decode" reads every image whole (a truncated file is found), "header" only
#: its size and EXIF orientation (fast, a file cut short after its header passes).
IMAGE_CHECKS = ("decode", "header")
#: EXIF orientations that swap width and height (detectron2 transposes the image on reading).
_TRANSPOSING = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112
_FORMAT = '(a COCO json is {"images": [...], "annotations": [...], "categories": [...]})'


class DetectionDataError(ValueError):
    """A detection dataset that cannot be used as given: not registered, missing files, or a
    COCO json with a bad entry; the message names the json, the entry and the fix."""


@dataclass
class CheckedCocoJson:
    """A json that passed `check_coco_json`: what the later checks need."""

    json_file: str
    image_root: str
    where: str
    #: Category names in id order (detectron2's thing_classes; model class i = classes[i]).
    classes: list
    #: (entry label, file name, width, height) of every image.
    images: list
    num_annotations: int
    #: Things that are allowed but worth a line in the log.
    warnings: list = field(default_factory=list)


def check_coco_json(
    json_file,
    image_root,
    *,
    train=True,
    evaluate=False,
    need_masks=False,
    mask_format="polygon",
    where=None,
):
    """Read `json_file` and check what detectron2 will read of it; raise DetectionDataError
    (one line: `where`, the first bad entry, the fix, and how many more entries have problems)
    or return a CheckedCocoJson. `train`: it is trained on (needs annotations, and at least
    one non-crowd one); `evaluate`: it is COCO-evaluated (every annotation needs "area" and
    "iscrowd"); `need_masks`: the model trains or evaluates masks. The image files are
    checked by `check_image_files`."""
    where = where or json_file
    data = _read_json(json_file, where)
    checked = CheckedCocoJson(json_file, image_root, where, [], [], 0)
    for key in ("images", "categories"):
        _need_list(data, key, where)
    if "annotations" in data or train:
        _need_list(data, "annotations", where)
    else:
        checked.warnings.append(
            f'{where}: no "annotations" (image info only, like COCO test-dev): the model '
            f"predicts on it but it cannot be COCO-evaluated (no AP)."
        )
    categories = _check_categories(data["categories"], where)
    images = _check_images(data["images"], where)
    annotations = data.get("annotations", [])
    usable = _check_annotations(
        annotations, images, categories, where, evaluate, need_masks, mask_format
    )
    if train and not usable:
        what = "no annotations" if not annotations else "only iscrowd 1 annotations"
        raise DetectionDataError(
            f"{where}: {what}, nothing to train on (detectron2 trains on the annotations with "
            f"iscrowd 0 and drops the images without one): add the objects' annotations, or "
            f"remove this dataset from DATASETS.TRAIN."
        )
    if evaluate and "annotations" in data and not annotations:
        checked.warnings.append(
            f'{where}: "annotations" is empty: its COCO AP cannot be computed (reported as null).'
        )
    checked.classes = [categories[i] for i in sorted(categories)]
    checked.images = [
        (label, image["file_name"], image["width"], image["height"])
        for label, image in images.values()
    ]
    checked.num_annotations = len(annotations)
    return checked


# ------------------------------------------------------------------------------ structure


def _read_json(json_file, where):
    try:
        with open(json_file, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise DetectionDataError(
            f"{where}: not UTF-8 text, so not a json file: give the annotation json {_FORMAT}."
        ) from None
    except OSError as e:
        raise DetectionDataError(f"{where}: cannot be read ({e.strerror or e}).") from None
    if not text.strip():
        raise DetectionDataError(f"{where}: the file is empty; give the annotation json {_FORMAT}.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DetectionDataError(
            f"{where}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); fix the "
            f"file {_FORMAT}."
        ) from None
    if not isinstance(data, dict):
        kind = _json_type(data)
        hint = ""
        if isinstance(data, list) and data and isinstance(data[0], dict) and "score" in data[0]:
            hint = " (it looks like a file of detection results)"
        raise DetectionDataError(
            f"{where}: holds a JSON {kind}{hint}, not a COCO object; give the annotation json "
            f"{_FORMAT}."
        )
    return data


def _json_type(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "number"


def _need_list(data, key, where):
    if key not in data:
        keys = ", ".join(f'"{k}"' for k in list(data)[:8]) or "none"
        raise DetectionDataError(
            f'{where}: has no "{key}" list (its keys: {keys}); add it {_FORMAT}.'
        )
    if not isinstance(data[key], list):
        raise DetectionDataError(
            f'{where}: "{key}" is a JSON {_json_type(data[key])}, not an array of objects; '
            f"make it a list {_FORMAT}."
        )


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _label(section, index, entry):
    """`annotations[17] (id 42)`: the entry's place in its list, and its id when it has one."""
    ident = entry.get("id") if isinstance(entry, dict) else None
    return f"{section}[{index}] (id {ident!r})" if _is_int(ident) else f"{section}[{index}]"


def _raise_first(problems, where, noun):
    """One line: the first problem, and how many more entries of its list have one."""
    if not problems:
        return
    more = len(problems) - 1
    tail = f" ({more} more {noun} with problems; the first is shown)" if more else ""
    raise DetectionDataError(f"{where}: {problems[0]}{tail}")


def _check_ids(entries, section, where, what):
    """{id: (label, entry)} of a list of objects with unique integer ids."""
    problems, by_id = [], {}
    for index, entry in enumerate(entries):
        label = _label(section, index, entry)
        if not isinstance(entry, dict):
            problems.append(
                f"{label} is a JSON {_json_type(entry)}, not an object; make it {what}."
            )
            continue
        ident = entry.get("id")
        if not _is_int(ident):
            shown = "no id" if "id" not in entry else f"id {ident!r}"
            problems.append(f"{label} has {shown}: give it a unique integer id ({what}).")
        elif ident in by_id:
            problems.append(
                f"{label}: id {ident} is also {by_id[ident][0]}'s (pycocotools keeps only the "
                f"last one): give each entry its own id."
            )
        else:
            by_id[ident] = (label, entry)
    _raise_first(problems, where, section)
    return by_id


def _check_categories(entries, where):
    """{category id: name}."""
    what = '{"id": 1, "name": "person"}'
    if not entries:
        raise DetectionDataError(f'{where}: "categories" is empty: list the classes, each {what}.')
    by_id = _check_ids(entries, "categories", where, what)
    problems, names = [], {}
    for label, entry in by_id.values():
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f'{label} has no name: give it a "name" (a non-empty string).')
        elif name in names:
            problems.append(
                f"{label}: name {name!r} is also {names[name]}'s: give each category its own "
                f"name, or merge the two (and their annotations) into one."
            )
        else:
            names[name] = label
    _raise_first(problems, where, "categories")
    return {ident: entry["name"] for ident, (_, entry) in by_id.items()}


def _check_images(entries, where):
    """{image id: (label, entry)}."""
    what = '{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}'
    if not entries:
        raise DetectionDataError(f'{where}: "images" is empty: list the images, each {what}.')
    by_id = _check_ids(entries, "images", where, what)
    problems, files = [], {}
    for label, image in by_id.values():
        name = image.get("file_name")
        if not isinstance(name, str) or not name.strip():
            problems.append(
                f'{label} has no "file_name": give the image file\'s path under the image folder.'
            )
            continue
        bad = [
            key for key in ("width", "height") if not (_is_int(image.get(key)) and image[key] > 0)
        ]
        if bad:
            shown = ", ".join(f"{k} {image[k]!r}" if k in image else f"no {k}" for k in bad)
            problems.append(
                f"{label} ({name}): {shown}; give the image's width and height in pixels, as "
                f"positive integers (detectron2 sizes its outputs with them: 480.0 fails)."
            )
        elif name in files:
            problems.append(
                f"{label}: file_name {name!r} is also {files[name]}'s: list each image file "
                f"once, with one id its annotations all use."
            )
        else:
            files[name] = label
    _raise_first(problems, where, "images")
    return by_id


# ------------------------------------------------------------------------------ annotations


def _check_annotations(entries, images, categories, where, evaluate, need_masks, mask_format):
    """The number of usable (non-crowd) annotations."""
    what = '{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, width, height]}'
    by_id = _check_ids(entries, "annotations", where, what)
    problems, usable = [], 0
    for label, ann in by_id.values():
        problem = _annotation_problem(ann, images, categories, evaluate, need_masks, mask_format)
        if problem:
            problems.append(f"{label}: {problem}")
        elif not ann.get("iscrowd", 0):
            usable += 1
    _raise_first(problems, where, "annotations")
    return usable


def _annotation_problem(ann, images, categories, evaluate, need_masks, mask_format):
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    if not _is_int(image_id) or image_id not in images:
        if "image_id" not in ann:
            return 'no image_id: give the id of its image (an id of "images").'
        return (
            f'image_id {image_id!r} is not an id of "images" (detectron2 drops the '
            f"annotation): give the id of its image, or add the image."
        )
    if not _is_int(category_id) or category_id not in categories:
        known = sorted(categories)
        listed = ", ".join(map(str, known[:10])) + (", ..." if len(known) > 10 else "")
        if "category_id" not in ann:
            return f'no category_id: give its category\'s id (one of "categories": {listed}).'
        return (
            f'category_id {category_id!r} is not an id of "categories" ({listed}): give its '
            f"category's id, or add the category."
        )
    _, image = images[image_id]
    crowd = ann.get("iscrowd", 0)
    if "iscrowd" in ann and crowd not in (0, 1):
        return (
            f"iscrowd {crowd!r}: use 0 (an object) or 1 (a crowd region, not trained on); "
            f"detectron2 treats anything but 0 as a crowd."
        )
    if ann.get("ignore", 0):
        return (
            f'"ignore" {ann["ignore"]!r}: detectron2 does not support ignored annotations; '
            f"mark the region iscrowd 1, or remove the annotation."
        )
    problem = _box_problem(ann.get("bbox", None), image, "bbox" in ann)
    if problem:
        return problem
    if evaluate:
        if "iscrowd" not in ann:
            return (
                'no iscrowd: COCO evaluation (DATASETS.TEST) reads it; add "iscrowd": 0 (or 1 '
                "for a crowd region)."
            )
        area = ann.get("area")
        if not (_is_number(area) and math.isfinite(area) and area >= 0):
            shown = "no area" if "area" not in ann else f"area {area!r}"
            return (
                f"{shown}: COCO evaluation (DATASETS.TEST) reads it (its size range); give the "
                f"object's area in pixels (the mask's, or the box's width * height)."
            )
    segmentation = ann.get("segmentation")
    if segmentation:
        problem = _segmentation_problem(segmentation, image)
        if problem:
            if need_masks:
                return f"{problem} Fix it."
            return (
                f'{problem} Fix it, or remove "segmentation" (a box-only model does not need it).'
            )
    if need_masks and (evaluate or not crowd):
        if not segmentation:
            who = "COCO mask evaluation" if crowd else "a mask model"
            return (
                f"no segmentation, which {who} needs: add its polygons [[x1, y1, x2, y2, "
                f"...]] (or COCO RLE), or train a box-only model (MODEL.MASK_ON False)."
            )
        if isinstance(segmentation, dict) and not crowd and mask_format == "polygon":
            return (
                'its segmentation is RLE, which INPUT.MASK_FORMAT "polygon" cannot read: set '
                "INPUT.MASK_FORMAT bitmask, or give polygons."
            )
    return None


def _box_problem(box, image, present):
    fix = "COCO boxes are [x, y, width, height] in pixels"
    if not present:
        return f'no "bbox": give the object\'s box ({fix}).'
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        return f"bbox {box!r} is not 4 numbers: {fix}."
    if not all(math.isfinite(v) for v in box):
        return f"bbox {box!r} is not finite: {fix}; fix the box or remove the annotation."
    x, y, w, h = box
    if w <= 0 or h <= 0:
        side = "width" if w <= 0 else "height"
        return (
            f"bbox {box!r} has {side} {w if w <= 0 else h} (detectron2 drops an empty box): "
            f"{fix}, with width and height > 0; fix the box or remove the annotation."
        )
    width, height = image["width"], image["height"]
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        hint = ""
        if x + w > width + t or y + h > height + t:
            if w > x and h > y and w <= width + t and h <= height + t:
                hint = " (if it is [x1, y1, x2, y2], convert it)"
        return (
            f"bbox {box!r} reaches ({x:g}, {y:g}) to ({x + w:g}, {y + h:g}), outside the "
            f"{width}x{height} image{hint}: {fix}, inside the image."
        )
    return None


def _segmentation_problem(segm, image):
    """What is wrong with a non-empty segmentation (polygons or COCO RLE), or None."""
    if isinstance(segm, list):
        if all(_is_number(v) for v in segm):
            return (
                "segmentation is a flat list of numbers: polygons are a list of lists, "
                "[[x1, y1, x2, y2, ...]]."
            )
        enough = 0
        for poly in segm:
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                return f"segmentation polygon {_short(poly)} is not a list of numbers."
            if not all(math.isfinite(v) for v in poly):
                return f"segmentation polygon {_short(poly)} is not finite."
            if len(poly) % 2:
                return (
                    f"segmentation polygon {_short(poly)} has {len(poly)} numbers, an odd "
                    f"count: a polygon is x1, y1, x2, y2, ..."
                )
            enough += len(poly) >= 6
        if not enough:
            return (
                "segmentation has no polygon of 3 points or more (detectron2 drops the whole "
                "annotation, box included)."
            )
        return None
    if isinstance(segm, dict):
        size, counts = segm.get("size"), segm.get("counts")
        expected = [image["height"], image["width"]]
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            return f'segmentation RLE has size {size!r}: give "size": [height, width].'
        if size != expected:
            return (
                f"segmentation RLE has size {size}, the image is {expected} (height, width): "
                f"encode the mask at the image's size."
            )
        if isinstance(counts, list):
            if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != size[0] * size[1]:
                return (
                    f"segmentation RLE counts do not add up to height * width = "
                    f"{size[0] * size[1]}: re-encode the mask."
                )
        elif not isinstance(counts, str):
            return 'segmentation RLE has no "counts" (a string, or a list of run lengths).'
        return None
    return (
        f"segmentation is a JSON {_json_type(segm)}: give polygons [[x1, y1, x2, y2, ...]] or "
        f'COCO RLE {{"size": [h, w], "counts": ...}}.'
    )


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ...]"


# ------------------------------------------------------------------------------ image files


def check_image_files(checked, decode=True, workers=None):
    """Every image of a CheckedCocoJson is a file under its image root that opens (and, with
    `decode`, decodes whole) at the json's width x height, after its EXIF orientation as
    detectron2 reads it. DetectionDataError names the first bad image (and the count)."""
    paths = [os.path.join(checked.image_root, name) for _, name, _, _ in checked.images]
    workers = workers or min(16, _cpu_count())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's notes on odd EXIF or big images
        with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes without the GIL
            found = list(pool.map(lambda p: _read_size(p, decode), paths, chunksize=16))
    problems, missing = [], 0
    for (label, _, width, height), path, result in zip(checked.images, paths, found, strict=True):
        if result is None:
            missing += 1
            problems.append(
                f"{label}: image file {path!r} does not exist: put it there, or fix the "
                f"image's file_name (or the dataset's image folder)."
            )
        elif isinstance(result, str):
            problems.append(
                f"{label}: image file {path!r} cannot be read as an image ({result}): replace "
                f"it, or remove the image and its annotations."
            )
        else:
            problem = _size_problem(result, int(width), int(height))
            if problem:
                problems.append(f"{label}: image file {path!r} {problem}")
    if missing == len(paths):
        raise DetectionDataError(
            f"{checked.where}: none of its {len(paths)} image files exists (the first: "
            f"{paths[0]!r}): the file_name entries are relative to the image folder "
            f"{checked.image_root!r}; give the folder that holds them, or fix the file names."
        )
    _raise_first(problems, checked.where, "images")


def _cpu_count():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _read_size(path, decode):
    """(width, height, EXIF orientation) of an image file; None when it is missing; the
    error's text when it does not open (or decode)."""
    if not os.path.isfile(path):
        return None
    if os.path.getsize(path) == 0:
        return "the file is empty"
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            if image.format == "PNG" and not decode:  # PNG's getexif reads the whole file
                exif = Image.Exif()
                if "exif" in image.info:
                    exif.load(image.info["exif"])
            else:
                exif = image.getexif()
            return image.size + (exif.get(_EXIF_ORIENTATION, 1),)
    except UnidentifiedImageError:
        return "not an image format PIL knows"
    except Exception as e:  # a broken file fails in many ways inside PIL's decoders
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _size_problem(found, width, height):
    file_width, file_height, orientation = found
    turned = orientation in _TRANSPOSING
    read = (file_height, file_width) if turned else (file_width, file_height)
    if read == (width, height):
        return None
    if turned and (file_width, file_height) == (width, height):
        return (
            f"is {file_width}x{file_height} with EXIF orientation {orientation}, which "
            f"detectron2 applies: it reads {read[0]}x{read[1]}, the json says {width}x{height} "
            f"(width x height). Set width {read[0]} and height {read[1]} (and boxes in the "
            f"turned image), or save the image turned, without the EXIF orientation."
        )
    return (
        f"is {read[0]}x{read[1]}, the json says {width}x{height} (width x height): fix the "
        f"image's width and height, or the file."
    )
