"""NAS.SAMPLING single_path: one hard Gumbel sample per decision (straight-through gradient, as
GDAS); only the sampled op of each block and the sampled input resolution run. The mixture
(the paper's sampling, the default) stays as it was."""

import pytest
import torch
import torch.nn.functional as F

from mobile_cv_nas.search import Supernet
from mobile_cv_nas.search.testing import randomize_supernet


def _count_calls(net):
    """{candidate module name: calls} for every block with several candidates, and the number
    of backbone runs (one per input resolution run)."""
    calls = {}

    def hook(name):
        def count(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1

        return count

    for block in net.blocks():
        if len(block.candidates) > 1:
            for op, candidate in block.candidates.items():
                calls[f"{block.name}/{op}"] = 0
                candidate.register_forward_hook(hook(f"{block.name}/{op}"))
    calls["backbone"] = 0
    net.backbone.register_forward_hook(hook("backbone"))
    return calls


def _pair(seed=5):
    """A mixture and a single-path supernet with the same weights, alphas and noise."""
    mixture = randomize_supernet(Supernet("tiny"), seed).train()
    single = Supernet("tiny", sampling="single_path").train()
    single.load_state_dict(mixture.state_dict())
    mixture.sampler.seed(3, rank=0)
    single.sampler.seed(3, rank=0)
    return mixture, single


def _loss(net, x):
    return F.cross_entropy(net(x), torch.arange(x.shape[0]) % net.space.num_classes)


def test_single_path_runs_only_the_sampled_op_and_resolution():
    _, net = _pair()
    calls = _count_calls(net)
    x = torch.randn(2, 3, 32, 32)
    _loss(net, x).backward()
    assert calls.pop("backbone") == 1  # one input resolution
    for block in net.blocks():
        if len(block.candidates) == 1:
            continue
        sampled = block.spec.ops[int(block.op_choice.gates.detach().argmax())]
        ran = {op for op in block.candidates if calls[f"{block.name}/{op}"]}
        assert ran == {sampled}, block.name
        assert calls[f"{block.name}/{sampled}"] == 1
        gates = block.op_choice.gates.detach()
        assert sorted(gates.tolist())[-1] == pytest.approx(1.0) and (gates == 0).sum() == 3
    assert (net.resolution_choice.gates.detach() == 0).sum() == 2


def test_single_path_gradients_reach_the_alphas():
    _, net = _pair()
    _loss(net, torch.randn(2, 3, 32, 32)).backward()
    for name, d in net.decisions.items():
        assert d.alpha.grad is not None, name
        if name.startswith(("op:", "out:", "resolution")):
            assert d.alpha.grad.abs().sum() > 0, name
    # weights of candidates that did not run get no gradient
    unrun = [
        c
        for b in net.blocks()
        if len(b.candidates) > 1
        for op, c in b.candidates.items()
        if op != b.spec.ops[int(b.op_choice.gates.detach().argmax())]
    ]
    assert unrun and all(p.grad is None for c in unrun for p in c.parameters())


def test_single_path_computes_the_mixture_at_the_same_hard_gates():
    """The mixture at the same one-hot gates runs every op and adds zeros: same output, and
    the same gradient for the sampled ops' weights."""
    mixture, single = _pair()
    mixture.sampler.mode = "hard"  # the mixture's forward at one-hot straight-through gates
    x = torch.randn(2, 3, 32, 32)
    calls = _count_calls(mixture)
    out_m, out_s = mixture(x), single(x)
    for name, d in single.decisions.items():
        assert torch.equal(d.gates, mixture.decisions[name].gates), name
    assert torch.allclose(out_m, out_s, atol=1e-6)
    assert calls.pop("backbone") == 3  # every resolution, and every op at each
    assert max(calls.values()) == 3


def test_mixture_is_the_gate_weighted_sum_of_every_candidate():
    net = randomize_supernet(Supernet("tiny"), 6).eval()
    net.sample()
    net.auto_sample = False
    calls = _count_calls(net)
    block = net.blocks()[2]
    x = torch.randn(2, block.in_width.max_channels, 8, 8)
    with torch.no_grad():
        p = block.same_width()
        expected = sum(
            block._run(op, x, p) * g
            for op, g in zip(block.candidates, block.op_choice.gates, strict=True)
        )
        assert torch.equal(block(x), expected)
    assert all(calls[f"{block.name}/{op}"] == 2 for op in block.candidates)


def test_single_path_eval_modes_still_work():
    """softmax gates (no zero) run the mixture; argmax gates the derived path, as before."""
    mixture, single = _pair()
    x = torch.randn(2, 3, 32, 32)
    for mode in ("softmax", "argmax"):
        mixture.eval().sampler.mode = mode
        single.eval().sampler.mode = mode
        with torch.no_grad():
            assert torch.allclose(mixture(x), single(x), atol=1e-6), mode


def test_unknown_sampling_is_refused():
    with pytest.raises(ValueError, match="Unknown sampling 'both'"):
        Supernet("tiny", sampling="both")
