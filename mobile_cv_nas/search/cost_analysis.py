"""fvcore analysis of a supernet's effective cost: the loss term, attributed per module.

`EffectiveFlopCountAnalysis` is an fvcore `JitModelAnalysis`: it traces the supernet at its
current gates and lets fvcore attribute every conv and global-pool op to its module scopes.
The op handles do not count the traced (maximum-width) shapes; they report the effective
FLOPs that effective-shape propagation (`Supernet.layer_costs`, Eq. 4-10) assigns to the
layer that ran the op, split over resolution runs by their gates. Forward hooks queue those
values in execution order and each handle takes the next one, checking the op's output shape
against the layer's, so the totals are those of the loss term and the per-module breakdown is
fvcore's. Effective params come per module from the same propagation.

The trace runs once, when the analysis is created (at the supernet's current gates), through
fvcore's public API; settings that would make fvcore trace again afterwards are refused.
"""

import collections
import contextlib

import torch
from fvcore.nn.jit_analysis import JitModelAnalysis
from fvcore.nn.jit_handles import get_shape

from ..flops import GLOBAL_POOL_OPS
from .effective_shape import roll_up

_CONV_OPS = ("aten::_convolution",)
#: the supernet's pixel average over real pixels traces to a sum
_POOL_OPS = (*GLOBAL_POOL_OPS, "aten::sum")


class EffectiveFlopCountAnalysis(JitModelAnalysis):
    def __init__(self, supernet, inputs=None):
        if inputs is None:
            r = supernet.max_resolution
            p = next(supernet.parameters())
            inputs = (torch.zeros(1, supernet.in_channels, r, r, dtype=p.dtype, device=p.device),)
        super().__init__(supernet, inputs)
        self._supernet = supernet
        self._queue = collections.deque()
        self._recording_now = False
        self.set_op_handle(**{op: self._handle("conv") for op in _CONV_OPS})
        self.set_op_handle(**{op: self._handle("pool") for op in _POOL_OPS})
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)
        with torch.no_grad():
            self._layers = collections.OrderedDict(supernet.layer_costs())
        with self._recording():
            self.total()  # trace now, at the current gates; fvcore keeps the statistics
        if self._queue:
            raise RuntimeError(
                f"Effective-cost analysis out of step: {len(self._queue)} recorded layer costs "
                f"were not matched by traced ops (first: {self._queue[0][:2]})."
            )

    # -- effective values from effective-shape propagation --
    def layer_costs(self):
        return self._layers

    def params_by_module(self):
        """{module name: effective params} for every module and its ancestors ('' = total)."""
        return roll_up((name, float(cost.params)) for name, cost in self._layers.items())

    def total_params(self):
        return self.params_by_module()[""]

    # -- fvcore machinery --
    def _handle(self, kind):
        def handle(inputs, outputs):
            if not self._recording_now:
                raise RuntimeError(
                    "EffectiveFlopCountAnalysis traces once, when created; create a new one "
                    "instead of changing its settings (they make fvcore trace again)."
                )
            shape = get_shape(outputs[0])
            if self._queue and self._queue[0][0] == kind and self._queue[0][1] == shape:
                return self._queue.popleft()[2]
            return 0

        return handle

    @contextlib.contextmanager
    def _recording(self):
        modules = dict(self._supernet.named_modules())
        sampler = self._supernet.resolution_sampler
        # each resolution run takes its gate's share of a layer's (expected) cost; shares in
        # float64 summing to 1, so the runs add up to the loss term's value
        gates_sum = (
            1.0
            if sampler is None
            else float(sampler.choice.current_gates().detach().double().sum())
        )
        hooks = []
        for name, cost in self._layers.items():
            module = modules[name]
            kind = "conv" if isinstance(module, torch.nn.Conv2d) else "pool"
            flops = float(cost.flops)

            def record(mod, args, output, kind=kind, flops=flops):
                active = None if sampler is None else sampler.active_gate
                share = 1.0 if active is None else float(active) / gates_sum
                self._queue.append((kind, list(output.shape), flops * share))

            hooks.append(module.register_forward_hook(record))
        auto_sample = self._supernet.auto_sample
        self._supernet.auto_sample = False
        # the sampler's state (extra state, not a tensor) is not for the tracer, which only
        # takes tensors from the state_dict; the gates are fixed while tracing anyway
        gumbel = self._supernet.sampler
        del self._supernet.sampler
        decisions = list(self._supernet.decisions.values())
        gates = [d.gates for d in decisions]
        for d in decisions:  # tracing takes the current gates as constants
            d.gates = d.current_gates().detach()
        self._recording_now = True
        try:
            with torch.no_grad():
                yield
        finally:
            self._recording_now = False
            self._supernet.sampler = gumbel
            self._supernet.auto_sample = auto_sample
            for d, g in zip(decisions, gates, strict=True):
                d.gates = g
            for h in hooks:
                h.remove()
