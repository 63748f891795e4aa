#!/usr/bin/env python3
"""Publish a trained model into a user catalog directory, so the model zoo loads it by name.

    # from a training run's output folder (arch.yaml, model_final.pth, metrics.json)
    python tools/publish_model.py --name fmnist_tiny --catalog my_zoo --run output/train
    # from an arch def and a checkpoint
    python tools/publish_model.py --name my_net --catalog my_zoo --arch arch.yaml \\
        --weights model.pth [--metrics metrics.json] [--dataset D] [--url URL] [--no-copy]

A run's metrics.json gives the accuracies (val_top1, val_top5 -> top1, top5), the dataset and
the eval input (input: resolution, resize, mean, std, in_channels); --dataset, --resolution,
--resize, --mean and --std override it. Then:

    export MOBILE_CV_NAS_CATALOGS=my_zoo   # or model_zoo.add_catalog("my_zoo")
    python -c 'from mobile_cv_nas import model_zoo; model_zoo.get("fmnist_tiny", pretrained=True)'

Errors are one message and exit status 2. See mobile_cv_nas/publish.py.
"""

import argparse
import json
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path

# fvcore.nn (imported with the model code) scripts a loss with torch.jit.script at import
warnings.filterwarnings(
    "ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning
)

ROOT = Path(__file__).resolve().parent.parent
try:
    import mobile_cv_nas  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from mobile_cv_nas.arch import ArchDefError, CheckpointError, load_arch_def  # noqa: E402
from mobile_cv_nas.cli_errors import one_line, one_line_usage_errors  # noqa: E402
from mobile_cv_nas.model_zoo import CATALOGS_ENV, CatalogError  # noqa: E402
from mobile_cv_nas.publish import PublishError, publish_model  # noqa: E402

RUN_FILES = {"arch": "arch.yaml", "weights": "model_final.pth", "metrics": "metrics.json"}


class UsageError(Exception):
    """A one-line error for the command line (exit status 2)."""


def _existing(path, what):
    if os.path.isdir(path):
        raise UsageError(f"{what} {path} is a folder, not a file.")
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path} does not exist.")
    return path


def _field(data, key, file, where=""):
    if key not in data:
        raise UsageError(f"{file} has no {where + key!r} field.")
    return data[key]


def read_metrics(file):
    """publish_model keyword arguments from a training run's metrics.json."""
    try:
        with open(_existing(file, "Metrics file")) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise UsageError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{file} must hold a JSON object, got {type(data).__name__}.")
    task = data.get("task", "train")
    if task != "train":
        raise UsageError(f"{file} is the metrics of a {task!r} run; publish a 'train' run.")
    inputs = _field(data, "input", file)
    if not isinstance(inputs, dict):
        raise UsageError(f"{file}: 'input' must be an object, got {inputs!r}.")
    return {
        "metrics": {
            "top1": _field(data, "val_top1", file),
            "top5": _field(data, "val_top5", file),
        },
        "dataset": data.get("dataset"),
        "resolution": _field(inputs, "resolution", file, "input."),
        "resize": inputs.get("resize"),
        "mean": _field(inputs, "mean", file, "input."),
        "std": _field(inputs, "std", file, "input."),
        "in_channels": _field(inputs, "in_channels", file, "input."),
    }


def parse_args(argv=None):
    parser = one_line_usage_errors(
        argparse.ArgumentParser(
            description="Publish a trained model into a user model-zoo catalog directory."
        )
    )
    parser.add_argument("--name", required=True, help="the model's zoo name")
    parser.add_argument("--catalog", required=True, help="the user catalog directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--run", help="a training run's output folder (arch.yaml, model_final.pth, metrics.json)"
    )
    source.add_argument("--arch", help="the arch def YAML (with --weights)")
    parser.add_argument("--weights", help="the checkpoint (with --arch)")
    parser.add_argument("--metrics", help="a metrics.json (default: the run's)")
    parser.add_argument("--dataset", help="the dataset name (default: the metrics')")
    parser.add_argument("--resolution", type=int, help="eval crop (default: the metrics')")
    parser.add_argument("--resize", type=int, help="eval resize (default: the metrics')")
    parser.add_argument("--mean", type=float, nargs="+", help="input mean, one per channel")
    parser.add_argument("--std", type=float, nargs="+", help="input std, one per channel")
    parser.add_argument("--url", help="where the catalog says the weights are (URL or path)")
    parser.add_argument(
        "--no-copy",
        dest="copy_weights",
        action="store_false",
        help="do not copy the weights into <catalog>/weights/",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an entry of that name")
    args = parser.parse_args(argv)
    if args.arch is not None and args.weights is None:
        parser.error("--arch needs --weights")
    if args.run is not None and args.weights is not None:
        parser.error("--weights goes with --arch; --run reads the run's model_final.pth")
    return args


def publish(args):
    if args.run is not None:
        if not os.path.isdir(args.run):
            raise UsageError(f"Run folder {args.run} does not exist.")
        files = {k: os.path.join(args.run, v) for k, v in RUN_FILES.items()}
        files["metrics"] = args.metrics or files["metrics"]
    else:
        files = {"arch": args.arch, "weights": args.weights, "metrics": args.metrics}
    arch = load_arch_def(_existing(files["arch"], "Arch file"))
    _existing(files["weights"], "Weights file")
    found = read_metrics(files["metrics"]) if files["metrics"] else {}
    channels = found.pop("in_channels", arch.in_channels)
    if channels != arch.in_channels:
        raise UsageError(
            f"{files['metrics']} says the model takes {channels} input channel(s), "
            f"{files['arch']} has {arch.in_channels}."
        )
    for key in ("dataset", "resolution", "resize", "mean", "std"):
        if getattr(args, key) is not None:
            found[key] = getattr(args, key)
    return publish_model(
        args.name,
        arch,
        files["weights"],
        args.catalog,
        url=args.url,
        copy_weights=args.copy_weights,
        overwrite=args.overwrite,
        **found,
    )


def main(argv=None):
    args = parse_args(argv)
    # publish_model's warnings (weights without a recorded sha256, leftovers removed)
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)
    try:
        entry = publish(args)
    except (UsageError, PublishError, CatalogError, ArchDefError, CheckpointError, OSError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    directory = str(Path(args.catalog).expanduser().resolve())
    print(yaml.safe_dump({args.name: entry}, sort_keys=False, default_flow_style=None), end="")
    print(f"Published {args.name!r} into {os.path.join(directory, 'catalog.yaml')}. To use it:")
    print(f"  export {CATALOGS_ENV}={shlex.quote(directory)}")
    print(f"  # or in Python: model_zoo.add_catalog({directory!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
