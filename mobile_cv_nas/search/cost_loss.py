"""The search loss: cross-entropy combined with the supernet's cost, against a target cost T
(FLOPs, params or latency), and the end-of-search check that the searched architecture landed
on T.

Three forms:
  * target (the default; TuNAS's absolute-value reward, Bender et al. 2020, as a penalty on the
    log ratio):
        CE + beta * |log(cost / T)|
    with `cost` the expected cost under gates softmax(alpha / tau) at the current temperature,
    without Gumbel noise (`cost_bounds.expected_cost`). Two-sided: over budget it pushes the
    cost down, under budget up.
  * multiplicative (the original FBNet, Wu et al. 2019, Eq. 2: CE * a * log(LAT)^b):
        CE * a * (log(cost) / log(T)) ** b
    log(T) normalises the log cost to 1 at the target; FBNet's (a, b) = (0.2, 0.6).
  * additive (FBNetV2, Sec. 3.3: "cross-entropy loss and total cost"):
        CE + lambda * cost / T
The last two penalise the effective cost of the step's Gumbel-softmax gates (Eq. 10), as the
papers do.

Why `target` is the default. The multiplicative and additive forms are one-sided: they trade
cost for CE at a rate set by (a, b) or lambda, so where the search lands depends on those, on
the space and on the data, and T is only a scale; landing on a budget means tuning them per
space and target. A two-sided penalty has its minimum at T whatever the CE does, as long as
beta outweighs the CE's preference for a slightly larger network: beta = 1 charges 0.01 of
loss per 1% off the target. |log(cost / T)| rather than TuNAS's |cost / T - 1| weighs twice
over and half under the target alike; the absolute value rather than a square keeps its pull
(beta per unit of log cost) all the way to T, where a square's vanishes.

Which cost. What must land is the argmax architecture (the one derived), and the expected
cost of a relaxation can sit on T while the argmax is far from it (with every alpha at zero
the expected cost is the options' mean, the argmax the first option of every decision). The
expected cost under softmax(alpha / tau) tends to the argmax's as tau falls, for every
decision whose alphas are further apart than tau, and, without the noise, its gradient is
that of the distribution the search samples from rather than of one draw. What it cannot
force is the rounding of a decision the optimum leaves split between two options (the
relaxation's fractional optimum): the end-of-search check (`landing_report`) compares the
expected and the argmax costs and says when they disagree.
Measured, cost term alone (no data: costs from effective shapes), Adam lr 0.05, 120-200
steps, tau 5 -> 0.05, argmax miss:
  * fbnetv2_p params, targets 2.35 / 2.98 M (range 2.22 .. 7.17 M): this expected cost
    +0.25% / -0.26%; per-decision straight-through argmax cost +0.84% / +0.57%; argmax value
    with this expected cost's gradient +0.46%.
  * small spaces (fashion_mnist flops, 14 decisions; a 16-decision test space), 5 targets
    over the range: every variant misses some targets by 5-30% (the Gumbel-softmax
    effective cost of the step, as the other forms use, -14 .. +7%; this expected cost
    -19 .. +25%; argmax value with its gradient -19 .. +30%, oscillating as Adam flips
    several decisions at once): with few decisions each flip is a large step in cost.
  * fbnetv2_{f,l,p}, five targets spread over each range, alphas starting at N(0, 0.1^2),
    120 steps: params (P; F and L share its rows) all five within +-2%; FLOPs 12 of 15
    within +-2%, the three cheapest targets not (F +16.4%, L +13.1%, P +10.3%): the
    resolution decision stays split between two options there, and Adam cannot move the
    decisions that have already hardened.
  * adding the argmax architecture's cost, straight-through (its value, the expected
    cost's gradient), |log(E/T)| + |log(A/T)|, in F FLOPs: the cheap end lands (-0.4%) but
    the middle target misses (+8.5%; with the learning rate annealed too, +3.8% and -37%;
    with tau down to 0.01, -4.0%): the argmax flips back and forth across the target. Not
    adopted: rounding is a combinatorial step, which the derivation below does exactly.
  * the CPU demo search (configs/search/fashion_mnist_cpu.yaml, target 0.5 MFLOPs, this
    form's cost wired into the alpha step, one run each): with tau annealed to 0.648
    (NAS.TAU.DECAY 0.6) argmax 0.537 MFLOPs (+7.4%), expected 0.498 (-0.4%), the landing
    report flags both; to 0.04 (DECAY 0.3, the demo's now) argmax and expected +0.04%; the
    multiplicative form (a 0.2, b 0.6) lands at 0.340 MFLOPs (-32.1%).
Hence the derivation (NAS.DERIVE budget, search/budget.py): the most probable architecture
within NAS.COST.TOLERANCE of the target, which moves the few near-tied decisions the
rounding got wrong (demo, 0.3 MFLOPs: argmax -25.2% -> derived +4.6% by three decisions at
p 0.30 -> 0.29, 0.42 -> 0.37, 0.38 -> 0.38). With it, cost-only search
(search/cost_only.py, 60 steps, tolerance 2%) lands all 30 targets of the F/L/P x
FLOPs/params grid within +-2%, moving at most 5 decisions (tools/benchmark_cost_landing.py;
the README has the table).

The search uses this loss for the alpha step only: the cost does not depend on the weights,
so for the weight step the additive and target terms add nothing and the multiplicative factor
would only rescale the weights' learning rate; the weight step minimises the CE.
"""

import math

import torch

from .cost_bounds import argmax_cost, expected_cost, metric_unit

FORMS = ("target", "multiplicative", "additive")


