"""The plot: validation top-1 against MFLOPs, the searched architecture highlighted."""

import os


def write_plot(results, path):
    """Write the scatter plot of `results` to `path` (PNG); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["summary"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    rnd = results["random"]
    ax.scatter(
        [r["flops_m"] for r in rnd],
        [r["val_top1"] for r in rnd],
        c="tab:gray",
        label=f"random (n={len(rnd)})",
        zorder=2,
    )
    ax.axhline(s["random_mean_top1"], color="tab:gray", ls="--", lw=1, label="random mean")
    ax.axhspan(
        s["random_mean_top1"] - s["random_std_top1"],
        s["random_mean_top1"] + s["random_std_top1"],
        color="tab:gray",
        alpha=0.15,
        label="random mean +- std",
    )
    searched = results["searched"]
    ax.scatter(
        [searched["flops_m"]],
        [searched["val_top1"]],
        marker="*",
        s=220,
        c="tab:red",
        edgecolors="black",
        label="searched",
        zorder=3,
    )
    seeds = results.get("seed_runs") or []
    if seeds:
        ax.scatter(
            [r["flops_m"] for r in seeds],
            [r["val_top1"] for r in seeds],
            marker="x",
            c="tab:red",
            label="searched, other training seeds",
            zorder=3,
        )
    window = results["settings"]["tolerance"]
    target = searched["flops_m"]
    ax.axvspan(target * (1 - window), target * (1 + window), color="tab:blue", alpha=0.06)
    ax.set_xlabel("MFLOPs (published convention)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(f"Searched vs random at +-{window:.0%} FLOPs", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
