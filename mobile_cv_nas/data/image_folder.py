"""A folder of class subfolders of images (the ImageNet layout), via torchvision's ImageFolder,
with the mistakes people make checked first so they get a message naming the folder and the
fix, never a torchvision traceback."""

import os
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .errors import DatasetError
from .image_modes import load_image


def _has_image(folder):
    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMG_EXTENSIONS) for f in files):
            return True
    return False


def load_image_folder(path, name=None):
    """An RGB ImageFolder over `path` (one subfolder per class; labels in sorted folder-name
    order; every PIL mode converted by image_modes.load_image), with `in_channels = 3` and
    `name`. `path` must exist."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder of class subfolders of images.")
    class_dirs = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not class_dirs:
        raise DatasetError(
            f"{root} holds no class subfolders; an image-folder dataset needs one subfolder per "
            f"class with the images inside (e.g. {root}/cat/001.jpg, {root}/dog/002.png)."
        )
    empty = [d for d in class_dirs if not _has_image(root / d)]
    if empty:
        shown = ", ".join(str(root / d) for d in empty[:5])
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        raise DatasetError(
            f"{len(empty)} class folder(s) of {root} hold no images: {shown}{more}. Accepted "
            f"extensions: {', '.join(IMG_EXTENSIONS)}; add images or remove the folder(s)."
        )
    try:
        dataset = ImageFolder(str(root), loader=load_image)
    except (OSError, RuntimeError, ValueError) as e:
        raise DatasetError(f"cannot read the image folder {root}: {e}") from e
    dataset.in_channels = 3
    dataset.name = name if name is not None else str(path)
    return dataset
