"""The DMaskingNAS equations: Gumbel sampling, channel masks (Eq. 1 == Eq. 3), effective
shapes, and resolution subsampling (Fig. 2, 4, 5)."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mobile_cv_nas.layers import ConvBNAct
from mobile_cv_nas.search import (
    ChannelChoice,
    Decision,
    ExpandedChannels,
    GumbelSampler,
    MaskedChannel,
    ResolutionSampler,
    TemperatureSchedule,
    range_options,
    same_width_probability,
)
from mobile_cv_nas.search.resolution_sampler import scatter_positions, subsample_indices


def _randomize_bn(bn):
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)


# ---------------- Gumbel sampling ----------------
def test_temperature_schedule_is_the_papers():
    schedule = TemperatureSchedule()
    assert schedule(0) == pytest.approx(5.0)
    assert schedule(1) == pytest.approx(5.0 * math.exp(-0.045))
    assert schedule(10) == pytest.approx(5.0 * math.exp(-0.45))
    assert TemperatureSchedule(tau0=2.0, decay=0.5)(3) == pytest.approx(0.25)
    assert TemperatureSchedule(min_tau=0.1)(10_000) == 0.1  # never reaches 0


@pytest.mark.parametrize("tau", [0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_positive(tau):
    with pytest.raises(ValueError, match="temperature") as err:
        GumbelSampler(tau=tau)
    assert "> 0" in str(err.value) or "finite" in str(err.value)
    sampler = GumbelSampler()
    with pytest.raises(ValueError, match="temperature"):
        sampler.tau = tau
    assert sampler.tau == 5.0  # a refused value leaves the sampler as it was
    with pytest.raises(ValueError, match="tau0"):
        TemperatureSchedule(tau0=tau)


def test_gumbel_sampling_is_seeded_and_reproducible():
    alpha = torch.tensor([0.3, -1.0, 2.0, 0.0])
    a = [GumbelSampler(seed=7).sample(alpha) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    s = GumbelSampler(seed=7)
    first, second = s.sample(alpha), s.sample(alpha)
    assert not torch.equal(first, second)  # fresh noise every draw
    torch.manual_seed(123)  # the global RNG does not affect the sampler
    assert torch.equal(GumbelSampler(seed=7).sample(alpha), first)
    assert first.sum().item() == pytest.approx(1.0)


def test_gumbel_soft_samples_follow_softmax_of_alpha():
    alpha = torch.tensor([1.0, 0.0, -1.0])
    s = GumbelSampler(tau=1e-3, seed=0)  # near-zero tau: argmax of alpha + Gumbel noise
    counts = torch.zeros(3)
    for _ in range(4000):
        counts[s.sample(alpha).argmax()] += 1
    assert torch.allclose(counts / 4000, F.softmax(alpha, 0), atol=0.03)


def test_hard_mode_is_one_hot_with_soft_gradient():
    alpha = torch.tensor([0.5, 0.1, -0.3], requires_grad=True)
    g = GumbelSampler(mode="hard", seed=1).sample(alpha)
    assert sorted(g.detach().tolist()) == [0.0, 0.0, 1.0]
    (g * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_evaluation_modes_switch_sampling_off():
    alpha = torch.tensor([0.2, 1.5, -0.4])
    assert torch.allclose(GumbelSampler(mode="softmax").sample(alpha), F.softmax(alpha, 0))
    assert GumbelSampler(mode="argmax").sample(alpha).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="sampling mode"):
        GumbelSampler(mode="greedy")


# ---------------- channel masking ----------------
def test_channel_options_from_low_high_step():
    assert range_options((16, 28, 4), "channels", "int") == [16, 20, 24, 28]
    assert range_options((12, 16, 4), "channels", "int") == [12, 16]
    assert range_options(8, "channels", "int") == [8]
    assert range_options((0.75, 4.5, 0.75), "expansion", "number") == [
        0.75,
        1.5,
        2.25,
        3.0,
        3.75,
        4.5,
    ]


def test_effective_channels_example_from_the_paper():
    d = Decision([16, 12])
    d.set_gates([0.8, 0.2])
    assert d.expected().item() == pytest.approx(15.2)
    c = ChannelChoice([16, 12])  # kept ascending: gates follow the sorted options
    c.set_gates([0.2, 0.8])
    assert c.effective_channels().item() == pytest.approx(15.2)


def test_mask_is_weighted_sum_of_prefix_indicators():
    c = ChannelChoice([2, 4, 5])
    c.set_gates([0.5, 0.3, 0.2])
    assert torch.allclose(c.mask(), torch.tensor([1.0, 1.0, 0.5, 0.5, 0.2]))


@pytest.mark.parametrize("act", [None, "relu"])
def test_eq1_with_shared_weights_equals_eq3(act):
    """sum_i g_i pad(conv_{c_i}(x)) == conv(x) * M, for a conv + BN at the widest width."""
    widths = [4, 8, 12, 16]
    layer = ConvBNAct(6, 16, 3, act=None).eval()
    _randomize_bn(layer.bn)
    choice = ChannelChoice(widths)
    gates = torch.tensor([0.1, 0.2, 0.3, 0.4])
    choice.set_gates(gates)
    x = torch.randn(2, 6, 9, 9)
    full = layer(x)
    eq1 = sum(
        g * F.pad(full[:, :c], (0, 0, 0, 0, 0, 16 - c)) for g, c in zip(gates, widths, strict=True)
    )
    masked = MaskedChannel(ConvBNAct(6, 16, 3, act=None).eval(), choice)
    masked.load_state_dict(layer.state_dict())
    assert (masked(x) - eq1).abs().max().item() <= 1e-6
    if act == "relu":  # relu is positively homogeneous: masking before it equals after it
        relu_layer = MaskedChannel(ConvBNAct(6, 16, 3, act="relu").eval(), choice)
        relu_layer.load_state_dict(layer.state_dict())
        assert (relu_layer(x) - F.relu(eq1)).abs().max().item() <= 1e-6


def test_masked_channel_keeps_plain_state_dict_keys():
    layer = ConvBNAct(3, 8, 3, act="hswish")
    keys = list(layer.state_dict())
    masked = MaskedChannel(layer, ChannelChoice([4, 8]))
    assert list(masked.state_dict()) == keys


def test_masked_batchnorm_survives_training_mode():
    """In training mode a zeroed channel stays zero (BN alone would turn it into its bias)."""
    layer = ConvBNAct(3, 8, 1, act="hswish").train()
    _randomize_bn(layer.bn)
    choice = ChannelChoice([5, 8])
    choice.set_gates([1.0, 0.0])
    y = MaskedChannel(layer, choice)(torch.randn(4, 3, 6, 6))
    assert y[:, 5:].abs().max().item() == 0.0
    assert y[:, :5].abs().max().item() > 0.0
    assert layer.bn.num_batches_tracked.item() == 1


def _saved_bytes(fn):
    storages = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_masking_saves_no_copy_of_the_feature_map():
    """Folding M into BN: autograd keeps what the plain layer keeps plus a few vectors."""
    x = torch.randn(8, 16, 32, 32)
    plain = ConvBNAct(16, 64, 1, act="relu").train()
    choice = ChannelChoice(list(range(2, 65, 2)))  # 32 options
    choice.alpha.data.normal_()
    choice.sample(GumbelSampler(seed=0))
    masked = MaskedChannel(ConvBNAct(16, 64, 1, act="relu").train(), choice)
    plain_bytes = _saved_bytes(lambda: plain(x).sum())
    masked_bytes = _saved_bytes(lambda: masked(x).sum())
    feature_map = 8 * 64 * 32 * 32 * 4
    assert masked_bytes - plain_bytes < 0.05 * feature_map


# ---------------- resolution subsampling ----------------
def _sampler(module, resolutions, gates, stride):
    choice = Decision(resolutions)
    choice.set_gates(gates)
    return ResolutionSampler(module, choice, stride=stride)


def test_resolution_sampler_places_small_run_at_its_pixels_zeros_elsewhere():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 32, 32)
    out = _sampler(conv, [32, 24], [0.0, 1.0], stride=2)(x)
    assert out.shape == (2, 5, 16, 16)
    idx = subsample_indices(32, 24)
    direct = conv(x[:, :, idx][:, :, :, idx])
    pos = scatter_positions(32, 24, 2)
    assert (out[:, :, pos[:, None], pos[None, :]] - direct).abs().max().item() == 0.0
    holes = torch.ones(16, 16, dtype=torch.bool)
    holes[pos[:, None], pos[None, :]] = False
    assert out[:, :, holes].abs().max().item() == 0.0
    # interspersed, not periphery: the holes are spread over the grid, not one border band
    assert pos.tolist() == sorted(set(pos.tolist())) and pos[-1].item() > len(pos) - 1


def test_resolution_sampler_is_gumbel_weighted_sum():
    conv = nn.Conv2d(3, 4, 1)
    x = torch.randn(1, 3, 16, 16)
    g = torch.tensor([0.6, 0.4])
    out = _sampler(conv, [16, 8], g, stride=1)(x)
    full = conv(x)
    small = conv(x[:, :, ::2][:, :, :, ::2])
    expected = g[0] * full
    expected[:, :, ::2, ::2] += g[1] * small
    assert torch.allclose(out, expected, atol=1e-6)


def test_resolution_sampler_preserves_receptive_field():
    """Fig. 4: an impulse reaches exactly the small map's 3x3 neighbourhood (D), at the
    scattered positions; periphery padding (E) would put it elsewhere."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.constant_(conv.weight, 1.0)
    x = torch.zeros(1, 1, 16, 16)
    idx = subsample_indices(16, 8)
    x[0, 0, idx[3], idx[5]] = 1.0  # an input pixel that the subsampling keeps
    out = _sampler(conv, [16, 8], [0.0, 1.0], stride=1)(x)
    pos = scatter_positions(16, 8, 1)
    expected = torch.zeros(16, 16)
    for i in (2, 3, 4):
        for j in (4, 5, 6):
            expected[pos[i], pos[j]] = 1.0
    assert torch.equal(out[0, 0], expected)
    periphery = F.pad(conv(x[:, :, idx][:, :, :, idx]), (0, 8, 0, 8))[0, 0]
    assert not torch.equal(periphery, expected)


