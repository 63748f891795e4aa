"""Folder datasets: every image is checked to decode before a run (each kind of unreadable file
named with its problem, DATA.SKIP_BAD_IMAGES leaves them out with a warning), the traversal
ends on link loops and never counts an image twice, a set of one class is refused, and every
PIL mode is converted right, 16-bit and float images scaled rather than clipped."""

import os

import numpy as np
import pytest
from PIL import Image

from mobile_cv_nas.data import (
    DatasetError,
    build_classification_dataset,
    find_bad_images,
    load_image,
    to_mode,
)
from mobile_cv_nas.engine.data import build_datasets
from mobile_cv_nas.engine.run_config import new_config


def _write_classes(root, classes=("cat", "dog"), per_class=2):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (40 * c, 10 * i, 99)).save(root / name / f"{i}.png")
    return root


def _truncated_jpeg(path):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # the header is whole, the pixel data is not


def _write_bad_images(root):
    """{file name: words of its problem} of the unreadable files written into root/cat."""
    cat = root / "cat"
    (cat / "empty.jpg").write_bytes(b"")
    (cat / "notes.png").write_text("not an image, despite its name")
    _truncated_jpeg(cat / "cut.jpg")
    os.symlink("gone.jpg", cat / "dangling.jpg")
    os.symlink("selfloop.jpg", cat / "selfloop.jpg")
    os.mkfifo(cat / "pipe.png")  # opening it would block a reader forever
    return {
        "empty.jpg": "an empty file",
        "notes.png": "not an image",
        "cut.jpg": "truncated",
        "dangling.jpg": "a link to 'gone.jpg', which does not exist",
        "selfloop.jpg": "a link that cannot be followed",
        "pipe.png": "not a regular file",
    }


def _cfg(train, test, *opts):
    cfg = new_config()
    cfg.merge_from_list(["DATA.TRAIN", str(train), "DATA.TEST", str(test), *opts])
    return cfg


def test_each_unreadable_file_is_named_with_its_problem(tmp_path):
    root = _write_classes(tmp_path / "pets")
    problems = _write_bad_images(root)
    dataset = build_classification_dataset(str(root))
    bad = dict(find_bad_images([path for path, _ in dataset.samples], threads=2))
    assert {os.path.basename(p) for p in bad} == set(problems)
    for path, problem in bad.items():
        assert problems[os.path.basename(path)] in problem, (path, problem)


def test_a_run_refuses_unreadable_images_in_train_and_test(tmp_path):
    train = _write_classes(tmp_path / "train")
    test = _write_classes(tmp_path / "val")
    (train / "dog" / "empty.jpg").write_bytes(b"")
    _truncated_jpeg(test / "cat" / "cut.jpg")
    with pytest.raises(DatasetError) as info:
        build_datasets(_cfg(train, test))
    message = str(info.value)
    assert "\n" not in message
    assert f"DATA.TRAIN ({train}): 1 of 5 images cannot be read: {train}/dog/empty.jpg" in message
    assert f"DATA.TEST ({test}): 1 of 5 images cannot be read: {test}/cat/cut.jpg" in message
    assert "DATA.SKIP_BAD_IMAGES True" in message


def test_a_file_name_with_a_newline_keeps_the_message_one_line(tmp_path):
    train = _write_classes(tmp_path / "train")
    (train / "dog" / "two\nlines.jpg").write_bytes(b"")
    with pytest.raises(DatasetError) as info:
        build_datasets(_cfg(train, train))
    assert "\n" not in str(info.value) and "two\\nlines.jpg" in str(info.value)


def test_skip_bad_images_leaves_them_out_with_a_warning(tmp_path):
    train = _write_classes(tmp_path / "train", per_class=3)
    test = _write_classes(tmp_path / "val")
    problems = _write_bad_images(train)
    datasets = build_datasets(_cfg(train, test, "DATA.SKIP_BAD_IMAGES", "True"))
    assert len(datasets.train) == 6 and len(datasets.test) == 4
    assert not any(os.path.basename(p) in problems for p, _ in datasets.train.samples)
    assert datasets.train.targets == [0, 0, 0, 1, 1, 1]
    warnings = [text for level, text in datasets.notes if level == "warning"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"DATA.TRAIN ({train}): 6 of 12 images cannot be read: ")
    assert "and 1 more. Left out (DATA.SKIP_BAD_IMAGES True)." in warnings[0]


def test_skipping_that_empties_a_class_is_refused(tmp_path):
    train = tmp_path / "train"
    _write_classes(train, classes=("cat",))
    (train / "dog").mkdir()
    (train / "dog" / "only.jpg").write_bytes(b"")
    cfg = _cfg(train, train, "DATA.SKIP_BAD_IMAGES", "True")
    with pytest.raises(DatasetError) as info:
        build_datasets(cfg)
    message = str(info.value)
    assert message.startswith(f"DATA.TRAIN and DATA.TEST ({train}): 1 of 3 images cannot be read")
    assert f"1 class folder(s) of {train} hold no images: {train}/dog." in message


