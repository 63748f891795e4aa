"""`build_classification_dataset`: one string names the data, a built-in Fashion-MNIST split or
a folder of class subfolders, so configs and the command line need nothing else.

Every dataset returned has `classes`, `targets` (ints, one per sample), `in_channels` and
`name` (the source string).
"""

import difflib
from pathlib import Path

from .errors import DatasetError
from .fashion_mnist import load_fashion_mnist, load_subset
from .image_folder import load_image_folder

#: name -> (loader, split)
BUILTINS = {
    "fashion_mnist_train": (load_fashion_mnist, "train"),
    "fashion_mnist_val": (load_fashion_mnist, "val"),
    "fashion_mnist_subset_train": (load_subset, "train"),
    "fashion_mnist_subset_val": (load_subset, "val"),
}
SPLITS = ("train", "val")


def _resolve(source, split):
    """The source string meant by `source` and the optional `split`."""
    if split is None:
        return source
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS} or None, got {split!r}")
    if f"{source}_{split}" in BUILTINS:
        return f"{source}_{split}"
    if source in BUILTINS:
        if not source.endswith(f"_{split}"):
            raise DatasetError(f"{source!r} is not the {split} split; drop split= or fix the name")
        return source
    if (Path(source) / split).is_dir():
        return str(Path(source) / split)
    return source


def build_classification_dataset(source, split=None):
    """The dataset named by `source`:

    - "fashion_mnist_train" / "fashion_mnist_val": the full Fashion-MNIST (60k / 10k, val is
      the official test split) when installed, else the embedded subset (logged);
    - "fashion_mnist_subset_train" / "fashion_mnist_subset_val": always the embedded subset;
    - anything else: a folder with one subfolder of images per class (RGB, in_channels 3).

    `split` ("train" or "val"), if given, completes a base name ("fashion_mnist" ->
    "fashion_mnist_train") or picks the `split` subfolder of a folder that has one (the
    ImageNet layout root/train, root/val). Raises DatasetError with the fix on bad input.
    """
    if not isinstance(source, (str, Path)) or not str(source):
        raise DatasetError(f"dataset source must be a name or a folder path, got {source!r}")
    source = _resolve(str(source), split)
    if source in BUILTINS:
        loader, split_name = BUILTINS[source]
        return loader(split_name, name=source)
    if not Path(source).exists():
        raise DatasetError(_not_found_message(source))
    return load_image_folder(source, name=source)


def _not_found_message(source):
    names = ", ".join(BUILTINS)
    message = (
        f"dataset source {source!r}: no such folder ({Path(source).absolute()}) and not a "
        f"built-in name ({names}). Pass a built-in name or an existing folder with one "
        f"subfolder of images per class."
    )
    close = difflib.get_close_matches(source.lower(), BUILTINS, n=1, cutoff=0.6)
    if close:
        message += f" Did you mean {close[0]!r}?"
    return message