def test_resolution_sampler_rejects_wrong_input_size():
    with pytest.raises(ValueError, match="largest option"):
        _sampler(nn.Identity(), [32, 16], [0.5, 0.5], stride=1)(torch.zeros(1, 1, 16, 16))


def test_mask_is_shared_per_sample_and_keeps_its_gradient_path():
    choice = ChannelChoice([2, 4])
    sampler = GumbelSampler(seed=0)
    choice.sample(sampler)
    assert choice.mask() is choice.mask()  # computed once per sampled gates
    with torch.no_grad():
        choice.mask()
    (choice.mask() * torch.arange(4.0)).sum().backward()  # not the no_grad copy
    assert choice.alpha.grad is not None and choice.alpha.grad.abs().sum() > 0
    first = choice.mask()
    choice.sample(sampler)
    assert choice.mask() is not first  # a new sample, a new mask


def test_resolution_sampler_pooling_denominator_counts_real_pixels():
    """Averaging the scattered map over the effective pixel count gives the small map's mean,
    for non-square inputs too."""
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 32, 24)
    sampler = _sampler(conv, [32, 16], [0.0, 1.0], stride=2)
    out = sampler(x)
    small = conv(x[:, :, subsample_indices(32, 16)][:, :, :, subsample_indices(24, 12)])
    pooled = out.sum((2, 3)) / sampler.effective_pixels()
    assert torch.allclose(pooled, small.mean((2, 3)), atol=1e-6)


