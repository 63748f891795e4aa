"""The `MODEL.MOBILE_CV_NAS.*` keys of the detection backbones and heads, and a config check.

    from detectron2.config import get_cfg
    from mobile_cv_nas.detection import add_fbnetv2_config

    cfg = add_fbnetv2_config(get_cfg())

Keys (defaults in brackets). `ARCH`, `ARCH_DEF`, `WIDTH_DIVISOR` and `NORM` are the project's
one arch namespace (mobile_cv_nas.config.arch, shared with classification; resolved by
`mobile_cv_nas.config.resolve_arch`, whose ArchConfigError names the key). In detection:

* `NORM` ["BN"]: the norm of every backbone block (and of the C4 box head's stages), as
  detectron2 names them: "BN", "SyncBN" (torch's SyncBatchNorm), "naiveSyncBN" (detectron2's
  NaiveSyncBatchNorm), "FrozenBN" (detectron2's FrozenBatchNorm2d everywhere: statistics and
  affine fixed), "GN" (group norm with gcd(32, channels) groups, so every mobile width works);
  the project's spellings "bn", "sync_bn", "naive_sync_bn", "frozen_bn", "gn" too; "" keeps the
  arch def's own. Batch-norm weights load into every kind of batch norm.

Detection adds:

* `OUT_FEATURES` [[]]: the bottom-up features the backbone returns, by the arch's stage names:
  `stage<i>` is the output of the last block of stage i (as in `model_zoo.get(...,
  out_features=...)`). A published FBNetV2 has stage0 (stride 2, the stem), stage1 (2),
  stage2 (4), stage3 (8), stage4 (16), stage5 (32); its last stage (global pooling) is the
  classifier's and no feature. Empty: per backbone, the last stage at strides 4/8/16/32 (FPN),
  8/16/32 (RetinaNet) or 16 (C4). For FPN/RetinaNet `MODEL.FPN.IN_FEATURES` may name them
  instead (they must agree when both are set).
* `HEAD_NORM` ["BN"]: the norm of the heads built from our layers (the light RPN head, the
  block box head): "BN", "SyncBN", "naiveSyncBN" or "GN". Not "FrozenBN" (freshly
  initialised heads must learn their norms) nor "".
* `BOX_HEAD_BLOCKS`: the rows (arch-def block rows) of `FBNetV2BlockBoxHead`, applied to the
  pooled RoI features, then a global average pool. The default is an `ir_k3_hs` with stride 2
  (7x7 -> 4x4, narrowing to 128 channels) and one with expansion 4.

Freezing uses detectron2's `MODEL.BACKBONE.FREEZE_AT` (default 2) over the arch's stages:
0 = nothing frozen; k >= 1 = stages 0 ... k-1 frozen (1 = the stem, stage0; 2 = stem and
stage1; ...). A frozen stage's parameters get requires_grad=False and its batch norms become
detectron2's FrozenBatchNorm2d (eval-mode statistics); everything after it is untouched. k may
be at most the number of stages in the backbone (the C4 box head's stages are never frozen).
"""

import difflib

from ..config.arch import add_arch_config

#: The default rows of FBNetV2BlockBoxHead (pooled RoIs of 7x7 -> 4x4 -> pooled to a vector).
DEFAULT_BOX_HEAD_BLOCKS = (
    {"op": "ir_k3_hs", "out_channels": 128, "stride": 2, "expansion": 1},
    {"op": "ir_k3_hs", "out_channels": 128, "expansion": 4},
)


class DetectionConfigError(ValueError):
    """A detection config the FBNetV2 backbones and heads cannot build; the message names the
    key and the fix."""


def add_fbnetv2_config(cfg):
    """Add the `MODEL.MOBILE_CV_NAS.*` keys (the arch keys of `add_arch_config`, plus
    OUT_FEATURES, HEAD_NORM, BOX_HEAD_BLOCKS; see the module docstring) to a detectron2 CfgNode
    and return it. Idempotent: keys already there keep their values."""
    detection = {
        "OUT_FEATURES": [],
        "HEAD_NORM": "BN",
        "BOX_HEAD_BLOCKS": [dict(row) for row in DEFAULT_BOX_HEAD_BLOCKS],
    }
    return add_arch_config(cfg, extra=detection)


def _registries(cfg):
    """(config key, registry) of every registry name the config's meta-architecture uses."""
    from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY
    from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
    from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY
    from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY

    model = cfg.MODEL
    out = [
        ("MODEL.META_ARCHITECTURE", META_ARCH_REGISTRY),
        ("MODEL.BACKBONE.NAME", BACKBONE_REGISTRY),
    ]
    two_stage = model.META_ARCHITECTURE in ("GeneralizedRCNN", "ProposalNetwork")
    if two_stage and model.PROPOSAL_GENERATOR.NAME != "PrecomputedProposals":
        out.append(("MODEL.PROPOSAL_GENERATOR.NAME", PROPOSAL_GENERATOR_REGISTRY))
        if model.PROPOSAL_GENERATOR.NAME in ("RPN", "RRPN"):
            out.append(("MODEL.RPN.HEAD_NAME", RPN_HEAD_REGISTRY))
    if model.META_ARCHITECTURE == "GeneralizedRCNN":
        out.append(("MODEL.ROI_HEADS.NAME", ROI_HEADS_REGISTRY))
        if model.ROI_HEADS.NAME not in ("Res5ROIHeads", "FBNetV2C4ROIHeads"):
            out.append(("MODEL.ROI_BOX_HEAD.NAME", ROI_BOX_HEAD_REGISTRY))
    return out


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def check_registered_names(cfg):
    """Raise DetectionConfigError when a registry name the config's meta-architecture uses
    (meta-arch, backbone, proposal generator, RPN head, RoI heads, box head) is not registered,
    listing the registered names (detectron2's own error lists none)."""
    for key, registry in _registries(cfg):
        name = _get(cfg, key)
        if name in registry:
            continue
        names = sorted(n for n, _ in registry)
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DetectionConfigError(
            f"{key}: {name!r} is not registered in detectron2's {registry._name} registry.{hint} "
            f"Registered: {', '.join(names)}. (The FBNetV2 ones are registered by "
            f"`import mobile_cv_nas.detection`.)"
        )
