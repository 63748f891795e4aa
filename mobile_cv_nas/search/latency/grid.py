"""Interpolation: a space with more widths than can be measured gets a grid of them measured,
and the rest multilinearly interpolated.

Configurations that differ only in their widths (the same op, stride, input size, and the
same structure: an expansion conv or not, a residual / identity or not) form a group; within a
group the widths (input, mid, output: `BlockConfig.coordinates`) are the interpolation
coordinates. The grid of a group takes, per coordinate, `points` of the widths the space uses
(all of them when it uses no more), spread evenly over their range, both ends included, and is
measured at every combination of those (`grid_configs`). A configuration off the grid gets the
multilinear interpolation of the 2^d grid points around it (`GridIndex.lookup`). Where the
input and output ranges of a stride-1 block overlap, a grid point may have equal widths: it is
measured as its group's blocks are built (no residual add, a skip's projection; key `id=0`),
and the blocks of the space that do have equal widths form a group of their own.

Why multilinear: a block's work is a sum of terms each linear in one width or in the product
of two (a 1x1 conv: in x mid, mid x out; a depthwise conv: mid), which multilinear
interpolation reproduces exactly; what it misses is how far latency is from proportional to
work (kernels that favour widths of a multiple of 8 or 16, cache sizes). The build measures
that error on held-out configurations (`tools/build_latency_lut.py --check-interpolation`);
README, "Latency tables", has the figures.
"""

from __future__ import annotations

import bisect
import collections
import itertools

import torch

from .configs import BlockConfig


def spread(values, points):
    """`points` of the sorted distinct `values`, evenly spread over their range (both ends
    included); all of them when there are no more than `points` (or `points` is 0)."""
    values = sorted(set(values))
    if points <= 0 or len(values) <= points:
        return values
    if points == 1:
        return [values[0], values[-1]]
    low, high = values[0], values[-1]
    chosen = []
    for i in range(points):
        aim = low + (high - low) * i / (points - 1)
        best = min(values, key=lambda v: (abs(v - aim), v))
        if best not in chosen:
            chosen.append(best)
    return sorted(chosen)


def grid_configs(configs, points) -> list[BlockConfig]:
    """The configurations to measure for `configs` (those a space produces): per group, every
    combination of the chosen widths of each coordinate (`spread`), or the group's own
    configurations where they are no more; with `points` 0, `configs` themselves."""
    configs = sorted(set(configs))
    if points <= 0:
        return configs
    groups = collections.defaultdict(list)
    for config in configs:
        groups[config.group()].append(config)
    out = set()
    for members in groups.values():
        coords = [c.coordinates() for c in members]
        axes = [spread([c[d] for c in coords], points) for d in range(len(coords[0]))]
        grid = [members[0].with_coordinates(p) for p in itertools.product(*axes)]
        # a group with no more configurations than grid points is measured as it is
        out.update(members if len(members) <= len(grid) else grid)
    return sorted(out)


class GridIndex:
    """The measured entries of a table by group, for exact look-ups and interpolation."""

    def __init__(self, entries):
        """`entries`: {BlockConfig: milliseconds}."""
        self.values = {}  # group -> {coordinates: ms}
        for config, ms in entries.items():
            self.values.setdefault(config.group(), {})[config.coordinates()] = float(ms)
        self.axes = {}
        for group, points in self.values.items():
            dims = len(next(iter(points)))
            self.axes[group] = [sorted({p[d] for p in points}) for d in range(dims)]

    def lookup(self, config: BlockConfig) -> tuple[float, bool] | None:
        """(milliseconds, measured exactly) for `config`, or None where neither a measurement
        nor a full cell of grid points around it is there (no extrapolation)."""
        points = self.values.get(config.group())
        if points is None:
            return None
        coords = config.coordinates()
        if coords in points:
            return points[coords], True
        brackets = []
        for value, axis in zip(coords, self.axes[config.group()], strict=True):
            at = bisect.bisect_left(axis, value)
            if at < len(axis) and axis[at] == value:
                brackets.append(((value, 1.0),))
            elif 0 < at < len(axis):
                low, high = axis[at - 1], axis[at]
                w = (value - low) / (high - low)
                brackets.append(((low, 1.0 - w), (high, w)))
            else:
                return None  # outside the measured range
        total = 0.0
        for corner in itertools.product(*brackets):
            point = tuple(v for v, _ in corner)
            if point not in points:
                return None
            weight = 1.0
            for _, w in corner:
                weight *= w
            total += weight * points[point]
        return total, False


def suspect_points(entries, threshold):
    """The configurations of `entries` ({BlockConfig: ms}) measured more than `threshold`
    (relative) above the least-squares multilinear fit of their group: most likely slowed by
    another process while they were timed (on a shared machine contention only ever adds
    time), and every interpolation near them would carry it. Groups with no more points than
    the fit has terms are not judged."""
    groups = collections.defaultdict(dict)
    for config, ms in entries.items():
        groups[config.group()][config] = float(ms)
    suspects = []
    for points in groups.values():
        configs = sorted(points)
        coords = torch.tensor([c.coordinates() for c in configs], dtype=torch.float64)
        low, high = coords.min(0).values, coords.max(0).values
        varying = (high > low).nonzero().flatten().tolist()
        if not varying or len(configs) <= 2 ** len(varying):
            continue
        x = (coords[:, varying] - low[varying]) / (high[varying] - low[varying])
        terms = [
            x[:, list(subset)].prod(1) if subset else torch.ones(len(configs), dtype=x.dtype)
            for n in range(len(varying) + 1)
            for subset in itertools.combinations(range(len(varying)), n)
        ]
        design = torch.stack(terms, 1)
        values = torch.tensor([points[c] for c in configs], dtype=torch.float64)
        fit = design @ torch.linalg.lstsq(design, values[:, None]).solution.flatten()
        for config, value, expected in zip(configs, values.tolist(), fit.tolist(), strict=True):
            if expected > 0 and value > expected * (1 + threshold):
                suspects.append(config)
    return suspects
