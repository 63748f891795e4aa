"""What a detection training step sees, as a pure function of (SEED, iteration): its batch and
its random numbers. Two runs with one SEED are the same run, and a run resumed at iteration k
continues exactly where it stopped (on the CPU; CUDA kernels are not all deterministic).

detectron2's training loader shuffles with a seed drawn at startup, groups the images by
aspect ratio after the worker processes and augments them with the global numpy RNG of
whichever process maps them: reproducible given the seed, but a resumed run starts its data
again from the first images, and its model draws (RPN and RoI sampling) from another RNG
state. Here:

* each epoch's image order is a permutation seeded by (SEED, epoch); with
  DATALOADER.SAMPLER_TRAIN RepeatFactorTrainingSampler, detectron2's per-image repeat factors
  rounded per epoch by the same generator. Rank r of W takes every W-th image of the endless
  sequence of epochs, as detectron2's TrainingSampler does;
* DATALOADER.ASPECT_RATIO_GROUPING groups those images as detectron2 does (two buckets, wider
  than high or not; a batch when a bucket is full), on the indices in the main process, before
  any image is read: the batches do not depend on DATALOADER.NUM_WORKERS;
* each image is mapped (DatasetMapper: resize, flip, crop) with python, numpy and torch seeded
  from (SEED, epoch, position), in a forked RNG state: the same augmentation whichever process
  maps it, and the caller's RNG untouched;
* resuming at iteration k replays the index stream up to k (no image is read), so the grouping
  buckets hold what they held, and continues with batch k;
* seed_step reseeds python, numpy and torch from (SEED, rank, iteration) before each step, so
  the model's own random draws need no RNG state in the checkpoint, on any number of ranks.
"""

import contextlib
import itertools
import logging
import random

import numpy as np
import torch
from detectron2.data import DatasetFromList, DatasetMapper, get_detection_dataset_dicts
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.utils import comm
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.sampler import epoch_order, hash_seed, sample_seed
from .coco_check import DetectionDataError

logger = logging.getLogger(__name__)


def _seed_all(seed, torch_seed):
    random.seed(seed)
    np.random.seed([seed & 0xFFFFFFFF, seed >> 32])  # numpy takes 32-bit words
    torch_seed(seed)


def seed_step(seed, rank, iteration):
    """Seed python, numpy and torch (every device) for the step `iteration` of `rank`."""
    _seed_all(hash_seed("step", seed, rank, iteration), torch.manual_seed)


