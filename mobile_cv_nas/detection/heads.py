"""Detection heads made of this project's layers and blocks, registered in detectron2.

* `FBNetV2LightRPNHead` (RPN_HEAD_REGISTRY): per level, a depthwise 3x3 conv + norm + ReLU and
  a pointwise 1x1 conv + norm + ReLU (a depthwise-separable conv instead of detectron2's dense
  3x3), then 1x1 convs for the objectness logits and the anchor deltas. Shared across levels.
* `FBNetV2BlockBoxHead` (ROI_BOX_HEAD_REGISTRY, for StandardROIHeads, e.g. over FPN): the
  block rows of MODEL.MOBILE_CV_NAS.BOX_HEAD_BLOCKS on the pooled RoI features, then a global
  average pool; FastRCNNOutputLayers predicts from the pooled vector.
* `FBNetV2C4ROIHeads` (ROI_HEADS_REGISTRY, with build_fbnetv2_c4_backbone): RoIs pooled from
  the backbone's feature (ROI_BOX_HEAD.POOLER_*, 14x14 by default) go through the arch's own
  stages after that feature (the stride-32 stage(s), built by the arch builder's
  FBNetBackbone from the same rows, with `stage_range`, and named as officially,
  `roi_heads.stages.xif5_*`, so the ImageNet weights initialise them too), then a global
  average pool and FastRCNNOutputLayers. Boxes only (no mask/keypoint heads).

Heads use MODEL.MOBILE_CV_NAS.HEAD_NORM; the C4 box head's stages, being backbone stages, use
MODEL.MOBILE_CV_NAS.NORM. The RPN and box heads are `@configurable`: built from
(cfg, input_shape) by detectron2, or from explicit arguments.
"""

import torch.nn as nn
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_anchor_generator
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY, ROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ..arch import ArchDefError, parse_arch_def
from ..arch.builder import FBNetBackbone
from ..config import resolve_arch
from ..config.arch import arch_node
from ..layers import ConvBNAct
from .backbone import config_norm, describe_features, detection_stages
from .config import DetectionConfigError

#: Width rounding of the box head's blocks when MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR is 0.
BOX_HEAD_WIDTH_DIVISOR = 8
_HEAD_NORM = "MODEL.MOBILE_CV_NAS.HEAD_NORM"


def _head_norm(cfg):
    """The norm of a fresh head (HEAD_NORM): a name or detectron2 class, never frozen."""
    return config_norm(arch_node(cfg).HEAD_NORM, _HEAD_NORM, trainable=True)


