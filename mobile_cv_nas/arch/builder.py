"""Build modules from an arch def, with the official module names.

The classifier is `backbone.stages.xif<stage>_<block>` + `head.conv`, so official checkpoints
load unchanged. The backbone can also return per-stage features for detection.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn as nn

from ..blocks import BLOCK_REGISTRY, InvertedPool
from .schema import ArchDef, check_num_classes, parse_arch_def


def block_kwargs(arch, block, norm=None):
    """Keyword arguments for one block's builder: the arch's width divisor and block defaults,
    then the row's own fields and options, and `norm` when given; only those the op takes."""
    options = {"stride": block.stride, "width_divisor": arch.width_divisor}
    if block.expansion is not None:
        options["expansion"] = block.expansion
    options.update(arch.block_defaults)
    options.update(block.options)
    if norm is not None:
        options["norm"] = norm
    return BLOCK_REGISTRY.select_options(block.op, options)


def _check_stage_range(stage_range, count):
    if stage_range is None:
        return 0, count
    first, stop = stage_range
    if not 0 <= first < stop <= count:
        raise ValueError(f"stage_range {stage_range!r}: the arch has stages 0 ... {count - 1}.")
    return first, stop


def check_out_features(out_features, available):
    """None, or a list of known feature names; a bare string is the usual slip."""
    if out_features is None:
        return None
    if isinstance(out_features, str):
        raise TypeError(
            f"out_features must be a list of feature names, got the string {out_features!r}; "
            f"write [{out_features!r}]."
        )
    out_features = list(out_features)
    if not out_features:
        raise ValueError(f"out_features is empty; name at least one of {list(available)}.")
    unknown = [f for f in out_features if f not in available]
    if unknown:
        raise ValueError(f"Unknown out_features {unknown}; this backbone has {list(available)}.")
    return out_features