@contextlib.contextmanager
def seeded_rng(seed):
    """python, numpy and torch's CPU generator seeded from `seed` inside; the caller's states
    (CUDA's too) are as they were afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        _seed_all(seed, torch.random.default_generator.manual_seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class EpochOrders:
    """The image order of each epoch: a permutation of the images seeded by (seed, epoch), or
    with `repeat_factors` (detectron2's RepeatFactorTrainingSampler factors, >= 1), image i
    repeated floor(f_i) times plus once more with probability frac(f_i), then shuffled."""

    def __init__(self, num_images, seed, repeat_factors=None):
        self.num_images, self.seed = int(num_images), int(seed)
        self.repeat_factors = repeat_factors

    def __call__(self, epoch):
        if self.repeat_factors is None:
            return epoch_order(self.num_images, self.seed, epoch)
        g = torch.Generator()
        g.manual_seed(hash_seed("repeat", self.seed, epoch))
        whole = torch.floor(self.repeat_factors)
        extra = torch.rand(len(whole), generator=g) < self.repeat_factors - whole
        counts = (whole + extra).long()
        images = torch.repeat_interleave(torch.arange(self.num_images), counts)
        return images[torch.randperm(len(images), generator=g)].tolist()


class TrainBatchSampler(Sampler):
    """This rank's endless batches from iteration `start_iter`, each a list of
    `(image index, sample seed)`; see the module docstring. `groups[i]` is image i's aspect
    bucket (None: no grouping, the images in order)."""

    def __init__(self, orders, batch_size, seed, rank=0, world_size=1, groups=None):
        self.orders, self.batch_size, self.seed = orders, int(batch_size), int(seed)
        self.rank, self.world_size, self.groups = int(rank), int(world_size), groups
        self.start_iter = 0

    def _rank_images(self):
        """(epoch, position in the epoch, image index) of this rank's images, from the first."""
        before = 0  # images of the earlier epochs, all ranks together
        for epoch in itertools.count():
            order = self.orders(epoch)
            first = (self.rank - before) % self.world_size
            for position in range(first, len(order), self.world_size):
                yield epoch, position, order[position]
            before += len(order)

    def _batches(self):
        buckets = {}
        for item in self._rank_images():
            bucket = buckets.setdefault(0 if self.groups is None else self.groups[item[2]], [])
            bucket.append(item)
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()

    def __iter__(self):
        for iteration, batch in enumerate(self._batches()):
            if iteration >= self.start_iter:  # the ones before: replayed for the buckets
                yield [(index, sample_seed(self.seed, e, p)) for e, p, index in batch]


class SeededMapDataset(Dataset):
    """Dataset dicts mapped by `mapper` (detectron2's DatasetMapper) under the seed that comes
    with the index: a key is `(index, sample_seed)`."""

    def __init__(self, dataset_dicts, mapper):
        self.dicts = DatasetFromList(dataset_dicts, copy=False)  # serialized: cheap in workers
        self.mapper = mapper

    def __len__(self):
        return len(self.dicts)

    def __getitem__(self, key):
        index, seed = key
        record = self.dicts[index]
        with seeded_rng(seed):
            mapped = self.mapper(record)
        if mapped is None:
            raise DetectionDataError(
                f"The training mapper gave nothing for image {record.get('file_name')!r}; "
                f"a deterministic run needs every image to map."
            )
        return mapped


def _as_list(batch):
    return batch


class DetectionTrainStream:
    """The endless training loader of this rank (lists of mapped dicts, as DefaultTrainer's
    loader gives): `start_at(k)` before the first batch is taken makes batch k the first.
    The DataLoader is made when the first batch is asked for (detectron2's SimpleTrainer calls
    iter() when it is built, before a resumed run knows where it starts)."""

    def __init__(self, dataset, sampler, num_workers, identity):
        self.dataset, self.sampler, self.num_workers = dataset, sampler, int(num_workers)
        self.identity = identity
        self.seed = sampler.seed

    def start_at(self, iteration):
        self.sampler.start_iter = int(iteration)

    def __iter__(self):
        generator = torch.Generator()  # the workers' base seed: not from the global RNG
        generator.manual_seed(hash_seed("workers", self.sampler.seed, self.sampler.rank))
        loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=self.num_workers,
            collate_fn=_as_list,
            generator=generator,
        )
        yield from loader

    def state_dict(self):
        """What identifies the stream (its position is the trainer's iteration)."""
        return dict(self.identity)

    def differences(self, saved):
        """`key old -> new` for each way `saved` (a state_dict) differs from this stream."""
        return [
            f"{key} {saved.get(key)!r} -> {value!r}"
            for key, value in self.identity.items()
            if saved.get(key) != value
        ]


def build_train_stream(cfg):
    """The training loader of DATASETS.TRAIN for this rank (SOLVER.IMS_PER_BATCH / world size
    images a batch), seeded by SEED: DatasetMapper(cfg, True), DATALOADER.SAMPLER_TRAIN,
    ASPECT_RATIO_GROUPING, NUM_WORKERS, FILTER_EMPTY_ANNOTATIONS as detectron2 reads them."""
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=(
            cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
        ),
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    rank, world = comm.get_rank(), comm.get_world_size()
    repeat = None
    if cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler":
        repeat = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dicts, cfg.DATALOADER.REPEAT_THRESHOLD
        )
    groups = None
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
        groups = [0 if d["width"] > d["height"] else 1 for d in dicts]
    batch = cfg.SOLVER.IMS_PER_BATCH // world
    orders = EpochOrders(len(dicts), seed, repeat)
    sampler = TrainBatchSampler(orders, batch, seed, rank, world, groups)
    identity = {
        "seed": seed,
        "images": len(dicts),
        "batch_per_process": batch,
        "processes": world,
        "sampler": cfg.DATALOADER.SAMPLER_TRAIN,
        "aspect_ratio_grouping": groups is not None,
    }
    logger.info(
        f"Training data: {len(dicts)} images, {cfg.DATALOADER.SAMPLER_TRAIN} order seeded by "
        f"SEED {seed}, {batch} a batch per process"
        f"{', grouped by aspect ratio' if groups is not None else ''}."
    )
    dataset = SeededMapDataset(dicts, DatasetMapper(cfg, True))
    return DetectionTrainStream(dataset, sampler, cfg.DATALOADER.NUM_WORKERS, identity)
