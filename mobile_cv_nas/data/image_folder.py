"""A folder of class subfolders of images (the ImageNet layout of torchvision's ImageFolder),
with the mistakes people make checked first so they get a message naming the folder and the
fix, never a torchvision traceback.

The file list is built here rather than by torchvision's os.walk(followlinks=True), which
walks a link to an enclosing folder until the path is too long and counts what a second link
reaches twice. Here every real folder is walked once: a link that leads back to a folder that
contains it (a loop) is not followed (noted in the log), and an image reached by two paths
(two links to one folder or file, a class folder linking into another) is refused with both.
A link that leads nowhere is refused in the dataset folder (it was meant as a class folder)
and left out with a warning in a class folder (an image link is found by the image check).
The order is torchvision's: classes by folder name, then images by folder path and name.
"""

import os
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from .errors import DatasetError
from .image_modes import load_image

#: Paths shown in a message before "and N more".
SHOWN = 5


def _shown(item):
    """`item` as text, quoted when it holds a newline or another unprintable character (a
    message is one line)."""
    text = str(item)
    return text if text.isprintable() else repr(text)


def listing(items, shown=SHOWN):
    """`items` joined with ", ", the first `shown` of them and "and N more"."""
    items = [_shown(i) for i in items]
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _is_dir(entry):
    try:
        return entry.is_dir()
    except OSError:  # a link that loops onto itself
        return False


def _real(entry, real_parent):
    """The real path of a folder entry whose folder's real path is `real_parent`."""
    if entry.is_symlink():
        return os.path.realpath(entry.path)
    return os.path.join(real_parent, entry.name)


def _broken_link(entry):
    """ "path -> target" when `entry` is a link that leads nowhere, else None."""
    if entry.is_symlink() and not os.path.exists(entry.path):
        return f"{entry.path} -> {os.readlink(entry.path)}"
    return None


def _contains(folder, path):
    """Whether real path `folder` is `path` or one of its ancestors."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _Walk:
    """One walk over a dataset's class folders, sharing what it has seen between them."""

    def __init__(self, root):
        self.root_real = os.path.realpath(root)
        self.walking = {self.root_real}  # real paths of the folders being walked
        self.walked = {}  # real folder -> (the path it was walked as, images found under it)
        self.files = {}  # real image file -> the path it was found as
        self.loops = []  # links not followed: they lead to a folder that contains them
        self.left_out = []  # files without an image extension
        self.broken = []  # links without an image extension that lead nowhere

    def images(self, folder):
        """The image paths under `folder`, sorted by folder path, then name."""
        found = []
        self._enter(str(folder), os.path.realpath(folder), self.root_real, found)
        found.sort(key=lambda item: item[0])
        return [os.path.join(path, name) for path, names in found for name in names]

    def _enter(self, path, real, real_parent, found):
        """Walk `path` (real path `real`, entered from the folder `real_parent`) into
        `found`; the number of images under it."""
        if real in self.walking or _contains(real, real_parent):
            self.loops.append(f"{path} -> {real}")
            return 0
        if real in self.walked:
            first, count = self.walked[real]
            if count:
                raise DatasetError(
                    f"{_shown(first)} and {_shown(path)} are the same folder ({_shown(real)}): "
                    f"its {count} images would be counted twice. Remove the link, or copy the "
                    f"images if both classes should hold them."
                )
            return 0
        self.walking.add(real)
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as e:
            raise DatasetError(
                f"cannot list the folder {_shown(path)}: {e.strerror}. Make it readable, or "
                f"remove it."
            ) from None
        names, count = [], 0
        for entry in entries:
            if _is_dir(entry):
                count += self._enter(entry.path, _real(entry, real), real, found)
            elif entry.name.lower().endswith(IMG_EXTENSIONS):
                self._take(entry.path, _real(entry, real))
                names.append(entry.name)
            elif _broken_link(entry):
                self.broken.append(_broken_link(entry))
            else:
                self.left_out.append(entry.path)
        if names:
            found.append((path, names))
        self.walking.discard(real)
        self.walked[real] = (path, count + len(names))
        return count + len(names)

    def _take(self, path, real):
        first = self.files.setdefault(real, path)
        if first != path:
            raise DatasetError(
                f"{_shown(first)} and {_shown(path)} are the same file ({_shown(real)}): it "
                f"would be counted twice. Remove one of the links."
            )


