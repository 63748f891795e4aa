"""Reading an image file as the model's mode ("RGB" or "L"), every PIL mode included.

PIL's own `convert` clips high bit-depth images instead of scaling them: a 16-bit image
("I;16*", or "I", as PIL opens 16-bit PNGs) becomes almost white, since every value above 255
is 255. Here 16-bit values are scaled by their range (0..65535 -> 0..255) and float images
("F") are read as 0..1 (the float convention of torchvision and most float image files). An
alpha channel is dropped, as torchvision's loader does.
"""

import numpy as np
from PIL import Image

#: PIL modes of 16-bit integer images ("I" is how PIL opens 16-bit grayscale PNGs).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
SIXTEEN_BIT_MAX = 65535
#: Modes PIL cannot convert to every target directly go through one of these.
_VIA = ("RGB", "LA", "RGBA")


def _to_8bit(image, top):
    """A mode "L" image of `image`'s values scaled from 0..top to 0..255 (outside: clipped)."""
    values = np.asarray(image, dtype=np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=top, neginf=0.0)
    return Image.fromarray(np.rint(np.clip(values, 0, top) * (255 / top)).astype(np.uint8))


def to_mode(image, mode):
    """`image` (a PIL image of any mode) as PIL mode `mode` ("RGB" or "L")."""
    if image.mode == mode:
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        image = _to_8bit(image, SIXTEEN_BIT_MAX)
    elif image.mode == "F":
        image = _to_8bit(image, 1.0)
    try:
        return image.convert(mode)
    except ValueError:
        pass
    for via in _VIA:
        try:
            return image.convert(via).convert(mode)
        except ValueError:
            continue
    raise ValueError(f"PIL cannot convert its mode {image.mode} to {mode}")


def load_image(path, mode="RGB", draft=False):
    """The image file at `path`, fully decoded, as `mode`. `draft`: let a JPEG decode at a
    reduced size (every byte is still decoded, so a truncated file still fails; for checks)."""
    with open(path, "rb") as f:
        image = Image.open(f)
        if draft:
            image.draft(None, (1, 1))
        image.load()
    return to_mode(image, mode)
