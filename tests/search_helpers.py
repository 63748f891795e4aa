"""Helpers shared by the supernet tests: random alphas/norm statistics, argmax evaluation, and
the check that the derived model computes the argmax supernet at its effective cost."""

import torch
import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.search import derive_model
from mobile_cv_nas.search.resolution_sampler import subsample_indices

NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, FrozenBatchNorm2d)


def randomize(net, seed=0):
    """Random alphas and norm statistics/affines, so equalities are not trivially met."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for d in net.decisions.values():
            d.alpha.copy_(torch.randn(d.alpha.shape, generator=g))
        for m in net.modules():
            if not isinstance(m, NORMS):
                continue
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if getattr(m, "running_var", None) is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


def favour(net, **choices):
    """Make the option `value` the argmax of each decision named (`{"out:0": 16}`)."""
    with torch.no_grad():
        for name, value in choices.items():
            d = net.decisions[name]
            d.alpha.fill_(-5.0)
            d.alpha[d.options.index(value)] = 5.0
    return net


def argmax_eval(net):
    """Eval mode, every decision one-hot at its argmax, gates kept for the next forwards."""
    net.eval()
    net.sampler.mode = "argmax"
    net.sample()
    net.auto_sample = False
    return net


def subsampled(x, resolution):
    hi = subsample_indices(x.shape[-2], resolution)
    wi = subsample_indices(x.shape[-1], resolution)
    return x[:, :, hi][:, :, :, wi]


def assert_derived_computes_argmax_supernet(net, batch=2, seed=0):
    """The derived model (weights inherited) gives the argmax supernet's outputs, and its
    fvcore FLOPs/params are exactly the supernet's effective cost. Returns the model."""
    argmax_eval(net)
    model = derive_model(net).eval()
    r = net.max_resolution
    x = torch.randn(batch, net.in_channels, r, r, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        a = net(x)
        b = model(subsampled(x, model.arch_def.input_size))
    scale = max(1.0, a.abs().max().item())
    assert (a - b).abs().max().item() <= 1e-5 * scale, model.arch_def.to_yaml()
    cost = net.effective_cost()
    report = count_flops(model)
    assert cost.flops.item() == report.flops
    assert cost.params.item() == report.params
    return model
