#!/usr/bin/env python3
"""CPU latency and FLOPs of Faster R-CNN FPN with FBNetV2-F4 and -L2 backbones against
detectron2's R-50 FPN (random weights; the configs of configs/detection and detectron2's model
zoo), at a 320-pixel image: the bottom-up body, body + FPN, and the whole detector.

    OMP_NUM_THREADS=1 python tools/benchmark_detection.py               # 320 px, 1 thread
    python tools/benchmark_detection.py --size 320 --repeats 20 --threads 4 --json out.json

Prints a Markdown table with each number's ratio to R-50 FPN. What is measured and how: the
docstring of tools/benchmarks/detection.py.
"""

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning
)

ROOT = Path(__file__).resolve().parent.parent
try:
    import mobile_cv_nas  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import detection as benchmark  # noqa: E402  (tools/benchmarks, beside this file)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=320, help="square image side in pixels")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before them")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--models", nargs="+", default=list(benchmark.MODELS), help="model names")
    p.add_argument("--no-flops", action="store_true", help="latency only")
    p.add_argument("--config-dir", default=str(ROOT / "configs" / "detection"))
    p.add_argument("--json", help="also write the measurements here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    unknown = [m for m in args.models if m not in benchmark.MODELS]
    if unknown:
        print(
            f"error: unknown model(s) {unknown}; use some of {list(benchmark.MODELS)}",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        cfg = benchmark.detector_config(benchmark.MODELS[name], Path(args.config_dir))
        model = benchmark.build_detector(cfg)
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows.append(
            benchmark.measure(
                name, model, args.size, args.warmup, args.repeats, flops=not args.no_flops
            )
        )
    print(
        f"Faster R-CNN inference at {args.size}x{args.size}, batch 1, CPU, {args.threads} "
        f"thread(s), median of {args.repeats} runs, random weights; torch {torch.__version__}"
    )
    print(benchmark.table(rows))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump([dataclasses.asdict(r) for r in rows], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
