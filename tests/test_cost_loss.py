"""The search's cost term: the extreme costs of a space (is a target reachable?), the argmax
architecture's cost, and the two loss forms."""

import itertools
import math

import pytest
import torch

from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.search import Supernet, derive_model
from mobile_cv_nas.search.cost_bounds import argmax_cost, cost_range
from mobile_cv_nas.search.cost_loss import CostLoss
from mobile_cv_nas.search.testing import randomize_supernet

# Small enough to enumerate: resolution 2 x widths 2 x 2 x ops 3 x 2 x expansion 2 = 96
# architectures.
SMALL_SPACE = {
    "name": "enumerable",
    "cost": "flops",
    "resolutions": [16, 12],
    "num_classes": 4,
    "stages": [
        [{"op": "conv_k3_hs", "channels": [8, 16, 8], "stride": 2}],
        [{"ops": ["ir_k3", "ir_k5", "skip"], "channels": [8, 16, 8], "expansion": [1, 3, 2]}],
        [{"ops": ["ir_k3_se_hs", "skip"], "channels": [16, 24, 8], "stride": 2}],
    ],
}


def _one_hot(decision, index):
    gates = torch.zeros(len(decision.options))
    gates[index] = 1.0
    decision.set_gates(gates)


def _all_costs(net, metric):
    decisions = list(net.decisions.values())
    costs = []
    for choice in itertools.product(*(range(len(d.options)) for d in decisions)):
        for decision, index in zip(decisions, choice, strict=True):
            _one_hot(decision, index)
        costs.append(float(getattr(net.effective_cost(), metric)))
    return costs


@pytest.mark.parametrize("metric", ["flops", "params"])
def test_cost_range_is_the_min_and_max_over_every_architecture(metric):
    net = Supernet(SMALL_SPACE)
    brute = _all_costs(net, metric)
    assert len(brute) == 96
    low, high = cost_range(net, metric)
    assert (low, high) == (min(brute), max(brute))


def test_cost_range_keeps_the_sampled_gates():
    net = Supernet(SMALL_SPACE)
    net(torch.randn(2, 3, 16, 16))
    before = {name: d.gates.clone() for name, d in net.decisions.items()}
    cost_range(net, "flops")
    for name, d in net.decisions.items():
        assert torch.equal(d.gates, before[name])


def test_argmax_cost_is_the_derived_models_published_cost():
    net = randomize_supernet(Supernet("fashion_mnist"), seed=7)
    model = derive_model(net, inherit=False)
    report = count_flops(model, model.arch_def.input_size)
    cost = argmax_cost(net)
    assert float(cost.flops) == report.flops
    assert float(cost.params) == report.params


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="latency"):
        cost_range(Supernet(SMALL_SPACE), "latency")


def test_additive_loss_is_ce_plus_lambda_cost_over_target():
    loss = CostLoss("additive", target=2e6, lam=0.5)
    ce, cost = torch.tensor(1.25), torch.tensor(3e6, dtype=torch.float64)
    total, term = loss(ce, cost)
    assert total.item() == pytest.approx(1.25 + 0.5 * 1.5)
    assert term.item() == pytest.approx(0.75)


def test_multiplicative_loss_is_fbnets_form_normalised_at_the_target():
    loss = CostLoss("multiplicative", target=1e6, a=0.2, b=0.6)
    ce = torch.tensor(2.0)
    at_target, factor = loss(ce, torch.tensor(1e6, dtype=torch.float64))
    assert factor.item() == pytest.approx(0.2)
    assert at_target.item() == pytest.approx(0.4)
    above, _ = loss(ce, torch.tensor(4e6, dtype=torch.float64))
    expected = 2.0 * 0.2 * (math.log(4e6) / math.log(1e6)) ** 0.6
    assert above.item() == pytest.approx(expected)


@pytest.mark.parametrize("form", ["additive", "multiplicative"])
def test_both_forms_push_the_cost_down(form):
    cost = torch.tensor(3e6, dtype=torch.float64, requires_grad=True)
    total, _ = CostLoss(form, target=1e6)(torch.tensor(1.0, dtype=torch.float64), cost)
    total.backward()
    assert cost.grad.item() > 0


def test_bad_form_or_target_is_refused():
    with pytest.raises(ValueError, match="Unknown cost loss 'sum'"):
        CostLoss("sum", target=1e6)
    with pytest.raises(ValueError, match="target must be > 1"):
        CostLoss("additive", target=0)
