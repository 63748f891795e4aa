"""Exact bytes autograd saves for backward: `SavedTensorMeter`.

Built on `torch.autograd.graph.saved_tensors_hooks`; each storage is counted once (dedupe by
`untyped_storage().data_ptr()`), and storages of parameters (nn.Parameter, and views of them)
are counted apart, so that `bytes` is the activations only (the input batch included).
"""

import contextlib

import torch
import torch.nn as nn


def _storage_key(t):
    s = t.untyped_storage()
    return (t.device.type, t.device.index, s.data_ptr()), s.nbytes()


class SavedTensorMeter:
    """Context manager recording what autograd saves for backward, each storage once.

    Tensors that are `nn.Parameter`s, or share storage with one of `exclude` (e.g. a
    model's parameters), are counted apart as `excluded_bytes`.
        with SavedTensorMeter(model.parameters()) as m:
            loss = model(x).sum()
        m.bytes  # activations saved for loss.backward()
    """

    def __init__(self, exclude=()):
        self.excluded_keys = {_storage_key(p)[0] for p in exclude}
        self.storages = {}  # key -> nbytes of counted storages
        self.excluded = {}
        self.num_saved = 0
        self.module_stack = []
        self.by_module = {}
        self._hooks = None

    def _pack(self, t):
        self.num_saved += 1
        key, nbytes = _storage_key(t)
        if isinstance(t, nn.Parameter) or key in self.excluded_keys:
            self.excluded[key] = nbytes
        elif key not in self.storages:
            self.storages[key] = nbytes
            where = self.module_stack[-1] if self.module_stack else ""
            self.by_module[where] = self.by_module.get(where, 0) + nbytes
        return t

    @staticmethod
    def _unpack(t):
        return t

    @property
    def bytes(self):
        return sum(self.storages.values())

    @property
    def excluded_bytes(self):
        return sum(self.excluded.values())

    @contextlib.contextmanager
    def attribute_to_modules(self, model):
        """Within this context, also attribute saved bytes to the innermost running module."""
        stack = self.module_stack

        def enter(name):
            def hook(module, args):
                stack.append(name)

            return hook

        def leave(module, args, output):
            stack.pop()

        handles = []
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self._hooks = None
        return False
