"""The report: mean and spread of the random architectures, the searched one against them,
the printed table and an interpretation that says no more than the numbers do."""

import statistics


def mean_std(values):
    """(mean, sample standard deviation (n - 1); 0.0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std of no values.")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def summarize(searched_top1, random_top1s, seed_top1s=None):
    """The comparison of the searched architecture's val top-1 with the random ones' (all in
    percent): random mean and sample std, searched minus mean, how many random archs the
    searched one beats; with `seed_top1s` (the searched arch retrained with other seeds,
    including the main run) the seed-to-seed std of one architecture."""
    mean, std = mean_std(random_top1s)
    diff = float(searched_top1) - mean
    summary = {
        "searched_top1": float(searched_top1),
        "random_mean_top1": mean,
        "random_std_top1": std,
        "random_min_top1": min(random_top1s),
        "random_max_top1": max(random_top1s),
        "num_random": len(random_top1s),
        "searched_minus_random_mean": diff,
        "diff_in_random_stds": diff / std if std > 0 else None,
        "random_beaten": sum(1 for v in random_top1s if searched_top1 > v),
        "random_tied": sum(1 for v in random_top1s if searched_top1 == v),
    }
    if seed_top1s and len(seed_top1s) > 1:
        seed_mean, seed_std = mean_std(seed_top1s)
        summary.update(
            searched_seed_top1s=[float(v) for v in seed_top1s],
            searched_seed_mean_top1=seed_mean,
            searched_seed_std_top1=seed_std,
        )
    return summary


def interpretation(summary):
    """Plain sentences on what the numbers support (and what they do not)."""
    n, diff, std = (
        summary["num_random"],
        summary["searched_minus_random_mean"],
        summary["random_std_top1"],
    )
    beaten = summary["random_beaten"]
    seed_std = summary.get("searched_seed_std_top1")
    lines = [
        f"The searched architecture reached {summary['searched_top1']:.2f}% val top-1; "
        f"{n} random architectures of the same space within the FLOP window reached "
        f"{summary['random_mean_top1']:.2f} +- {std:.2f}% (mean +- sample std; range "
        f"{summary['random_min_top1']:.2f}..{summary['random_max_top1']:.2f}%). "
        f"Searched minus random mean: {diff:+.2f} points; it beats {beaten} of {n}."
    ]
    noise = max(std, seed_std or 0.0)
    if beaten == n and std > 0 and diff > 2 * noise:
        verdict = (
            "The searched architecture is above every random one by more than twice the "
            "spread: consistent with the search finding a better-than-random architecture at "
            "this FLOP budget"
        )
    elif diff > 0:
        why = []
        if beaten < n:
            why.append(f"not above every random one ({n - beaten} of {n} score as high or higher)")
        if not (std > 0 and diff > 2 * noise):
            why.append("not by more than twice the spread")
        verdict = (
            f"The searched architecture is above the random mean but {' and '.join(why)}: this "
            "run does not show that the search beats random sampling at this FLOP budget"
        )
    else:
        verdict = (
            "The searched architecture is not above the random mean: this run shows no "
            "advantage of the search over random sampling at this FLOP budget"
        )
    caveat = (
        f" (only {n} random architectures, one training seed each, one short schedule; the "
        "random spread mixes architecture differences with training noise"
    )
    if seed_std is not None:
        caveat += (
            f"; the searched architecture alone varies by {seed_std:.2f} points (sample std) "
            f"over {len(summary['searched_seed_top1s'])} training seeds"
        )
    lines.append(verdict + caveat + ").")
    return lines


def _row(name, r):
    return (
        f"| {name} | {r['flops_m']:.4f} | {r['params_m']:.4f} | {r['input_size']} | "
        f"{r['val_top1']:.2f} |"
    )


def format_report(results):
    """The printed report (Markdown) of `run_benchmark`'s results."""
    s = results["summary"]
    lines = [
        "| arch | MFLOPs | M params | input | val top-1 (%) |",
        "|---|---:|---:|---:|---:|",
        _row(f"**searched** ({results['searched']['name']})", results["searched"]),
    ]
    lines += [_row(r["name"], r) for r in results["random"]]
    lines += [
        "",
        f"random mean +- std (n={s['num_random']}, sample std): "
        f"{s['random_mean_top1']:.2f} +- {s['random_std_top1']:.2f}%",
        f"searched - random mean: {s['searched_minus_random_mean']:+.2f} points "
        f"(beats {s['random_beaten']} of {s['num_random']})",
    ]
    if "searched_seed_std_top1" in s:
        tops = ", ".join(f"{v:.2f}" for v in s["searched_seed_top1s"])
        lines.append(
            f"searched arch over {len(s['searched_seed_top1s'])} training seeds: {tops} "
            f"(mean {s['searched_seed_mean_top1']:.2f}, std {s['searched_seed_std_top1']:.2f})"
        )
    t = results.get("timing")
    if t:
        la = t["largest_arch"]
        lines.append(
            f"search iteration (weight + alpha step) / training iteration of the largest "
            f"candidate ({la['flops_m']:.4f} MFLOPs, {la['input_size']}px): "
            f"{1e3 * t['search_step_s']:.1f} ms / {1e3 * t['train_step_s']:.1f} ms = "
            f"{t['ratio']:.2f}x; weight step alone {1e3 * t['weight_step_s']:.1f} ms = "
            f"{t['weight_step_ratio']:.2f}x (medians of {t['iters']} after {t['warmup']} "
            f"warm-up, batch {t['batch']}, {t['threads']} thread(s), {t['device']})"
        )
        if t.get("ratio_without_data") is not None:
            lines.append(
                f"both include fetching batches ({1e3 * t['batch_fetch_s']:.1f} ms each, two "
                f"per search iteration); without it, estimated from medians measured apart: "
                f"about {t['ratio_without_data']:.1f}x"
            )
    lines += ["", *interpretation(s)]
    return "\n".join(lines)
