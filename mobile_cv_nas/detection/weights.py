"""The names this module held before it was split the detectron2 way, for
`from mobile_cv_nas.detection.weights import ...`: the fbnet_zoo:// handler is in catalog.py,
the classification -> detection conversion in classification_loading.py, the checkpointer in
detection_checkpoint.py. New code imports them from mobile_cv_nas.detection."""

from .catalog import ZOO_PREFIX, FBNetZooHandler, register_zoo_handler, zoo_weights_file
from .classification_loading import (
    ConversionReport,
    classification_weights,
    convert_classification_state_dict,
    load_classification_weights,
)
from .detection_checkpoint import FBNetV2DetectionCheckpointer

__all__ = [
    "ZOO_PREFIX",
    "FBNetZooHandler",
    "register_zoo_handler",
    "zoo_weights_file",
    "ConversionReport",
    "classification_weights",
    "convert_classification_state_dict",
    "load_classification_weights",
    "FBNetV2DetectionCheckpointer",
]
