"""mobile_cv_nas: FBNetV2 models and the DMaskingNAS search, as a detectron2 plugin."""

__version__ = "0.1.0"
