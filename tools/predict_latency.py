#!/usr/bin/env python3
"""Print an architecture's predicted latency from a latency table, next to its FLOPs and
params.

    python tools/predict_latency.py output/search_fashion_mnist/arch.yaml --lut lut.json
    python tools/predict_latency.py arch_a.yaml arch_b.yaml --lut lut.json --blocks

An arch is an arch YAML or a model zoo name; its blocks must be configurations of the table's
space (the published FBNetV2 models are not in the shipped spaces: their stems are 8 wide, the
spaces' 16). One line per arch: MFLOPs, M params (fvcore, the published convention), and the
predicted latency in ms (the sum of its blocks' and classifier's table entries, through the
table's calibration line when it has one; how many of them were interpolated between grid
points). `--blocks` adds one line per block (its entry times the calibration's scale) and the
calibration's offset. `--device`, `--threads` and `--batch` say what the numbers must have been
measured with: a table measured otherwise is refused. A table that does not cover the arch, is
incomplete or is unreadable: one line, exit status 2. The table's warnings (another torch
version) go to stderr.
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

from mobile_cv_nas import model_zoo  # noqa: E402
from mobile_cv_nas.arch import ArchDefError, build_model, load_arch_def  # noqa: E402
from mobile_cv_nas.cli_errors import one_line, one_line_usage_errors  # noqa: E402
from mobile_cv_nas.config.arch import is_arch_file  # noqa: E402
from mobile_cv_nas.flops import count_flops  # noqa: E402
from mobile_cv_nas.search.latency import (  # noqa: E402
    LatencyTableError,
    latency_breakdown,
    load_latency_table,
)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("archs", nargs="+", help="arch YAML files or model zoo names")
    p.add_argument("--lut", required=True, help="a latency table (tools/build_latency_lut.py)")
    p.add_argument("--blocks", action="store_true", help="one line per block as well")
    p.add_argument("--device", help="refuse a table measured on another device")
    p.add_argument("--threads", type=int, help="refuse a table measured with other threads")
    p.add_argument("--batch", type=int, help="refuse a table measured at another batch")
    p.add_argument("--json", help="write the figures here as well")
    one_line_usage_errors(p)
    return p.parse_args(argv)


def load_arch(spec):
    if is_arch_file(spec):
        return load_arch_def(spec)
    return model_zoo.get_arch_def(spec)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    try:
        table, table_warnings = load_latency_table(
            args.lut, device=args.device, threads=args.threads, batch=args.batch
        )
        for warning in table_warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"latency table {args.lut}: {table.describe()}")
        for spec in args.archs:
            arch = load_arch(spec)
            blocks = latency_breakdown(arch, table)
            cost = count_flops(build_model(arch), arch.input_size)
            ms = table.offset_ms
            for block in blocks:
                ms = ms + block.ms
            interpolated = sum(not b.measured for b in blocks)
            print(
                f"{spec}: input {arch.input_size}, {cost.mflops:.4g} MFLOPs, "
                f"{cost.mparams:.4g} M params, predicted {ms:.4g} ms "
                f"({len(blocks)} entries, {interpolated} interpolated)"
            )
            if args.blocks:
                for b in blocks:
                    how = "measured" if b.measured else "interpolated"
                    print(f"  {b.name:>8} {b.ms:9.4f} ms  {how:12} {b.config.key}")
                if table.offset_ms:
                    print(f"  {'network':>8} {table.offset_ms:9.4f} ms  calibration offset")
            rows.append(
                {
                    "arch": spec,
                    "input_size": arch.input_size,
                    "mflops": cost.mflops,
                    "mparams": cost.mparams,
                    "latency_ms": ms,
                    "calibration_offset_ms": table.offset_ms,
                    "blocks": [
                        {"name": b.name, "key": b.config.key, "ms": b.ms, "measured": b.measured}
                        for b in blocks
                    ],
                }
            )
    except (
        LatencyTableError,
        ArchDefError,
        model_zoo.UnknownModelError,
        model_zoo.CatalogError,
        OSError,
    ) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    if args.json:
        from mobile_cv_nas.io import write_json

        write_json(args.json, {"lut": args.lut, "measured_on": table.describe(), "archs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
