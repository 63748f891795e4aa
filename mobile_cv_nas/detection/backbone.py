"""FBNet backbones for detectron2: the arch's stages as a `Backbone`, plus FPN and RetinaNet
versions, registered in detectron2's BACKBONE_REGISTRY.

* `build_fbnetv2_c4_backbone`: one feature (default: the last stride-16 stage, `stage4` of the
  published FBNetV2s) for C4-style detectors; the stages after it are the box head of
  `FBNetV2C4ROIHeads`.
* `build_fbnetv2_fpn_backbone`: detectron2's FPN over the stride 4/8/16/32 stages (`p2` ...
  `p5`) plus `p6` (LastLevelMaxPool); `MODEL.FPN.*` as for ResNets.
* `build_fbnetv2_retinanet_backbone`: FPN over the stride 8/16/32 stages (`p3` ... `p5`) plus
  `p6`, `p7` (LastLevelP6P7 from the stride-32 stage).

The backbone is the arch builder's `FBNetBackbone` (mobile_cv_nas.arch.builder) built up to
the last wanted stage, made a detectron2 `Backbone` (output_shape, size_divisibility,
freezing); the blocks keep their official names (`stages.xif<stage>_<block>`), so ImageNet
weights map onto them (see classification_loading.py). Only the stages before the
first one with a global-pool block (`ir_pool*`, the classifier's last stage) can be detection
stages. Norms are the layers' (mobile_cv_nas.layers.norm) with detectron2's classes for
"naiveSyncBN" and "FrozenBN" (`D2_NORMS`).

Feature maps at any input size are ceil(size / stride) on a side (every conv pads k // 2).
The FPN versions need sizes divisible by 32 inside (their top-down path doubles sizes), which
detectron2's meta-architectures ensure by padding images to `size_divisibility` (32); called
directly on another size, they pad the input at the bottom/right the same way and crop every
map back to ceil(size / stride).
"""

import logging
import math

import torch.nn.functional as F
from detectron2.layers import FrozenBatchNorm2d, NaiveSyncBatchNorm
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7

from ..arch import parse_arch_def
from ..arch.builder import FBNetBackbone, spatial_stages
from ..config import resolve_arch
from ..layers.norm import freeze_norms, resolve_norm
from .config import DetectionConfigError

logger = logging.getLogger(__name__)

#: The norms detection builds with detectron2's classes (the others are the layers' own).
D2_NORMS = {"naive_sync_bn": NaiveSyncBatchNorm, "frozen_bn": FrozenBatchNorm2d}


def config_norm(norm, key="MODEL.MOBILE_CV_NAS.NORM", trainable=False):
    """What the block builders take for a NORM value: a norm name or detectron2 class (see
    `D2_NORMS`), None for "" (the arch's own; not allowed where `trainable`, for fresh heads,
    which may not be frozen either). DetectionConfigError naming `key` otherwise."""
    if norm == "" and not trainable:
        return None
    try:
        resolved = resolve_norm(norm, D2_NORMS, trainable=trainable)
    except (TypeError, ValueError) as e:
        raise DetectionConfigError(f"{key}: {e}") from None
    if resolved is None:
        names = "'BN', 'SyncBN', 'naiveSyncBN', 'GN'"
        if not trainable:
            names += ", 'FrozenBN', or '' for the arch's own"
        raise DetectionConfigError(f"{key}: must name a norm ({names}), got {norm!r}.")
    return resolved


