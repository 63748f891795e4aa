"""Supernet, effective costs and derivation over the shipped search spaces."""

import io
import random

import pytest
import torch
import torch.nn.functional as F

from mobile_cv_nas.arch import build_model, parse_arch_def
from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.search import (
    EffectiveFlopCountAnalysis,
    GumbelSampler,
    Supernet,
    derive_arch,
    derive_model,
    inherit_weights,
    load_search_space,
)
from mobile_cv_nas.search.channels import expanded_width
from mobile_cv_nas.search.testing import (
    argmax_eval,
    assert_derived_computes_argmax_supernet,
    favour,
    random_search_space,
    randomize_supernet,
    subsampled,
)

#: The paper-scale (full-size F/L/P) cases: `-m "not slow"` leaves them out (pytest.ini).
SLOW = pytest.mark.slow


def _per_block(name):
    data = load_search_space(name).to_dict()
    data["channel_decisions"] = "per_block"
    return data


def _train_step(net, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = net.max_resolution
    x = torch.randn(batch, net.in_channels, r, r, generator=g)
    y = torch.randint(0, net.space.num_classes, (batch,), generator=g)
    return F.cross_entropy(net(x), y) + 1e-7 * net.cost()


def test_gradients_reach_every_alpha():
    net = Supernet("tiny").train()
    _train_step(net).backward()
    assert len(net.arch_parameters()) == len(net.decisions) > 10
    for name, decision in net.decisions.items():
        assert decision.alpha.grad is not None, name
        assert decision.alpha.grad.abs().sum() > 0, name
    alphas = {id(p) for p in net.arch_parameters()}
    assert not alphas & {id(p) for p in net.weight_parameters()}


def test_cost_term_alone_reaches_every_width_and_resolution_alpha():
    net = Supernet("tiny")
    net.sample()
    net.cost().backward()
    for name, decision in net.decisions.items():
        if name.startswith(("out:", "expansion:", "resolution")):
            assert decision.alpha.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "space",
    ["tiny", pytest.param("fbnetv2_f", marks=SLOW), pytest.param("per_block_f", marks=SLOW)],
)
def test_argmax_supernet_is_the_derived_model_at_its_exact_cost(space):
    space = _per_block("fbnetv2_f") if space == "per_block_f" else space
    for seed in (0, 1):
        net = randomize_supernet(Supernet(space), seed)
        assert_derived_computes_argmax_supernet(net, batch=1, seed=seed)


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


def test_weight_inheritance_after_training_steps():
    net = randomize_supernet(Supernet("tiny"), 3)
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.05)
    for step in range(3):  # the weights are not at their init
        opt.zero_grad()
        _train_step(net, batch=8, seed=step).backward()
        opt.step()
    model = assert_derived_computes_argmax_supernet(net, batch=3)
    assert not any(
        "Choice" in type(m).__name__ or "Masked" in type(m).__name__ for m in model.modules()
    )


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
    rows = [row for stage in arch.stages for row in stage]
    assert len(rows) == len(net.blocks())
    in_channels = 3
    for block, row in zip(net.blocks(), rows, strict=True):
        name = block.name
        assert row["op"] == favoured.get(f"op:{name}", block.spec.ops[0])
        out = favoured.get(f"out:{block.spec.decision_id}", block.spec.channels[0])
        assert row["out_channels"] == out
        assert row.get("stride", 1) == block.spec.stride
        if f"expansion:{name}" in favoured and row["op"] != "skip":
            rate = favoured[f"expansion:{name}"]
            assert row["mid_channels"] == expanded_width(in_channels, rate, 8), name
        in_channels = out
    # the derived arch def is plain data in the foundation schema: it round-trips and builds
    model = build_model(parse_arch_def(arch.to_dict()))
    assert model(torch.zeros(1, 3, arch.input_size, arch.input_size)).shape == (1, 1000)


@SLOW  # the full-size F/L/P supernets at 224-288 pixels
@pytest.mark.parametrize("space", ["fbnetv2_f", "fbnetv2_l", "fbnetv2_p"])
def test_paper_spaces_train_at_their_max_resolution(space):
    net = Supernet(space).train()
    assert net.max_resolution == {"fbnetv2_f": 224, "fbnetv2_l": 256, "fbnetv2_p": 288}[space]
    loss = _train_step(net, batch=1)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(d.alpha.grad is not None for d in net.decisions.values())


