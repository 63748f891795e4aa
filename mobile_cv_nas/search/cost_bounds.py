"""Costs of particular architectures of a supernet, from its one-hot gates: the argmax
architecture (logged during a search) and the cheapest / dearest ones (is a target reachable?).

Costs add up over layers, and every layer's cost grows with its widths, expansion and input
resolution. So the extreme architectures take the extreme numeric option of every width,
expansion and resolution decision, then, block by block, the op of extreme cost at those
widths (blocks are independent once the widths are fixed). Measured latencies need not grow
with every width (a kernel may favour a wider layer), so the latency's extremes are found
exactly instead (`latency.SupernetLatency.extreme`).

Units: costs are counted in FLOPs, params and nanoseconds, and reported in millions of them
(`metric_unit`: MFLOPs, M params, ms), the units of NAS.COST.TARGET_M (MFLOPs, M params) and
NAS.COST.TARGET_MS (ms).
"""

import contextlib

import torch

METRICS = ("flops", "params", "latency")
UNITS = {"flops": "MFLOPs", "params": "M params", "latency": "ms"}


def metric_unit(metric):
    """The unit a cost of `metric` is reported in (its value / 1e6)."""
    return UNITS.get(metric, "M")


@contextlib.contextmanager
def _gates_kept(supernet):
    """Restore every decision's sampled gates afterwards (costs are read from the gates)."""
    saved = {name: d.gates for name, d in supernet.decisions.items()}
    try:
        yield
    finally:
        for name, d in supernet.decisions.items():
            d.gates = saved[name]


def _one_hot(decision, index):
    gates = torch.zeros(len(decision.options), dtype=decision.alpha.dtype)
    gates[index] = 1.0
    decision.set_gates(gates)


def expected_cost(supernet, tau=None):
    """The expected `Cost` under gates softmax(alpha / tau) for every searched decision (no
    Gumbel noise; tau: the sampler's current temperature by default), differentiable in every
    alpha. As tau falls it tends to the argmax architecture's cost, as far as every decision's
    alphas are further apart than tau."""
    tau = supernet.sampler.tau if tau is None else tau
    with _gates_kept(supernet):
        for decision in supernet.decisions.values():
            decision.gates = torch.softmax(decision.alpha / tau, dim=-1)
        return supernet.effective_cost()


@torch.no_grad()
def argmax_cost(supernet):
    """The `Cost` (flops, params, latency) of the architecture `derive_arch` would give now."""
    with _gates_kept(supernet):
        for decision in supernet.decisions.values():
            _one_hot(decision, int(decision.alpha.argmax()))
        return supernet.effective_cost()


def _is_op(decision):
    return decision.name.startswith("op:")


@torch.no_grad()
def extreme_cost(supernet, metric, cheapest=True):
    """The smallest (or largest) `metric` ('flops', 'params' or 'latency', in FLOPs, params or
    ns) of any architecture in the supernet's space, as a float."""
    if metric not in METRICS:
        raise ValueError(f"Unknown cost metric {metric!r}: use one of {', '.join(METRICS)}.")
    if metric == "latency":
        if supernet.latency is None:
            raise ValueError("The supernet has no latency table (Supernet.set_latency_table).")
        return supernet.latency.extreme(cheapest)[0] * 1e6
    pick = min if cheapest else max

    def value():
        return float(supernet.effective_cost().of(metric))

    with _gates_kept(supernet):
        for decision in supernet.decisions.values():
            if _is_op(decision):
                _one_hot(decision, 0)
            else:
                options = [float(o) for o in decision.options]
                _one_hot(decision, options.index(pick(options)))
        for block, shape in supernet.block_input_shapes():
            if block.op_choice.name not in supernet.decisions:
                continue  # a fixed op
            costs = []
            for index in range(len(block.op_choice.options)):
                _one_hot(block.op_choice, index)
                _, layers = block.layer_costs(shape)
                costs.append(sum(float(cost.of(metric)) for _, cost in layers))
            _one_hot(block.op_choice, costs.index(pick(costs)))
        return value()


def cost_range(supernet, metric):
    """(smallest, largest) `metric` over the supernet's architectures."""
    return extreme_cost(supernet, metric, True), extreme_cost(supernet, metric, False)
