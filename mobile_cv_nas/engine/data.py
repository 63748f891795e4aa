"""The classification data of a config: datasets (DATA.TRAIN / DATA.TEST), the class subset,
the check that every image decodes, the search's weight/alpha split and the per-process
loaders."""

import dataclasses
import itertools
import logging
import os
import sys

from detectron2.utils import comm

from ..data import (
    DatasetError,
    apply_class_subset,
    build_classification_dataset,
    build_eval_loader,
    build_train_loader,
    choose_classes,
    default_mean_std,
    describe_bad_images,
    eval_transform,
    find_bad_images,
    split_indices,
    train_transform,
)
from .errors import ConfigError

logger = logging.getLogger(__name__)

#: Image checks of at least this many images print their progress (on stderr: the run's log
#: is not open yet).
PROGRESS_MIN = 20000
MAX_CHECK_THREADS = 32


def _class_choice(value):
    """DATA.CLASS_FRACTION: a share when <= 1.0, else a count of classes."""
    if value > 1:
        if value != int(value):
            raise DatasetError(f"DATA.CLASS_FRACTION {value} > 1 must be a whole count.")
        return int(value)
    return float(value)


@dataclasses.dataclass
class Datasets:
    train: object
    test: object
    classes: list
    in_channels: int
    mean: tuple
    std: tuple
    #: (level, message) pairs for the run's log, which is opened after the data is built
    notes: list = dataclasses.field(default_factory=list)

    def log_notes(self):
        for level, message in self.notes:
            getattr(logger, level)(message)


def build_datasets(cfg, train=True):
    """DATA.TRAIN (when `train`) and DATA.TEST, restricted to the same class subset, two
    classes at least, every image of the subset checked to decode (DATA.SKIP_BAD_IMAGES)."""
    test = build_classification_dataset(cfg.DATA.TEST)
    reference = build_classification_dataset(cfg.DATA.TRAIN) if train else test
    classes = list(reference.classes)
    notes = []
    if cfg.DATA.CLASS_FRACTION != 1.0:
        classes = choose_classes(classes, _class_choice(cfg.DATA.CLASS_FRACTION), cfg.SEED)
        notes.append(
            ("info", f"Class subset (DATA.CLASS_FRACTION={cfg.DATA.CLASS_FRACTION}): {classes}")
        )
        if len(classes) < 2:
            key = "DATA.TRAIN" if train else "DATA.TEST"
            raise DatasetError(
                f"DATA.CLASS_FRACTION = {cfg.DATA.CLASS_FRACTION} keeps {len(classes)} of the "
                f"{len(reference.classes)} classes of {key} ({reference.name}): a classifier "
                f"needs two at least. Use a fraction of at least {2 / len(reference.classes):.3g} "
                f"or a count >= 2."
            )
    if train and list(test.classes) != list(reference.classes):
        raise DatasetError(
            f"DATA.TRAIN ({cfg.DATA.TRAIN}) and DATA.TEST ({cfg.DATA.TEST}) have different "
            f"classes ({len(reference.classes)} vs {len(test.classes)}; first difference: "
            f"{_first_difference(reference.classes, test.classes)}): give both the same class "
            f"folders."
        )
    if test.in_channels != reference.in_channels:
        raise DatasetError("DATA.TRAIN and DATA.TEST have different numbers of channels.")
    in_channels = reference.in_channels
    mean, std = default_mean_std(in_channels, cfg.DATA.TRAIN if train else cfg.DATA.TEST)
    if cfg.DATA.MEAN or cfg.DATA.STD:
        mean, std = tuple(cfg.DATA.MEAN), tuple(cfg.DATA.STD)
        if len(mean) not in (1, in_channels):
            raise DatasetError(
                f"DATA.MEAN / DATA.STD have {len(mean)} values; the data has {in_channels} "
                f"channel(s): give one value per channel, or one for all."
            )
    named = {"DATA.TRAIN": reference, "DATA.TEST": test} if train else {"DATA.TEST": test}
    checked = _without_bad_images(cfg, named, classes, notes)
    return Datasets(
        train=apply_class_subset(checked["DATA.TRAIN"], classes) if train else None,
        test=apply_class_subset(checked["DATA.TEST"], classes),
        classes=classes,
        in_channels=in_channels,
        mean=tuple(mean),
        std=tuple(std),
        notes=notes,
    )


def _check_threads():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_CHECK_THREADS, (cpus or 1) // comm.get_local_size()))


def _progress(key, total):
    """A callback printing this process's progress through its share of `total` images, on
    the main process of a large check; None otherwise."""
    world = comm.get_world_size()
    if not comm.is_main_process() or total < PROGRESS_MIN:
        return None
    share = len(range(0, total, world))
    print(f"Checking that the {total:,} images of {key} decode ...", file=sys.stderr, flush=True)
    shown = [0]

    def report(done):
        percent = 100 * done // share
        if percent >= shown[0] + 10:
            shown[0] = percent - percent % 10
            print(f"{key}: {shown[0]}% of the images checked", file=sys.stderr, flush=True)

    return report


def _bad_images(key, paths):
    """[(path, problem)] of `paths`, in their order; each process checks its share."""
    rank, world = comm.get_rank(), comm.get_world_size()
    mine = find_bad_images(paths[rank::world], _check_threads(), _progress(key, len(paths)))
    order = {path: i for i, path in enumerate(paths)} if world > 1 else None
    bad = list(itertools.chain.from_iterable(comm.all_gather(mine)))
    return sorted(bad, key=lambda item: order[item[0]]) if order else bad


