"""The plot: saved activation bytes and step time against k, per variant."""

import os

from .network import VARIANTS


def write_plot(results, path):
    """Write the two-panel plot of `results` to `path` (PNG); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["k"] for r in results["channels"]]
    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {
        "masked": ("o-", "masked supernet (Eq. 3)"),
        "plain": ("s--", "plain max-width"),
        "dnas": ("^-", "conventional DNAS (Eq. 1)"),
    }
    for variant in VARIANTS:
        if not all(variant in r for r in results["channels"]):
            continue
        style, label = styles[variant]
        ax_mem.plot(
            ks, [r[variant]["saved_bytes"] / 2**20 for r in results["channels"]], style, label=label
        )
        ax_time.plot(
            ks, [r[variant]["step_time_s"] * 1e3 for r in results["channels"]], style, label=label
        )
    for ax in (ax_mem, ax_time):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlabel("channel options per conv (k)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax_mem.set_yscale("log")
    ax_mem.set_ylabel("saved activation bytes per step (MiB)")
    ax_time.set_ylabel("median step time (ms)")
    s = results["settings"]
    fig.suptitle(
        f"Channel search cost (batch {s['batch']}, {s['size']}x{s['size']}, {s['device']})"
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
