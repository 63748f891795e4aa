"""Cost-only search: the alphas optimised on the cost term alone (no data), then derived as a
search derives (`NAS.DERIVE budget`).

Why: costs come from effective shapes, not from a forward pass, so this shows in seconds
whether the cost loss and the derivation land a target anywhere in a space's range (the
tests, tools/benchmark_cost_landing.py), which a search with data cannot show for many
targets at once. The result is also what a budget alone would pick in a space.

What lands is the derived architecture. The relaxation alone does not always round: at the
cheap end of the paper spaces' FLOP ranges the input-resolution decision stays split between
two options whose one-hot costs straddle the target, and the plain argmax takes one side
(measured: fbnetv2_f at 12.8 MFLOPs, +16%); the derivation then moves the fewest, most
nearly tied decisions (search/budget.py).
"""

from __future__ import annotations

import dataclasses

import torch

from .budget import BudgetChange, budget_argmax
from .cost_bounds import argmax_cost, expected_cost
from .cost_loss import CostLoss


@dataclasses.dataclass
class CostOnlyResult:
    """Costs (FLOPs, params or ns of latency) after a cost-only search for `target`."""

    target: float
    argmax: float  # the plain argmax architecture's
    expected: float  # under softmax(alpha / tau) at the final tau
    derived: float  # the budget-derived architecture's
    changes: list[BudgetChange]  # the decisions the derivation moved off the argmax

    def miss(self, which: str = "derived") -> float:
        """Relative miss of the 'derived', 'argmax' or 'expected' cost."""
        return getattr(self, which) / self.target - 1


def spread_targets(low: float, high: float, count: int = 5) -> list[float]:
    """`count` targets spread geometrically over (low, high), ends excluded: the grid the
    tests and tools/benchmark_cost_landing.py land on."""
    return [low * (high / low) ** ((i + 0.5) / count) for i in range(count)]


def cost_only_search(
    supernet,
    metric: str,
    target: float,
    steps: int = 120,
    lr: float = 0.05,
    tau: tuple[float, float] = (5.0, 0.05),
    tolerance: float = 0.02,
    seed: int = 0,
) -> CostOnlyResult:
    """Optimise `supernet`'s alphas (in place) on the default cost term (`CostLoss('target')`)
    alone: Adam at `lr`, tau annealed geometrically from tau[0] to tau[1] over `steps`, as a
    search anneals over its epochs; then derive within `tolerance` of `target`.

    The alphas start slightly apart (N(0, 0.1^2), seeded), as a cross-entropy would set
    them: from all-zero alphas the cost alone moves every option on the same side of the
    mean alike (Adam steps each alpha by about lr whatever its gradient's size), so such
    options stay tied."""
    if steps < 2:
        raise ValueError(f"A cost-only search needs steps >= 2, got {steps}.")
    loss = CostLoss("target", target)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for alpha in supernet.arch_parameters():
            noise = torch.randn(alpha.shape, generator=generator, dtype=alpha.dtype)
            alpha.copy_(0.1 * noise)
    optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=lr)
    zero = torch.zeros((), dtype=torch.float64)
    start, end = tau
    for step in range(steps):
        supernet.sampler.tau = start * (end / start) ** (step / (steps - 1))
        _, term = loss.alpha_loss(zero, supernet, metric)
        optimizer.zero_grad()
        term.backward()
        optimizer.step()
    with torch.no_grad():
        argmax = float(argmax_cost(supernet).of(metric))
        expected = float(expected_cost(supernet).of(metric))
    _, derived, changes = budget_argmax(supernet, metric, target, tolerance)
    return CostOnlyResult(float(target), argmax, expected, derived, changes)
