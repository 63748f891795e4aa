"""FBNet backbones for detectron2: the arch's stages as a `Backbone`, plus FPN and RetinaNet
versions, registered in detectron2's BACKBONE_REGISTRY.

* `build_fbnetv2_c4_backbone`: one feature (default: the last stride-16 stage, `stage4` of the
  published FBNetV2s) for C4-style detectors; the stages after it are the box head of
  `FBNetV2C4ROIHeads`.
* `build_fbnetv2_fpn_backbone`: detectron2's FPN over the stride 4/8/16/32 stages (`p2` ...
  `p5`) plus `p6` (LastLevelMaxPool); `MODEL.FPN.*` as for ResNets.
* `build_fbnetv2_retinanet_backbone`: FPN over the stride 8/16/32 stages (`p3` ... `p5`) plus
  `p6`, `p7` (LastLevelP6P7 from the stride-32 stage).

The blocks keep their official names (`stages.xif<stage>_<block>`), so ImageNet weights map
onto them (see `mobile_cv_nas.detection.weights`). Only the stages before the first one with
a global-pool block (`ir_pool*`, the classifier's last stage) can be detection stages.

Feature maps at any input size are ceil(size / stride) on a side (every conv pads k // 2).
The FPN versions need sizes divisible by 32 inside (their top-down path doubles sizes), which
detectron2's meta-architectures ensure by padding images to `size_divisibility` (32); called
directly on another size, they pad the input at the bottom/right the same way and crop every
map back to ceil(size / stride).
"""

import collections
import dataclasses
import logging
import math
import os

import torch.nn as nn
import torch.nn.functional as F
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7

from .. import model_zoo
from ..arch import ArchDefError, load_arch_def, parse_arch_def
from ..arch.builder import block_kwargs
from ..blocks import BLOCK_REGISTRY, InvertedPool
from .config import DetectionConfigError, node_to_dict, require_fbnetv2_config

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- norms

#: NORM values (lower case) -> our kind. "naive_sync_bn" and "frozen_bn" are built as batch
#: norms and then swapped for detectron2's NaiveSyncBatchNorm / FrozenBatchNorm2d (keeping eps).
_NORM_KINDS = {
    "bn": "bn",
    "syncbn": "sync_bn",
    "sync_bn": "sync_bn",
    "naivesyncbn": "naive_sync_bn",
    "naive_sync_bn": "naive_sync_bn",
    "frozenbn": "frozen_bn",
    "frozen_bn": "frozen_bn",
    "gn": "gn",
}
_NORM_NAMES = "'BN', 'SyncBN', 'naiveSyncBN', 'FrozenBN', 'GN' (or bn, sync_bn, frozen_bn, gn)"


def norm_kind(norm, key="MODEL.MOBILE_CV_NAS.NORM", allow_frozen=True):
    """The kind of norm a NORM value names ("bn", "sync_bn", "naive_sync_bn", "frozen_bn",
    "gn"), None for "" (the arch's own); DetectionConfigError naming `key` otherwise."""
    if norm in ("", None):
        return None
    kind = _NORM_KINDS.get(str(norm).lower()) if isinstance(norm, str) else None
    if kind is None:
        raise DetectionConfigError(f"{key}: unknown norm {norm!r}; expected {_NORM_NAMES}, or ''.")
    if kind == "frozen_bn" and not allow_frozen:
        raise DetectionConfigError(
            f"{key}: {norm!r} is not allowed here: freshly initialised heads must learn their "
            f"norms. Use 'BN', 'SyncBN', 'naiveSyncBN', 'GN' or ''."
        )
    return kind


def _block_norm(kind):
    """What the block builders get for a norm kind (converted afterwards, see convert_norms)."""
    return "bn" if kind in ("frozen_bn", "naive_sync_bn") else kind


def _to_naive_sync(bn):
    new = get_norm("naiveSyncBN", bn.num_features)
    new.eps, new.momentum = bn.eps, bn.momentum
    new.load_state_dict(bn.state_dict())
    return new


