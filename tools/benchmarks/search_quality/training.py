"""Training one architecture (and running the demo search) through the engine's tasks, in
this process: the config is built as tools/train_net.py builds it (`setup_cfg`: the config
file, then KEY VALUE overrides, checked), then `main(cfg, args)` runs the task.

Every run gets the same train config, overrides, seed and schedule; only the architecture
(MODEL.MOBILE_CV_NAS.ARCH) and OUTPUT_DIR differ. The result is read back from the run's
metrics.json.

detectron2's `default_setup` attaches stdout and log-file handlers to its loggers (and this
project's) for each OUTPUT_DIR; `_run_logging` takes them off again after each run, so that
runs in one process do not print each line once per earlier run.
"""

import contextlib
import json
import logging
import os

from mobile_cv_nas.engine import check_output_dir, main, new_config, parse_args, setup_cfg
from mobile_cv_nas.engine.errors import ConfigError

logger = logging.getLogger(__name__)

#: Data of every run with --data subset (the default): the embedded Fashion-MNIST subset, the
#: same on every machine.
SUBSET_DATA = ("DATA.TRAIN", "fashion_mnist_subset_train", "DATA.TEST", "fashion_mnist_subset_val")
#: --data full: the full set (tools/fetch_fashion_mnist.py installs it; see `data_overrides`).
FULL_DATA = ("DATA.TRAIN", "fashion_mnist_train", "DATA.TEST", "fashion_mnist_val")
FETCH_COMMAND = "python tools/fetch_fashion_mnist.py"
#: Keys the benchmark sets per run itself (SEED: --seed).
RESERVED_KEYS = (
    "OUTPUT_DIR",
    "MODEL.MOBILE_CV_NAS.ARCH",
    "SEED",
    "TASK",
    "NAS.COST.TARGET_M",
    "NAS.SAMPLING",
)


def data_overrides(data):
    """The DATA.TRAIN/DATA.TEST overrides of `--data subset|full`; `full` needs the full set
    installed (the built-in names would silently fall back to the subset otherwise)."""
    if data == "subset":
        return list(SUBSET_DATA)
    if data != "full":
        raise ConfigError(f"--data {data!r}: use subset or full.")
    from mobile_cv_nas.data.fashion_mnist import full_set_dir

    if full_set_dir() is None:
        raise ConfigError(
            f"--data full: the full Fashion-MNIST is not installed; fetch it with "
            f"`{FETCH_COMMAND}` (into the user cache), or use --data subset."
        )
    return list(FULL_DATA)


def sampling_overrides(mode):
    """`NAS.SAMPLING <mode>` where the engine has the key; without it (an engine before
    sampling modes) only today's `mixture` runs, with no override."""
    if "SAMPLING" in new_config().NAS:
        return ["NAS.SAMPLING", mode]
    if mode != "mixture":
        raise ConfigError(
            f"Sampling mode {mode!r}: this engine has no NAS.SAMPLING key (only the mixture "
            f"search); run with --modes mixture."
        )
    return []


def check_overrides(opts):
    """KEY VALUE pairs: an even count, none of the keys the benchmark sets per run."""
    if len(opts) % 2:
        raise ConfigError(f"Overrides must be KEY VALUE pairs, got {len(opts)} items: {opts}.")
    reserved = [k for k in opts[::2] if k in RESERVED_KEYS]
    if reserved:
        raise ConfigError(
            f"The benchmark sets {', '.join(reserved)} per run itself; drop it from the "
            f"overrides (the training seed is --seed, the budgets --budgets, the sampling "
            f"modes --modes)."
        )
    return list(opts)


def engine_args(config_file, opts, resume=False):
    """The parsed command line of `tools/train_net.py [--resume] --config-file CONFIG KEY
    VALUE ...`."""
    flags = ["--resume"] if resume else []
    return parse_args([*flags, "--config-file", config_file, *map(str, opts)])


def train_cfg(train_config, arch_path, output_dir, seed, overrides=(), data=SUBSET_DATA):
    """(frozen cfg, args) of training the arch YAML `arch_path` into `output_dir`."""
    opts = [
        *data,
        "SEED",
        seed,
        *overrides,
        "OUTPUT_DIR",
        output_dir,
        "MODEL.MOBILE_CV_NAS.ARCH",
        arch_path,
    ]
    args = engine_args(train_config, opts)
    cfg = setup_cfg(args)
    if cfg.TASK != "train":
        raise ConfigError(f"--train-config {train_config!r} has TASK {cfg.TASK!r}, not train.")
    return cfg, args


def search_cfg(search_config, output_dir, overrides=(), data=SUBSET_DATA):
    """(frozen cfg, args) of the search of `search_config` into `output_dir`."""
    args = engine_args(search_config, [*data, *overrides, "OUTPUT_DIR", output_dir])
    cfg = setup_cfg(args)
    if cfg.TASK != "search":
        raise ConfigError(f"Search config {search_config!r} has TASK {cfg.TASK!r}, not search.")
    return cfg, args


def config_builder(task):
    """`build(config_file, opts)`: the frozen cfg of `tools/train_net.py --config-file
    config_file opts...`, checked to be a `task` run."""

    def build(config_file, opts):
        cfg = setup_cfg(engine_args(config_file, opts))
        if cfg.TASK != task:
            raise ConfigError(f"Config {config_file!r} has TASK {cfg.TASK!r}, not {task}.")
        return cfg

    return build


def _loggers():
    manager = logging.Logger.manager
    return [logging.getLogger()] + [
        v for v in list(manager.loggerDict.values()) if isinstance(v, logging.Logger)
    ]


@contextlib.contextmanager
def _run_logging():
    """Restore every logger's handlers, level and propagation after an engine run; a logger
    made during the run (e.g. `mobile_cv_nas`, a placeholder until detectron2's setup_logger
    takes it) is set back to a new logger's defaults."""
    saved = {id(lg): (list(lg.handlers), lg.level, lg.propagate) for lg in _loggers()}
    try:
        yield
    finally:
        for lg in _loggers():
            handlers, level, propagate = saved.get(id(lg), ([], logging.NOTSET, True))
            for h in list(lg.handlers):
                if h not in handlers:
                    h.flush()
                    lg.removeHandler(h)
            lg.setLevel(level)
            lg.propagate = propagate


def run_engine(cfg, args):
    """`main(cfg, args)` of the engine in this process, after tools/train_net.py's check of
    OUTPUT_DIR (a new run needs a free folder; --resume, a run of the same task); returns
    what the task returns."""
    check_output_dir(cfg, args.resume, args)
    with _run_logging():
        return main(cfg, args)


def read_metrics(output_dir):
    path = os.path.join(output_dir, "metrics.json")
    with open(path) as f:
        return json.load(f)


def train_arch(cfg, args):
    """Train one configured run; its metrics.json as a dict (val_top1 in percent)."""
    logger.info("Training %s in %s ...", cfg.MODEL.MOBILE_CV_NAS.ARCH, cfg.OUTPUT_DIR)
    result = run_engine(cfg, args)
    if result is None:
        raise RuntimeError(f"The training run in {cfg.OUTPUT_DIR} did not complete.")
    metrics = read_metrics(cfg.OUTPUT_DIR)
    logger.info("%s: val top-1 %.2f%%", cfg.MODEL.MOBILE_CV_NAS.ARCH, metrics["val_top1"])
    return metrics
