"""Fashion-MNIST (Xiao et al. 2017, MIT licensed, (c) 2017 Zalando SE): the full set from the
Debian package `dataset-fashion-mnist` when it is installed, else the subset that ships with
this package (fashion_mnist_subset/README.md), so a search runs out of the box with no
download and the same code reads both.
"""

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .errors import DatasetError
from .fashion_mnist_fetch import user_cache_dir
from .idx import IdxFormatError, find_idx, read_idx

logger = logging.getLogger("mobile_cv_nas.data")

#: The official label order (label i is CLASSES[i]).
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
#: Where the Debian package installs the full set, and the variable that points elsewhere.
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "MOBILE_CV_NAS_FASHION_MNIST"
#: The embedded subset (10,000 train / 2,000 val images, class-balanced).
SUBSET_DIR = Path(__file__).resolve().parent / "fashion_mnist_subset"
#: File stems per split; the val split is the official t10k test split.
STEMS = {"train": "train", "val": "t10k"}


class IdxDataset(Dataset):
    """uint8 grayscale images and int labels from a pair of idx files.

    Items are `(PIL.Image mode "L", int label)`, like torchvision's datasets, so the same
    transforms serve this and ImageFolder. The whole split is held in memory (47 MB for the
    full Fashion-MNIST train split), which keeps workers cheap: forked workers share it.
    """

    in_channels = 1

    def __init__(self, images_path, labels_path, classes=CLASSES, name=None):
        try:
            images = read_idx(images_path)
            labels = read_idx(labels_path)
        except IdxFormatError as e:
            raise DatasetError(str(e)) from e
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"idx pair {images_path} / {labels_path}: expected images (N, H, W) and labels "
                f"(N,), got {images.shape} and {labels.shape}"
            )
        if len(labels) and int(labels.max()) >= len(classes):
            raise DatasetError(
                f"{labels_path}: label {int(labels.max())} out of range for {len(classes)} classes"
            )
        self.images = images
        self.targets = labels.astype(np.int64).tolist()
        self.classes = list(classes)
        self.name = name if name is not None else str(images_path)
        self.root = str(Path(images_path).parent)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return Image.fromarray(self.images[index]), self.targets[index]

    def __repr__(self):
        h, w = self.images.shape[1:]
        return f"IdxDataset(name={self.name!r}, {len(self)} images {h}x{w}, root={self.root!r})"


def split_files(folder, split):
    """The (images, labels) paths of `split` ("train"/"val") in `folder`, or None if either is
    missing."""
    stem = STEMS[split]
    images = find_idx(folder, f"{stem}-images-idx3-ubyte")
    labels = find_idx(folder, f"{stem}-labels-idx1-ubyte")
    return (images, labels) if images and labels else None


def full_set_dir():
    """The folder of the full set, or None when it is not installed: the Debian package's,
    else the user cache's (tools/fetch_fashion_mnist.py puts it there without root).

    `$MOBILE_CV_NAS_FASHION_MNIST` wins when set, and must then hold all four files: pointing
    at a folder is a request, so a wrong one is an error rather than a silent fallback.
    """
    folder = os.environ.get(ENV_VAR)
    if folder:
        if not all(split_files(folder, split) for split in STEMS):
            raise DatasetError(
                f"${ENV_VAR}={folder} does not hold the Fashion-MNIST idx files "
                f"(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; .xz or uncompressed "
                f"also read); fix the path or unset the variable to use the default."
            )
        return Path(folder)
    for folder in (Path(DEBIAN_DIR), user_cache_dir()):
        if all(split_files(folder, split) for split in STEMS):
            return folder
    return None


def load_subset(split, name=None):
    """The embedded subset's `split` ("train" or "val")."""
    files = split_files(SUBSET_DIR, split)
    if files is None:
        raise DatasetError(
            f"the embedded Fashion-MNIST subset is missing from {SUBSET_DIR}; reinstall the "
            f"package (or regenerate it: python tools/make_fashion_mnist_subset.py)."
        )
    return IdxDataset(*files, name=name or f"fashion_mnist_subset_{split}")


def load_fashion_mnist(split, name=None):
    """The full set's `split` when installed (see full_set_dir), else the embedded subset's;
    the choice is logged."""
    name = name or f"fashion_mnist_{split}"
    folder = full_set_dir()
    if folder is None:
        logger.info(
            "%s: the full Fashion-MNIST is not installed (%s, %s or $%s; "
            "python tools/fetch_fashion_mnist.py fetches it without root); using the "
            "embedded subset (10,000 train / 2,000 val images)",
            name,
            DEBIAN_DIR,
            user_cache_dir(),
            ENV_VAR,
        )
        return load_subset(split, name=name)
    dataset = IdxDataset(*split_files(folder, split), name=name)
    logger.info("%s: the full Fashion-MNIST from %s (%d images)", name, folder, len(dataset))
    return dataset
