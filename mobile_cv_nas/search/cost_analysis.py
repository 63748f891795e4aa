"""fvcore analysis of a supernet's effective cost: the loss term, attributed per module.

`EffectiveFlopCountAnalysis` is an fvcore `JitModelAnalysis`: it traces the supernet at its
current gates and lets fvcore attribute every conv and global-pool op to its module scopes.
The op handles do not count the traced (maximum-width) shapes; they report the effective
FLOPs that effective-shape propagation (`Supernet.layer_costs`, Eq. 4-10) assigns to the
layer that ran the op, split over resolution runs by their gates. Forward hooks queue those
values in execution order and each handle takes the next one, checking the op's output shape
against the layer's, so the totals are those of the loss term and the per-module breakdown is
fvcore's. Effective params come per module from the same propagation.
"""

import collections
import contextlib

import torch
from fvcore.nn.jit_analysis import JitModelAnalysis
from fvcore.nn.jit_handles import get_shape

_CONV_OPS = ("aten::_convolution",)
_POOL_OPS = ("aten::adaptive_avg_pool2d", "aten::mean", "aten::sum")


class EffectiveFlopCountAnalysis(JitModelAnalysis):
    def __init__(self, supernet, inputs=None):
        if inputs is None:
            r = supernet.max_resolution
            p = next(supernet.parameters())
            inputs = (torch.zeros(1, supernet.in_channels, r, r, dtype=p.dtype, device=p.device),)
        super().__init__(supernet, inputs)
        self._supernet = supernet
        self._queue = collections.deque()
        self._op_handles = {}
        self.set_op_handle(**{op: self._handle("conv") for op in _CONV_OPS})
        self.set_op_handle(**{op: self._handle("pool") for op in _POOL_OPS})
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)
        self._layers = None

    # -- effective values from effective-shape propagation --
    def layer_costs(self):
        if self._layers is None:
            with torch.no_grad():
                self._layers = collections.OrderedDict(self._supernet.layer_costs())
        return self._layers

    def params_by_module(self):
        """{module name: effective params} for every module and its ancestors ('' = total)."""
        out = collections.Counter()
        for name, cost in self.layer_costs().items():
            parts = name.split(".")
            for i in range(len(parts) + 1):
                out[".".join(parts[:i])] += float(cost.params)
        return out

    def total_params(self):
        return self.params_by_module()[""]

    # -- fvcore machinery --
    def _handle(self, kind):
        def handle(inputs, outputs):
            shape = get_shape(outputs[0])
            if self._queue and self._queue[0][0] == kind and self._queue[0][1] == shape:
                return self._queue.popleft()[2]
            return 0

        return handle

    @contextlib.contextmanager
    def _recording(self):
        modules = dict(self._supernet.named_modules())
        sampler = self._supernet.resolution_sampler
        hooks = []
        for name, cost in self.layer_costs().items():
            module = modules[name]
            kind = "conv" if isinstance(module, torch.nn.Conv2d) else "pool"
            flops = float(cost.flops)

            def record(mod, args, output, kind=kind, flops=flops):
                gate = 1.0 if sampler is None or sampler.active_gate is None else float(sampler.active_gate)
                self._queue.append((kind, list(output.shape), flops * gate))

            hooks.append(module.register_forward_hook(record))
        auto_sample = self._supernet.auto_sample
        self._supernet.auto_sample = False
        decisions = list(self._supernet.decisions.values())
        gates = [d.gates for d in decisions]
        for d in decisions:  # tracing takes the current gates as constants
            d.gates = d.current_gates().detach()
        try:
            with torch.no_grad():
                yield
        finally:
            self._supernet.auto_sample = auto_sample
            for d, g in zip(decisions, gates):
                d.gates = g
            for h in hooks:
                h.remove()

    def _analyze(self):
        if self._stats is not None:
            return self._stats
        self.layer_costs()
        self._queue.clear()
        with self._recording():
            stats = super()._analyze()
        if self._queue:
            raise RuntimeError(
                f"Effective-cost analysis out of step: {len(self._queue)} recorded layer costs "
                f"were not matched by traced ops (first: {self._queue[0][:2]})."
            )
        return stats
