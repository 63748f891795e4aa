"""Subsets of a classification dataset: a random share of its classes (the paper searches on
10% of ImageNet's classes) and the train split into weight and architecture parts (80/20).

Class subsets are chosen from the class names alone (`choose_classes`), so the same seed picks
the same classes for train and val, then applied to each split (`apply_class_subset`).
"""

import numbers

import torch
from torch.utils.data import Dataset

from .errors import DatasetError


def _generator(seed):
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def choose_classes(classes, fraction_or_count, seed):
    """The chosen class names, in their original order: a float in (0, 1] is a share of the
    classes (rounded, at least one), an int a count. Note `1` is one class, `1.0` all of them.
    A function of (classes, fraction_or_count, seed) only."""
    n = len(classes)
    if isinstance(fraction_or_count, bool) or not isinstance(fraction_or_count, numbers.Real):
        raise DatasetError(
            f"class subset: expected a fraction or a count, got {fraction_or_count!r}"
        )
    if isinstance(fraction_or_count, numbers.Integral):
        k = int(fraction_or_count)
        if not 1 <= k <= n:
            raise DatasetError(f"class subset: count {k} is not in 1..{n} (the number of classes)")
    else:
        if not 0.0 < fraction_or_count <= 1.0:
            raise DatasetError(f"class subset: fraction {fraction_or_count} is not in (0, 1]")
        k = max(1, round(fraction_or_count * n))
    chosen = torch.randperm(n, generator=_generator(seed))[:k].sort().values.tolist()
    return [classes[i] for i in chosen]


class ClassSubset(Dataset):
    """The samples of `base` whose class is in `class_names`, labels renumbered 0..k-1 in the
    order of `class_names`."""

    def __init__(self, base, class_names):
        missing = [c for c in class_names if c not in base.classes]
        if missing:
            raise DatasetError(
                f"class subset: {getattr(base, 'name', base)} has no class(es) {missing}; "
                f"train and val must have the same class names."
            )
        new_label = {base.classes.index(c): i for i, c in enumerate(class_names)}
        self.base = base
        self.indices = [i for i, y in enumerate(base.targets) if int(y) in new_label]
        self.targets = [new_label[int(base.targets[i])] for i in self.indices]
        self.classes = list(class_names)
        self.in_channels = base.in_channels
        self.name = base.name

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        image, _ = self.base[self.indices[index]]
        return image, self.targets[index]


def apply_class_subset(dataset, class_names):
    """`dataset` restricted to `class_names` (from choose_classes); unchanged when that is all
    of its classes in their order."""
    if list(class_names) == list(dataset.classes):
        return dataset
    return ClassSubset(dataset, class_names)


def class_subset(dataset, fraction_or_count, seed):
    """`dataset` restricted to a seeded random subset of its classes (see choose_classes);
    the same arguments on train and val give the same classes."""
    return apply_class_subset(dataset, choose_classes(dataset.classes, fraction_or_count, seed))


def split_indices(num_samples_or_targets, fraction, seed):
    """(first, second): sorted disjoint index lists covering 0..N-1, `fraction` of them in
    `first` (the weight part; the rest trains the architecture).

    Given the targets (a sequence of labels) instead of N, the split is stratified: each class
    is split by `fraction` on its own, so both parts keep the class balance.
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"split fraction {fraction} is not in (0, 1)")
    g = _generator(seed)
    if isinstance(num_samples_or_targets, numbers.Integral):
        groups = [list(range(int(num_samples_or_targets)))]
    else:
        by_class = {}
        for i, y in enumerate(num_samples_or_targets):
            by_class.setdefault(int(y), []).append(i)
        groups = [by_class[y] for y in sorted(by_class)]
    first, second = [], []
    for members in groups:
        order = torch.randperm(len(members), generator=g).tolist()
        k = round(fraction * len(members))
        first.extend(members[j] for j in order[:k])
        second.extend(members[j] for j in order[k:])
    total = len(first) + len(second)
    if not first or not second:
        raise DatasetError(
            f"splitting {total} samples by {fraction} leaves a part empty "
            f"({len(first)} / {len(second)}); use more samples or a fraction nearer 0.5."
        )
    return sorted(first), sorted(second)
