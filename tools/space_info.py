#!/usr/bin/env python3
"""Print a summary of a search space.

    python tools/space_info.py fbnetv2_f                 # a shipped space, by name
    python tools/space_info.py path/to/space.yaml        # any space file
    python tools/space_info.py fashion_mnist --largest-arch largest.yaml
    python tools/space_info.py fashion_mnist --lut lut_fashion_mnist.json

Prints the space's name, cost, resolutions, number of blocks, number of searchable decisions
(those with more than one option) and "log10(#architectures) = X". `--largest-arch` also
writes the arch YAML of the space's largest candidate (max resolution, widths and expansions,
the largest op of every block): train it with the train task (MODEL.MOBILE_CV_NAS.ARCH) to
compare a search iteration's time with a training iteration's. `--lut` checks a latency table
against the space and prints the cheapest and dearest architectures' latency next to their
FLOPs and params (the range a NAS.COST.TARGET_M must fall in; see tools/predict_latency.py
for one arch's). Exits with status 2 and the error message on a malformed or missing space,
or a table that does not fit it.
"""

import argparse
import os
import sys

try:
    from mobile_cv_nas.search.space import SearchSpaceError, count_architectures, load_search_space
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from mobile_cv_nas.search.space import SearchSpaceError, count_architectures, load_search_space


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("space", help="a shipped space name (e.g. fbnetv2_f) or a YAML path")
    parser.add_argument("--largest-arch", metavar="PATH", help="write its largest candidate here")
    parser.add_argument("--lut", metavar="PATH", help="a latency table of the space")
    args = parser.parse_args(argv)
    try:
        space = load_search_space(args.space)
    except SearchSpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"name: {space.name}")
    print(f"cost: {space.cost}")
    print(f"resolutions: {', '.join(map(str, space.resolutions))}")
    print(f"blocks: {len(space.blocks())}")
    print(f"decisions: {space.num_searchable_decisions()}")
    print(f"log10(#architectures) = {count_architectures(space):.2f}")
    if args.lut:
        status = print_cost_ranges(space, args.lut)
        if status:
            return status
    if args.largest_arch:
        from mobile_cv_nas.arch import build_model, parse_arch_def
        from mobile_cv_nas.flops import count_flops
        from mobile_cv_nas.io import atomic_write

        largest = dict(space.largest_arch_def(space.in_channels), num_classes=space.num_classes)
        arch = parse_arch_def(largest)
        atomic_write(args.largest_arch, lambda f: f.write(arch.to_yaml()), "w")
        cost = count_flops(build_model(arch), arch.input_size)
        print(
            f"largest candidate: {cost.mflops:.4g} MFLOPs, {cost.mparams:.4g} M params, input "
            f"{arch.input_size}: {args.largest_arch}"
        )
    return 0


def print_cost_ranges(space, lut):
    """The cheapest and dearest architectures' FLOPs, params and latency (each its own
    extreme architecture); 2 when the table does not fit the space."""
    from mobile_cv_nas.search import Supernet
    from mobile_cv_nas.search.cost_bounds import cost_range, metric_unit
    from mobile_cv_nas.search.latency import LatencyTableError

    try:
        net = Supernet(space, latency_table=lut)
    except LatencyTableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for warning in net.latency_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"latency table: {net.latency.table.describe()}")
    for metric in ("flops", "params", "latency"):
        low, high = cost_range(net, metric)
        print(f"{metric}: {low / 1e6:.4g} .. {high / 1e6:.4g} {metric_unit(metric)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
