"""The benchmark's targets and their evaluation.

The bounds are this project's own acceptance bounds for its benchmark network, not figures
from the paper (which reports memory against the number of channel options, FBNetV2 Sec. 4.3
and Fig. 7, but no ratios to a plain network). Timing targets live only here, in the
benchmark's output, never in unit tests.
"""

#: Targets (ratios; `ratio <= bound` passes).
TARGET_MASKED_K_MEMORY = 1.02  # saved bytes, masked k=max / k=min
TARGET_MASKED_PLAIN_MEMORY = 1.05  # saved bytes, masked k=max / plain
TARGET_MASKED_PLAIN_TIME = 1.10  # step time, masked k=max / plain
TARGET_RESOLUTION_SLACK = 1.10  # time ratio <= sum (r_i / r_max)^2 * this


def resolution_time_bound(resolutions, size):
    """(sum_i (r_i / size)^2, that times TARGET_RESOLUTION_SLACK): the resolution time bound."""
    pixel_ratio = sum((r / size) ** 2 for r in resolutions)
    return pixel_ratio, pixel_ratio * TARGET_RESOLUTION_SLACK


def evaluate_targets(results):
    """[{target, value, bound, pass}] for the results of `run_benchmark`."""
    rows = []

    def add(name, value, bound):
        rows.append(
            {
                "target": name,
                "value": value,
                "bound": bound,
                "pass": value is not None and value <= bound,
            }
        )

    ch = {r["k"]: r for r in results["channels"]}
    if ch and all("masked" in r for r in ch.values()):
        kmin, kmax = min(ch), max(ch)
        if kmax != kmin:
            add(
                f"masked saved memory k={kmax} / k={kmin}",
                ch[kmax]["masked"]["saved_bytes"] / ch[kmin]["masked"]["saved_bytes"],
                TARGET_MASKED_K_MEMORY,
            )
        add(
            f"masked k={kmax} / plain saved memory",
            ch[kmax]["masked_saved_vs_plain"],
            TARGET_MASKED_PLAIN_MEMORY,
        )
        add(
            f"masked k={kmax} / plain step time",
            ch[kmax]["masked_time_vs_plain"],
            TARGET_MASKED_PLAIN_TIME,
        )
    for r in results["resolution"]:
        add(
            f"resolution {r['resolutions']} time / plain <= sum((r/rmax)^2) x "
            f"{TARGET_RESOLUTION_SLACK:.2f}",
            r["time_vs_plain"],
            r["time_bound"],
        )
    return rows
