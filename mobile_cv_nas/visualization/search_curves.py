"""Curves over a DMaskingNAS search: the Gumbel temperature, the effective cost and the alpha
probabilities of the decisions that moved most.

Input is a list of logged points (dicts, in iteration order), e.g.

    {"iteration": 120, "epoch": 3.0, "tau": 4.1, "cost": 1.2e6, "cost_target": 1.0e6,
     "argmax_cost": 1.1e6, "cost_metric": "flops",
     "probs": {"op:xif1_0": [0.3, 0.3, 0.2, 0.2], "resolution": [...]},
     "option_labels": {"op:xif1_0": ["ir_k3", "ir_k5", "ir_k3_se_hs", "skip"]}}

Every key is optional: a panel whose data no record has is left out, so the plot can be drawn
from the first logged point on, and from logs written before a key existed.
"""

import math

from .arch_figure import write_png

NCOLS = 4  # decision panels per row


def _x_key(records):
    """Epochs when every record has one, else iterations, else the point's index (None)."""
    for key in ("epoch", "iteration"):
        if records and all(r.get(key) is not None for r in records):
            return key
    return None


def _x(record, index, x_key):
    return float(record[x_key]) if x_key else index


def _series(records, key, x_key):
    xs, ys = [], []
    for i, r in enumerate(records):
        if r.get(key) is not None:
            xs.append(_x(r, i, x_key))
            ys.append(float(r[key]))
    return xs, ys


def _probability_series(records, x_key):
    """decision -> (xs, rows of probabilities), in the order the decisions first appear. A row
    whose length differs from the decision's first one is dropped rather than misdrawn."""
    out = {}
    for i, r in enumerate(records):
        for name, probs in (r.get("probs") or {}).items():
            row = [float(p) for p in probs]
            xs, rows = out.setdefault(name, ([], []))
            if rows and len(row) != len(rows[0]):
                continue
            xs.append(_x(r, i, x_key))
            rows.append(row)
    return out


def _movement(rows):
    """The largest swing (max - min over the records) of any one option's probability."""
    if not rows:
        return 0.0
    return max(max(col) - min(col) for col in zip(*rows, strict=True))


def select_decisions(records, max_decisions=12):
    """[(name, movement)] of the at most `max_decisions` decisions whose probabilities moved
    most over `records` (movement: the largest swing of one option's probability), in the
    order the decisions first appear (forward order of the network, as the supernet logs
    them)."""
    series = _probability_series(records, None)
    moved = {name: _movement(rows) for name, (_, rows) in series.items()}
    ranked = sorted(moved, key=lambda name: -moved[name])[: max(0, max_decisions)]
    return [(name, moved[name]) for name in series if name in ranked]


def _option_labels(records):
    """decision -> its option labels; a later record's labels replace an earlier one's."""
    labels = {}
    for r in records:
        for name, options in (r.get("option_labels") or {}).items():
            labels[name] = [str(o) for o in options]
    return labels


def _plot_tau(ax, records, x_key):
    xs, taus = _series(records, "tau", x_key)
    ax.plot(xs, taus, color="tab:purple", marker="." if len(xs) < 40 else None)
    ax.set_title("(a) Gumbel-softmax temperature", fontsize=10)
    ax.set_ylabel("tau")


def _plot_cost(ax, records, x_key):
    metric = next((r["cost_metric"] for r in records if r.get("cost_metric")), "cost")
    for key, label, style in (
        ("cost", "effective (expected)", dict(color="tab:blue")),
        ("argmax_cost", "argmax architecture", dict(color="tab:orange", linestyle="--")),
        ("cost_target", "target", dict(color="0.3", linestyle="--")),
    ):
        xs, ys = _series(records, key, x_key)
        if xs:
            ax.plot(xs, [y / 1e6 for y in ys], label=label, **style)
    ax.set_title(f"(b) {metric}", fontsize=10)
    ax.set_ylabel(f"{metric} ({'ms' if metric == 'latency' else 'M'})")  # costs in ns / 1e6
    ax.legend(fontsize=7)


def _plot_decision(ax, name, moved, xs, rows, labels):
    if labels is None or len(labels) != len(rows[0]):
        labels = [f"option {i}" for i in range(len(rows[0]))]
    for label, col in zip(labels, zip(*rows, strict=True), strict=True):
        ax.plot(xs, col, label=label, linewidth=1.2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{name} (moved {moved:.2f})", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="best", ncol=2 if len(labels) > 5 else 1)


def plot_search_curves(records, path, title=None, max_decisions=12):
    """Write the search curves of `records` (see the module doc) to the PNG `path`; returns
    `path`. Panels: (a) tau, (b) effective cost with the argmax architecture's cost and the
    target dashed, then one panel per decision for the `max_decisions` decisions whose
    probabilities moved most; a note says how many were left out."""
    figure = draw_search_curves(records, title=title, max_decisions=max_decisions)
    return write_png(figure, path, dpi=100)


def draw_search_curves(records, title=None, max_decisions=12):
    """The figure of `plot_search_curves`, as a matplotlib Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = list(records)
    x_key = _x_key(records)
    top = []
    if any(r.get("tau") is not None for r in records):
        top.append(_plot_tau)
    if any(r.get(k) is not None for r in records for k in ("cost", "argmax_cost")):
        top.append(_plot_cost)
    series = _probability_series(records, x_key)
    chosen = select_decisions(records, max_decisions)
    labels = _option_labels(records)
    prob_rows = math.ceil(len(chosen) / NCOLS)
    rows = (1 if top else 0) + prob_rows
    fig = Figure(figsize=(13, 0.8 + 3.0 * (1 if top else 0) + 2.4 * prob_rows))
    FigureCanvasAgg(fig)
    if rows == 0:
        fig.set_size_inches(6, 2)
        fig.text(0.5, 0.5, "nothing to plot: no tau, cost or probs", ha="center", va="center")
        return fig
    grid = fig.add_gridspec(rows, NCOLS, height_ratios=[1.25] * bool(top) + [1.0] * prob_rows)
    span = NCOLS // max(1, len(top))
    x_label = x_key or "logged point"
    for i, plot in enumerate(top):
        ax = fig.add_subplot(grid[0, i * span : (i + 1) * span])
        plot(ax, records, x_key)
        ax.set_xlabel(x_label, fontsize=8)
        ax.grid(alpha=0.3)
    for j, (name, moved) in enumerate(chosen):
        row, col = (1 if top else 0) + j // NCOLS, j % NCOLS
        ax = fig.add_subplot(grid[row, col])
        xs, probs = series[name]
        _plot_decision(ax, name, moved, xs, probs, labels.get(name))
        ax.grid(alpha=0.3)
        if col == 0:
            ax.set_ylabel("probability", fontsize=8)
        if row == rows - 1:
            ax.set_xlabel(x_label, fontsize=8)
    if series:
        left_out = len(series) - len(chosen)
        note = (
            f"alpha probabilities: {len(chosen)} of {len(series)} decisions shown, those whose "
            f"probabilities moved most; {left_out} left out"
        )
        fig.text(0.01, 0.005, note, fontsize=8, va="bottom", color="0.25")
    fig.suptitle(title or "search curves", fontsize=12)
    fig.tight_layout(rect=(0, 0.025, 1, 1))
    return fig