def test_link_loops_end_and_each_image_counts_once(tmp_path):
    root = _write_classes(tmp_path / "pets")
    os.symlink("..", root / "cat" / "up")  # the dataset folder
    os.symlink(".", root / "dog" / "here")  # the class folder itself
    (root / "dog" / "deeper").mkdir()
    os.symlink("../..", root / "dog" / "deeper" / "back")  # the dataset folder again
    dataset = build_classification_dataset(str(root))
    assert [os.path.relpath(p, root) for p, _ in dataset.samples] == [
        "cat/0.png",
        "cat/1.png",
        "dog/0.png",
        "dog/1.png",
    ]
    (warning,) = [text for level, text in dataset.notes if level == "warning"]
    assert "3 link(s) not followed" in warning and f"{root}/cat/up -> {root}" in warning


def test_links_that_lead_nowhere(tmp_path):
    root = _write_classes(tmp_path / "pets")
    os.symlink("../elsewhere", root / "cat" / "more")  # left out, with a warning
    (warning,) = [t for lvl, t in build_classification_dataset(str(root)).notes if lvl == "warning"]
    assert f"1 link(s) that lead nowhere left out: {root}/cat/more -> ../elsewhere" in warning
    os.symlink("/no/such/birds", root / "bird")  # meant as a class folder: refused
    with pytest.raises(DatasetError, match=f"1 link\\(s\\) in {root} lead nowhere: {root}/bird"):
        build_classification_dataset(str(root))


def test_an_image_reached_by_two_paths_is_refused(tmp_path):
    folders = _write_classes(tmp_path / "folders")
    os.symlink("../dog", folders / "cat" / "more")  # a class folder linking into another
    with pytest.raises(DatasetError) as info:
        build_classification_dataset(str(folders))
    assert f"{folders}/cat/more and {folders}/dog are the same folder" in str(info.value)
    files = _write_classes(tmp_path / "files")
    os.symlink("../cat/0.png", files / "dog" / "copy.png")
    with pytest.raises(DatasetError, match="counted twice") as info:
        build_classification_dataset(str(files))
    assert f"{files}/cat/0.png and {files}/dog/copy.png are the same file" in str(info.value)


def test_a_set_of_one_class_is_refused(tmp_path):
    one = _write_classes(tmp_path / "one", classes=("cat",))
    with pytest.raises(DatasetError, match=f"{one} has one class folder \\(cat\\)"):
        build_classification_dataset(str(one))
    three = _write_classes(tmp_path / "three", classes=("a", "b", "c"))
    with pytest.raises(DatasetError) as info:
        build_datasets(_cfg(three, three, "DATA.CLASS_FRACTION", "0.2"))
    assert "DATA.CLASS_FRACTION = 0.2 keeps 1 of the 3 classes of DATA.TRAIN" in str(info.value)
    assert len(build_datasets(_cfg(three, three, "DATA.CLASS_FRACTION", "2.0")).classes) == 2


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "gray16.png")  # PIL reads it as mode "I"
    Image.fromarray(values).save(tmp_path / "gray16.tif")  # mode "I;16"
    big_endian = Image.frombytes("I;16B", (4, 1), values.astype(">u2").tobytes())
    assert Image.open(tmp_path / "gray16.png").mode == "I"
    assert Image.open(tmp_path / "gray16.tif").mode == "I;16"
    for image in (load_image(tmp_path / "gray16.png"), load_image(tmp_path / "gray16.tif")):
        assert image.mode == "RGB"
        assert np.asarray(image)[0].tolist() == [[v] * 3 for v in (0, 1, 128, 255)]
    assert np.asarray(to_mode(big_endian, "L")).tolist() == [[0, 1, 128, 255]]
    floats = Image.fromarray(np.array([[-1.0, 0.0, 0.5, 1.0, 2.0]], dtype=np.float32))
    assert np.asarray(to_mode(floats, "L")).tolist() == [[0, 0, 128, 255, 255]]


@pytest.mark.parametrize(
    "mode", ["1", "L", "P", "PA", "LA", "La", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"]
)
def test_every_mode_converts_to_rgb_and_gray(mode):
    image = Image.new(mode, (2, 2))
    assert to_mode(image, "RGB").mode == "RGB" and to_mode(image, "L").mode == "L"


def test_palette_and_alpha_keep_their_colours():
    palette = Image.new("P", (1, 1))
    palette.putpalette([0, 0, 0, 200, 100, 50])
    palette.putpixel((0, 0), 1)
    assert to_mode(palette, "RGB").getpixel((0, 0)) == (200, 100, 50)
    assert to_mode(Image.new("RGBA", (1, 1), (9, 8, 7, 0)), "RGB").getpixel((0, 0)) == (9, 8, 7)
    assert to_mode(Image.new("LA", (1, 1), (77, 5)), "RGB").getpixel((0, 0)) == (77, 77, 77)
    assert to_mode(Image.new("1", (1, 1), 1), "L").getpixel((0, 0)) == 255
