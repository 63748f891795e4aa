#!/usr/bin/env python3
"""Draw an architecture as in the FBNetV2 paper's Fig. 6 (one bar per block).

    python tools/plot_arch.py FBNetV2_F4 -o f4.png          # a model-zoo name
    python tools/plot_arch.py path/to/arch.yaml -o arch.png  # any arch-def file
    python tools/plot_arch.py FBNetV2_F4 --flops             # FLOPs in the title (builds it)

Prints the path of the PNG. Exits with status 2 and a one-line message for an unknown model
name or a missing or malformed arch file.
"""

import argparse
import os
import sys

try:
    import mobile_cv_nas  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mobile_cv_nas import model_zoo
from mobile_cv_nas.arch import ArchDefError, build_model, load_arch_def
from mobile_cv_nas.visualization import plot_architecture


def load_arch(spec):
    """An existing file (or anything named like a YAML file) is an arch def; else a zoo name."""
    if os.path.exists(spec) or spec.endswith((".yaml", ".yml")):
        return load_arch_def(spec)
    return model_zoo.get_arch_def(spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arch", help="a model-zoo name (e.g. FBNetV2_F4) or an arch YAML path")
    parser.add_argument("-o", "--output", help="PNG to write (default: <arch name>.png)")
    parser.add_argument("--title", help="title instead of the arch's name")
    parser.add_argument("--flops", action="store_true", help="count FLOPs and show them")
    args = parser.parse_args(argv)
    try:
        arch = load_arch(args.arch)
    except (ArchDefError, model_zoo.UnknownModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    flops_m = None
    if args.flops:
        from mobile_cv_nas.flops import count_flops

        flops_m = count_flops(build_model(arch)).mflops
    name = os.path.splitext(os.path.basename(arch.name or "arch"))[0]
    output = args.output or f"{name}.png"
    print(plot_architecture(arch, output, title=args.title, flops_m=flops_m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