class CostLoss:
    """loss(ce, cost) -> (total loss, cost term), for one of FORMS; `alpha_loss(ce, supernet,
    metric)` picks the cost the form penalises."""

    def __init__(self, form, target, a=0.2, b=0.6, lam=0.1, beta=1.0):
        if form not in FORMS:
            raise ValueError(f"Unknown cost loss {form!r}: use one of {', '.join(FORMS)}.")
        if not target > 1:
            raise ValueError(
                f"The cost target must be > 1 (FLOPs, params or ns of latency), got {target!r}."
            )
        self.form, self.target = form, float(target)
        self.a, self.b, self.lam, self.beta = float(a), float(b), float(lam), float(beta)

    @classmethod
    def from_config(cls, cost_cfg, target):
        """From the NAS.COST node (LOSS, A, B, LAMBDA, BETA) and the target (FLOPs, params or
        ns)."""
        c = cost_cfg
        return cls(c.LOSS, target, a=c.A, b=c.B, lam=c.LAMBDA, beta=c.BETA)

    def search_cost(self, supernet, metric):
        """The cost this form penalises, after the alpha step's forward: for `target` the
        expected cost under softmax(alpha / tau) at the sampler's tau (no noise), for the others
        the effective cost of the step's sampled gates."""
        if self.form == "target":
            return expected_cost(supernet).of(metric)
        return supernet.effective_cost().of(metric)

    def alpha_loss(self, ce, supernet, metric):
        """(total loss, cost term) of the alpha step, whose forward produced `ce`."""
        return self(ce, self.search_cost(supernet, metric))

    def __call__(self, ce, cost):
        cost = cost.to(ce.dtype)
        if self.form == "target":
            term = self.beta * torch.log(cost / self.target).abs()
            return ce + term, term
        if self.form == "additive":
            term = self.lam * cost / self.target
            return ce + term, term
        factor = self.a * (torch.log(cost) / math.log(self.target)) ** self.b
        return ce * factor, factor

    def __repr__(self):
        if self.form == "target":
            return f"CE + {self.beta:g} * |log(expected cost / {self.target:.4g})|"
        if self.form == "additive":
            return f"CE + {self.lam:g} * cost / {self.target:.4g}"
        return f"CE * {self.a:g} * (log cost / log {self.target:.4g}) ^ {self.b:g}"


def landing_report(
    target,
    argmax,
    expected,
    cost_range,
    tolerance=0.05,
    metric="flops",
    tau=None,
    derived=None,
):
    """The end-of-search check: (a dict for metrics.json, a list of warning strings).

    `target`, `argmax` (the plain argmax architecture's cost), `expected` (the expected cost
    under the final gates), `derived` (the derived architecture's cost when the derivation
    is budget-constrained, see search/budget.py; default: the argmax) and `cost_range` (the
    space's (cheapest, dearest)) in FLOPs, params or ns (latency; the `_m` figures of the
    report are then in ms); `tolerance`: the relative miss allowed
    (NAS.COST.TOLERANCE). The miss is the derived architecture's: it is what the user gets."""
    if not tolerance > 0:
        raise ValueError(f"The cost tolerance must be > 0, got {tolerance!r}.")
    unit = metric_unit(metric)
    low, high = (float(c) for c in cost_range)
    target, argmax, expected = float(target), float(argmax), float(expected)
    derived = argmax if derived is None else float(derived)
    miss = derived / target - 1
    disagreement = expected / argmax - 1
    report = {
        "cost_metric": metric,
        "cost_target_m": target / 1e6,
        "derived_cost_m": derived / 1e6,
        "relative_miss": miss,
        "argmax_cost_m": argmax / 1e6,
        "argmax_relative_miss": argmax / target - 1,
        "expected_cost_m": expected / 1e6,
        "expected_vs_argmax": disagreement,
        "tolerance": float(tolerance),
        "landed": abs(miss) <= tolerance,
        "space_cost_range_m": [low / 1e6, high / 1e6],
    }
    warnings = []
    if abs(miss) > tolerance:
        where = (
            "below the space's cheapest architecture"
            if target < low
            else "above the space's dearest architecture"
            if target > high
            else "inside the space's range"
        )
        warnings.append(
            f"The searched architecture missed the cost target: {derived / 1e6:.4g} {unit} "
            f"against NAS.COST.TARGET_M {target / 1e6:.4g} {unit} ({miss:+.1%}, tolerance "
            f"+-{tolerance:.0%}); the target is {where}, which spans {low / 1e6:.4g} .. "
            f"{high / 1e6:.4g} {unit}."
        )
    if abs(disagreement) > tolerance:
        at = "" if tau is None else f" (tau {tau:.3g})"
        warnings.append(
            f"The expected cost under the final gates ({expected / 1e6:.4g} {unit}) and the "
            f"argmax architecture's ({argmax / 1e6:.4g} {unit}) differ by {disagreement:+.1%}: "
            f"the temperature{at} was still too high for the gates to be one-hot, so the "
            f"search optimised a mixture rather than the derived architecture; anneal longer "
            f"(more epochs, a smaller NAS.TAU.DECAY or NAS.TAU.MIN)."
        )
    return report, warnings


def search_landing(supernet, metric, target, cost_range, tolerance=0.05, derived=None):
    """`landing_report` for a supernet at the end of its search: the argmax cost, and the
    expected cost under softmax(alpha / tau) at the sampler's final temperature; `derived`:
    the derived architecture's cost when it is not the plain argmax."""
    with torch.no_grad():
        argmax = argmax_cost(supernet).of(metric)
        expected = expected_cost(supernet).of(metric)
    return landing_report(
        target,
        argmax,
        expected,
        cost_range,
        tolerance,
        metric,
        tau=supernet.sampler.tau,
        derived=derived,
    )