def test_params_cost_path():
    """`cost: params` makes the loss term the effective parameter count: exact for one-hot
    gates, blind to the input resolution, differentiable in every width alpha."""
    data = load_search_space("tiny").to_dict()
    data["cost"] = "params"
    net = randomize_supernet(Supernet(data), 4)
    net.sample()
    net.cost().backward()
    assert net.decisions["resolution"].alpha.grad is None  # params do not depend on it
    for name, d in net.decisions.items():
        if name.startswith(("out:", "expansion:")):
            assert d.alpha.grad.abs().sum() > 0, name
    argmax_eval(net)
    model = derive_model(net, inherit=False)
    assert net.cost().item() == count_flops(model).params
    assert Supernet("fbnetv2_p").space.cost == "params"


def test_softmax_and_hard_sampling_through_the_supernet():
    net = randomize_supernet(Supernet("tiny"), 5).eval()
    x = torch.randn(2, 3, 32, 32)
    net.sampler.mode = "softmax"
    with torch.no_grad():
        first, second = net(x), net(x)
    assert torch.equal(first, second)  # no noise: deterministic
    for d in net.decisions.values():
        assert torch.allclose(d.gates, F.softmax(d.alpha, 0))
    # hard: one-hot gates forward (the output of one sampled architecture), soft gradients
    net.sampler.mode = "hard"
    net.sampler.seed(11)
    out = net(x)
    out.sum().backward()
    for name, d in net.decisions.items():  # straight-through: every alpha gets a gradient,
        assert d.alpha.grad is not None, name  # (zero for an expansion of an unpicked IR op)
        if not name.startswith("expansion:"):
            assert d.alpha.grad.abs().sum() > 0, name
    sampled = {n: int(d.gates.detach().argmax()) for n, d in net.decisions.items()}
    assert all(sorted(d.gates.detach().tolist())[-1] == 1.0 for d in net.decisions.values())
    favour(net, **{n: d.options[sampled[n]] for n, d in net.decisions.items()})
    model = derive_model(net).eval()
    with torch.no_grad():
        expected = model(subsampled(x, model.arch_def.input_size))
    assert (out.detach() - expected).abs().max().item() <= 1e-5


