"""fvcore Registry of the search ops (what the supernet wraps around plain blocks)."""

from fvcore.common.registry import Registry

SEARCH_OP_REGISTRY = Registry("SEARCH_OP")