def _swap_batchnorms(module, make):
    """Replace every plain nn.BatchNorm2d under `module` by make(bn), in place."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(module, name, make(child))
        else:
            _swap_batchnorms(child, make)
    return module


def convert_norms(module, kind):
    """Turn the batch norms a block was built with into the kind asked for."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d.convert_frozen_batchnorm(module)
    if kind == "naive_sync_bn":
        return _swap_batchnorms(module, _to_naive_sync)
    return module


# --------------------------------------------------------------------------- the arch


def _is_path(spec):
    return spec.endswith((".yaml", ".yml")) or os.sep in spec or os.path.isfile(spec)


def resolve_arch(cfg):
    """The ArchDef of MODEL.MOBILE_CV_NAS (ARCH: a zoo name or an arch YAML; else the inline
    ARCH_DEF), with WIDTH_DIVISOR applied; DetectionConfigError naming the key on failure."""
    node = require_fbnetv2_config(cfg)
    spec = node.ARCH
    try:
        if spec:
            if _is_path(spec):
                arch = load_arch_def(spec)
            else:
                arch = model_zoo.get_arch_def(spec)
        elif len(node.ARCH_DEF):
            arch = parse_arch_def(node_to_dict(node.ARCH_DEF), name="MODEL.MOBILE_CV_NAS.ARCH_DEF")
        else:
            raise DetectionConfigError(
                "No backbone architecture: set MODEL.MOBILE_CV_NAS.ARCH to a model zoo name (see "
                "mobile_cv_nas.model_zoo.list_models()) or an arch YAML file, or give "
                "MODEL.MOBILE_CV_NAS.ARCH_DEF inline."
            )
    except (model_zoo.UnknownModelError, model_zoo.CatalogError, ArchDefError) as e:
        raise DetectionConfigError(f"MODEL.MOBILE_CV_NAS.ARCH {spec!r}: {e}") from None
    divisor = node.WIDTH_DIVISOR
    if divisor:
        if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 0:
            raise DetectionConfigError(
                f"MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR: must be an integer >= 0 (0: the arch's), "
                f"got {divisor!r}."
            )
        arch = dataclasses.replace(arch, width_divisor=divisor)
    return arch


def image_channels(cfg, arch):
    """The channels of detectron2's images (len(MODEL.PIXEL_MEAN)).

    A grayscale arch (in_channels 1, e.g. searched on Fashion-MNIST) on colour images gets a
    3-channel stem: its 1-channel stem weights are spread over R, G and B (each w / 3, so the
    stem sees the mean of the channels, i.e. a gray image), see weights.py. Any other
    mismatch is refused with the fix."""
    channels = len(cfg.MODEL.PIXEL_MEAN)
    if arch.in_channels == 1 and channels == 3:
        logger.info(
            f"Arch {arch.name!r} takes 1-channel images; on these 3-channel images its stem "
            f"takes RGB, with 1-channel weights spread over the channels (w / 3 each)."
        )
        return channels
    if arch.in_channels != channels:
        raise DetectionConfigError(
            f"Arch {arch.name!r} takes {arch.in_channels}-channel images, but the detection "
            f"config's images have {channels} channels (MODEL.PIXEL_MEAN has {channels} values, "
            f"INPUT.FORMAT {cfg.INPUT.FORMAT!r}). Its stem weights cannot be used on these "
            f"images. For grayscale detection set INPUT.FORMAT 'L' and one-value "
            f"MODEL.PIXEL_MEAN / MODEL.PIXEL_STD; for colour images use an arch with "
            f"in_channels 1 or 3."
        )
    return channels


@dataclasses.dataclass
class DetectionStage:
    """One stage of the arch usable for detection: its blocks, output width and stride."""

    index: int
    blocks: list
    channels: int
    stride: int

    @property
    def name(self):
        return f"stage{self.index}"


def _pools_globally(op):
    builder = BLOCK_REGISTRY.get(op)
    target = getattr(builder, "func", builder)
    return isinstance(target, type) and issubclass(target, InvertedPool)


