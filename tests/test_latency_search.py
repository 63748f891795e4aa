"""Latency as a search cost: `predict_latency` of a plain arch def is the sum of its table
entries, the supernet's expected latency is the expectation over every architecture under the
gates (differentiable in the alphas; one-hot: the derived arch's prediction, exactly), its
extremes are exact, the budget derivation lands a latency target, and the launcher searches
with NAS.COST.METRIC latency and refuses a table that does not fit in one line."""

import itertools
import json

import pytest
import torch
from engine_helpers import search_argv, tool, train_net
from latency_helpers import curved_ms, fake_table

from mobile_cv_nas.search import Supernet, derive_arch
from mobile_cv_nas.search.cost_bounds import argmax_cost, cost_range, expected_cost
from mobile_cv_nas.search.cost_only import cost_only_search
from mobile_cv_nas.search.latency import (
    LatencyTable,
    LatencyTableError,
    latency_breakdown,
    predict_latency,
)

#: 96 architectures: 2 resolutions x widths 2 x 2 x ops 3 x 2 x expansion 2.
SMALL_SPACE = {
    "name": "enumerable",
    "resolutions": [16, 12],
    "width_divisor": 8,
    "num_classes": 4,
    "stages": [
        [{"op": "conv_k3_hs", "channels": [8, 16, 8], "stride": 2}],
        [{"ops": ["ir_k3", "ir_k5", "skip"], "channels": [8, 16, 8], "expansion": [1, 3, 2]}],
        [{"ops": ["ir_k3_se_hs", "skip"], "channels": [16, 24, 8], "stride": 2}],
    ],
}

#: An arch of the tiny space's ops, and the configuration of each of its blocks.
HAND_ARCH = {
    "name": "hand",
    "input_size": 28,
    "width_divisor": 8,
    "num_classes": 10,
    "stages": [
        [{"op": "conv_k3_hs", "out_channels": 8, "stride": 2}],
        [{"op": "ir_k3", "out_channels": 8}, {"op": "ir_k3", "out_channels": 16, "expansion": 3}],
        [
            {"op": "ir_k5", "out_channels": 12, "stride": 2, "mid_channels": 32},
            {"op": "skip", "out_channels": 12},
        ],
        [
            {
                "op": "ir_k3_se_hs",
                "out_channels": 16,
                "stride": 2,
                "mid_channels": 12,
                "force_pw": True,
            }
        ],
        [{"op": "ir_pool_hs", "out_channels": 64, "expansion": 4}],
    ],
}
HAND_ENTRIES = {
    "conv_k3_hs|in=3|out=8|s=2|hw=28": 0.5,
    "ir_k3|in=8|out=8|s=1|hw=14": 0.25,  # expansion 1: no expansion conv
    "ir_k3|in=8|out=16|s=1|hw=14|mid=24": 1.0,
    "ir_k5|in=16|out=12|s=2|hw=14|mid=32": 2.0,
    "skip|in=12|out=12|s=1|hw=7": 0.125,  # an identity
    "ir_k3_se_hs|in=12|out=16|s=2|hw=7|mid=12": 3.0,  # mid = in, the expansion conv kept
    "ir_pool_hs|in=16|out=64|s=1|hw=4|mid=64": 0.75,
    "classifier|in=64|out=10|s=1|hw=1": 0.0625,
}


def hand_table():
    meta = {"space": {"name": "tiny", "definition": {"width_divisor": 8}}, "complete": True}
    return LatencyTable(meta, HAND_ENTRIES)


