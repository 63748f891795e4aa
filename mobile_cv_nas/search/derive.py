"""From a trained supernet to a plain model: `derive_arch` (argmax of every decision) and
`inherit_weights` (slice the supernet's weights into the derived model).

The derived arch def is in the foundation's schema and builds with no search code. Where the
plain builder's defaults would build something other than what was searched (an expansion
conv kept although mid == in, no residual although in == out, a projecting skip although
the widths match), the row says so explicitly (`force_pw`, `residual`, `projection`).
"""

import torch

from ..arch import ArchDef, build_model
from ..blocks import InvertedPool, InvertedResidual, Skip


def _row(block, in_channels):
    op, module = block.chosen()
    out = block.out_choice.argmax()
    row = {"op": op, "out_channels": out}
    if block.stride != 1:
        row["stride"] = block.stride
    if isinstance(module, InvertedResidual):
        if module.pw is not None:
            mid = block.mid_choice.argmax()
            row["mid_channels"] = mid
            if mid == in_channels:
                row["force_pw"] = True
        else:  # searched without expansion: keep it so (width rounding would add one)
            row["mid_channels"] = in_channels
        if (in_channels == out and block.stride == 1) != module.use_residual:
            row["residual"] = module.use_residual
    elif isinstance(module, InvertedPool):
        row["mid_channels"] = block.mid_choice.argmax()
    elif isinstance(module, Skip):
        projection = module.conv is not None
        if (in_channels != out or block.stride != 1) != projection:
            row["projection"] = projection
    return row, out


def derive_arch(supernet, name=None):
    """The architecture with the largest alpha in every decision, as an ArchDef."""
    space = supernet.space
    stages = []
    channels = supernet.in_channels
    for block in supernet.backbone.stages.children():
        row, channels = _row(block, channels)
        if block.spec.stage >= len(stages):
            stages.append([])
        stages[block.spec.stage].append(row)
    return ArchDef(
        stages=stages,
        name=name or (f"{space.name}_derived" if space.name else None),
        input_size=supernet.resolution_choice.argmax(),
        width_divisor=space.width_divisor,
        num_classes=space.num_classes,
    )


def _slice_into(target, source):
    """Copy the leading corner of `source` into `target` (channel masks keep the first c)."""
    if target.dim() == 0:
        target.copy_(source)
        return
    index = tuple(slice(0, n) for n in target.shape)
    target.copy_(source[index])


@torch.no_grad()
def inherit_weights(supernet, model):
    """Initialise a model built from `derive_arch(supernet)` with the supernet's weights."""
    for block in supernet.backbone.stages.children():
        _, candidate = block.chosen()
        source = candidate.state_dict()
        target = getattr(model.backbone.stages, block.name)
        for key, tensor in target.state_dict().items():
            _slice_into(tensor, source[key])
    for key, tensor in model.head.state_dict().items():
        _slice_into(tensor, supernet.head.state_dict()[key])
    return model


def derive_model(supernet, inherit=True):
    """Build the derived plain model, optionally initialised from the supernet."""
    model = build_model(derive_arch(supernet))
    return inherit_weights(supernet, model) if inherit else model
