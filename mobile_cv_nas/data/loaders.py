"""Training and evaluation DataLoaders.

Training: EpochBatchSampler hands out `(index, sample_seed)` pairs and SeededTransformDataset
runs each sample's random transform under its own seed, in a forked RNG, so the batches and
their augmentation depend only on (seed, iteration): not on the number of workers, on which
worker got the sample, or on whether the run was resumed.
Evaluation: every sample exactly once across ranks, in order, nothing dropped.
"""

import torch
from torch.utils.data import DataLoader, Dataset

from .errors import DatasetError
from .sampler import EpochBatchSampler


class SeededTransformDataset(Dataset):
    """`base` seen through `indices` (e.g. one part of the 80/20 split), items transformed.

    An item key is `(index, sample_seed)`: the transform runs after
    `torch.manual_seed(sample_seed)` inside `torch.random.fork_rng(devices=[])`, so it is
    reproducible and the caller's CPU RNG is untouched. A plain int key applies the transform
    unseeded (evaluation transforms are deterministic). Items are `(tensor, int label)`.
    """

    def __init__(self, base, indices=None, transform=None):
        self.base = base
        self.indices = list(indices) if indices is not None else None
        self.transform = transform

    def __len__(self):
        return len(self.indices) if self.indices is not None else len(self.base)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        if self.indices is not None:
            index = self.indices[index]
        image, label = self.base[index]
        if self.transform is not None:
            if seed is None:
                image = self.transform(image)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    image = self.transform(image)
        return image, int(label)


def _loader_kwargs(num_workers):
    return dict(num_workers=num_workers, persistent_workers=num_workers > 0)


def build_train_loader(
    dataset,
    transform,
    batch_size,
    seed,
    indices=None,
    rank=0,
    world_size=1,
    start_iter=0,
    num_workers=0,
):
    """An endless DataLoader of `(images [B, C, H, W] float, labels [B] long)` over
    `dataset` (restricted to `indices` if given), from iteration `start_iter` on.

    The loader carries `.batch_sampler` (the EpochBatchSampler) and `.iters_per_epoch`.
    """
    seeded = SeededTransformDataset(dataset, indices, transform)
    sampler = EpochBatchSampler(len(seeded), batch_size, seed, rank, world_size, start_iter)
    loader = DataLoader(seeded, batch_sampler=sampler, **_loader_kwargs(num_workers))
    loader.iters_per_epoch = sampler.iters_per_epoch
    return loader


def eval_indices(num_samples, rank=0, world_size=1):
    """Rank `rank`'s share of the evaluation samples: rank, rank + W, rank + 2W, ..."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise DatasetError(f"eval loader: rank {rank} is not in 0..{world_size - 1}")
    return range(rank, num_samples, world_size)


def build_eval_loader(dataset, transform, batch_size, rank=0, world_size=1, num_workers=0):
    """A DataLoader over this rank's share of `dataset` (eval_indices), in order, keeping the
    last partial batch. Across ranks every sample is seen exactly once, so the caller sums the
    correct counts (and the sample counts) over ranks rather than averaging accuracies; shares
    differ by at most one sample, and a rank's share can be empty when W > N.
    """
    if batch_size < 1:
        raise DatasetError(f"eval loader: batch_size must be >= 1, got {batch_size}")
    seeded = SeededTransformDataset(dataset, None, transform)
    sampler = eval_indices(len(seeded), rank, world_size)
    loader = DataLoader(
        seeded,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=False,
        **_loader_kwargs(num_workers),
    )
    loader.num_samples = len(sampler)
    return loader
