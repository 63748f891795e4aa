"""The Pareto plot: validation top-1 against MFLOPs; random architectures as points, the
searched ones of each sampling mode as a line over the budgets (mean over training seeds,
error bars: sample std)."""

import io

from mobile_cv_nas.io import atomic_write

from .report import mean_std

MODE_COLORS = {"mixture": "tab:red", "single_path": "tab:blue"}


def write_plot(results, path):
    """Write the plot of `results` to `path` (PNG, atomically); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = results["points"]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    rnd = [r for p in points for r in p["random"]]
    ax.scatter(
        [r["flops_m"] for r in rnd],
        [r["val_top1"] for r in rnd],
        c="tab:gray",
        s=14,
        alpha=0.7,
        label=f"random archs (n={len(rnd)} runs)",
        zorder=2,
    )
    modes = list(dict.fromkeys(p["mode"] for p in points))
    for i, mode in enumerate(modes):
        mine = sorted((p for p in points if p["mode"] == mode), key=lambda p: p["budget_m"])
        xs, ys, errs = [], [], []
        for p in mine:
            mean, std = mean_std(r["val_top1"] for r in p["searched"])
            xs.append(mean_std(r["flops_m"] for r in p["searched"])[0])
            ys.append(mean)
            errs.append(std)
        color = MODE_COLORS.get(mode, f"C{i}")
        ax.errorbar(
            xs,
            ys,
            yerr=errs,
            color=color,
            marker="o",
            capsize=3,
            label=f"searched, {mode} (mean +- std over seeds)",
            zorder=3,
        )
    flops = [r["flops_m"] for p in points for r in (*p["random"], *p["searched"])]
    if min(flops) > 0 and max(flops) / min(flops) > 3:  # budgets spread on a log scale
        ax.set_xscale("log")
    ax.set_xlabel("MFLOPs (published convention)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("Searched vs random architectures at each budget", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path
