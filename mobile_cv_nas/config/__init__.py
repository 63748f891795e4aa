"""The project's config keys, added to a detectron2 (or fvcore) CfgNode by `add_*_config`.

detectron2-free: the functions take any fvcore CfgNode, so `get_cfg()` + these functions is
the launcher's config, and a detection config gets the same keys.
"""

from .arch import ArchConfigError, add_arch_config, resolve_arch
from .defaults import (
    add_classification_config,
    add_mobile_cv_nas_config,
    add_search_config,
)

__all__ = [
    "ArchConfigError",
    "add_arch_config",
    "resolve_arch",
    "add_classification_config",
    "add_mobile_cv_nas_config",
    "add_search_config",
]
