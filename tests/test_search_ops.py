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
    GumbelSampler,
    MaskedChannel,
    ResolutionSampler,
    SEARCH_OP_REGISTRY,
    TemperatureSchedule,
    channel_options,
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
    with pytest.raises(ValueError):
        TemperatureSchedule(tau0=0)


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
    assert channel_options((16, 28, 4)) == [16, 20, 24, 28]
    assert channel_options((12, 16, 4)) == [12, 16]
    assert channel_options(8) == [8]


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
    eq1 = sum(g * F.pad(full[:, :c], (0, 0, 0, 0, 0, 16 - c)) for g, c in zip(gates, widths))
    masked = MaskedChannel(ConvBNAct(6, 16, 3, act=None).eval(), choice)
    masked.load_state_dict(layer.state_dict())
    assert (masked(x) - eq1).abs().max().item() <= 1e-6
    if act == "relu":  # relu is positively homogeneous: masking before it equals after it
        relu_layer = MaskedChannel(ConvBNAct(6, 16, 3, act="relu").eval(), choice)
        relu_layer.load_state_dict(layer.state_dict())
        assert (relu_layer(x) - F.relu(eq1)).abs().max().item() <= 1e-6


def test_masked_channel_keeps_plain_state_dict_keys_and_is_registered():
    layer = ConvBNAct(3, 8, 3, act="hswish")
    keys = list(layer.state_dict())
    masked = MaskedChannel(layer, ChannelChoice([4, 8]))
    assert list(masked.state_dict()) == keys
    assert "MaskedChannel" in SEARCH_OP_REGISTRY and "ResolutionSampler" in SEARCH_OP_REGISTRY


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
