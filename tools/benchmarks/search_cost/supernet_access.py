"""Every place where the benchmark reaches into the supernet's internals, in one module.

The rest of the benchmark builds supernets through the public constructors (`Supernet`,
`GumbelSampler`, `derive_arch`, `build_model`) and otherwise goes through the functions
here, so that a change of the supernet's internals is adapted in this file alone.

What this module relies on:

* `MaskedChannel` (search/masked_channel.py), a masked conv(-norm)(-act) layer:
    - the class itself (`isinstance`, to find masked layers);
    - `.channels`, its width source (search/channels.py) with `.widths()` (the width of each
      combination, ints) and `.width_gates()` (their weights, a tensor aligned with the
      widths), and `.name` if it has one (for repr);
    - its children `conv` (an `nn.Conv2d`), optional `bn` (a BatchNorm: `weight`, `bias`,
      `running_mean`, `running_var`, `eps`, `momentum`, `affine`, `track_running_stats`) and
      optional `relu` (the activation module).
* `SearchBlock` (search/search_block.py), the children of `supernet.backbone.stages`:
  `.name`, and its output width source `.out_width`, read as above.
* `Supernet` (search/supernet.py): `.decisions` and `.fixed_decisions` (name -> `Decision`
  with `.options` and the logits `.alpha`), `.auto_sample`, `.weight_parameters()`.
"""

import torch

from mobile_cv_nas.search.masked_channel import MaskedChannel
from mobile_cv_nas.search.supernet import Supernet

# ------------------------------------------------------------------------- masked layers


def is_masked_layer(module):
    """Whether `module` is a masked (channel-searched) conv layer of the supernet."""
    return isinstance(module, MaskedChannel)


def masked_layers(model):
    """[(parent module, child name, masked layer)] for every masked layer of `model`."""
    return [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if is_masked_layer(child)
    ]


def _source_widths(source):
    return tuple(int(w) for w in source.widths())


def masked_widths(layer):
    """The channel count of each option of a masked layer: a tuple of ints."""
    return _source_widths(layer.channels)


def masked_gates(layer):
    """A zero-argument callable returning the layer's current gates, aligned with
    `masked_widths(layer)`. Called at every forward (the gates are resampled each step)."""
    return layer.channels.width_gates


def masked_label(layer):
    """A short name of what drives the layer's widths (for repr)."""
    return getattr(layer.channels, "name", type(layer.channels).__name__)


def masked_parts(layer):
    """(conv, bn or None, activation or None): the plain layer's parts inside a masked layer."""
    return layer.conv, layer._modules.get("bn"), layer._modules.get("relu")


# ------------------------------------------------------------------------- the supernet


def block_output_options(supernet):
    """[(block name, tuple of output-width options)] for every block, in forward order."""
    out = []
    for block in supernet.blocks():
        out.append((block.name, _source_widths(block.out_width)))
    return out


def _all_decisions(supernet):
    return list(supernet.decisions.values()) + list(supernet.fixed_decisions.values())


def set_max_decisions(supernet):
    """Make every decision's argmax its largest option (max widths, max resolution)."""
    with torch.no_grad():
        for d in _all_decisions(supernet):
            best = max(range(len(d.options)), key=lambda i: d.options[i])
            d.alpha.zero_()
            d.alpha[best] = 1.0
    return supernet


def alpha_grads(supernet):
    """{decision name: a copy of its logits' gradient (None if none)} of searched decisions."""
    return {
        name: None if d.alpha.grad is None else d.alpha.grad.detach().clone()
        for name, d in supernet.decisions.items()
    }


def keep_current_gates(supernet):
    """Stop the supernet from resampling its gates at each forward (reuse the last ones)."""
    supernet.auto_sample = False
    return supernet


def weight_parameters(model):
    """The parameters SGD trains: a supernet's weights (not its alphas), else all of them."""
    if isinstance(model, Supernet):
        return list(model.weight_parameters())
    return list(model.parameters())
