"""Budget-constrained derivation: the most probable architecture whose cost lands on the target.

Why: a search optimises a relaxed (softmax) distribution. Its expected cost can sit on the
budget while the argmax of every decision, taken one by one, does not: a decision left split
0.6/0.4 between two widths rounds to one side, and a few such roundings add up (a demo search
lands its expected cost within 1% of the target and its plain argmax 10-25% off). The
budget is the number a user of a hardware-aware search sets, so the derived architecture
must honour it.

`budget_argmax` starts from the plain argmax and, while its cost misses the target by more
than the tolerance, changes one decision at a time: of all single changes that bring the cost
closer to the target, the one that gives up the least log-probability per unit of log-cost
gained (a greedy maximum-probability search under the budget constraint). When the plain
argmax already lands, nothing changes. Costs are read from effective shapes with one-hot
gates, so no forward pass runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch

from .cost_bounds import _gates_kept, _one_hot


@dataclasses.dataclass
class BudgetChange:
    """One decision moved away from its argmax to reach the budget."""

    decision: str
    argmax: object
    chosen: object
    probability_argmax: float
    probability_chosen: float

    def __str__(self):
        return (
            f"{self.decision}: {self.argmax!r} (p={self.probability_argmax:.2f}) -> "
            f"{self.chosen!r} (p={self.probability_chosen:.2f})"
        )


@torch.no_grad()
def cost_of(supernet, choices, metric):
    """The `metric` cost of the architecture with option index `choices[name]` per decision."""
    with _gates_kept(supernet):
        for name, decision in supernet.decisions.items():
            _one_hot(decision, choices[name])
        return float(getattr(supernet.effective_cost(), metric))


@torch.no_grad()
def budget_argmax(supernet, metric, target, tolerance, max_changes=None):
    """(choices {decision name: option index}, cost, [BudgetChange]) of the most probable
    architecture found within `tolerance` (relative) of `target`; the closest one found when
    the budget cannot be reached by single changes."""
    log_probs = {
        name: torch.log_softmax(d.alpha.detach().double(), dim=-1)
        for name, d in supernet.decisions.items()
    }
    argmax = {name: int(lp.argmax()) for name, lp in log_probs.items()}
    choices = dict(argmax)
    cost = cost_of(supernet, choices, metric)
    limit = len(choices) if max_changes is None else max_changes
    for _ in range(limit):
        miss = abs(math.log(cost / target))
        if miss <= math.log1p(tolerance):
            break
        best = None
        for name, lp in log_probs.items():
            for index in range(len(lp)):
                if index == choices[name]:
                    continue
                trial = dict(choices, **{name: index})
                trial_cost = cost_of(supernet, trial, metric)
                gain = miss - abs(math.log(trial_cost / target))
                if gain <= 0:
                    continue
                price = float(lp[choices[name]] - lp[index])  # log-probability given up
                score = price / gain
                if best is None or score < best[0]:
                    best = (score, name, index, trial_cost)
        if best is None:
            break
        _, name, index, cost = best
        choices[name] = index
    changes = [
        BudgetChange(
            name,
            supernet.decisions[name].options[argmax[name]],
            supernet.decisions[name].options[index],
            math.exp(float(log_probs[name][argmax[name]])),
            math.exp(float(log_probs[name][index])),
        )
        for name, index in choices.items()
        if index != argmax[name]
    ]
    return choices, cost, changes


@torch.no_grad()
def apply_choices(supernet, choices):
    """Make `choices` the argmax of every decision (`Decision.set_argmax`), so `derive_arch`
    and `derive_model` build that architecture. In place (see `choices_applied`)."""
    for name, index in choices.items():
        supernet.decisions[name].set_argmax(index)
    return supernet


@contextlib.contextmanager
def choices_applied(supernet, choices):
    """`apply_choices` for the duration of a `with` block, the searched alphas restored
    afterwards (a run's checkpoint and metrics keep what the search learned)."""
    saved = {name: d.alpha.detach().clone() for name, d in supernet.decisions.items()}
    try:
        yield apply_choices(supernet, choices)
    finally:
        with torch.no_grad():
            for name, d in supernet.decisions.items():
                d.alpha.copy_(saved[name])