@RPN_HEAD_REGISTRY.register()
class FBNetV2LightRPNHead(nn.Module):
    """RPN head with a depthwise-separable conv (see the module docstring).

    Args:
        in_channels: the width of every input level (the head is shared across levels).
        num_anchors: anchors per cell (the same on every level).
        box_dim: anchor box dimension (4; 5 for rotated boxes).
        norm: the convs' norm (a HEAD_NORM value, or a norm class); not frozen.
    """

    @configurable
    def __init__(self, *, in_channels, num_anchors, box_dim=4, norm="BN"):
        super().__init__()
        c = in_channels
        norm = config_norm(norm, "norm", trainable=True)
        self.conv = nn.Sequential(
            ConvBNAct(c, c, 3, groups=c, norm=norm, act="relu"),  # depthwise
            ConvBNAct(c, c, 1, norm=norm, act="relu"),  # pointwise
        )
        self.objectness_logits = nn.Conv2d(c, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(c, num_anchors * box_dim, 1)
        for layer in (self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    @classmethod
    def from_config(cls, cfg, input_shape):
        norm = _head_norm(cfg)
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise DetectionConfigError(
                f"FBNetV2LightRPNHead is shared across levels, which must have one width; got "
                f"{sorted(channels)} (MODEL.RPN.IN_FEATURES {list(cfg.MODEL.RPN.IN_FEATURES)})."
            )
        anchors = build_anchor_generator(cfg, input_shape)
        per_cell = set(anchors.num_cell_anchors)
        if len(per_cell) != 1:
            raise DetectionConfigError(
                f"FBNetV2LightRPNHead needs the same number of anchors per cell on every level; "
                f"MODEL.ANCHOR_GENERATOR gives {anchors.num_cell_anchors}."
            )
        (in_channels,), (num_anchors,) = channels, per_cell
        return {
            "in_channels": in_channels,
            "num_anchors": num_anchors,
            "box_dim": anchors.box_dim,
            "norm": norm,
        }

    def forward(self, features):
        logits, deltas = [], []
        for x in features:
            x = self.conv(x)
            logits.append(self.objectness_logits(x))
            deltas.append(self.anchor_deltas(x))
        return logits, deltas


def box_head_arch(rows, in_channels, width_divisor=0):
    """The box head's rows as an ArchDef (one stage), validated; errors name the key."""
    rows = [dict(r) if isinstance(r, dict) else r for r in rows]
    data = {
        "name": "MODEL.MOBILE_CV_NAS.BOX_HEAD_BLOCKS",
        "in_channels": in_channels,
        "width_divisor": width_divisor or BOX_HEAD_WIDTH_DIVISOR,
        "num_classes": 0,
        "stages": [rows],
    }
    try:
        return parse_arch_def(data)
    except ArchDefError as e:
        raise DetectionConfigError(str(e)) from None


@ROI_BOX_HEAD_REGISTRY.register()
class FBNetV2BlockBoxHead(nn.Module):
    """Box head of FBNet blocks (MODEL.MOBILE_CV_NAS.BOX_HEAD_BLOCKS) + global average pool.

    Args:
        input_shape: ShapeSpec of the pooled RoI features.
        blocks: arch-def block rows (one stage).
        norm: the blocks' norm (a HEAD_NORM value, or a norm class); not frozen.
        width_divisor: rounding of the blocks' mid/SE widths (0: 8).
    """

    @configurable
    def __init__(self, *, input_shape, blocks, norm="BN", width_divisor=0):
        super().__init__()
        arch = box_head_arch(blocks, input_shape.channels, width_divisor)
        norm = config_norm(norm, "norm", trainable=True)
        body = FBNetBackbone(arch, norm=norm)
        self.stages = body.stages  # named xif0_<block>, as a one-stage arch's
        self._channels = body.out_channels

    @classmethod
    def from_config(cls, cfg, input_shape):
        node = arch_node(cfg)
        return {
            "input_shape": input_shape,
            "blocks": list(node.BOX_HEAD_BLOCKS),
            "norm": _head_norm(cfg),
            "width_divisor": node.WIDTH_DIVISOR,
        }

    @property
    def output_shape(self):
        return ShapeSpec(channels=self._channels)

    def forward(self, x):
        return self.stages(x).mean(dim=(2, 3))


@ROI_HEADS_REGISTRY.register()
class FBNetV2C4ROIHeads(ROIHeads):
    """RoI heads whose box head is the arch's stages after the C4 feature (see the module
    docstring). `stages` is an nn.Sequential of blocks named `xif<stage>_<block>`."""

    @configurable
    def __init__(self, *, in_feature, pooler, stages, box_predictor, **kwargs):
        super().__init__(**kwargs)
        self.in_feature = in_feature
        self.pooler = pooler
        self.stages = stages
        self.box_predictor = box_predictor

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg)
        if cfg.MODEL.MASK_ON or cfg.MODEL.KEYPOINT_ON:
            raise DetectionConfigError(
                "FBNetV2C4ROIHeads predicts boxes only (MODEL.MASK_ON / MODEL.KEYPOINT_ON must "
                "be False); for masks or keypoints use build_fbnetv2_fpn_backbone with "
                "StandardROIHeads."
            )
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        if len(in_features) != 1 or in_features[0] not in input_shape:
            raise DetectionConfigError(
                f"MODEL.ROI_HEADS.IN_FEATURES {in_features}: FBNetV2C4ROIHeads pools from one "
                f"backbone feature; the backbone gives {list(input_shape)}."
            )
        (feature,) = in_features
        arch, _ = resolve_arch(cfg)
        stages = detection_stages(arch)
        names = [s.name for s in stages]
        if feature not in names:
            raise DetectionConfigError(
                f"MODEL.ROI_HEADS.IN_FEATURES {in_features}: FBNetV2C4ROIHeads needs a feature of "
                f"the FBNet backbone of arch {arch.name!r}: {describe_features(stages)}."
            )
        first = names.index(feature) + 1  # the box head's first stage
        head_stages = stages[first:]
        if not head_stages:
            raise DetectionConfigError(
                f"FBNetV2C4ROIHeads: arch {arch.name!r} has no stage after {feature!r} before "
                f"its global pooling, so there is no box head to build; the C4 backbone's feature "
                f"must be an earlier stage ({describe_features(stages)})."
            )
        shape = input_shape[feature]
        if shape.channels != stages[first - 1].channels:
            raise DetectionConfigError(
                f"FBNetV2C4ROIHeads: feature {feature!r} has {shape.channels} channels, but arch "
                f"{arch.name!r} gives {stages[first - 1].channels} there; the backbone "
                f"and MODEL.MOBILE_CV_NAS must describe the same arch."
            )
        # the arch builder's blocks of those stages (named xif<stage>_<block>, as officially)
        blocks = FBNetBackbone(
            arch,
            norm=config_norm(cfg.MODEL.MOBILE_CV_NAS.NORM),
            stage_range=(first, first + len(head_stages)),
        ).stages
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        ret.update(
            in_feature=feature,
            pooler=ROIPooler(
                output_size=resolution,
                scales=(1.0 / shape.stride,),
                sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
                pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
            ),
            stages=blocks,
            box_predictor=FastRCNNOutputLayers(
                cfg, ShapeSpec(channels=head_stages[-1].channels, height=1, width=1)
            ),
        )
        return ret

    def _box_features(self, features, boxes):
        x = self.pooler([features[self.in_feature]], boxes)
        return self.stages(x).mean(dim=(2, 3))

    def forward(self, images, features, proposals, targets=None):
        del images
        if self.training:
            if targets is None:
                raise ValueError("FBNetV2C4ROIHeads needs targets in training mode.")
            proposals = self.label_and_sample_proposals(proposals, targets)
        predictions = self.box_predictor(
            self._box_features(features, [p.proposal_boxes for p in proposals])
        )
        if self.training:
            return proposals, self.box_predictor.losses(predictions, proposals)
        instances, _ = self.box_predictor.inference(predictions, proposals)
        return instances, {}

    def forward_with_given_boxes(self, features, instances):
        """Boxes only: nothing to add to given detections."""
        return instances


#: The names this module registers, per detectron2 registry.
HEAD_NAMES = {
    "RPN_HEAD": ("FBNetV2LightRPNHead",),
    "ROI_BOX_HEAD": ("FBNetV2BlockBoxHead",),
    "ROI_HEADS": ("FBNetV2C4ROIHeads",),
}