# ---------------- where the mask sits: Eq. 1 vs act(norm(conv) * M) ----------------
def _eq1(layer, x, widths, gates):
    """sum_i g_i PAD(b_i(x)): each option's full layer (with its activation), zero-padded."""
    full = layer(x)
    return sum(
        g * F.pad(full[:, :c], (0, 0, 0, 0, 0, full.shape[1] - c))
        for g, c in zip(gates, widths, strict=True)
    )


@pytest.mark.parametrize("act", ["relu", "hswish"])
def test_mask_before_activation_against_eq1(act):
    """One-hot gates: masking before the activation equals Eq. 1 for every activation. Soft
    gates: equal for ReLU (positively homogeneous), different for h-swish, by a measurable
    amount (the documented relaxation of `masked_channel.py`)."""
    widths = [4, 8, 12, 16]
    layer = ConvBNAct(6, 16, 3, act=act).eval()
    _randomize_bn(layer.bn)
    x = torch.randn(2, 6, 9, 9)
    choice = ChannelChoice(widths)
    masked = MaskedChannel(ConvBNAct(6, 16, 3, act=act).eval(), choice)
    masked.load_state_dict(layer.state_dict())
    with torch.no_grad():
        for i in range(len(widths)):
            one_hot = F.one_hot(torch.tensor(i), len(widths)).float()
            choice.set_gates(one_hot)
            assert torch.equal(masked(x), _eq1(layer, x, widths, one_hot))
        soft = torch.tensor([0.1, 0.2, 0.3, 0.4])
        choice.set_gates(soft)
        diff = (masked(x) - _eq1(layer, x, widths, soft)).abs().max().item()
    if act == "relu":
        assert diff <= 1e-6
    else:
        assert diff > 1e-2  # h-swish(m y) != m h-swish(y) for 0 < m < 1