def image_channels(cfg, arch):
    """The channels of detectron2's images (len(MODEL.PIXEL_MEAN)).

    A grayscale arch (in_channels 1, e.g. searched on Fashion-MNIST) on colour images gets a
    3-channel stem: its 1-channel stem weights are spread over R, G and B (each w / 3, so the
    stem sees the mean of the channels, i.e. a gray image), see classification_loading.py. Any other
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


def detection_stages(arch):
    """The arch's Stages (mobile_cv_nas.arch.builder) before the first one holding a
    global-pool block, in order."""
    stages = spatial_stages(arch)
    if not stages:
        raise DetectionConfigError(f"Arch {arch.name!r} has no stage before its global pooling.")
    return stages


def describe_features(stages):
    return ", ".join(f"{s.name} (stride {s.stride}, {s.channels} channels)" for s in stages)


class FBNetV2Backbone(FBNetBackbone, Backbone):
    """The arch builder's FBNetBackbone, up to the last wanted feature, as a detectron2
    Backbone returning {feature: map}.

    Args:
        arch_def: an ArchDef or mapping (the schema of mobile_cv_nas/arch/schema.py).
        out_features: feature names `stage<i>` (see `detection_stages`); returned in stage order.
        in_channels: image channels (default the arch's).
        norm: a NORM value ("BN", "SyncBN", "naiveSyncBN", "FrozenBN", "GN", "" = the arch's).
        freeze_at: 0 = nothing frozen; k = stages 0 ... k-1 frozen (see `freeze`).
    """

    def __init__(self, arch_def, out_features, in_channels=None, norm="BN", freeze_at=0):
        arch = parse_arch_def(arch_def)
        stages = detection_stages(arch)
        wanted = self._check_out_features(out_features, stages, arch)
        last = max(i for i, s in enumerate(stages) if s.name in wanted)
        super().__init__(
            arch,
            in_channels=in_channels,
            out_features=[s.name for s in stages if s.name in wanted],
            norm=config_norm(norm),
            stage_range=(0, last + 1),
        )
        self._out_features = list(self.out_features)
        self._out_feature_channels = {f: self.feature_channels[f] for f in self._out_features}
        self._out_feature_strides = {f: self.feature_strides[f] for f in self._out_features}
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
        return set(out_features)

    @property
    def stage_names(self):
        """The names of the stages this backbone holds, in order."""
        return list(self.stage_blocks)

    def freeze(self, freeze_at):
        """Freeze stages 0 ... freeze_at-1 (0: nothing; 1: the stem, stage0; ...): their
        parameters get requires_grad=False and their batch norms become detectron2's
        FrozenBatchNorm2d. Stages already frozen stay frozen. Returns self."""
        n = len(self.stage_blocks)
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
        for stage in self.stage_names[:freeze_at]:
            for name in self.stage_blocks[stage]:
                block = getattr(self.stages, name)
                block.requires_grad_(False)
                setattr(self.stages, name, freeze_norms(block, FrozenBatchNorm2d))
        self.freeze_at = max(self.freeze_at, freeze_at)
        return self

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} of arch {self.arch_def.name!r} takes (N, "
                f"{self.in_channels}, H, W) images, got shape {tuple(x.shape)}."
            )
        return super().forward(x)


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


def _bottom_up(cfg, arch, features):
    """The FBNetV2Backbone of the config's arch giving `features`."""
    return FBNetV2Backbone(
        arch,
        features,
        in_channels=image_channels(cfg, arch),
        norm=cfg.MODEL.MOBILE_CV_NAS.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )


def _fpn(cfg, strides, what, top_block):
    """detectron2's FPN (MODEL.FPN.*) over the FBNetV2Backbone's features; `top_block` is
    called with the bottom-up backbone."""
    arch, _ = resolve_arch(cfg)
    features = _fpn_features(cfg, detection_stages(arch), arch, strides, what)
    bottom_up = _bottom_up(cfg, arch, features)
    backbone = FBNetV2FPN(
        bottom_up=bottom_up,
        in_features=bottom_up._out_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block(bottom_up),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
    return check_consumers(cfg, backbone)


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
    arch, _ = resolve_arch(cfg)
    stages = detection_stages(arch)
    features = list(cfg.MODEL.MOBILE_CV_NAS.OUT_FEATURES) or _by_stride(stages, [16], arch, "C4")
    if len(features) != 1:
        raise DetectionConfigError(
            f"MODEL.MOBILE_CV_NAS.OUT_FEATURES {features}: the C4 backbone gives one feature; name "
            f"one of {describe_features(stages)} (default: the last stride-16 stage)."
        )
    return check_consumers(cfg, _bottom_up(cfg, arch, features))


@BACKBONE_REGISTRY.register()
def build_fbnetv2_fpn_backbone(cfg, input_shape=None):
    """detectron2's FPN (MODEL.FPN.*) over the stride 4/8/16/32 stages (p2-p5) plus p6 by
    max pooling; size_divisibility 32."""
    return _fpn(cfg, (4, 8, 16, 32), "FPN", lambda bottom_up: LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_fbnetv2_retinanet_backbone(cfg, input_shape=None):
    """detectron2's FPN over the stride 8/16/32 stages (p3-p5) plus p6, p7 (LastLevelP6P7 from
    the stride-32 stage's output); size_divisibility 32."""

    def p6_p7(bottom_up):
        last = bottom_up._out_features[-1]
        channels = bottom_up.output_shape()[last].channels
        return LastLevelP6P7(channels, cfg.MODEL.FPN.OUT_CHANNELS, in_feature=last)

    return _fpn(cfg, (8, 16, 32), "RetinaNet FPN", p6_p7)


#: The names this module registers in detectron2's BACKBONE_REGISTRY.
BACKBONE_NAMES = (
    "build_fbnetv2_c4_backbone",
    "build_fbnetv2_fpn_backbone",
    "build_fbnetv2_retinanet_backbone",
)
