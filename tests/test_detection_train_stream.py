"""mobile_cv_nas.detection.train_stream without training: the batches of a resumed stream are
the uninterrupted stream's from that iteration on (aspect-ratio buckets, several ranks, epoch
boundaries, repeat factors), and an image's augmentation and a step's random numbers depend on
their seeds only. The runs (same SEED, same weights; kill -9 then --resume) are in
test_detection_train.py."""

import itertools
import random

import numpy as np
import torch

from mobile_cv_nas.detection.train_stream import (
    DetectionTrainStream,
    EpochOrders,
    SeededMapDataset,
    TrainBatchSampler,
    seed_step,
)

#: 23 images, about a third of them higher than wide (bucket 1)
GROUPS = [int(i % 3 == 0) for i in range(23)]


def _batches(sampler, count, start_iter=0):
    sampler.start_iter = start_iter
    return list(itertools.islice(iter(sampler), count))


def test_resumed_stream_continues_the_uninterrupted_one():
    """Rank r of 2, batches of 3 grouped by aspect ratio over 8 epochs: started at k, the
    stream is the uninterrupted one from batch k (the buckets replayed, not emptied)."""
    for rank in (0, 1):
        sampler = TrainBatchSampler(EpochOrders(23, seed=5), 3, 5, rank, 2, GROUPS)
        whole = _batches(sampler, 30)
        for k in (1, 4, 17, 29):
            assert _batches(sampler, 30 - k, start_iter=k) == whole[k:]
        for batch in whole:  # one bucket a batch
            assert len(batch) == 3 and len({GROUPS[i] for i, _ in batch}) == 1
        assert whole != _batches(TrainBatchSampler(EpochOrders(23, 6), 3, 6, rank, 2, GROUPS), 30)


def test_ranks_share_each_epoch():
    """Without grouping, rank r of W takes every W-th image of each epoch's order: over one
    epoch the ranks see each image once, with distinct sample seeds."""
    orders = EpochOrders(24, seed=1)
    seen = []
    for rank in range(3):
        sampler = TrainBatchSampler(orders, 2, 1, rank, 3)
        seen += [item for batch in _batches(sampler, 4) for item in batch]  # 3 x 4 x 2 = 24
    assert sorted(i for i, _ in seen) == list(range(24))
    assert len({s for _, s in seen}) == 24
    assert orders(0) != orders(1) and orders(0) == EpochOrders(24, seed=1)(0)


def test_repeat_factors_round_per_epoch():
    """RepeatFactorTrainingSampler's factors: image i appears floor(f) or ceil(f) times in an
    epoch, the rounding drawn per epoch from (seed, epoch)."""
    factors = torch.tensor([1.0, 1.5, 2.0, 3.25, 1.0, 1.75] * 5)
    orders = EpochOrders(len(factors), seed=3, repeat_factors=factors)
    epochs = [orders(e) for e in range(4)]
    for order in epochs:
        counts = torch.bincount(torch.tensor(order), minlength=len(factors)).float()
        assert torch.all(counts >= factors.floor()) and torch.all(counts <= factors.ceil())
    assert epochs[0] == orders(0) and len({tuple(o) for o in epochs}) == 4


def _random_mapper(record):
    """A mapper drawing from python's, numpy's and torch's global RNGs, as augmentations do."""
    return {
        "id": record["id"],
        "draws": (random.random(), float(np.random.rand()), float(torch.rand(()))),
    }


def test_an_image_is_mapped_under_its_seed():
    """The same (index, seed) maps alike whatever the global RNG state, another seed maps
    otherwise, and the caller's RNG states are as they were."""
    dataset = SeededMapDataset([{"id": i} for i in range(4)], _random_mapper)
    first = dataset[(2, 11)]
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    assert dataset[(2, 11)] == first and first["id"] == 2
    assert dataset[(2, 12)]["draws"] != first["draws"]
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_step_seed_depends_on_seed_rank_and_iteration():
    def draws(*key):
        seed_step(*key)
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    assert draws(7, 0, 5) == draws(7, 0, 5)
    assert len({draws(7, 0, 5), draws(7, 1, 5), draws(7, 0, 6), draws(8, 0, 5)}) == 4


def test_a_stream_names_what_changed():
    """A checkpoint's data_stream against this run's: the keys that differ, old -> new."""
    sampler = TrainBatchSampler(EpochOrders(10, 1), 2, 1)
    identity = {"seed": 1, "images": 10, "processes": 1}
    stream = DetectionTrainStream(SeededMapDataset([{}] * 10, dict), sampler, 0, identity)
    assert stream.differences(stream.state_dict()) == []
    saved = {"seed": 1, "images": 12, "processes": 2}
    assert stream.differences(saved) == ["images 12 -> 10", "processes 2 -> 1"]
