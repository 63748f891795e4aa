"""Build modules from an arch def, with the official module names.

The classifier is `backbone.stages.xif<stage>_<block>` + `head.conv`, so official checkpoints
load unchanged. The backbone can also return per-stage features for detection.
"""

import collections

import torch.nn as nn

from ..blocks import BLOCK_REGISTRY
from .schema import parse_arch_def


def _block_kwargs(arch, block):
    """Keyword arguments for one block: defaults it accepts, then the row's own options."""
    accepted = BLOCK_REGISTRY.accepted_options(block.op)
    takes = (lambda k: True) if accepted is None else (lambda k: k in accepted)
    kwargs = {"stride": block.stride}
    if takes("width_divisor"):
        kwargs["width_divisor"] = arch.width_divisor
    if block.expansion is not None:
        kwargs["expansion"] = block.expansion
    kwargs.update({k: v for k, v in arch.block_defaults.items() if takes(k)})
    kwargs.update(block.options)
    return kwargs


class FBNetBackbone(nn.Module):
    """All blocks in one flat `stages` Sequential; optionally returns per-stage features.

    Feature `stage<i>` is the output of the last block of stage i.
    """

    def __init__(self, arch_def, in_channels=3, out_features=None):
        super().__init__()
        arch = parse_arch_def(arch_def)
        self.arch_def = arch
        blocks = collections.OrderedDict()
        channels, stride = in_channels, 1
        self.feature_channels, self.feature_strides = {}, {}
        self._stage_ends = {}
        for block in arch.blocks():
            module = BLOCK_REGISTRY.get(block.op)(channels, block.out_channels, **_block_kwargs(arch, block))
            blocks[block.name] = module
            channels = block.out_channels
            stride *= block.stride
            feature = f"stage{block.stage}"
            self._stage_ends[feature] = block.name
            self.feature_channels[feature] = channels
            self.feature_strides[feature] = stride
        self.stages = nn.Sequential(blocks)
        self.out_channels = channels
        if out_features is not None:
            unknown = [f for f in out_features if f not in self._stage_ends]
            if unknown:
                raise ValueError(
                    f"Unknown out_features {unknown}; this backbone has {list(self._stage_ends)}."
                )
        self.out_features = list(out_features) if out_features is not None else None

    def forward(self, x):
        if self.out_features is None:
            return self.stages(x)
        wanted = {self._stage_ends[f]: f for f in self.out_features}
        outputs = {}
        for name, block in self.stages.named_children():
            x = block(x)
            if name in wanted:
                outputs[wanted[name]] = x
                if len(outputs) == len(wanted):
                    break
        return outputs


class ClassifierHead(nn.Module):
    """Global average pool + 1x1 conv with bias (a conv, as officially), then flatten."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(in_channels, num_classes, 1, bias=True)

    def forward(self, x):
        return self.conv(self.avg_pool(x)).flatten(1)


class FBNetClassifier(nn.Module):
    def __init__(self, arch_def, num_classes=None, in_channels=3):
        super().__init__()
        self.backbone = FBNetBackbone(arch_def, in_channels=in_channels)
        self.arch_def = self.backbone.arch_def
        if num_classes is None:
            num_classes = self.arch_def.num_classes
        self.head = ClassifierHead(self.backbone.out_channels, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def build_model(arch_def, num_classes=None, in_channels=3):
    """Classification model (backbone + head) from an arch def (mapping, ArchDef)."""
    return FBNetClassifier(arch_def, num_classes=num_classes, in_channels=in_channels)


def build_backbone(arch_def, out_features=None, in_channels=3):
    """Backbone alone; with `out_features` (e.g. ["stage2", "stage4"]) it returns a dict."""
    return FBNetBackbone(arch_def, in_channels=in_channels, out_features=out_features)