def pools_globally(op):
    """True for a block op that pools globally (`ir_pool*`: the classifier's last stage)."""
    builder = BLOCK_REGISTRY.get(op)
    target = getattr(builder, "func", builder)
    return isinstance(target, type) and issubclass(target, InvertedPool)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of an arch: its blocks (BlockDefs), output width, the stride of its output
    and whether it pools globally. Its feature name is `stage<index>`."""

    index: int
    blocks: tuple
    channels: int
    stride: int
    pools: bool

    @property
    def name(self):
        return f"stage{self.index}"


def arch_stages(arch):
    """The Stages of an ArchDef, in order."""
    by_stage = collections.OrderedDict()
    for block in arch.blocks():
        by_stage.setdefault(block.stage, []).append(block)
    stages, stride = [], 1
    for index, blocks in by_stage.items():
        for block in blocks:
            stride *= block.stride
        pools = any(pools_globally(block.op) for block in blocks)
        stages.append(Stage(index, tuple(blocks), blocks[-1].out_channels, stride, pools))
    return stages


def spatial_stages(arch):
    """The Stages before the first one that pools globally (those giving feature maps)."""
    out = []
    for stage in arch_stages(arch):
        if stage.pools:
            break
        out.append(stage)
    return out


class FBNetBackbone(nn.Module):
    """All blocks in one flat `stages` Sequential; optionally returns per-stage features.

    Feature `stage<i>` is the output of the last block of stage i. `in_channels` (default: the
    arch def's) is the number of input image channels; `norm` (a name or callable, see
    `mobile_cv_nas.layers.norm`) replaces every block's norm. `stage_range` (first, stop)
    builds only the stages first ... stop-1 (positions in `arch_stages`), the first taking the
    previous stage's output (e.g. a detection box head made of the stride-32 stage).
    `stage_blocks` names the blocks of each built stage; `feature_channels` and
    `feature_strides` give each built stage's output width and stride (from the image).
    """

    __constants__ = ["out_features"]  # TorchScript: one return type per backbone

    def __init__(self, arch_def, in_channels=None, out_features=None, norm=None, stage_range=None):
        super().__init__()
        arch = parse_arch_def(arch_def)
        if in_channels is not None and in_channels != arch.in_channels:
            arch = dataclasses.replace(arch, in_channels=in_channels)
        self.arch_def = arch
        self.in_channels = arch.in_channels
        stages = arch_stages(arch)
        first, stop = _check_stage_range(stage_range, len(stages))
        channels = arch.in_channels if first == 0 else stages[first - 1].channels
        blocks = collections.OrderedDict()
        for stage in stages[first:stop]:
            for block in stage.blocks:
                builder = BLOCK_REGISTRY.get(block.op)
                kwargs = block_kwargs(arch, block, norm)
                blocks[block.name] = builder(channels, block.out_channels, **kwargs)
                channels = block.out_channels
        built = stages[first:stop]
        self.feature_channels = {s.name: s.channels for s in built}
        self.feature_strides = {s.name: s.stride for s in built}
        self.stage_blocks = {s.name: [b.name for b in s.blocks] for s in built}
        self._stage_ends = {s.name: s.blocks[-1].name for s in built}
        self.stages = nn.Sequential(blocks)
        self.out_channels = channels
        self.out_features = check_out_features(out_features, self._stage_ends)
        # per block, the feature it ends ("" if none wanted), and how many blocks must run
        wanted = {self._stage_ends[f]: f for f in self.out_features or []}
        self._feature_of_block = [wanted.get(name, "") for name in blocks]
        ends = [i for i, name in enumerate(blocks) if name in wanted]
        self._blocks_to_run = ends[-1] + 1 if ends else len(blocks)

    def forward(self, x):
        if self.out_features is None:
            return self.stages(x)
        outputs = {}
        for i, block in enumerate(self.stages):
            if i < self._blocks_to_run:  # no `break`: TorchScript unrolls this loop
                x = block(x)
                if self._feature_of_block[i] != "":
                    outputs[self._feature_of_block[i]] = x
        return outputs


class ClassifierHead(nn.Module):
    """Global average pool + 1x1 conv with bias (a conv, as officially), then flatten.

    With `num_classes=0` there is no conv: the head returns the pooled features (N, C), as
    timm's `num_classes=0` does.
    """

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(in_channels, num_classes, 1, bias=True) if num_classes else None

    def forward(self, x):
        x = self.avg_pool(x)
        if self.conv is not None:
            x = self.conv(x)
        return x.flatten(1)


class FBNetClassifier(nn.Module):
    def __init__(self, arch_def, num_classes=None, in_channels=None, norm=None):
        super().__init__()
        self.backbone = FBNetBackbone(arch_def, in_channels=in_channels, norm=norm)
        self.arch_def = self.backbone.arch_def
        self.in_channels = self.backbone.in_channels
        if num_classes is None:
            num_classes = self.arch_def.num_classes
        check_num_classes(num_classes, "num_classes")
        self.num_classes = num_classes
        self.head = ClassifierHead(self.backbone.out_channels, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def build_model(
    arch_def: ArchDef | dict[str, Any],
    num_classes: int | None = None,
    in_channels: int | None = None,
    norm: str | Callable[[int], nn.Module] | None = None,
) -> FBNetClassifier:
    """Classification model (backbone + head) from an arch def (mapping, ArchDef).

    `num_classes` (default: the arch def's; 0: pooled features), `in_channels` (default: the
    arch def's) and `norm` (default: each block's, "bn") override the arch def.
    """
    return FBNetClassifier(arch_def, num_classes=num_classes, in_channels=in_channels, norm=norm)


def build_backbone(
    arch_def: ArchDef | dict[str, Any],
    out_features: Sequence[str] | None = None,
    in_channels: int | None = None,
    norm: str | Callable[[int], nn.Module] | None = None,
) -> FBNetBackbone:
    """Backbone alone; with `out_features` (e.g. ["stage2", "stage4"]) it returns a dict."""
    return FBNetBackbone(arch_def, in_channels=in_channels, out_features=out_features, norm=norm)
