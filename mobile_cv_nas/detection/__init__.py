"""FBNet backbones and light heads for detectron2 (imports detectron2; `import mobile_cv_nas`
does not import this package).

The one line a detectron2 script needs, before building the model:

    import mobile_cv_nas.detection  # registers the backbones, heads and fbnet_zoo://

    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from mobile_cv_nas.detection import FBNetV2DetectionCheckpointer, add_fbnetv2_config

    cfg = add_fbnetv2_config(get_cfg())
    cfg.merge_from_file("my_detection.yaml")
    model = build_model(cfg)
    FBNetV2DetectionCheckpointer(model).load_weights(cfg.MODEL.WEIGHTS)  # fbnet_zoo://FBNetV2_F4

(`load_weights` refuses weights that do not fit the model, see weights_fit.py; detectron2's
`load` loads what it can.)

Registered names (none is one of detectron2's, nor of d2go's FBNetV2 entries):

| registry | name | what |
| --- | --- | --- |
| BACKBONE_REGISTRY | `build_fbnetv2_c4_backbone` | one feature, the last stride-16 stage |
| BACKBONE_REGISTRY | `build_fbnetv2_fpn_backbone` | FPN p2-p6 (LastLevelMaxPool) |
| BACKBONE_REGISTRY | `build_fbnetv2_retinanet_backbone` | FPN p3-p7 (LastLevelP6P7) |
| RPN_HEAD_REGISTRY | `FBNetV2LightRPNHead` | depthwise-separable conv RPN head |
| ROI_BOX_HEAD_REGISTRY | `FBNetV2BlockBoxHead` | FBNet blocks + global pool (FPN) |
| ROI_HEADS_REGISTRY | `FBNetV2C4ROIHeads` | C4 box head = the arch's stride-32 stage(s) |

Feature names are the arch's stages, `stage<i>` (see `config.py`); the FPN outputs are
detectron2's `p2` ... `p7`. A C4 config sets MODEL.RPN.IN_FEATURES and
MODEL.ROI_HEADS.IN_FEATURES to ["stage4"] (for the published FBNetV2s); a config naming a
feature the backbone does not give is refused when the backbone is built, with the list.

The ImageNet models take RGB images normalised with the zoo's mean/std (on 0-1 pixels):
detectron2 configs set INPUT.FORMAT "RGB", MODEL.PIXEL_MEAN [123.675, 116.28, 103.53] and
MODEL.PIXEL_STD [58.395, 57.12, 57.375] (the catalog's mean/std times 255).

An arch made for another number of image channels (e.g. a Fashion-MNIST model with
in_channels 1) is refused with an error naming the fix (INPUT.FORMAT "L" and one-value pixel
statistics for grayscale detection); its weights are not adapted.
"""

from .backbone import (
    BACKBONE_NAMES,
    D2_NORMS,
    FBNetV2Backbone,
    FBNetV2FPN,
    build_fbnetv2_c4_backbone,
    build_fbnetv2_fpn_backbone,
    build_fbnetv2_retinanet_backbone,
    check_consumers,
    detection_stages,
)
from .catalog import ZOO_PREFIX, FBNetZooHandler, register_zoo_handler, zoo_weights_file
from .classification_loading import (
    ConversionReport,
    classification_weights,
    convert_classification_state_dict,
    load_classification_weights,
)
from .coco_check import (
    IMAGE_CHECKS,
    CheckedCocoJson,
    DetectionDataError,
    check_coco_json,
    check_image_files,
)
from .config import (
    DetectionConfigError,
    add_fbnetv2_config,
    check_registered_names,
)
from .detection_checkpoint import FBNetV2DetectionCheckpointer
from .heads import HEAD_NAMES, FBNetV2BlockBoxHead, FBNetV2C4ROIHeads, FBNetV2LightRPNHead

#: Every name this package registers, per detectron2 registry.
REGISTERED_NAMES = {"BACKBONE": BACKBONE_NAMES, **HEAD_NAMES}

__all__ = [
    "REGISTERED_NAMES",
    "add_fbnetv2_config",
    "check_registered_names",
    "DetectionConfigError",
    "DetectionDataError",
    "IMAGE_CHECKS",
    "CheckedCocoJson",
    "check_coco_json",
    "check_image_files",
    "FBNetV2Backbone",
    "FBNetV2FPN",
    "build_fbnetv2_c4_backbone",
    "build_fbnetv2_fpn_backbone",
    "build_fbnetv2_retinanet_backbone",
    "check_consumers",
    "detection_stages",
    "D2_NORMS",
    "FBNetV2LightRPNHead",
    "FBNetV2BlockBoxHead",
    "FBNetV2C4ROIHeads",
    "ZOO_PREFIX",
    "ConversionReport",
    "FBNetV2DetectionCheckpointer",
    "FBNetZooHandler",
    "classification_weights",
    "convert_classification_state_dict",
    "load_classification_weights",
    "register_zoo_handler",
    "zoo_weights_file",
]
