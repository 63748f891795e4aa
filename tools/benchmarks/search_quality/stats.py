"""Does the search beat random? The share of random architectures a searched one beats, and a
one-sided Mann-Whitney U test (searched seeds vs random architectures, alternative "greater"),
in the standard library only.

The U statistic of sample x against sample y counts the pairs (x_i, y_j) with x_i > y_j, ties
counting one half. Under the null hypothesis (both samples from one distribution) every
assignment of the pooled values to the two samples is equally likely, so the exact one-sided
p-value is the share of the C(n_x + n_y, n_x) assignments whose U is at least the observed
one; ties are handled exactly by enumerating the pooled mid-ranks. Above `EXACT_LIMIT`
assignments the normal approximation (tie-corrected variance, continuity correction 0.5) is
used instead.
"""

import itertools
import math
import statistics

#: Largest number of assignments enumerated for the exact p-value.
EXACT_LIMIT = 200_000


def u_statistic(x, y):
    """U of `x` against `y`: pairs with x_i > y_j, plus one half per tie."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)


def midranks(values):
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _exact_p(ranks, n_x, u_obs):
    offset = n_x * (n_x + 1) / 2
    hits = total = 0
    for chosen in itertools.combinations(ranks, n_x):
        total += 1
        if sum(chosen) - offset >= u_obs - 1e-9:
            hits += 1
    return hits / total


def _normal_p(ranks, n_x, n_y, u_obs):
    n = n_x + n_y
    mean = n_x * n_y / 2
    ties = sum(t**3 - t for t in _tie_sizes(ranks))
    var = n_x * n_y / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (u_obs - mean - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def _tie_sizes(ranks):
    counts = {}
    for r in ranks:
        counts[r] = counts.get(r, 0) + 1
    return [t for t in counts.values() if t > 1]


def mann_whitney_greater(x, y, exact_limit=EXACT_LIMIT):
    """One-sided Mann-Whitney U test that `x` tends to be greater than `y`: a dict with `u`
    (U of x), `p` and `method` ("exact" or "normal")."""
    x, y = [float(v) for v in x], [float(v) for v in y]
    if not x or not y:
        raise ValueError("The Mann-Whitney test needs two non-empty samples.")
    u = u_statistic(x, y)
    ranks = midranks(x + y)
    n_x, n_y = len(x), len(y)
    if math.comb(n_x + n_y, n_x) <= exact_limit:
        return {"u": u, "p": _exact_p(ranks, n_x, u), "method": "exact", "n_x": n_x, "n_y": n_y}
    return {"u": u, "p": _normal_p(ranks, n_x, n_y, u), "method": "normal", "n_x": n_x, "n_y": n_y}


def share_beaten(value, others):
    """(share of `others` strictly below `value`, count below, count equal)."""
    others = [float(v) for v in others]
    if not others:
        raise ValueError("share_beaten of no values.")
    below = sum(1 for v in others if v < value)
    equal = sum(1 for v in others if v == value)
    return below / len(others), below, equal


def compare(searched_seed_top1s, random_top1s):
    """The statistics of one budget and mode: the searched arch's mean over its training
    seeds, the share of random archs it beats, and the rank test (seeds vs random archs)."""
    seed_mean = statistics.fmean(searched_seed_top1s)
    share, below, equal = share_beaten(seed_mean, random_top1s)
    test = mann_whitney_greater(searched_seed_top1s, random_top1s)
    return {
        "searched_mean_top1": seed_mean,
        "searched_std_top1": statistics.stdev(searched_seed_top1s)
        if len(searched_seed_top1s) > 1
        else 0.0,
        "random_mean_top1": statistics.fmean(random_top1s),
        "random_std_top1": statistics.stdev(random_top1s) if len(random_top1s) > 1 else 0.0,
        "share_beaten": share,
        "random_beaten": below,
        "random_tied": equal,
        "num_random": len(random_top1s),
        "num_seeds": len(searched_seed_top1s),
        "mann_whitney_u": test["u"],
        "p_value": test["p"],
        "p_method": test["method"],
    }
