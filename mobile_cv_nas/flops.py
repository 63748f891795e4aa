"""FLOP and parameter counting under the published FBNet convention, on fvcore.

Published convention (the `flops_m` / `params_m` of the official model zoo):
  * FLOPs = conv/linear multiply-adds (no bias) + one op per element entering a global
    average pool; BatchNorm, activations, SE multiply and residual adds are not counted.
  * params = conv/linear weight elements only (no biases, no BN affine).
fvcore's default total also counts BatchNorm, so it is reported beside as `fvcore_total`.
"""

import dataclasses
import warnings

import numpy as np
import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_analysis import JitModelAnalysis
from fvcore.nn.jit_handles import (
    addmm_flop_jit,
    bmm_flop_jit,
    conv_flop_jit,
    get_shape,
    linear_flop_jit,
    matmul_flop_jit,
)

#: fvcore's multiply-add handles, the ones the published convention counts.
_COUNTED_OPS = {
    "aten::_convolution": conv_flop_jit,
    "aten::linear": linear_flop_jit,
    "aten::addmm": addmm_flop_jit,
    "aten::matmul": matmul_flop_jit,
    "aten::bmm": bmm_flop_jit,
}
#: The ops a global average pool traces to (one op per element entering it).
GLOBAL_POOL_OPS = ("aten::adaptive_avg_pool2d", "aten::mean")
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


class PublishedFlopCountAnalysis(JitModelAnalysis):
    """An fvcore analysis counting exactly what the published figures count."""

    def __init__(self, model, inputs):
        super().__init__(model, inputs)
        self.set_op_handle(**_COUNTED_OPS)
        self.set_op_handle(**dict.fromkeys(GLOBAL_POOL_OPS, global_pool_input_elements))
        self.set_op_handle(**dict.fromkeys(_IGNORED_OPS))
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)


def count_weight_params(model):
    """Conv/linear weight elements (the published params convention)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@dataclasses.dataclass
class CostReport:
    flops: int  # published convention, multiply-adds
    params: int  # published convention, weight elements
    fvcore_total: int  # fvcore's default total (counts BatchNorm too)
    by_module: dict[str, int]  # published-convention FLOPs per module

    @property
    def mflops(self):
        return self.flops / 1e6

    @property
    def mparams(self):
        return self.params / 1e6


def input_channels(model):
    """The image channels `model` takes: its `in_channels`, else its first conv's."""
    channels = getattr(model, "in_channels", None)
    if channels is None:
        first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first_conv is None:
            raise ValueError(
                f"Cannot tell how many input channels a {type(model).__name__} takes; pass an "
                f"example input tensor as input_size."
            )
        channels = first_conv.in_channels
    return channels


def _example_input(model, input_size):
    if isinstance(input_size, torch.Tensor):
        return input_size
    if input_size is None:
        input_size = model.arch_def.input_size
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    param = next(model.parameters())
    return torch.zeros(1, input_channels(model), *size, dtype=param.dtype, device=param.device)


def count_flops(model, input_size=None):
    """FLOPs/params of `model` for one image of `input_size` (int, (h, w) or a tensor).

    `input_size` defaults to the model's arch-def resolution; the image has the model's input
    channels (`model.in_channels`, e.g. 1 for a grayscale model).
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