def detection_stages(arch):
    """The arch's stages before the first one holding a global-pool block, in order."""
    by_stage = collections.defaultdict(list)
    for block in arch.blocks():
        by_stage[block.stage].append(block)
    stages, stride = [], 1
    for index in sorted(by_stage):
        blocks = by_stage[index]
        if any(_pools_globally(b.op) for b in blocks):
            break
        for b in blocks:
            stride *= b.stride
        stages.append(DetectionStage(index, blocks, blocks[-1].out_channels, stride))
    if not stages:
        raise DetectionConfigError(f"Arch {arch.name!r} has no stage before its global pooling.")
    return stages


def describe_features(stages):
    return ", ".join(f"{s.name} (stride {s.stride}, {s.channels} channels)" for s in stages)


def build_stage_blocks(arch, stages, in_channels, kind):
    """nn.Sequential of the blocks of `stages` (DetectionStage list), named as officially
    (`xif<stage>_<block>`), taking `in_channels`; `kind` a norm kind (see `norm_kind`; None:
    the arch's own norms)."""
    blocks = collections.OrderedDict()
    channels = in_channels
    for stage in stages:
        for block in stage.blocks:
            builder = BLOCK_REGISTRY.get(block.op)
            kwargs = block_kwargs(arch, block, _block_norm(kind))
            blocks[block.name] = builder(channels, block.out_channels, **kwargs)
            channels = block.out_channels
    return convert_norms(nn.Sequential(blocks), kind)


def freeze_module(module):
    """requires_grad=False for every parameter and every batch norm made a FrozenBatchNorm2d;
    returns the module to use in its place."""
    for p in module.parameters():
        p.requires_grad_(False)
    return FrozenBatchNorm2d.convert_frozen_batchnorm(module)


# --------------------------------------------------------------------------- the backbone


class FBNetV2Backbone(Backbone):
    """The arch's stages up to the last wanted feature, returning {feature: map}.

    Args:
        arch_def: an ArchDef or mapping (the schema of mobile_cv_nas/arch/schema.py).
        out_features: feature names `stage<i>` (see `detection_stages`); returned in stage order.
        in_channels: image channels (default the arch's).
        norm: a NORM value ("BN", "SyncBN", "naiveSyncBN", "FrozenBN", "GN", "" = the arch's).
        freeze_at: 0 = nothing frozen; k = stages 0 ... k-1 frozen (see `freeze`).
    """

    def __init__(self, arch_def, out_features, in_channels=None, norm="BN", freeze_at=0):
        super().__init__()
        arch = parse_arch_def(arch_def)
        if in_channels is not None and in_channels != arch.in_channels:
            arch = dataclasses.replace(arch, in_channels=in_channels)
        self.arch_def = arch
        self.in_channels = arch.in_channels
        stages = detection_stages(arch)
        by_name = {s.name: s for s in stages}
        wanted = self._check_out_features(out_features, stages, arch)
        wanted = sorted({by_name[f].index: by_name[f] for f in wanted}.values(), key=_index)
        last = wanted[-1].index
        self.built_stages = [s for s in stages if s.index <= last]
        kind = norm_kind(norm)
        self.stages = build_stage_blocks(arch, self.built_stages, arch.in_channels, kind)
        self._out_features = [s.name for s in wanted]
        self._out_feature_channels = {s.name: s.channels for s in wanted}
        self._out_feature_strides = {s.name: s.stride for s in wanted}
        self._feature_after = {s.blocks[-1].name: s.name for s in wanted}
        self.freeze_at = 0
        self.freeze(freeze_at)

    @staticmethod
    def _check_out_features(out_features, stages, arch):
        if isinstance(out_features, str) or not out_features:
            raise DetectionConfigError(
                f"out_features must be a non-empty list of feature names, got {out_features!r}; "
                f"arch {arch.name!r} has {describe_features(stages)}."
            )
        names = {s.name for s in stages}
        unknown = [f for f in out_features if f not in names]
        if unknown:
            raise DetectionConfigError(
                f"Unknown backbone feature(s) {unknown}: arch {arch.name!r} has "
                f"{describe_features(stages)} (its later stages pool globally: classifier "
                f"only)."
            )
        return list(out_features)

    @property
    def stage_names(self):
        """The names of the stages this backbone holds, in order."""
        return [s.name for s in self.built_stages]

    def freeze(self, freeze_at):
        """Freeze stages 0 ... freeze_at-1 (0: nothing; 1: the stem, stage0; ...): their
        parameters get requires_grad=False and their batch norms become FrozenBatchNorm2d.
        Stages already frozen stay frozen. Returns self."""
        n = len(self.built_stages)
        if isinstance(freeze_at, bool) or not isinstance(freeze_at, int) or not 0 <= freeze_at:
            raise DetectionConfigError(
                f"MODEL.BACKBONE.FREEZE_AT: must be an integer >= 0, got {freeze_at!r}."
            )
        if freeze_at > n:
            raise DetectionConfigError(
                f"MODEL.BACKBONE.FREEZE_AT {freeze_at}: this backbone has {n} stages "
                f"({', '.join(self.stage_names)}); FREEZE_AT k freezes stages 0 ... k-1, so it "
                f"may be at most {n}."
            )
        for stage in self.built_stages[:freeze_at]:
            for block in stage.blocks:
                module = getattr(self.stages, block.name)
                setattr(self.stages, block.name, freeze_module(module))
        self.freeze_at = max(self.freeze_at, freeze_at)
        return self

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} of arch {self.arch_def.name!r} takes (N, "
                f"{self.in_channels}, H, W) images, got shape {tuple(x.shape)}."
            )
        outputs = {}
        for name, block in self.stages.named_children():
            x = block(x)
            feature = self._feature_after.get(name)
            if feature is not None:
                outputs[feature] = x
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


