"""The `MODEL.MOBILE_CV_NAS.*` keys of the detection backbones and heads, and a config check.

    from detectron2.config import get_cfg
    from mobile_cv_nas.detection import add_fbnetv2_config

    cfg = add_fbnetv2_config(get_cfg())

Keys (defaults in brackets):

* `ARCH` [""]: the backbone's architecture: a model zoo name (`model_zoo.list_models()`, a
  built-in or user-catalog model, any letter case) or an arch YAML file (a path ending in
  .yaml/.yml, or any existing file). Empty: the inline `ARCH_DEF`.
* `ARCH_DEF` [{}]: an inline arch def (the schema of mobile_cv_nas/arch/schema.py), used when
  `ARCH` is empty.
* `WIDTH_DIVISOR` [0]: rounding of the mid and SE widths; 0 keeps the arch's. Another value
  changes the widths, so the ImageNet weights then no longer fit.
* `NORM` ["BN"]: the norm of every backbone block (and of the C4 box head's stages), as
  detectron2 names them: "BN", "SyncBN" (torch's SyncBatchNorm), "naiveSyncBN" (detectron2's
  NaiveSyncBatchNorm), "FrozenBN" (detectron2's FrozenBatchNorm2d everywhere: statistics and
  affine fixed), "GN" (group norm with gcd(32, channels) groups, so every mobile width works);
  the project's spellings "bn", "sync_bn", "frozen_bn", "gn" too; "" keeps the arch def's own.
  Batch-norm weights load into every kind of batch norm.
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

import copy
import difflib

#: The default rows of FBNetV2BlockBoxHead (pooled RoIs of 7x7 -> 4x4 -> pooled to a vector).
DEFAULT_BOX_HEAD_BLOCKS = (
    {"op": "ir_k3_hs", "out_channels": 128, "stride": 2, "expansion": 1},
    {"op": "ir_k3_hs", "out_channels": 128, "expansion": 4},
)


class DetectionConfigError(ValueError):
    """A detection config the FBNetV2 backbones and heads cannot build; the message names the
    key and the fix."""


def _defaults(cfg):
    return {
        "ARCH": "",
        "ARCH_DEF": type(cfg)(new_allowed=True),
        "WIDTH_DIVISOR": 0,
        "NORM": "BN",
        "OUT_FEATURES": [],
        "HEAD_NORM": "BN",
        "BOX_HEAD_BLOCKS": [dict(row) for row in DEFAULT_BOX_HEAD_BLOCKS],
    }


def add_fbnetv2_config(cfg):
    """Add the `MODEL.MOBILE_CV_NAS.*` keys (see the module docstring) to a detectron2 CfgNode and
    return it. Idempotent: keys already there keep their values."""
    if "MOBILE_CV_NAS" not in cfg.MODEL:
        cfg.MODEL.MOBILE_CV_NAS = type(cfg)()
    node = cfg.MODEL.MOBILE_CV_NAS
    for key, value in _defaults(cfg).items():
        if key not in node:
            node[key] = value
    return cfg


def node_to_dict(node):
    """A plain dict (deep copy) of a CfgNode, e.g. the inline ARCH_DEF."""
    if isinstance(node, dict):
        return {k: node_to_dict(v) for k, v in node.items()}
    return copy.deepcopy(node)


def require_fbnetv2_config(cfg):
    """The MODEL.MOBILE_CV_NAS node; a clear error when add_fbnetv2_config was not called."""
    node = cfg.MODEL.get("MOBILE_CV_NAS")
    if node is None:
        raise DetectionConfigError(
            "The config has no MODEL.MOBILE_CV_NAS keys: call "
            "mobile_cv_nas.detection.add_fbnetv2_config(cfg) before merging the config file."
        )
    return node


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