# ---------------- width sources ----------------
def test_expanded_channels_are_rate_times_each_input_width():
    """Mid widths of a searched input width x a searched rate: one width per (c_i, e_j), with
    weight g_i h_j, rounded as the builder rounds (e = 1 keeps mid = in)."""
    inputs = ChannelChoice([16, 24])
    rates = Decision([1, 2.5, 4])
    mid = ExpandedChannels(inputs, rates, width_divisor=8)
    assert mid.widths() == (16, 40, 64, 24, 64, 96)  # make_divisible(24 * 2.5 = 60) = 64
    inputs.set_gates([0.25, 0.75])
    rates.set_gates([0.5, 0.3, 0.2])
    weights = torch.outer(torch.tensor([0.25, 0.75]), torch.tensor([0.5, 0.3, 0.2])).flatten()
    assert torch.allclose(mid.width_gates(), weights)
    expected = sum(w * c for w, c in zip(weights.tolist(), mid.widths(), strict=True))
    assert mid.expected().item() == pytest.approx(expected)
    assert mid.mask().shape == (96,)
    assert mid.mask()[0].item() == pytest.approx(1.0)  # every width keeps channel 0
    with torch.no_grad():
        inputs.alpha.copy_(torch.tensor([0.0, 1.0]))
        rates.alpha.copy_(torch.tensor([0.0, 1.0, 0.0]))
    assert mid.argmax() == 64  # 24 x 2.5, rounded to a multiple of 8


def test_grouped_mask_keeps_the_first_channels_of_each_group():
    """With 2 groups the mask keeps the first c/2 channels of each half; a channel shuffle then
    brings exactly the first c channels to the front."""
    from mobile_cv_nas.layers import ChannelShuffle

    choice = ChannelChoice([4, 8])
    choice.set_gates([1.0, 0.0])
    mask = choice.mask(groups=2)
    assert mask.tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    shuffled = ChannelShuffle(2)(mask.view(1, 8, 1, 1)).flatten()
    assert shuffled.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    bad = ChannelChoice([4, 6])
    bad.set_gates([0.5, 0.5])
    with pytest.raises(ValueError, match="not divisible by the 3 groups"):
        bad.mask(groups=3)


def test_same_width_probability():
    a, b = ChannelChoice([8, 16, 24]), ChannelChoice([16, 24, 32])
    a.set_gates([0.2, 0.3, 0.5])
    b.set_gates([0.6, 0.1, 0.3])
    assert same_width_probability(a, b).item() == pytest.approx(0.3 * 0.6 + 0.5 * 0.1)
    assert same_width_probability(a, a) == 1.0  # one decision: always the same width
    assert same_width_probability(a, ChannelChoice([40, 48])) == 0.0  # cannot agree
    assert same_width_probability(ChannelChoice([8]), ChannelChoice([8])) == 1.0


