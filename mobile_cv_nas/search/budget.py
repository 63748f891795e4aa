"""Budget-constrained derivation: the most probable architecture whose cost lands on the target.

Why: a search optimises a relaxed (softmax) distribution. Its expected cost can sit on the
budget while the argmax of every decision, taken one by one, does not: a decision left split
0.6/0.4 between two widths rounds to one side, and a few such roundings add up (a demo search
lands its expected cost within 1% of the target and its plain argmax 10-25% off). The
budget is the number a user of a hardware-aware search sets, so the derived architecture
must honour it.

`budget_argmax` starts from the plain argmax and, while its cost misses the target by more
than the tolerance, moves decisions: of the moves that bring the cost closer to the target,
the ones that give up the least log-probability per unit of log-cost gained first (a greedy
maximum-probability search under the budget constraint).
When the plain argmax already lands, nothing changes. Costs are read from effective shapes
with one-hot gates, so no forward pass runs (in the F space 0.06 s a cost on one core; from
uniform alphas, the worst case, 80-130 s for a whole derivation, once at the end of a search;
the demo's space: under a second).
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
        return float(supernet.effective_cost().of(metric))


def _candidates(decision, current):
    """Option indices one move may take: the neighbours in value of a numeric decision
    (widths, expansions, resolutions: rounding errors are between adjacent options), every
    other option of a categorical one (ops)."""
    options = decision.options
    if not all(isinstance(o, int | float) and not isinstance(o, bool) for o in options):
        return [i for i in range(len(options)) if i != current]
    order = sorted(range(len(options)), key=lambda i: options[i])
    at = order.index(current)
    return [order[j] for j in (at - 1, at + 1) if 0 <= j < len(order)]


def _exact_steps(supernet, metric, target, aim, log_probs, choices, cost, max_evals):
    """Single moves (any option) costed exactly, the best price per gain taken, until the
    cost lands or no move helps or `max_evals` costs were read. Where no single move helps
    (a coarse space: every move overshoots the target the other way), pairs of moves on two
    decisions are tried, the cheapest-priced ones first."""
    evals = 0
    while evals < max_evals:
        miss = abs(math.log(cost / target))
        if miss <= aim:
            break
        best, singles = None, []
        for name, decision in supernet.decisions.items():
            for index in range(len(decision.options)):
                if index == choices[name]:
                    continue
                trial = cost_of(supernet, dict(choices, **{name: index}), metric)
                evals += 1
                price = float(log_probs[name][choices[name]] - log_probs[name][index])
                singles.append((price, name, index))
                gain = miss - abs(math.log(trial / target))
                if gain > 0 and (best is None or price / gain < best[0]):
                    best = (price / gain, {name: index}, trial)
        if best is None:
            best, used = _best_pair(
                supernet, metric, target, miss, choices, singles, max_evals - evals
            )
            evals += used
        if best is None:
            break
        _, moves, cost = best
        choices = dict(choices, **moves)
    return choices, cost


def _best_pair(supernet, metric, target, miss, choices, singles, max_evals):
    """((price per gain, moves, cost) or None, costs read): the best pair of single moves on
    two decisions, pairs of the lowest-priced moves first, within `max_evals` cost reads."""
    singles = sorted(singles, key=lambda s: s[0])
    best, evals = None, 0
    for j in range(1, len(singles)):
        for i in range(j):
            if evals >= max_evals:
                return best, evals
            (price_a, a, index_a), (price_b, b, index_b) = singles[i], singles[j]
            if a == b:
                continue
            moves = {a: index_a, b: index_b}
            trial = cost_of(supernet, dict(choices, **moves), metric)
            evals += 1
            gain = miss - abs(math.log(trial / target))
            price = price_a + price_b
            if gain > 0 and (best is None or price / gain < best[0]):
                best = (price / gain, moves, trial)
    return best, evals


def _neighbour_rounds(supernet, metric, target, aim, log_probs, choices, cost, max_rounds):
    """Rounds of neighbour moves: each round costs every neighbour move once, then applies
    the best ones (price per gain, one per decision) on those costs taken as additive in
    log-cost until the prediction lands; the next round starts from the true cost (a width
    changes the next layer's input too). Few cost reads per move: for large spaces."""
    for _ in range(max_rounds):
        if abs(math.log(cost / target)) <= aim:
            break
        moves = []  # (log-cost change, log-probability given up, decision, index)
        for name, decision in supernet.decisions.items():
            for index in _candidates(decision, choices[name]):
                trial = cost_of(supernet, dict(choices, **{name: index}), metric)
                price = float(log_probs[name][choices[name]] - log_probs[name][index])
                moves.append((math.log(trial / cost), price, name, index))
        predicted, moved, trial_choices = math.log(cost / target), set(), dict(choices)
        while abs(predicted) > aim:
            scored = [
                (price / gain, step, name, index)
                for step, price, name, index in moves
                if name not in moved
                for gain in [abs(predicted) - abs(predicted + step)]
                if gain > 0
            ]
            if not scored:
                break
            _, step, name, index = min(scored)
            trial_choices[name] = index
            moved.add(name)
            predicted += step
        if not moved:
            break
        trial_cost = cost_of(supernet, trial_choices, metric)
        if abs(math.log(trial_cost / target)) >= abs(math.log(cost / target)):
            break
        choices, cost = trial_choices, trial_cost
    return choices, cost


@torch.no_grad()
def budget_argmax(supernet, metric, target, tolerance, max_rounds=8, max_exact_evals=600):
    """(choices {decision name: option index}, cost, [BudgetChange]) of the most probable
    architecture found within `tolerance` (relative) of `target`; the closest one found when
    the budget cannot be reached.

    Two greedy searches from the plain argmax, the better result kept (landing first, then
    the higher probability): exact single moves (every option costed at every step, within
    `max_exact_evals` cost reads: the whole search in small spaces), and neighbour rounds
    (few cost reads per move, for paper-scale spaces) finished by exact single moves."""
    log_probs = {
        name: torch.log_softmax(d.alpha.detach().double(), dim=-1)
        for name, d in supernet.decisions.items()
    }
    argmax = {name: int(lp.argmax()) for name, lp in log_probs.items()}
    start = cost_of(supernet, argmax, metric)
    aim = math.log1p(tolerance)
    found = [_exact_steps(supernet, metric, target, aim, log_probs, argmax, start, max_exact_evals)]
    if abs(math.log(found[0][1] / target)) > aim:
        rounds = _neighbour_rounds(
            supernet, metric, target, aim, log_probs, argmax, start, max_rounds
        )
        found.append(_exact_steps(supernet, metric, target, aim, log_probs, *rounds, 600))

    def rank(result):
        choices, cost = result
        miss = abs(math.log(cost / target))
        log_p = sum(float(log_probs[n][i]) for n, i in choices.items())
        return (max(miss - aim, 0.0), -log_p)

    choices, cost = min(found, key=rank)
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
