"""FLOP and parameter counting under the published FBNet convention, on fvcore.

Published convention (the `flops_m` / `params_m` of the official model zoo):
  * FLOPs = conv/linear multiply-adds (no bias) + one op per element entering a global
    average pool; BatchNorm, activations, SE multiply and residual adds are not counted.
  * params = conv/linear weight elements only (no biases, no BN affine).
fvcore's default total also counts BatchNorm, so it is reported beside as `fvcore_total`.
"""

import dataclasses
import warnings
from typing import Dict

import numpy as np
import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape

#: fvcore default handles kept under the published convention (multiply-adds).
_COUNTED_OPS = ("aten::_convolution", "aten::linear", "aten::addmm", "aten::matmul", "aten::bmm")
#: Ops deliberately not counted (listed so fvcore does not warn about them).
_IGNORED_OPS = (
    "aten::batch_norm",
    "aten::add",
    "aten::add_",
    "aten::mul",
    "aten::mul_",
    "aten::div",
    "aten::div_",
    "aten::sub",
    "aten::rsub",
    "aten::relu",
    "aten::relu_",
    "aten::hardtanh",
    "aten::hardtanh_",
    "aten::sigmoid",
    "aten::flatten",
    "aten::upsample_nearest2d",
    "aten::index",
    "aten::index_select",
)


def global_pool_input_elements(inputs, outputs):
    """One op per element entering an average pool."""
    return int(np.prod(get_shape(inputs[0])))


class PublishedFlopCountAnalysis(FlopCountAnalysis):
    """fvcore FlopCountAnalysis counting exactly what the published figures count."""

    def __init__(self, model, inputs):
        super().__init__(model, inputs)
        self._op_handles = {k: v for k, v in self._op_handles.items() if k in _COUNTED_OPS}
        self._op_handles["aten::adaptive_avg_pool2d"] = global_pool_input_elements
        self._op_handles["aten::mean"] = global_pool_input_elements
        self.set_op_handle(**{op: None for op in _IGNORED_OPS})
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)


def count_weight_params(model):
    """Conv/linear weight elements (the published params convention)."""
    return sum(
        m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )


@dataclasses.dataclass
class CostReport:
    flops: int  # published convention, multiply-adds
    params: int  # published convention, weight elements
    fvcore_total: int  # fvcore's default total (counts BatchNorm too)
    by_module: Dict[str, int]  # published-convention FLOPs per module

    @property
    def mflops(self):
        return self.flops / 1e6

    @property
    def mparams(self):
        return self.params / 1e6


def _example_input(model, input_size):
    if isinstance(input_size, torch.Tensor):
        return input_size
    if input_size is None:
        input_size = model.arch_def.input_size
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    param = next(model.parameters())
    return torch.zeros(1, 3, *size, dtype=param.dtype, device=param.device)


def count_flops(model, input_size=None):
    """FLOPs/params of `model` for one image of `input_size` (int, (h, w) or a tensor).

    `input_size` defaults to the model's arch-def resolution.
    """
    x = _example_input(model, input_size)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit tracing deprecation chatter
            published = PublishedFlopCountAnalysis(model, (x,))
            flops, by_module = published.total(), dict(published.by_module())
            raw = FlopCountAnalysis(model, (x,))
            raw.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            fvcore_total = raw.total()
    finally:
        model.train(was_training)
    return CostReport(
        flops=int(flops),
        params=count_weight_params(model),
        fvcore_total=int(fvcore_total),
        by_module=by_module,
    )
