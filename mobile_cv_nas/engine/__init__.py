"""tools/train_net.py on detectron2's engine: the DMaskingNAS search, classification
training and evaluation, resumable checkpoints and the launcher (this package and
mobile_cv_nas.detection are the only ones that import detectron2)."""

from .errors import ConfigError, OutputDirError
from .launch import launch
from .run import (
    check_output_dir,
    main,
    new_config,
    parse_args,
    setup_cfg,
)

__all__ = [
    "ConfigError",
    "OutputDirError",
    "check_output_dir",
    "launch",
    "main",
    "new_config",
    "parse_args",
    "setup_cfg",
]
