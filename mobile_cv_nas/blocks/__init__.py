"""The block factory: every op name in an arch def maps to a builder in BLOCK_REGISTRY.

Importing this package registers the built-in ops (see `ops.py`).
"""

from . import ops  # noqa: F401  (registers the built-in ops)
from .inverted_residual import InvertedResidual
from .pool_block import InvertedPool
from .registry import BLOCK_REGISTRY, BlockRegistry, build_block
from .skip import Skip

__all__ = [
    "BLOCK_REGISTRY",
    "BlockRegistry",
    "build_block",
    "InvertedResidual",
    "InvertedPool",
    "Skip",
]
