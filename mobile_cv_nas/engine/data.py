"""The classification data of a config: datasets (DATA.TRAIN / DATA.TEST), the class subset,
the search's weight/alpha split and the per-process loaders."""

import dataclasses
import logging

from ..data import (
    DatasetError,
    apply_class_subset,
    build_classification_dataset,
    build_eval_loader,
    build_train_loader,
    choose_classes,
    default_mean_std,
    eval_transform,
    split_indices,
    train_transform,
)
from .errors import ConfigError

logger = logging.getLogger(__name__)


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


def build_datasets(cfg, train=True):
    """DATA.TRAIN (when `train`) and DATA.TEST, restricted to the same class subset."""
    test = build_classification_dataset(cfg.DATA.TEST)
    reference = build_classification_dataset(cfg.DATA.TRAIN) if train else test
    classes = list(reference.classes)
    if cfg.DATA.CLASS_FRACTION != 1.0:
        classes = choose_classes(classes, _class_choice(cfg.DATA.CLASS_FRACTION), cfg.SEED)
        logger.info(f"Class subset (DATA.CLASS_FRACTION={cfg.DATA.CLASS_FRACTION}): {classes}")
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
    return Datasets(
        train=apply_class_subset(reference, classes) if train else None,
        test=apply_class_subset(test, classes),
        classes=classes,
        in_channels=in_channels,
        mean=tuple(mean),
        std=tuple(std),
    )


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
