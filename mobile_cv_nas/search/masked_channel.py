"""Channel search by masking (FBNetV2 Sec. 3.1, Eq. 3): one conv at the maximum width, its
output multiplied by M = sum_i g_i 1_i (see `channels.py` for where M comes from).

Where the mask sits. `MaskedChannel` wraps a conv-norm-act layer and applies M *through the
norm module*: the norm is called (`torch.func.functional_call`) with its affine parameters
replaced by weight * M and bias * M, which is exactly norm-then-mask, for any norm: a batch
norm updates its running statistics as usual, a SyncBatchNorm still all-reduces them under
DDP, a frozen batch norm stays frozen (its buffers are only read), a group norm works alike.
Folding M into the affine parameters also means autograd keeps no extra copy of the feature
map. A layer without an affine norm multiplies its output instead.

So the mask sits after the norm and BEFORE the activation: act(norm(conv(x)) * M). A norm in
training mode after the mask would renormalise the dropped channels back to its bias, and
act(0) = 0 keeps them at zero. Against Eq. 1, sum_i g_i PAD(b_i(x)) = act(norm(conv(x))) * M
(mask after the activation):
  * with one-hot gates (M is 0/1) both are equal for every activation;
  * with soft gates they are equal for ReLU (relu(m y) = m relu(y) for m >= 0), and differ for
    h-swish, which is not positively homogeneous: hswish(m y) != m hswish(y) for 0 < m < 1.
    tests/test_search_ops.py measures the difference (the soft-gate supernet is a relaxation
    either way; the derived model is what is trained and evaluated).
"""

import torch
import torch.nn as nn
from torch.func import functional_call


def _affine_norm(module):
    return (
        module is not None
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and isinstance(getattr(module, "bias", None), torch.Tensor)
    )


class MaskedChannel(nn.Module):
    """A conv(-norm)(-act) layer at max width whose output channels are masked by `channels`
    (a width source, see `channels.py`).

    It takes over the layer's children (`conv`, `bn`, `relu`), so state_dict keys stay those
    of the plain layer. `groups` > 1 masks each of the conv's `groups` output blocks alike
    (a grouped conv followed by a channel shuffle).
    """

    def __init__(self, layer, channels, groups=1):
        super().__init__()
        for name, child in layer.named_children():
            self.add_module(name, child)
        self.__dict__["channels"] = channels  # decisions are registered once, by the supernet
        self.groups = groups
        if channels.max_channels != self.conv.out_channels:
            raise ValueError(
                f"MaskedChannel: widest option {channels.max_channels} != layer width "
                f"{self.conv.out_channels}."
            )

    def forward(self, x):
        mask = self.channels.mask(self.groups)
        y = self.conv(x)
        norm = self._modules.get("bn")
        if _affine_norm(norm) and not torch.jit.is_tracing():
            y = functional_call(
                norm, {"weight": norm.weight * mask, "bias": norm.bias * mask}, (y,)
            )
        else:  # no affine norm, or a jit trace (fvcore analyses): the same values
            if norm is not None:
                y = norm(y)
            y = y * mask.view(1, -1, 1, 1)
        act = self._modules.get("relu")
        return y if act is None else act(y)

    def parts(self):
        """(conv, norm or None, activation or None): the plain layer's modules, as taken over.

        For code that rebuilds the layer in another form (the search-cost benchmark's
        conventional DNAS, one conv per width) without reading the child names `bn`/`relu`,
        which only some layers have."""
        return self.conv, self._modules.get("bn"), self._modules.get("relu")

    def extra_repr(self):
        return f"widths={list(self.channels.widths())}, groups={self.groups}"
