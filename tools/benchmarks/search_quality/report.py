"""The printed report (Markdown) of `run_benchmark`'s results: per budget and sampling mode,
the searched architecture (mean over its training seeds) against the random ones of equal
FLOPs, with the share beaten and the one-sided rank test; the iteration and memory ratios
next to the single-path targets; a verdict that says no more than the numbers do."""

import statistics

#: One-sided significance level of the verdict.
ALPHA = 0.05


def mean_std(values):
    """(mean, sample standard deviation (n - 1); 0.0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std of no values.")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _mean_flops(rows):
    return statistics.fmean(r["flops_m"] for r in rows)


def quality_table(points):
    lines = [
        "| mode | budget MFLOPs | searched MFLOPs | searched top-1 (seeds) | random top-1 "
        "(archs) | random beaten | U | p (one-sided) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        s = p["stats"]
        lines.append(
            f"| {p['mode']} | {p['budget_m']:.4g} | {_mean_flops(p['searched']):.4f} | "
            f"{s['searched_mean_top1']:.2f} +- {s['searched_std_top1']:.2f} (n={s['num_seeds']})"
            f" | {s['random_mean_top1']:.2f} +- {s['random_std_top1']:.2f} "
            f"(n={s['num_random']}) | {s['random_beaten']}/{s['num_random']} "
            f"({s['share_beaten']:.0%}) | {s['mann_whitney_u']:g} | {s['p_value']:.3g} |"
        )
    return lines


def timing_lines(t):
    if not t:
        return []
    la = t["largest_arch"]
    target = t["targets"]["single_path"]
    lines = [
        f"Cost relative to a training iteration of the largest candidate ({la['flops_m']:.4f} "
        f"MFLOPs, {la['input_size']} px: {1e3 * t['train_step_s']:.1f} ms, "
        f"{t['train_peak_bytes'] / 1e6:.1f} MB peak); medians of {t['iters']} after "
        f"{t['warmup']} warm-up, batch {t['batch']}, {t['threads']} thread(s), {t['device']}:",
        "",
        "| mode | search iteration | weight step | peak memory |",
        "|---|---:|---:|---:|",
    ]
    for mode, m in t["modes"].items():
        lines.append(
            f"| {mode} | {m['ratio']:.2f}x ({1e3 * m['search_step_s']:.1f} ms) | "
            f"{m['weight_step_ratio']:.2f}x ({1e3 * m['weight_step_s']:.1f} ms) | "
            f"{m['memory_ratio']:.2f}x ({m['peak_bytes'] / 1e6:.1f} MB) |"
        )
    lines.append(
        f"| target (single_path) | <= {target['ratio']}x | <= {target['weight_step_ratio']}x | "
        f"<= {target['memory_ratio']}x |"
    )
    sp = t["modes"].get("single_path")
    if sp:
        met = [k for k in target if sp[k] <= target[k]]
        lines.append(
            f"single_path meets {len(met)} of {len(target)} targets"
            + (f" (misses: {', '.join(k for k in target if k not in met)})" if len(met) < 3 else "")
        )
    return lines


def verdict(points, alpha=ALPHA):
    """One sentence per budget and mode, and one overall."""
    lines = []
    wins = 0
    for p in points:
        s = p["stats"]
        where = f"{p['mode']} at {p['budget_m']:.4g} MFLOPs"
        if s["p_value"] < alpha:
            wins += 1
            lines.append(
                f"- {where}: the searched arch beats {s['share_beaten']:.0%} of the random ones "
                f"and its seeds rank above them (p = {s['p_value']:.3g} < {alpha}): better than "
                f"random here."
            )
        else:
            lines.append(
                f"- {where}: beats {s['share_beaten']:.0%} of the random ones; p = "
                f"{s['p_value']:.3g} >= {alpha}: not shown to beat random here."
            )
    n = len(points)
    small = (
        min(p["stats"]["num_seeds"] for p in points),
        min(p["stats"]["num_random"] for p in points),
    )
    lines.append(
        f"Overall: the search beats random at {wins} of {n} budget/mode points "
        f"(one-sided Mann-Whitney U, searched seeds vs random archs, level {alpha}; with "
        f"{small[0]} seeds and {small[1]} random archs the smallest possible p is "
        f"{_min_p(*small):.3g}; one short schedule, no correction for the {n} tests)."
    )
    return lines


def _min_p(n_x, n_y):
    import math

    return 1 / math.comb(n_x + n_y, n_x)


def format_report(results):
    """The printed report of `run_benchmark`'s results."""
    points = results["points"]
    lines = [*quality_table(points), ""]
    lines += verdict(points)
    t = timing_lines(results.get("timing"))
    if t:
        lines += ["", *t]
    return "\n".join(lines)
