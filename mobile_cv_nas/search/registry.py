"""fvcore Registry of the search adapters: how each kind of block is searched.

Each entry is a `BlockAdapter` subclass (see `adapters.py`) whose `block_type` is the module
class it handles; the supernet finds a candidate's adapter through its type.
"""

from fvcore.common.registry import Registry

SEARCH_OP_REGISTRY = Registry("SEARCH_OP")