class ImageFolderDataset(Dataset):
    """Images of a folder of class folders: items are (RGB PIL image, class index).

    Attributes as torchvision's ImageFolder (`root`, `classes`, `class_to_idx`, `samples`,
    `targets`), plus `in_channels` (3), `name` and `notes` ((level, message) pairs for the
    run's log: links not followed, files left out).
    """

    in_channels = 3

    def __init__(self, root, classes, samples, name=None, notes=()):
        self.root = str(root)
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = list(samples)
        self.targets = [target for _, target in self.samples]
        self.name = name if name is not None else self.root
        self.notes = list(notes)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        return load_image(path, "RGB"), target

    def without(self, paths):
        """This dataset without the images at `paths`; a class left without images is a
        DatasetError."""
        paths = set(paths)
        samples = [(p, y) for p, y in self.samples if p not in paths]
        emptied = sorted(set(self.targets) - {y for _, y in samples})
        if emptied:
            names = listing(os.path.join(self.root, self.classes[y]) for y in emptied)
            raise DatasetError(
                f"without its {len(self.samples) - len(samples)} unreadable images, "
                f"{len(emptied)} class folder(s) of {self.root} hold no images: {names}. "
                f"Replace the unreadable images."
            )
        return ImageFolderDataset(self.root, self.classes, samples, self.name, self.notes)


def _notes(root, walk):
    notes = []
    if walk.loops:
        notes.append(
            (
                "warning",
                f"{root}: {len(walk.loops)} link(s) not followed, as they lead back to a folder "
                f"that contains them (a loop): {listing(walk.loops)}",
            )
        )
    if walk.broken:
        notes.append(
            (
                "warning",
                f"{root}: {len(walk.broken)} link(s) that lead nowhere left out: "
                f"{listing(walk.broken)}",
            )
        )
    if walk.left_out:
        notes.append(
            (
                "info",
                f"{root}: {len(walk.left_out)} file(s) left out: outside a class folder or "
                f"without an image extension: {listing(walk.left_out)}",
            )
        )
    return notes


def load_image_folder(path, name=None):
    """An RGB dataset over `path` (one subfolder per class, two classes at least; labels in
    sorted folder-name order), with `in_channels = 3` and `name`. `path` must exist. The files
    are listed, not read: `mobile_cv_nas.data.find_bad_images` checks that they decode."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder of class subfolders of images.")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise DatasetError(f"cannot list the folder {root}: {e.strerror}.") from None
    broken = [b for b in map(_broken_link, entries) if b]
    if broken:
        raise DatasetError(
            f"{len(broken)} link(s) in {root} lead nowhere: {listing(broken)}. A class folder "
            f"link must lead to a folder: fix or remove them."
        )
    class_dirs = [e.name for e in entries if _is_dir(e)]
    if not class_dirs:
        raise DatasetError(
            f"{root} holds no class subfolders; an image-folder dataset needs one subfolder per "
            f"class with the images inside (e.g. {root}/cat/001.jpg, {root}/dog/002.png)."
        )
    walk = _Walk(root)
    walk.left_out.extend(e.path for e in entries if not _is_dir(e))
    images = {c: walk.images(root / c) for c in class_dirs}
    empty = [c for c in class_dirs if not images[c]]
    if empty:
        loops = f" (links not followed, as they loop: {listing(walk.loops)})" if walk.loops else ""
        raise DatasetError(
            f"{len(empty)} class folder(s) of {root} hold no images: "
            f"{listing(root / c for c in empty)}{loops}. Accepted extensions: "
            f"{', '.join(IMG_EXTENSIONS)}; add images or remove the folder(s)."
        )
    if len(class_dirs) < 2:
        raise DatasetError(
            f"{root} has one class folder ({class_dirs[0]}): a classifier needs two classes at "
            f"least. Add a folder of images per class."
        )
    samples = [(p, i) for i, c in enumerate(class_dirs) for p in images[c]]
    return ImageFolderDataset(root, class_dirs, samples, name=name, notes=_notes(root, walk))
