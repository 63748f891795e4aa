"""Channel rounding shared by every block (the official FBNet rule)."""

import math


def make_divisible(value, divisor=8):
    """Round `value` to a multiple of `divisor` the way the official builder does.

    Exact multiples are kept; otherwise round half up to a multiple (at least `divisor`),
    adding one more `divisor` if that lost more than 5% of the value.
    """
    divisor = int(divisor)
    if divisor <= 1:
        return max(1, int(value))
    if float(value) % divisor == 0:
        return max(divisor, int(value))
    rounded = max(divisor, int(math.floor(value / divisor + 0.5)) * divisor)
    if rounded < 0.95 * value:
        rounded += divisor
    return max(divisor, rounded)