def test_supernet_moves_with_to():
    """Every decision, fixed ones included, and every mask follow `.to()`."""
    net = Supernet("tiny").to(torch.float64)
    y = net(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert y.dtype == torch.float64
    for block in net.blocks():
        for decision in (block.in_width, block.out_width, block.op_choice, block.expansion):
            if decision is not None:
                assert decision.alpha.dtype == torch.float64, decision.name
                assert decision.current_gates().dtype == torch.float64, decision.name
        for ctx in block.contexts.values():
            for source in (ctx.in_width, ctx.out_width, ctx.mid_width):
                assert source.mask().dtype == torch.float64, block.name
    assert net.effective_cost().flops.dtype == torch.float64


@pytest.mark.parametrize("space", ["tiny", pytest.param("fbnetv2_f", marks=SLOW)])
def test_fvcore_effective_analysis_matches_the_loss_term(space):
    net = randomize_supernet(Supernet(space), 2)
    net.sample()  # soft Gumbel gates: every op, width and resolution contributes
    total, per_module = net.effective_cost(by_module=True)
    analysis = EffectiveFlopCountAnalysis(net)
    assert analysis.total() == pytest.approx(total.flops.item(), rel=1e-12)
    assert analysis.total_params() == pytest.approx(total.params.item(), rel=1e-12)
    by_module = analysis.by_module()
    for block in net.blocks():
        name = f"backbone.stages.{block.name}"
        assert by_module[name] == pytest.approx(per_module[name].flops.item(), rel=1e-12)
    assert by_module["head"] == pytest.approx(per_module["head"].flops.item(), rel=1e-12)


def test_fvcore_effective_analysis_one_hot_equals_derived_model():
    net = argmax_eval(randomize_supernet(Supernet("tiny"), 4))
    model = derive_model(net, inherit=False)
    report = count_flops(model)
    analysis = EffectiveFlopCountAnalysis(net)
    assert analysis.total() == report.flops
    assert analysis.total_params() == report.params


def test_rows_without_expansion_use_the_ops_default():
    space = {
        "name": "defaults",
        "resolutions": [32],
        "width_divisor": 8,
        "num_classes": 5,
        "stages": [
            [{"op": "conv_k3_hs", "channels": 16, "stride": 2}],
            [{"ops": ["ir_k3", "skip"], "channels": [8, 16, 8]}],  # IR default: expansion 1
            [{"op": "ir_pool_hs", "channels": 32}],  # pool block default: expansion 6
        ],
    }
    net = randomize_supernet(Supernet(space), 6)
    ir = net.backbone.stages.xif1_0.candidates["ir_k3"]
    assert ir.pw is None and ir.mid_channels == 16
    assert net.backbone.stages.xif2_0.candidates["ir_pool_hs"].mid_channels == 16 * 6
    assert_derived_computes_argmax_supernet(net)


@pytest.mark.parametrize("stem_width", [8, 12, 16])
def test_block_without_expansion_stays_so_whatever_input_width(stem_width):
    """expansion 1 on a searched input width: no pw in the supernet, none in the derived
    model either (the width divisor must not round 12 up to 16 and add one)."""
    space = {
        "name": "no_pw",
        "resolutions": [32],
        "width_divisor": 8,
        "num_classes": 5,
        "stages": [
            [{"op": "conv_k3_hs", "channels": [8, 16, 4], "stride": 2}],
            [{"ops": ["ir_k3", "ir_k3_se_hs"], "channels": [8, 16, 8], "expansion": 1}],
            [{"op": "ir_pool_hs", "channels": 32, "expansion": 4}],
        ],
    }
    net = favour(randomize_supernet(Supernet(space), 7), **{"out:0": stem_width})
    model = assert_derived_computes_argmax_supernet(net)
    block = model.backbone.stages.xif1_0
    assert block.pw is None and block.mid_channels == stem_width


def test_expansion_rates_apply_to_the_picked_input_width():
    """mid = rate x the INPUT width picked (not the widest input): the derived row's mid width
    is make_divisible(c_in x e) for every (c_in, e)."""
    space = {
        "name": "rates",
        "resolutions": [16],
        "width_divisor": 8,
        "num_classes": 3,
        "stages": [
            [{"op": "conv_k3", "channels": [16, 32, 16], "stride": 2}],
            [{"op": "ir_k3", "channels": 24, "expansion": [0.75, 2.25, 0.75]}],
        ],
    }
    for c_in in (16, 32):
        for rate in (0.75, 1.5, 2.25):
            net = randomize_supernet(Supernet(space), 8)
            favour(net, **{"out:0": c_in, "expansion:xif1_0": rate})
            model = assert_derived_computes_argmax_supernet(net)
            assert model.backbone.stages.xif1_0.mid_channels == expanded_width(c_in, rate, 8)


@pytest.mark.parametrize("seed", range(12))
def test_random_spaces_derive_exactly_what_was_searched(seed):
    """Property check over random spaces (both channel-decision modes, 1 or 3 input
    channels) and random alphas: the derived model computes the argmax supernet, and its
    fvcore cost is exactly the supernet's effective cost."""
    net = randomize_supernet(Supernet(random_search_space(random.Random(seed))), seed)
    assert_derived_computes_argmax_supernet(net)


def test_per_block_residuals_follow_the_picked_widths():
    """per_block: a stride-1 block adds its input with weight P(in == out); the derived block
    has its residual (and a skip is the identity) exactly when the widths picked agree."""
    space = {
        "name": "pb",
        "resolutions": [16],
        "width_divisor": 8,
        "num_classes": 3,
        "channel_decisions": "per_block",
        "stages": [
            [{"op": "conv_k3", "channels": [8, 16, 8], "stride": 2}],
            [{"ops": ["ir_k3", "skip"], "channels": [8, 16, 8], "expansion": 2}],
        ],
    }
    net = Supernet(space)
    net.sample()
    p = net.backbone.stages.xif1_0.same_width()
    g_in, g_out = net.decisions["out:0"].gates, net.decisions["out:1"].gates
    assert p.item() == pytest.approx((g_in * g_out).sum().item())  # options [8, 16] alike
    for c_in, c_out, op in ((8, 8, "ir_k3"), (8, 16, "ir_k3"), (16, 16, "skip"), (16, 8, "skip")):
        randomize_supernet(net, c_in + c_out)
        favour(net, **{"out:0": c_in, "out:1": c_out, "op:xif1_0": op})
        block = assert_derived_computes_argmax_supernet(net).backbone.stages.xif1_0
        if op == "ir_k3":
            assert block.use_residual == (c_in == c_out)
        else:
            assert (block.conv is None) == (c_in == c_out)


def test_one_channel_input_flows_through_search_derive_and_count():
    net = randomize_supernet(Supernet("tiny", in_channels=1), 9)
    model = assert_derived_computes_argmax_supernet(net)
    assert model.in_channels == model.arch_def.in_channels == 1
    assert model.backbone.stages.xif0_0.conv.in_channels == 1
    report = count_flops(model)  # counts a 1-channel image
    assert report.flops == net.effective_cost().flops.item()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert parse_arch_def(model.arch_def.to_dict()).in_channels == 1


def test_inheritance_refuses_shapes_it_would_broadcast():
    net = argmax_eval(Supernet("tiny", in_channels=1))
    model = build_model(derive_arch(net), in_channels=3)  # a 3-channel stem
    with pytest.raises(ValueError, match="input channels"):
        inherit_weights(net, model)
    model.in_channels = 1  # even past that check, the stem weight (16, 3, 3, 3) is refused
    with pytest.raises(ValueError, match="would broadcast"):
        inherit_weights(net, model)


def test_state_round_trip_reproduces_the_next_gates():
    """Mid-search state (weights, alphas, temperature, noise position) saved with torch.save
    and loaded with weights_only into a fresh supernet: the next gates and outputs equal the
    original's."""
    net = Supernet("tiny", sampler=GumbelSampler(seed=3))
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.1)
    for step in range(3):
        opt.zero_grad()
        _train_step(net, seed=step).backward()
        opt.step()
    net.sampler.tau = 2.5
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    other = Supernet("tiny", sampler=GumbelSampler(seed=999))
    other.load_state_dict(state)
    assert other.sampler.tau == 2.5
    x = torch.randn(2, 3, 32, 32)
    net.eval(), other.eval()
    with torch.no_grad():
        assert torch.equal(net(x), other(x))
    for name, d in net.decisions.items():
        assert torch.equal(d.gates, other.decisions[name].gates), name


