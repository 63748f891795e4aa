"""fvcore Registry of block builders, keyed by op name.

A builder is called as `builder(in_channels, out_channels, stride=..., expansion=..., **options)`
and returns an `nn.Module`. Third parties add ops with the decorator:

    @BLOCK_REGISTRY.register()
    def my_op(in_channels, out_channels, stride=1, expansion=None, **options): ...
"""

import difflib
import functools
import inspect

from fvcore.common.registry import Registry


class BlockRegistry(Registry):
    """fvcore's Registry plus named variants of one builder and option introspection."""

    def __init__(self, name):
        super().__init__(name)
        self._expansion_free = set()

    def register_variant(self, name, builder, expansion_free=False, **fixed):
        """Register `builder` with some keyword arguments fixed, under `name`.

        `expansion_free`: the builder takes an `expansion` (arch defs pass one) but ignores it,
        so it is not an option of the op (see `uses_expansion`).
        """
        variant = functools.partial(builder, **fixed)
        variant.__name__ = name
        variant.__doc__ = builder.__doc__
        self._do_register(name, variant)
        if expansion_free:
            self._expansion_free.add(name)
        return variant

    def names(self):
        return sorted(name for name, _ in self)

    def get(self, name):
        if name not in self:
            close = difflib.get_close_matches(str(name), self.names(), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(
                f"Unknown block op {name!r}.{hint} Registered ops: {', '.join(self.names())}."
            )
        return super().get(name)

    def default_option(self, name, option):
        """The default value of `option` for op `name` (None if it has none)."""
        builder = self.get(name)
        if isinstance(builder, functools.partial) and option in builder.keywords:
            return builder.keywords[option]
        param = inspect.signature(builder).parameters.get(option)
        if param is None or param.default is inspect.Parameter.empty:
            return None
        return param.default

    def takes_option(self, name, option):
        accepted = self.accepted_options(name)
        return accepted is None or option in accepted

    def select_options(self, name, options):
        """The subset of `options` (a mapping) that the builder of `name` takes: every one for a
        builder with **kwargs. The one place where block options are filtered."""
        accepted = self.accepted_options(name)
        return {k: v for k, v in options.items() if accepted is None or k in accepted}

    def uses_expansion(self, name):
        """Whether op `name` has an expansion (mid) width: its builder takes `expansion` and does
        not ignore it (plain convs take none; `skip` takes one and ignores it)."""
        return name not in self._expansion_free and self.takes_option(name, "expansion")

    def accepted_options(self, name):
        """Keyword options the builder of `name` accepts (None = any, it takes **kwargs)."""
        builder = self.get(name)
        fixed = set(builder.keywords) if isinstance(builder, functools.partial) else set()
        params = inspect.signature(builder).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.name not in fixed} - {
            "in_channels",
            "out_channels",
        }


BLOCK_REGISTRY = BlockRegistry("BLOCK")


def build_block(op, in_channels, out_channels, **kwargs):
    return BLOCK_REGISTRY.get(op)(in_channels, out_channels, **kwargs)
