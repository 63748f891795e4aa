"""Image transforms (torchvision.transforms) for search and evaluation.

Images are converted to the model's `in_channels` (1: PIL mode "L", 3: "RGB"), so a grayscale
dataset can feed an RGB model and back (16-bit and float images scaled, see image_modes.py).
Train transforms draw from torch's RNG only, which SeededTransformDataset seeds per sample.
"""

import math

from torchvision import transforms as T

from .errors import DatasetError
from .image_modes import to_mode

FASHION_MNIST_MEAN_STD = ((0.2860,), (0.3530,))
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: ImageNet's for a 1-channel model on a colour folder: the mean of the channel statistics.
IMAGENET_GRAY_MEAN_STD = ((0.449,), (0.226,))
FASHION_MNIST_NAMES = {
    "fashion_mnist",
    "fashion_mnist_train",
    "fashion_mnist_val",
    "fashion_mnist_subset",
    "fashion_mnist_subset_train",
    "fashion_mnist_subset_val",
}
AUGMENTS = ("none", "flip", "imagenet")
_MODES = {1: "L", 3: "RGB"}


class ToMode:
    """Convert a PIL image to `mode` with image_modes.to_mode (a picklable class, not a lambda,
    so workers started by spawn or forkserver can receive it)."""

    def __init__(self, mode):
        self.mode = mode

    def __call__(self, image):
        return to_mode(image, self.mode)

    def __repr__(self):
        return f"ToMode({self.mode!r})"


def default_mean_std(in_channels, dataset_name):
    """(mean, std) per channel: Fashion-MNIST's for its built-in names, else ImageNet's."""
    _mode(in_channels)
    if dataset_name in FASHION_MNIST_NAMES:
        mean, std = FASHION_MNIST_MEAN_STD
        return mean * in_channels, std * in_channels
    return IMAGENET_MEAN_STD if in_channels == 3 else IMAGENET_GRAY_MEAN_STD


def _mode(in_channels):
    if in_channels not in _MODES:
        raise DatasetError(f"in_channels must be 1 or 3, got {in_channels}")
    return _MODES[in_channels]


def _tail(in_channels, mean, std):
    mean, std = tuple(mean), tuple(std)
    if len(mean) == 1 and len(std) == 1:
        mean, std = mean * in_channels, std * in_channels
    if len(mean) != in_channels or len(std) != in_channels:
        raise DatasetError(
            f"mean {mean} / std {std} do not have one value per channel (in_channels={in_channels})"
        )
    if not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise DatasetError(f"mean {mean} / std {std}: need finite values and every std > 0")
    return [ToMode(_mode(in_channels)), T.ToTensor(), T.Normalize(mean, std)]


def eval_transform(resolution, in_channels, mean, std, resize=None):
    """With `resize`: shorter side to `resize`, then a center crop of `resolution` (ImageNet
    style); without: straight to `resolution x resolution`."""
    if resize is None:
        head = [T.Resize((resolution, resolution))]
    else:
        head = [T.Resize(resize), T.CenterCrop(resolution)]
    return T.Compose(head + _tail(in_channels, mean, std))


def train_transform(resolution, in_channels, mean, std, augment="none"):
    """`augment`: "none" (resize to resolution x resolution), "flip" (that plus a random
    horizontal flip) or "imagenet" (RandomResizedCrop(resolution) plus the flip)."""
    if augment == "none":
        head = [T.Resize((resolution, resolution))]
    elif augment == "flip":
        head = [T.Resize((resolution, resolution)), T.RandomHorizontalFlip()]
    elif augment == "imagenet":
        head = [T.RandomResizedCrop(resolution), T.RandomHorizontalFlip()]
    else:
        raise DatasetError(f"unknown augment {augment!r}; choose one of {', '.join(AUGMENTS)}")
    return T.Compose(head + _tail(in_channels, mean, std))