def _random_alphas(net, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for d in net.decisions.values():
            d.alpha.copy_(torch.randn(d.alpha.shape, generator=g) * scale)
    return net


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    """A grid table of the tiny space (interpolated entries too) with a curved latency."""
    path = tmp_path_factory.mktemp("lut") / "tiny.json"
    return fake_table("tiny", path, measure=curved_ms, grid=2)


# ---------------------------------------------------------------------------- predict


def test_predict_latency_is_the_sum_of_the_hand_made_table():
    table = hand_table()
    blocks = latency_breakdown(HAND_ARCH, table)
    assert [b.config.key for b in blocks] == list(HAND_ENTRIES)
    assert [b.name for b in blocks][-2:] == ["xif4_0", "head"] and all(b.measured for b in blocks)
    assert predict_latency(HAND_ARCH, table) == sum(HAND_ENTRIES.values()) == 7.6875


def test_predict_latency_refuses_what_the_table_lacks():
    table = hand_table()
    wider = json.loads(json.dumps(HAND_ARCH))
    wider["stages"][2][1]["out_channels"] = 24  # a projection skip the table lacks
    with pytest.raises(LatencyTableError, match=r"lacks 2 configuration\(s\) of arch 'hand'"):
        predict_latency(wider, table)
    other = dict(HAND_ARCH, width_divisor=4)
    with pytest.raises(LatencyTableError, match="rounds widths to 4.*width divisor 8"):
        predict_latency(other, table)
    odd = json.loads(json.dumps(HAND_ARCH))
    odd["stages"][1][0]["se_channels"] = 8
    with pytest.raises(LatencyTableError, match=r"sets \['se_channels'\]"):
        predict_latency(odd, table)


def test_predict_latency_reads_and_checks_a_table_file(tmp_path):
    path = tmp_path / "lut.json"
    table = fake_table("tiny", path, measure=curved_ms)
    net = _random_alphas(Supernet("tiny"), 0)
    arch = derive_arch(net)
    assert predict_latency(arch, str(path)) == predict_latency(arch, table)
    table.meta["complete"] = False
    table.save()
    with pytest.raises(LatencyTableError, match="incomplete"):
        predict_latency(arch, path)


# ---------------------------------------------------------------------------- expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_hot_expected_latency_is_the_derived_archs_prediction(tiny_table, seed):
    net = _random_alphas(Supernet("tiny", latency_table=tiny_table), seed)
    argmax = argmax_cost(net).latency
    predicted = predict_latency(derive_arch(net), tiny_table)
    assert float(argmax) / 1e6 == pytest.approx(predicted, rel=1e-15)


def test_one_hot_expected_latency_equals_the_prediction_exactly(tiny_table):
    net = _random_alphas(Supernet("tiny", latency_table=tiny_table), 3)
    for decision in net.decisions.values():
        gates = torch.zeros(len(decision.options))
        gates[int(decision.alpha.argmax())] = 1.0
        decision.set_gates(gates)
    assert float(net.latency.expected_ms()) == predict_latency(derive_arch(net), tiny_table)


def test_expected_latency_is_the_expectation_over_every_architecture(tmp_path):
    table = fake_table(SMALL_SPACE, tmp_path / "lut.json", measure=curved_ms)
    net = _random_alphas(Supernet(SMALL_SPACE, latency_table=table), 4)
    # float64 gates: float32 ones sum to 1 only within 1e-7, and the product over every
    # decision that the enumeration weighs each architecture by carries that error along
    probs = {n: torch.softmax(d.alpha.detach().double(), -1) for n, d in net.decisions.items()}
    for name, d in net.decisions.items():
        d.gates = probs[name]
    expected = float(net.latency.expected_ms())
    assert float(expected_cost(net, tau=1.0).latency.detach()) / 1e6 == pytest.approx(
        expected, rel=1e-6
    )
    decisions = list(net.decisions.items())
    total, count = 0.0, 0
    for choice in itertools.product(*(range(len(d.options)) for _, d in decisions)):
        p = 1.0
        for (name, d), index in zip(decisions, choice, strict=True):
            d.set_argmax(index)
            p *= float(probs[name][index])
        total += p * predict_latency(derive_arch(net), table)
        count += 1
    assert count == 96
    assert expected == pytest.approx(total, rel=1e-13)


def test_expected_latency_gradients_reach_every_alpha(tiny_table):
    net = _random_alphas(Supernet("tiny", latency_table=tiny_table), 5)
    latency = expected_cost(net, tau=2.0).latency
    assert latency.dtype == torch.float64 and latency.requires_grad
    latency.backward()
    for name, d in net.decisions.items():
        assert d.alpha.grad is not None and d.alpha.grad.abs().sum() > 0, name
    net.zero_grad()
    net(torch.randn(2, 3, 32, 32))  # the step's Gumbel gates too
    net.effective_cost().latency.backward()
    assert all(d.alpha.grad.abs().sum() > 0 for d in net.decisions.values())


def test_latency_range_is_the_exact_min_and_max(tmp_path):
    table = fake_table(SMALL_SPACE, tmp_path / "lut.json", measure=curved_ms)
    net = Supernet(SMALL_SPACE, latency_table=table)
    decisions = list(net.decisions.values())
    costs = []
    for choice in itertools.product(*(range(len(d.options)) for d in decisions)):
        for d, index in zip(decisions, choice, strict=True):
            d.set_argmax(index)
        costs.append(float(argmax_cost(net).latency))
    low, high = cost_range(net, "latency")
    assert low == pytest.approx(min(costs), rel=1e-12) and high == pytest.approx(max(costs))
    ms, choices = net.latency.extreme(cheapest=False)
    for name, index in choices.items():
        net.decisions[name].set_argmax(index)
    assert float(argmax_cost(net).latency) == pytest.approx(ms * 1e6, rel=1e-12)


def test_the_cost_term_alone_lands_a_latency_target(tiny_table):
    net = Supernet("tiny", latency_table=tiny_table)
    low, high = cost_range(net, "latency")
    target = (low * high) ** 0.5
    result = cost_only_search(net, "latency", target, steps=60, lr=0.1, tolerance=0.03)
    assert abs(result.miss()) <= 0.03


def test_a_supernet_refuses_a_table_of_another_space(tiny_table):
    with pytest.raises(LatencyTableError, match="not for 'fashion_mnist'"):
        Supernet("fashion_mnist", latency_table=tiny_table)
    net = Supernet("tiny")
    with pytest.raises(ValueError, match="no latency table"):
        argmax_cost(net).of("latency")
    with pytest.raises(ValueError, match="no latency table"):
        cost_range(net, "latency")


# ---------------------------------------------------------------------------- the tools


def test_space_info_and_predict_latency_tools_print_latency_next_to_flops(tmp_path, capsys):
    path = tmp_path / "lut.json"
    table = fake_table("tiny", path, measure=curved_ms)
    assert tool("space_info").main(["tiny", "--lut", str(path)]) == 0
    out = capsys.readouterr().out
    net = Supernet("tiny", latency_table=table)
    low, high = cost_range(net, "latency")
    assert f"latency: {low / 1e6:.4g} .. {high / 1e6:.4g} ms" in out and "flops: " in out
    arch_path = tmp_path / "arch.yaml"
    arch = derive_arch(_random_alphas(net, 0))
    arch_path.write_text(arch.to_yaml())
    assert tool("predict_latency").main([str(arch_path), "--lut", str(path), "--blocks"]) == 0
    out = capsys.readouterr().out
    assert f"predicted {predict_latency(arch, table):.4g} ms" in out and "MFLOPs" in out
    assert "xif1_0" in out and "head" in out
    assert tool("predict_latency").main([str(arch_path), "--lut", str(path), "--threads", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "threads 1, not 4" in err and err.count("\n") == 1
    assert tool("space_info").main(["fashion_mnist", "--lut", str(path)]) == 2
    assert "not for 'fashion_mnist'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the launcher


def test_search_with_a_latency_budget(tmp_path):
    lut = tmp_path / "lut.json"
    fake_table("fashion_mnist", lut, measure=curved_ms)
    out = tmp_path / "run"
    argv = search_argv(out, "NAS.COST.METRIC", "latency", "NAS.COST.LUT", str(lut))
    short = ["SOLVER.EPOCHS", "1", "SOLVER.EPOCH_ITERS", "3", "NAS.COST.TARGET_M", "0"]
    status, err = train_net(argv + short)
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    landing = metrics["landing"]
    assert metrics["cost_metric"] == landing["cost_metric"] == "latency"
    low, high = metrics["space_cost_range_m"]
    assert metrics["cost_target_m"] == pytest.approx((low * high) ** 0.5)  # ms
    from mobile_cv_nas.arch import load_arch_def

    predicted = predict_latency(load_arch_def(out / "arch.yaml"), LatencyTable.load(lut))
    assert landing["derived_cost_m"] == pytest.approx(predicted, rel=1e-12)
    assert metrics["searched"]["latency_ms"] == pytest.approx(predicted, rel=1e-12)
    assert metrics["latency_table"]["space"] == "fashion_mnist"
    log = (out / "log.txt").read_text()
    assert "Latency table" in log and "measured on cpu" in log


def test_search_refuses_a_latency_table_that_does_not_fit(tmp_path):
    lut = tmp_path / "lut.json"
    fake_table("tiny", lut)
    zero = ["NAS.COST.TARGET_M", "0"]
    for extra, text in (
        (["NAS.COST.LUT", str(lut), *zero], "measured for search space 'tiny', not for"),
        (zero, "NAS.COST.METRIC latency needs a latency table: set NAS.COST.LUT"),
        (["NAS.COST.LUT", str(lut)], "TARGET_M = 0.5 is in MFLOPs or M params, but"),
    ):
        out = tmp_path / "run"
        status, err = train_net(search_argv(out, "NAS.COST.METRIC", "latency", *extra))
        assert status == 2 and text in err, err
        assert err.strip().count("\n") == 0 and not out.exists()
