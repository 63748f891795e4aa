"""The budget-constrained derivation (search/budget.py, NAS.DERIVE budget): the derived
architecture lands within the tolerance of the target wherever the space allows, gives up
as little probability as it can, changes nothing when the argmax already lands, and the
launcher's search reports it in metrics.json and arch.yaml."""

import json
import math

import pytest
import torch
import yaml
from engine_helpers import search_argv, train_net

from mobile_cv_nas.arch import build_model
from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.search import Supernet, derive_arch
from mobile_cv_nas.search.budget import apply_choices, budget_argmax, cost_of
from mobile_cv_nas.search.cost_bounds import argmax_cost, cost_range


def _random_alphas(net, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for d in net.decisions.values():
            d.alpha.copy_(torch.randn(d.alpha.shape, generator=g) * scale)
    return net


def _targets(low, high, fractions=(0.1, 0.3, 0.5, 0.7, 0.9)):
    """Targets over the middle 80% of the range, evenly on a log scale."""
    return [low * (high / low) ** f for f in fractions]


#: alphas of scale 1 (an undecided search) and 3 (a decided one: most probabilities > 0.9)
@pytest.mark.parametrize(
    "metric, seed, scale",
    [
        ("flops", 0, 1.0),
        ("params", 1, 1.0),
        ("flops", 2, 3.0),
        ("params", 3, 3.0),
        ("flops", 4, 3.0),
    ],
)
def test_derived_lands_within_tolerance_over_the_range(metric, seed, scale):
    net = _random_alphas(Supernet("fashion_mnist"), seed, scale)
    low, high = cost_range(net, metric)
    for target in _targets(low, high):
        choices, cost, changes = budget_argmax(net, metric, target, tolerance=0.05)
        assert abs(cost / target - 1) <= 0.05, (target, cost)
        # the reported cost is the derived architecture's, counted by fvcore
        derived = derive_arch(apply_choices(Supernet("fashion_mnist"), choices))
        report = count_flops(build_model(derived), derived.input_size)
        counted = report.flops if metric == "flops" else report.params
        assert counted == pytest.approx(cost, rel=1e-9)
        argmax = {n: int(d.alpha.argmax()) for n, d in net.decisions.items()}
        assert len(changes) == sum(choices[n] != argmax[n] for n in argmax)


def test_argmax_that_lands_is_kept():
    net = _random_alphas(Supernet("fashion_mnist"), 3)
    target = argmax_cost(net).flops * 1.03
    choices, cost, changes = budget_argmax(net, "flops", target, tolerance=0.05)
    assert changes == [] and cost == argmax_cost(net).flops
    assert choices == {n: int(d.alpha.argmax()) for n, d in net.decisions.items()}


def test_changes_prefer_near_ties():
    """A decision the alphas left nearly tied moves before a confident one."""
    net = _random_alphas(Supernet("fashion_mnist"), 4, scale=3.0)
    resolution = net.decisions["resolution"]
    assert resolution.options[0] > resolution.options[1]  # largest first
    with torch.no_grad():  # the resolution nearly tied between its two largest options
        resolution.alpha.copy_(torch.tensor([1.01, 1.0] + [-5.0] * (len(resolution.options) - 2)))
    start = argmax_cost(net).flops
    cheaper = {n: int(d.alpha.argmax()) for n, d in net.decisions.items()}
    cheaper["resolution"] = 1
    target = cost_of(net, cheaper, "flops")
    assert target < start * 0.9
    _, cost, changes = budget_argmax(net, "flops", target, tolerance=0.02)
    assert [c.decision for c in changes] == ["resolution"]
    assert math.isclose(cost, target)


def test_unreachable_target_returns_the_closest_found():
    net = _random_alphas(Supernet("fashion_mnist"), 5)
    low, _ = cost_range(net, "flops")
    _, cost, _ = budget_argmax(net, "flops", low / 2, tolerance=0.05)
    assert cost >= low and cost < argmax_cost(net).flops


#: the ends of the middle 80% of the range (log scale); the targets between: the test above
@pytest.mark.parametrize("fraction", [0.1, 0.9])
def test_search_lands_on_its_target_and_reports_it(fraction, tmp_path):
    """The launcher's search (demo config, a short schedule): the derived architecture in
    arch.yaml is within NAS.COST.TOLERANCE of NAS.COST.TARGET_M, and metrics.json says so."""
    low, high = cost_range(Supernet("fashion_mnist"), "flops")
    target_m = round(low * (high / low) ** fraction / 1e6, 6)
    out = tmp_path / "run"
    status, err = train_net(search_argv(out, "NAS.COST.TARGET_M", str(target_m)))
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    landing = metrics["landing"]
    assert landing["cost_target_m"] == pytest.approx(target_m)
    assert abs(landing["relative_miss"]) <= 0.05 and landing["landed"] is True
    assert metrics["searched"]["flops_m"] == pytest.approx(landing["derived_cost_m"], rel=1e-6)
    arch = yaml.safe_load((out / "arch.yaml").read_text())
    assert arch["input_size"] == metrics["searched"]["input_size"]
    # the alphas in the checkpoint are the search's own: the plain argmax is reported too
    assert "argmax_cost_m" in landing and isinstance(landing["budget_changes"], list)


def test_derive_argmax_keeps_the_plain_argmax(tmp_path):
    out = tmp_path / "run"
    argv = search_argv(out, "NAS.DERIVE", "argmax", "NAS.COST.TARGET_M", "0.2")
    status, err = train_net(argv)
    assert status == 0, err
    landing = json.loads((out / "metrics.json").read_text())["landing"]
    assert landing["derived_cost_m"] == landing["argmax_cost_m"]
    assert landing["budget_changes"] == []
