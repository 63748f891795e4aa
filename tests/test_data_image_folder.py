"""Images of folder datasets: every PIL mode is converted right, 16-bit and float images
scaled rather than clipped."""

import numpy as np
import pytest
from PIL import Image

from mobile_cv_nas.data import build_classification_dataset, load_image, to_mode


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