def _without_bad_images(cfg, named, classes, notes):
    """`named` ({key: dataset}) with every image of `classes` checked: an image that cannot
    be read is a DatasetError naming it, or with DATA.SKIP_BAD_IMAGES left out (noted, with
    the notes of the folder walk)."""
    folders = {}  # real folder -> its keys: DATA.TRAIN and DATA.TEST may be one folder
    for key, dataset in named.items():
        if hasattr(dataset, "samples"):  # not decoded in memory (as Fashion-MNIST is)
            folders.setdefault(os.path.realpath(dataset.root), []).append(key)
    problems, checked = [], dict(named)
    for keys in folders.values():
        dataset = named[keys[0]]
        notes += [(level, f"{' and '.join(keys)}: {text}") for level, text in dataset.notes]
        wanted = {dataset.class_to_idx[c] for c in classes}
        paths = [p for p, y in dataset.samples if y in wanted]
        bad = _bad_images(" and ".join(keys), paths)
        if not bad:
            continue
        summary = (
            f"{' and '.join(keys)} ({dataset.name}): {len(bad)} of {len(paths)} images cannot "
            f"be read: {describe_bad_images(bad)}"
        )
        if not cfg.DATA.SKIP_BAD_IMAGES:
            problems.append(summary)
            continue
        for key in keys:
            try:
                checked[key] = named[key].without(path for path, _ in bad)
            except DatasetError as e:  # a class left empty
                raise DatasetError(f"{summary}; {e}") from None
        notes.append(("warning", f"{summary}. Left out (DATA.SKIP_BAD_IMAGES True)."))
    if problems:
        raise DatasetError(
            f"{'; '.join(problems)}. Replace or remove them, or set DATA.SKIP_BAD_IMAGES True "
            f"to leave them out."
        )
    return checked


def _first_difference(a, b):
    for x, y in zip(a, b, strict=False):
        if x != y:
            return f"{x!r} vs {y!r}"
    return f"{len(a)} vs {len(b)} classes"


def check_resize(resize, resolution):
    """DATA.RESIZE (the shorter side before the center crop) below the crop would pad the
    evaluation images with black borders."""
    if resize and resize < resolution:
        raise ConfigError(
            f"DATA.RESIZE = {resize} is below the input size {resolution}: the center crop "
            f"would pad the images with zeros. Use DATA.RESIZE >= {resolution}, or 0 (no "
            f"resize)."
        )


def per_process_batch(cfg, world_size):
    total = cfg.SOLVER.IMS_PER_BATCH
    if total % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total}) is the total batch over {world_size} processes "
            f"and must divide evenly."
        )
    return total // world_size


class SearchData:
    """The search's data: the weight and alpha parts of DATA.TRAIN (NAS.WEIGHT_FRACTION),
    each an endless, resumable, per-process batch stream, and DATA.TEST for the end."""

    def __init__(self, cfg, datasets, resolution, rank=0, world_size=1):
        self.cfg, self.datasets, self.rank, self.world_size = cfg, datasets, rank, world_size
        self.resolution = resolution
        check_resize(cfg.DATA.RESIZE, resolution)
        self.batch_size = per_process_batch(cfg, world_size)
        self.weight_indices, self.alpha_indices = split_indices(
            datasets.train.targets, cfg.NAS.WEIGHT_FRACTION, cfg.SEED
        )
        for part, indices in (("weight", self.weight_indices), ("alpha", self.alpha_indices)):
            if len(indices) < cfg.SOLVER.IMS_PER_BATCH:
                raise DatasetError(
                    f"The {part} part of DATA.TRAIN ({cfg.DATA.TRAIN}) has {len(indices)} "
                    f"images, fewer than one batch (SOLVER.IMS_PER_BATCH="
                    f"{cfg.SOLVER.IMS_PER_BATCH}): use more data or a smaller batch."
                )
        d = datasets
        self.transform = train_transform(resolution, d.in_channels, d.mean, d.std, cfg.DATA.AUGMENT)
        global_batch = self.batch_size * world_size
        self.iters_per_epoch = cfg.SOLVER.EPOCH_ITERS or len(self.weight_indices) // global_batch

    def _loader(self, indices, seed, start_iter):
        return build_train_loader(
            self.datasets.train,
            self.transform,
            self.batch_size,
            seed,
            indices=indices,
            rank=self.rank,
            world_size=self.world_size,
            start_iter=start_iter,
            num_workers=self.cfg.DATALOADER.NUM_WORKERS,
        )

    def weight_loader(self, start_iter):
        return self._loader(self.weight_indices, self.cfg.SEED, start_iter)

    def alpha_loader(self, start_iter):
        return self._loader(self.alpha_indices, self.cfg.SEED + 1, start_iter)

    def eval_loader(self):
        d = self.datasets
        resize = self.cfg.DATA.RESIZE or None
        transform = eval_transform(self.resolution, d.in_channels, d.mean, d.std, resize=resize)
        return build_eval_loader(
            d.test,
            transform,
            self.batch_size,
            self.rank,
            self.world_size,
            self.cfg.DATALOADER.NUM_WORKERS,
        )