def test_state_dict_stores_every_tensor_once():
    net = Supernet("tiny")
    state = net.state_dict(keep_vars=True)
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
    pointers = [t.untyped_storage().data_ptr() for t in tensors if t.numel()]
    assert len(pointers) == len(set(pointers))
    assert "sampler._extra_state" in state
    assert all(not k.startswith("resolution_sampler") for k in state)


@pytest.mark.parametrize("norm", ["frozen_bn", "gn"])
def test_supernet_with_other_norms_trains_a_step_with_masks(norm):
    net = Supernet("tiny", norm=norm).train()
    assert any("Masked" in type(m).__name__ for m in net.modules())
    frozen = {k: v.clone() for k, v in net.state_dict().items() if ".bn." in k}
    weights = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    loss = _train_step(net)
    loss.backward()
    weights.step()
    assert torch.isfinite(loss)
    assert all(d.alpha.grad.abs().sum() > 0 for d in net.decisions.values())
    if norm == "frozen_bn":  # neither the optimiser nor the forward touched a frozen BN
        for k, v in net.state_dict().items():
            if k in frozen:
                assert torch.equal(v, frozen[k]), k
        net = randomize_supernet(net, 10)
        model = assert_derived_computes_argmax_supernet(net)  # derived with each block's bn
        assert model is not None


def test_derived_model_takes_the_norm_asked_for():
    from torchvision.ops import FrozenBatchNorm2d

    net = argmax_eval(randomize_supernet(Supernet("tiny", norm="frozen_bn"), 11))
    model = derive_model(net, norm="frozen_bn").eval()
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        diff = (net(x) - model(subsampled(x, model.arch_def.input_size))).abs().max().item()
    assert diff <= 1e-5


@pytest.mark.parametrize("bad", [None, 42, ["tiny"]])
def test_supernet_needs_a_search_space(bad):
    with pytest.raises(TypeError, match="Expected a search space.*tiny"):
        Supernet(bad)
