"""Folder datasets: the traversal ends on link loops and never counts an image twice, a set
of one class is refused, and every PIL mode is converted right, 16-bit and float images scaled
rather than clipped."""

import os

import numpy as np
import pytest
from PIL import Image

from mobile_cv_nas.data import DatasetError, build_classification_dataset, load_image, to_mode


def _write_classes(root, classes=("cat", "dog"), per_class=2):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (40 * c, 10 * i, 99)).save(root / name / f"{i}.png")
    return root


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
    (tmp_path / "folder" / "a").mkdir(parents=True)
    (tmp_path / "folder" / "b").mkdir()
    Image.fromarray(values).save(tmp_path / "folder" / "a" / "0.png")
    Image.new("L", (1, 1)).save(tmp_path / "folder" / "b" / "0.png")
    image, _ = build_classification_dataset(str(tmp_path / "folder"))[0]  # the folder's loader
    assert np.asarray(image)[0].tolist() == [[v] * 3 for v in (0, 1, 128, 255)]
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