def _index(stage):
    return stage.index


class FBNetV2FPN(FPN):
    """detectron2's FPN, made to work at any input size: an input whose sides are not
    multiples of `size_divisibility` is zero-padded at the bottom/right (as detectron2's
    ImageList pads images) and every output cropped back to ceil(size / stride)."""

    def forward(self, x):
        h, w = x.shape[-2:]
        d = self.size_divisibility
        pad_h, pad_w = (-h) % d, (-w) % d
        if not (pad_h or pad_w):
            return super().forward(x)
        outputs = super().forward(F.pad(x, (0, pad_w, 0, pad_h)))
        strides = self._out_feature_strides
        return {
            k: v[..., : math.ceil(h / strides[k]), : math.ceil(w / strides[k])]
            for k, v in outputs.items()
        }


# --------------------------------------------------------------------------- builders


def _by_stride(stages, strides, arch, what):
    """The last stage at each of `strides`."""
    last = {}
    for s in stages:
        last[s.stride] = s
    missing = [st for st in strides if st not in last]
    if missing:
        raise DetectionConfigError(
            f"Arch {arch.name!r} has no stage at stride {missing} for the {what}; it has "
            f"{describe_features(stages)}. Name the features in MODEL.MOBILE_CV_NAS.OUT_FEATURES."
        )
    return [last[st].name for st in strides]


def _fpn_features(cfg, stages, arch, strides, what):
    """OUT_FEATURES, or MODEL.FPN.IN_FEATURES, or the last stage at each stride."""
    own = list(cfg.MODEL.MOBILE_CV_NAS.OUT_FEATURES)
    theirs = list(cfg.MODEL.FPN.IN_FEATURES)
    if own and theirs and own != theirs:
        raise DetectionConfigError(
            f"MODEL.MOBILE_CV_NAS.OUT_FEATURES {own} and MODEL.FPN.IN_FEATURES {theirs} differ; "
            f"set one of them (or both the same)."
        )
    return own or theirs or _by_stride(stages, strides, arch, what)


def _fpn_bottom_up(cfg, strides, what):
    arch = resolve_arch(cfg)
    channels = image_channels(cfg, arch)
    stages = detection_stages(arch)
    features = _fpn_features(cfg, stages, arch, strides, what)
    return FBNetV2Backbone(
        arch,
        features,
        in_channels=channels,
        norm=cfg.MODEL.MOBILE_CV_NAS.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )


