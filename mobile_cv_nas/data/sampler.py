"""Deterministic, resumable training batches, the same on any number of workers and ranks.

Iteration `it` (global, from 0) belongs to epoch `it // iters_per_epoch`. Each epoch's order is
`torch.randperm(num_samples)` from a generator seeded by (seed, epoch); the global batch of an
iteration is the next `batch_size * world_size` indices of that order and rank r takes the r-th
`batch_size` slice, so ranks see disjoint samples. The partial batch at an epoch's end is
dropped. Every index comes with a per-sample seed, a hash of (seed, epoch, position in the
epoch), that seeds its augmentation (SeededTransformDataset): the stream is a pure function
of the iteration number, so resuming is just starting at that iteration.
"""

import hashlib

import torch
from torch.utils.data import Sampler

from .errors import DatasetError

_SEED_MASK = (1 << 63) - 1


def hash_seed(*values):
    """A 63-bit seed from `values` (their text): stable across processes, runs and versions of
    Python, unlike hash()."""
    digest = hashlib.blake2b(":".join(map(str, values)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _SEED_MASK


def epoch_order(num_samples, seed, epoch):
    """The sample order of `epoch`: a permutation of 0..num_samples-1."""
    g = torch.Generator()
    g.manual_seed(hash_seed("epoch", seed, epoch))
    return torch.randperm(num_samples, generator=g).tolist()


def sample_seed(seed, epoch, position):
    """The augmentation seed of the sample at `position` of `epoch`'s order (63 bits)."""
    return hash_seed("sample", seed, epoch, position)


class EpochBatchSampler(Sampler):
    """An infinite batch sampler for `DataLoader(batch_sampler=...)`; each batch is a list of
    `(index, sample_seed)` pairs (see the module docstring).

    Resuming: pass `start_iter` = the number of iterations already trained (the trainer's count,
    not anything read off the sampler: a DataLoader's workers prefetch ahead of training). From
    there it yields exactly what an uninterrupted sampler yields. `state_dict()` records what
    identifies the stream; `load_state_dict(state, start_iter)` checks it and sets `start_iter`.
    """

    def __init__(self, num_samples, batch_size, seed, rank=0, world_size=1, start_iter=0):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or start_iter < 0:
            raise DatasetError(
                f"EpochBatchSampler: need batch_size >= 1, world_size >= 1, 0 <= rank < "
                f"world_size and start_iter >= 0; got batch_size={batch_size}, rank={rank}, "
                f"world_size={world_size}, start_iter={start_iter}"
            )
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start_iter = int(start_iter)
        global_batch = self.batch_size * self.world_size
        self.iters_per_epoch = self.num_samples // global_batch
        if self.iters_per_epoch == 0:
            raise DatasetError(
                f"the dataset has {self.num_samples} samples, fewer than one global batch of "
                f"{global_batch} (batch size {self.batch_size} x {self.world_size} rank(s)); "
                f"lower the batch size or use more data."
            )

    def batch(self, iteration, order=None):
        """This rank's batch at global `iteration` (`order`: that epoch's, if at hand)."""
        epoch, step = divmod(iteration, self.iters_per_epoch)
        if order is None:
            order = epoch_order(self.num_samples, self.seed, epoch)
        start = (step * self.world_size + self.rank) * self.batch_size
        return [
            (order[p], sample_seed(self.seed, epoch, p))
            for p in range(start, start + self.batch_size)
        ]

    def __iter__(self):
        iteration = self.start_iter
        epoch, order = None, None
        while True:
            if iteration // self.iters_per_epoch != epoch:
                epoch = iteration // self.iters_per_epoch
                order = epoch_order(self.num_samples, self.seed, epoch)
            yield self.batch(iteration, order)
            iteration += 1

    def state_dict(self):
        """What identifies the stream (no position: see the class docstring)."""
        return {
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state, start_iter):
        """Continue the stream of `state` (checked: the same sizes, seed and world size) at
        `start_iter`, the trainer's count of iterations done."""
        for key, value in state.items():
            if value != getattr(self, key):
                raise DatasetError(
                    f"EpochBatchSampler: the saved state has {key}={value}, this sampler "
                    f"{getattr(self, key)}; resuming would not continue the same stream."
                )
        self.start_iter = int(start_iter)
