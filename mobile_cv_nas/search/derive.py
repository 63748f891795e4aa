"""From a trained supernet to a plain model: `derive_arch` (argmax of every decision) and
`inherit_weights` (slice the supernet's weights into the derived model).

The derived arch def is in the foundation's schema and builds with no search code. Each
block's row comes from its search adapter; where the plain builder's defaults would build
something other than what was searched (an expansion conv kept although mid == in), the row
says so explicitly (`force_pw`), and mid widths are given exactly (`mid_channels`).
"""

from ..arch import ArchDef, build_model
from .adapters import copy_leading_corner


def derive_arch(supernet, name=None):
    """The architecture with the largest alpha in every decision, as an ArchDef."""
    space = supernet.space
    stages = []
    channels = supernet.in_channels
    for block in supernet.blocks():
        row, channels = block.derive_row(channels)
        if block.spec.stage >= len(stages):
            stages.append([])
        stages[block.spec.stage].append(row)
    return ArchDef(
        stages=stages,
        name=name or (f"{space.name}_derived" if space.name else None),
        input_size=supernet.resolution_choice.argmax(),
        in_channels=supernet.in_channels,
        width_divisor=space.width_divisor,
        num_classes=space.num_classes,
    )


def inherit_weights(supernet, model):
    """Initialise a model built from `derive_arch(supernet)` with the supernet's weights.

    Every tensor gets the leading corner of the supernet's (masks keep the first channels);
    a tensor the supernet's does not cover raises rather than broadcasts.
    """
    if model.in_channels != supernet.in_channels:
        raise ValueError(
            f"The model takes {model.in_channels} input channels, the supernet "
            f"{supernet.in_channels}: build it from derive_arch(supernet)."
        )
    for block in supernet.blocks():
        block.inherit_into(getattr(model.backbone.stages, block.name))
    copy_leading_corner(model.head, supernet.head)
    return model


def derive_model(supernet, inherit=True, norm=None):
    """Build the derived plain model (with `norm`, default each block's own), optionally
    initialised from the supernet."""
    model = build_model(derive_arch(supernet), norm=norm)
    return inherit_weights(supernet, model) if inherit else model