def _consumers(cfg):
    """(config key, feature names) of the parts of the meta-arch that read backbone features."""
    model = cfg.MODEL
    out = []
    if model.META_ARCHITECTURE in ("GeneralizedRCNN", "ProposalNetwork"):
        if model.PROPOSAL_GENERATOR.NAME in ("RPN", "RRPN"):
            out.append(("MODEL.RPN.IN_FEATURES", list(model.RPN.IN_FEATURES)))
    if model.META_ARCHITECTURE == "GeneralizedRCNN":
        out.append(("MODEL.ROI_HEADS.IN_FEATURES", list(model.ROI_HEADS.IN_FEATURES)))
    if model.META_ARCHITECTURE == "RetinaNet":
        out.append(("MODEL.RETINANET.IN_FEATURES", list(model.RETINANET.IN_FEATURES)))
    return out


def check_consumers(cfg, backbone):
    """A clear error when the RPN, RoI heads or RetinaNet head of the config read a feature
    the backbone does not give (detectron2 would raise a bare KeyError)."""
    available = list(backbone.output_shape())
    for key, names in _consumers(cfg):
        unknown = [n for n in names if n not in available]
        if unknown:
            raise DetectionConfigError(
                f"{key} {names}: {unknown} not given by backbone {cfg.MODEL.BACKBONE.NAME!r}, "
                f"whose outputs are {available}. Set {key} to some of those."
            )
    return backbone


@BACKBONE_REGISTRY.register()
def build_fbnetv2_c4_backbone(cfg, input_shape=None):
    """One feature for C4-style detectors: MODEL.MOBILE_CV_NAS.OUT_FEATURES (one name) or the
    last stride-16 stage; its stages after it form FBNetV2C4ROIHeads' box head."""
    arch = resolve_arch(cfg)
    stages = detection_stages(arch)
    features = list(cfg.MODEL.MOBILE_CV_NAS.OUT_FEATURES) or _by_stride(stages, [16], arch, "C4")
    if len(features) != 1:
        raise DetectionConfigError(
            f"MODEL.MOBILE_CV_NAS.OUT_FEATURES {features}: the C4 backbone gives one feature; name "
            f"one of {describe_features(stages)} (default: the last stride-16 stage)."
        )
    channels = image_channels(cfg, arch)
    backbone = FBNetV2Backbone(
        arch,
        features,
        in_channels=channels,
        norm=cfg.MODEL.MOBILE_CV_NAS.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )
    return check_consumers(cfg, backbone)


@BACKBONE_REGISTRY.register()
def build_fbnetv2_fpn_backbone(cfg, input_shape=None):
    """detectron2's FPN (MODEL.FPN.*) over the stride 4/8/16/32 stages (p2-p5) plus p6 by
    max pooling; size_divisibility 32."""
    bottom_up = _fpn_bottom_up(cfg, (4, 8, 16, 32), "FPN")
    backbone = FBNetV2FPN(
        bottom_up=bottom_up,
        in_features=bottom_up._out_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
    return check_consumers(cfg, backbone)


@BACKBONE_REGISTRY.register()
def build_fbnetv2_retinanet_backbone(cfg, input_shape=None):
    """detectron2's FPN over the stride 8/16/32 stages (p3-p5) plus p6, p7 (LastLevelP6P7 from
    the stride-32 stage's output); size_divisibility 32."""
    bottom_up = _fpn_bottom_up(cfg, (8, 16, 32), "RetinaNet FPN")
    last = bottom_up._out_features[-1]
    top_block = LastLevelP6P7(
        bottom_up.output_shape()[last].channels, cfg.MODEL.FPN.OUT_CHANNELS, in_feature=last
    )
    backbone = FBNetV2FPN(
        bottom_up=bottom_up,
        in_features=bottom_up._out_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
    return check_consumers(cfg, backbone)


#: The names this module registers in detectron2's BACKBONE_REGISTRY.
BACKBONE_NAMES = (
    "build_fbnetv2_c4_backbone",
    "build_fbnetv2_fpn_backbone",
    "build_fbnetv2_retinanet_backbone",
)
