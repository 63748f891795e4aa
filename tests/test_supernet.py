"""Supernet, effective costs and derivation over the shipped search spaces."""

import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mobile_cv_nas.arch import build_model, parse_arch_def
from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.search import Supernet, derive_arch, derive_model
from mobile_cv_nas.search.resolution_sampler import subsample_indices


def _randomize(net, seed=0):
    """Random alphas and BN statistics, so equalities are not trivially met by zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for d in net.decisions.values():
            d.alpha.copy_(torch.randn(d.alpha.shape, generator=g))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _argmax_eval(net):
    net.eval()
    net.sampler.mode = "argmax"
    net.sample()
    net.auto_sample = False
    return net


def _subsampled(x, resolution):
    idx = subsample_indices(x.shape[-1], resolution)
    return x[:, :, idx][:, :, :, idx]


def test_gradients_reach_every_alpha():
    net = Supernet("tiny").train()
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 10, (4,))
    loss = F.cross_entropy(net(x), y) + 1e-6 * net.cost()
    loss.backward()
    assert len(net.arch_parameters()) == len(net.decisions) > 10
    for name, decision in net.decisions.items():
        assert decision.alpha.grad is not None, name
        assert decision.alpha.grad.abs().sum() > 0, name
    alphas = {id(p) for p in net.arch_parameters()}
    assert not alphas & {id(p) for p in net.weight_parameters()}


def test_cost_term_alone_reaches_every_channel_and_resolution_alpha():
    net = Supernet("tiny")
    net.sample()
    net.cost().backward()
    for name, decision in net.decisions.items():
        if name.startswith(("out:", "mid:", "resolution")):
            assert decision.alpha.grad.abs().sum() > 0, name


@pytest.mark.parametrize("space", ["tiny", "fbnetv2_f"])
@pytest.mark.parametrize("seed", [0, 1])
def test_one_hot_effective_cost_equals_fvcore_of_derived_model(space, seed):
    net = _argmax_eval(Supernet(space))
    _randomize(net, seed)
    net.sample()
    cost = net.effective_cost()
    model = derive_model(net, inherit=False)
    report = count_flops(model, model.arch_def.input_size)
    assert cost.flops.item() == pytest.approx(report.flops, rel=5e-3)
    assert cost.params.item() == pytest.approx(report.params, rel=5e-3)


def test_soft_effective_cost_lies_between_smallest_and_largest():
    """With the ops fixed, the cost grows with every width/resolution: a soft sample costs
    more than all-smallest and less than all-largest."""
    net = Supernet("tiny")
    net.sample()
    ops = {n: d for n, d in net.decisions.items() if n.startswith("op:")}
    for d in ops.values():
        d.set_gates(F.one_hot(torch.tensor(0), len(d.options)).float())

    def cost_with(pick):
        for n, d in net.decisions.items():
            if n not in ops:
                i = d.options.index(pick(d.options))
                d.set_gates(F.one_hot(torch.tensor(i), len(d.options)).float())
        return net.effective_cost().flops.item()

    small = cost_with(min)
    large = cost_with(max)
    for n, d in net.decisions.items():
        if n not in ops:
            d.set_gates(F.softmax(torch.randn(len(d.options)), 0))
    soft = net.effective_cost().flops.item()
    assert small < soft < large


def test_weight_inheritance_gives_identical_outputs_tiny():
    net = Supernet("tiny")
    _randomize(net, 3)
    # a few training steps so the weights are not at their init
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,))).backward()
        opt.step()
    _argmax_eval(net)
    x = torch.randn(3, 3, 32, 32)
    model = derive_model(net).eval()
    with torch.no_grad():
        diff = (net(x) - model(_subsampled(x, model.arch_def.input_size))).abs().max().item()
    assert diff <= 1e-5


def test_weight_inheritance_gives_identical_outputs_fbnetv2_f():
    net = _argmax_eval(Supernet("fbnetv2_f"))
    _randomize(net, 5)
    net.sample()
    x = torch.randn(1, 3, 224, 224)
    model = derive_model(net).eval()
    assert not any("choice" in type(m).__name__.lower() for m in model.modules())
    with torch.no_grad():
        a = net(x)
        b = model(_subsampled(x, model.arch_def.input_size))
    assert (a - b).abs().max().item() <= 1e-5 * max(1.0, a.abs().max().item())


def test_derive_from_f_space_yields_the_favoured_architecture():
    net = Supernet("fbnetv2_f")
    rng = random.Random(0)
    favoured = {}
    with torch.no_grad():
        for name, d in net.decisions.items():
            i = rng.randrange(len(d.options))
            d.alpha.fill_(-3.0)
            d.alpha[i] = 3.0
            favoured[name] = d.options[i]
    arch = derive_arch(net)
    assert arch.input_size == favoured["resolution"]
    blocks = list(net.backbone.stages.children())
    rows = [row for stage in arch.stages for row in stage]
    assert len(rows) == len(blocks)
    for block, row in zip(blocks, rows):
        name = block.name
        assert row["op"] == favoured.get(f"op:{name}", block.spec.ops[0])
        assert row["out_channels"] == favoured.get(
            f"out:{block.spec.decision_id}", block.out_choice.options[0]
        )
        assert row.get("stride", 1) == block.spec.stride
        if "mid_channels" in row and f"mid:{name}" in favoured:
            assert row["mid_channels"] == favoured[f"mid:{name}"]
    # the derived arch def is plain data in the foundation schema: it round-trips and builds
    model = build_model(parse_arch_def(arch.to_dict()))
    assert model(torch.zeros(1, 3, arch.input_size, arch.input_size)).shape == (1, 1000)


@pytest.mark.parametrize("space,resolution", [("fbnetv2_f", 224), ("fbnetv2_l", 256), ("fbnetv2_p", 288)])
def test_paper_spaces_run_forward_backward_at_max_resolution(space, resolution):
    net = Supernet(space).train()
    assert net.max_resolution == resolution
    x = torch.randn(2, 3, resolution, resolution)
    logits = net(x)
    assert logits.shape == (2, 1000)
    (F.cross_entropy(logits, torch.tensor([1, 2])) + 1e-9 * net.cost()).backward()
    assert all(d.alpha.grad is not None for d in net.decisions.values())
    assert torch.isfinite(logits).all()


def test_p_space_costs_params():
    assert Supernet("fbnetv2_p").space.cost == "params"
    net = Supernet("tiny")
    net.sample()
    assert torch.equal(net.cost(), net.effective_cost().flops)


def test_supernet_moves_with_to():
    net = Supernet("tiny").double()
    y = net(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert y.dtype == torch.float64


@pytest.mark.parametrize("space", ["tiny", "fbnetv2_f"])
def test_fvcore_effective_analysis_matches_the_loss_term(space):
    from mobile_cv_nas.search import EffectiveFlopCountAnalysis

    net = Supernet(space)
    _randomize(net, 2)
    net.sample()  # soft Gumbel gates: every op, width and resolution contributes
    total, per_module = net.effective_cost(by_module=True)
    analysis = EffectiveFlopCountAnalysis(net)
    assert analysis.total() == pytest.approx(total.flops.item(), rel=1e-5)
    assert analysis.total_params() == pytest.approx(total.params.item(), rel=1e-5)
    by_module = analysis.by_module()
    for block in net.backbone.stages.children():
        name = f"backbone.stages.{block.name}"
        assert by_module[name] == pytest.approx(per_module[name].flops.item(), rel=1e-5)
    assert by_module["head"] == pytest.approx(per_module["head"].flops.item(), rel=1e-5)


def test_fvcore_effective_analysis_one_hot_equals_derived_model():
    from mobile_cv_nas.search import EffectiveFlopCountAnalysis

    net = _argmax_eval(Supernet("tiny"))
    _randomize(net, 4)
    net.sample()
    model = derive_model(net, inherit=False)
    report = count_flops(model, model.arch_def.input_size)
    analysis = EffectiveFlopCountAnalysis(net)
    assert analysis.total() == pytest.approx(report.flops, rel=5e-3)
    assert analysis.total_params() == pytest.approx(report.params, rel=5e-3)


def test_rows_without_expansion_use_the_ops_default():
    space = {
        "name": "defaults", "resolutions": [32], "width_divisor": 8, "num_classes": 5,
        "stages": [
            [{"op": "conv_k3_hs", "channels": 16, "stride": 2}],
            [{"ops": ["ir_k3", "skip"], "channels": [8, 16, 8]}],  # IR default: expansion 1
            [{"op": "ir_pool_hs", "channels": 32}],  # pool block default: expansion 6
        ],
    }
    net = _argmax_eval(Supernet(space))
    _randomize(net, 6)
    net.sample()
    ir = net.backbone.stages.xif1_0.candidates["ir_k3"]
    assert ir.pw is None and ir.mid_channels == 16
    assert net.backbone.stages.xif2_0.candidates["ir_pool_hs"].mid_channels == 16 * 6
    model = derive_model(net).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("stem_width", [8, 12, 16])
def test_block_without_expansion_stays_so_whatever_input_width(stem_width):
    """expansion 1 on a searched input width: no pw in the supernet, none in the derived
    model either (the width divisor must not round 12 up to 16 and add one)."""
    space = {
        "name": "no_pw", "resolutions": [32], "width_divisor": 8, "num_classes": 5,
        "stages": [
            [{"op": "conv_k3_hs", "channels": [8, 16, 4], "stride": 2}],
            [{"ops": ["ir_k3", "ir_k3_se_hs"], "channels": [8, 16, 8], "expansion": 1}],
            [{"op": "ir_pool_hs", "channels": 32, "expansion": 4}],
        ],
    }
    net = _argmax_eval(Supernet(space))
    _randomize(net, 7)
    with torch.no_grad():
        stem = net.decisions["out:0"]
        stem.alpha.fill_(-5.0)
        stem.alpha[stem.options.index(stem_width)] = 5.0
    net.sample()
    model = derive_model(net).eval()
    block = model.backbone.stages.xif1_0
    assert block.pw is None and block.mid_channels == stem_width
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max().item() <= 1e-5
    report = count_flops(model, 32)
    assert net.effective_cost().flops.item() == pytest.approx(report.flops, rel=5e-3)


def _random_space(rng):
    micro = ["ir_k3", "ir_k5", "ir_k3_hs", "ir_k5_hs", "ir_k3_se", "ir_k5_se", "ir_k3_se_hs", "ir_k5_se_hs", "skip"]

    def channels():
        low = rng.choice([4, 8, 12, 16])
        return [low, low + rng.choice([0, 4, 8, 12]), 4]

    stages = [[{"op": rng.choice(["conv_k3", "conv_k3_hs"]), "channels": channels(), "stride": 2}]]
    for _ in range(rng.randint(2, 4)):
        row = {
            "ops": rng.sample(micro, rng.randint(1, 4)),
            "channels": channels(),
            "stride": rng.choice([1, 2]),
            "repeat": rng.randint(1, 2),
        }
        if rng.random() < 0.8:
            low = rng.choice([1, 2])
            row["expansion"] = [low, low + rng.choice([0, 1, 2]), 1]
        stages.append([row])
        if rng.random() < 0.5:  # a stride-1 row of the same range continues the decision
            stages[-1].append(dict(row, stride=1, repeat=1))
    stages.append([{"op": "ir_pool_hs", "channels": 24, "expansion": rng.choice([2, 4])}])
    resolutions = rng.choice([[32], [32, 24], [32, 28, 24, 16]])
    return {"name": "random", "resolutions": resolutions, "width_divisor": rng.choice([1, 4, 8]),
            "num_classes": 7, "stages": stages}


@pytest.mark.parametrize("seed", range(12))
def test_random_spaces_derive_exactly_what_was_searched(seed):
    """Property check over random spaces and random alphas: the derived model computes the
    argmax supernet, and its fvcore cost is the supernet's effective cost."""
    rng = random.Random(seed)
    net = _argmax_eval(Supernet(_random_space(rng)))
    _randomize(net, seed)
    net.sample()
    model = derive_model(net).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = net(x)
        b = model(_subsampled(x, model.arch_def.input_size))
    assert (a - b).abs().max().item() <= 1e-5 * max(1.0, a.abs().max().item())
    cost = net.effective_cost()
    report = count_flops(model, model.arch_def.input_size)
    assert cost.flops.item() == pytest.approx(report.flops, rel=5e-3)
    assert cost.params.item() == pytest.approx(report.params, rel=5e-3)
