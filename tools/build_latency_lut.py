#!/usr/bin/env python3
"""Build a latency table (LUT) of a search space: every block configuration the space can
produce (op x input/mid/output width x stride x input resolution, the stem, the head and the
pool + classifier), each module timed alone with torch.utils.benchmark on this machine.

    OMP_NUM_THREADS=1 python tools/build_latency_lut.py --space fashion_mnist --grid 0 \\
        --output lut_fashion_mnist.json                      # every configuration (~1 min)
    OMP_NUM_THREADS=1 python tools/build_latency_lut.py --space fbnetv2_f --output lut_f.json \\
        --check-interpolation 100                            # a grid of 3 widths per coordinate
    python tools/build_latency_lut.py --space fbnetv2_f --output lut_f.json --dry-run

Progress and an ETA go to stderr. The table is saved every --save-every seconds: kill the
build and run the same command again, and it continues where it stopped. `--grid N` measures
N widths per coordinate (input, mid, output) of each op, stride and resolution and
interpolates the rest multilinearly (0: every width); `--recheck R` measures again the
entries more than R above the multilinear fit of their group (slowed by another process: a
shared machine); `--check-interpolation K` measures K configurations off the grid as well
and reports the error the interpolation adds; `--calibrate K` (default 20) times K random
architectures whole, last, and fits measured = offset + scale x the sum of their entries
(blocks timed alone run faster than inside a network: 17-26% on the F space); every
prediction goes through that line; running the command again on a complete table
calibrates it if it is not (`--recalibrate`: again all the same, seconds). The table
records the space (name and a hash of its content), device, threads, batch, dtype, torch
version and machine (CPU model and core count, no host name). Errors: one line, exit status
2; interrupted: exit status 130, the table saved.
"""

import argparse
import os
import sys

try:
    import mobile_cv_nas  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mobile_cv_nas.cli_quiet import quiet_third_party_imports  # noqa: E402

quiet_third_party_imports()

from mobile_cv_nas.cli_errors import one_line, one_line_usage_errors  # noqa: E402
from mobile_cv_nas.search.latency import LatencyTableError, build_latency_table  # noqa: E402
from mobile_cv_nas.search.latency.build import DTYPES  # noqa: E402
from mobile_cv_nas.search.space import SearchSpaceError  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True, help="a shipped space name or a space YAML")
    p.add_argument("--output", required=True, help="the table (JSON); continued if it exists")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (fixed while timing)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument(
        "--grid", type=int, default=3, help="widths measured per coordinate; 0: every width"
    )
    p.add_argument("--num-classes", type=int, help="the classifier's outputs (default: space's)")
    p.add_argument("--in-channels", type=int, help="image channels (default: the space's)")
    p.add_argument(
        "--check-interpolation",
        type=int,
        default=0,
        metavar="K",
        help="also measure K configurations off the grid and report the interpolation error",
    )
    p.add_argument(
        "--recheck",
        type=float,
        default=0.08,
        metavar="R",
        help="measure again the entries more than R above their group's fit (0: none)",
    )
    p.add_argument(
        "--calibrate",
        type=int,
        default=20,
        metavar="K",
        help="time K random architectures whole to calibrate the table (0: no calibration)",
    )
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="calibrate a complete, calibrated table again (the machine's load changed)",
    )
    p.add_argument("--save-every", type=float, default=10.0, help="seconds between saves")
    p.add_argument("--dry-run", action="store_true", help="print the counts, measure nothing")
    one_line_usage_errors(p)
    args = p.parse_args(argv)
    if args.threads < 1 or args.batch < 1:
        p.error("--threads and --batch must be >= 1")
    if args.grid < 0 or args.grid == 1:
        p.error("--grid must be 0 (every width) or >= 2 (both ends of every width range)")
    if min(args.check_interpolation, args.recheck, args.calibrate) < 0 or args.save_every <= 0:
        p.error("--check-interpolation, --recheck and --calibrate must be >= 0, --save-every > 0")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda, but CUDA is not available here")
    return args


def dry_run(args):
    import dataclasses

    from mobile_cv_nas.search.latency import grid_configs, space_configs
    from mobile_cv_nas.search.space import as_search_space

    space = as_search_space(args.space)
    overrides = {"num_classes": args.num_classes, "in_channels": args.in_channels}
    space = dataclasses.replace(space, **{k: v for k, v in overrides.items() if v is not None})
    configs = space_configs(space)
    for points in sorted({0, 2, 3, 4, 5, args.grid}):
        plan = grid_configs(configs, points)
        label = "every width" if points == 0 else f"--grid {points}"
        print(f"{space.name}: {len(configs)} configurations; {label}: {len(plan)} to measure")
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.dry_run:
            return dry_run(args)
        build_latency_table(
            args.space,
            args.output,
            device=args.device,
            threads=args.threads,
            batch=args.batch,
            dtype=args.dtype,
            grid=args.grid,
            num_classes=args.num_classes,
            in_channels=args.in_channels,
            check_interpolation=args.check_interpolation,
            recheck=args.recheck,
            save_every_s=args.save_every,
            space_arg=args.space,
            calibrate=args.calibrate,
            recalibrate=args.recalibrate,
        )
    except (LatencyTableError, SearchSpaceError, OSError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted: what was measured is saved in {args.output}; run the same command "
            f"again to continue.",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
