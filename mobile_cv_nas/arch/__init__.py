"""Arch definitions (one schema for zoo models, search results and detection backbones),
the builder that turns them into modules, and official-format checkpoint I/O."""

from .builder import FBNetBackbone, FBNetClassifier, build_backbone, build_model
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_state_dict
from .schema import ArchDef, ArchDefError, BlockDef, load_arch_def, parse_arch_def

__all__ = [
    "ArchDef",
    "ArchDefError",
    "BlockDef",
    "load_arch_def",
    "parse_arch_def",
    "FBNetBackbone",
    "FBNetClassifier",
    "build_backbone",
    "build_model",
    "CheckpointError",
    "load_checkpoint",
    "read_checkpoint_state_dict",
]