# ---------------- masking through every norm ----------------
def _masked_layer(norm, widths=(5, 8), gates=(1.0, 0.0), act="hswish"):
    """A masked conv-norm-act layer; `gates` fixed by hand, or "softmax" of a random alpha
    (differentiable in alpha)."""
    layer = ConvBNAct(3, 8, 1, act=act, norm=norm).train()
    choice = ChannelChoice(list(widths))
    if gates == "softmax":
        with torch.no_grad():
            choice.alpha.normal_()
        choice.sample(GumbelSampler(mode="softmax"))
    else:
        choice.set_gates(list(gates))
    return layer, MaskedChannel(layer, choice)


@pytest.mark.parametrize("norm", ["bn", "BN", "sync_bn", "frozen_bn", "gn", "GN", nn.BatchNorm2d])
def test_masked_channels_stay_zero_with_every_norm(norm):
    layer, masked = _masked_layer(norm)
    y = masked(torch.randn(4, 3, 6, 6))
    assert y[:, 5:].abs().max().item() == 0.0
    assert y[:, :5].abs().max().item() > 0.0


def test_masked_batch_norm_is_norm_then_mask_and_keeps_its_statistics():
    """In training mode the masked layer gives the plain layer's output times M, and both
    update the running statistics alike (the mask acts through the norm module)."""
    plain = ConvBNAct(3, 8, 1, act=None).train()
    layer, masked = _masked_layer("bn", gates="softmax", act=None)
    _randomize_bn(plain.bn)
    masked.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 6, 6)
    out = masked(x)
    expected = plain(x) * masked.channels.mask().view(1, -1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(layer.bn.running_mean, plain.bn.running_mean)
    assert torch.allclose(layer.bn.running_var, plain.bn.running_var)
    assert layer.bn.num_batches_tracked.item() == plain.bn.num_batches_tracked.item() == 1
    out.sum().backward()
    assert masked.channels.alpha.grad.abs().sum() > 0  # the mask is differentiable in alpha


def test_masked_frozen_batch_norm_is_not_updated():
    layer, masked = _masked_layer("frozen_bn", gates="softmax")
    with torch.no_grad():
        layer.bn.running_mean.normal_()
        layer.bn.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in layer.bn.state_dict().items()}
    masked(torch.randn(4, 3, 6, 6)).sum().backward()
    assert list(layer.bn.parameters()) == []  # nothing for an optimiser to change
    for k, v in layer.bn.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert masked.channels.alpha.grad.abs().sum() > 0  # the mask still reaches alpha


def test_unknown_norm_names_the_choices():
    with pytest.raises(ValueError, match="Unknown norm 'batchnorm'.*frozen_bn"):
        ConvBNAct(3, 8, norm="batchnorm")


# ---------------- sampler state ----------------
def test_sampler_state_round_trip_reproduces_the_next_draws():
    alpha = torch.tensor([0.3, -1.0, 2.0, 0.0])
    a = GumbelSampler(tau=2.5, seed=3)
    a.begin_step()
    a.sample(alpha)
    state = a.state_dict()
    b = GumbelSampler(seed=99)
    b.load_state_dict(state)
    assert b.tau == 2.5
    assert torch.equal(a.sample(alpha), b.sample(alpha))  # mid-step: the generator itself
    a.begin_step(), b.begin_step()
    assert torch.equal(a.sample(alpha), b.sample(alpha))


def test_each_rank_draws_its_own_noise_reproducibly():
    alpha = torch.zeros(8)
    rank0, rank1 = GumbelSampler(seed=5, rank=0), GumbelSampler(seed=5, rank=1)
    rank0.begin_step(), rank1.begin_step()
    assert not torch.equal(rank0.sample(alpha), rank1.sample(alpha))
    # a checkpoint written by rank 0 resumes rank 1 on rank 1's own noise
    resumed = GumbelSampler(seed=0, rank=1)
    resumed.load_state_dict(rank0.state_dict())
    again = GumbelSampler(seed=5, rank=1)
    again.begin_step(), again.sample(alpha)
    resumed.begin_step(), again.begin_step()
    assert torch.equal(resumed.sample(alpha), again.sample(alpha))
