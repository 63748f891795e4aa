"""The config of a run of tools/train_net.py: the command line, the config file and its
overrides, the checks of the user's input that need no data (keys, values, the schedule) and
the output-folder guard. Every check runs before anything is written."""

import ast
import difflib
import os
import re

import torch
import yaml
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser

from ..cli_errors import one_line_usage_errors
from ..config import add_mobile_cv_nas_config
from ..config.defaults import COST_LOSSES, COST_METRICS, DERIVES, SAMPLINGS, TASKS
from ..layers.norm import norm_name
from .config_rules import check_task_reads, check_values, infer_task, walk
from .detection_task import add_detection_config, check_detection_config
from .errors import ConfigError, OutputDirError

RUN_FILES = ("last_checkpoint", "config.yaml", "metrics.json", "events.json")
AUGMENTS = ("none", "flip", "imagenet")


# ------------------------------------------------------------------------------------ config


def _all_keys(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield from _all_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _key_error(cfg, error, where):
    message = str(error.args[0]) if error.args else str(error)
    key = message.rsplit(":", 1)[-1].strip()
    close = difflib.get_close_matches(key, list(_all_keys(cfg)), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"{where}: {message}.{hint}")


_TYPE_MISMATCH = re.compile(
    r"Type mismatch \(<class '(\w+)'> vs\. <class '(\w+)'>\) with values \((.*) vs\. (.*)\) "
    r"for config key: (\S+)"
)


def _value_error(error, where):
    """yacs' type mismatch in words: the key, the value given and the type the key takes."""
    found = _TYPE_MISMATCH.search(str(error))
    if not found:
        return ConfigError(f"{where}: {error}")
    wanted, given, default, value, key = found.groups()
    hint = f" (write {value}.0)" if (wanted, given) == ("float", "int") else ""
    return ConfigError(
        f"{where}: {key} = {value} is a {given}, but {key} takes a {wanted} (its default is "
        f"{default}){hint}."
    )


def _floats_for_float_keys(cfg, opts):
    """KEY VALUE overrides with a whole number given to a float key (`SOLVER.BASE_LR 1`) made
    a float: yacs refuses the int, though 1 is as good a learning rate as 1.0."""
    opts = list(opts)
    for i in range(0, len(opts) - 1, 2):
        try:
            default = _get(cfg, str(opts[i]))
            value = ast.literal_eval(str(opts[i + 1]))
        except (KeyError, AttributeError, ValueError, SyntaxError, TypeError):
            continue
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            opts[i + 1] = repr(float(value))
    return opts


def parse_args(argv=None):
    """detectron2's command line (--config-file, --resume, --eval-only, --num-gpus, ...,
    trailing KEY VALUE overrides)."""
    return one_line_usage_errors(default_argument_parser()).parse_args(argv)


def new_config():
    """detectron2's defaults plus the project's keys (the detection ones too, so a detection
    config's MODEL.MOBILE_CV_NAS.* and DATASETS.COCO_JSON merge)."""
    return add_detection_config(add_mobile_cv_nas_config(get_cfg()))


def setup_cfg(args):
    """The frozen config of a command line: --config-file (with _BASE_), then the KEY VALUE
    overrides; a typo in a key is a ConfigError naming it (with the closest real keys)."""
    cfg = new_config()
    contents = []
    if args.config_file:
        if not os.path.isfile(args.config_file):
            raise ConfigError(f"Config file {args.config_file!r} does not exist.")
        contents = check_config_files(args.config_file)
        try:
            cfg.merge_from_file(args.config_file)
        except KeyError as e:
            raise _key_error(cfg, e, f"config file {args.config_file!r}") from None
        except (ValueError, AssertionError) as e:
            raise _value_error(e, f"config file {args.config_file!r}") from None
    flags = [o for o in args.opts if str(o).startswith("--")]
    if flags:
        raise ConfigError(
            f"{flags[0]} comes after the KEY VALUE overrides, where it is read as a config key: "
            f"put flags first (tools/train_net.py {flags[0]} --config-file FILE KEY VALUE ...)."
        )
    try:
        cfg.merge_from_list(_floats_for_float_keys(cfg, args.opts))
    except KeyError as e:
        raise _key_error(cfg, e, "command line") from None
    except AssertionError as e:  # yacs asserts that an overridden key exists
        if str(e).startswith("Non-existent key"):
            raise _key_error(cfg, e, "command line") from None
        raise ConfigError(f"command line overrides {args.opts}: {e}") from None
    except ValueError as e:
        raise _value_error(e, "command line") from None
    task_set = any("TASK" in c for c in contents) or "TASK" in args.opts[::2]
    if not task_set:  # a detectron2 config (no TASK) is a detection run
        cfg.TASK = infer_task(cfg, new_config())
    if args.eval_only and cfg.TASK != "detection":  # detection: run_detection reads the flag
        cfg.TASK = "eval"
    if args.eval_only and not cfg.MODEL.WEIGHTS.strip():
        zoo = " (a file path, a URL, or zoo for a zoo model's published weights)"
        raise ConfigError(
            f"--eval-only evaluates MODEL.WEIGHTS, which is empty: give the weights to "
            f"evaluate{'' if cfg.TASK == 'detection' else zoo}, e.g. MODEL.WEIGHTS "
            f"output/run/model_final.pth."
        )
    check_config(cfg)
    check_task_reads(cfg, new_config())
    if cfg.TASK in ("search", "train"):
        check_schedule(cfg)
    if cfg.TASK == "detection":
        check_detection_config(cfg, train=not args.eval_only)
    check_processes(cfg, args)
    if cfg.SEED < 0 and not args.resume:  # a resumed run keeps its own (check_output_dir)
        _draw_seed(cfg)
    cfg.freeze()
    return cfg


def check_processes(cfg, args):
    """--num-gpus / --num-machines, and a total batch every process gets an equal share of,
    checked before any process is spawned."""
    per_machine = getattr(args, "num_gpus", 1)
    machines = getattr(args, "num_machines", 1)
    if per_machine < 1 or machines < 1:
        raise ConfigError(
            f"--num-gpus {per_machine} --num-machines {machines}: both must be >= 1 (the "
            f"processes per machine, and the machines)."
        )
    rank = getattr(args, "machine_rank", 0)
    if not 0 <= rank < machines:
        raise ConfigError(
            f"--machine-rank {rank} with --num-machines {machines}: the rank of this machine "
            f"must be in 0..{machines - 1}."
        )
    url = getattr(args, "dist_url", "auto") or "auto"
    if url != "auto" and not re.fullmatch(r"(tcp://[^\s:/]+:\d{1,5}|file://\S+|env://)", url):
        raise ConfigError(
            f"--dist-url {url!r}: use auto (one machine), tcp://HOST:PORT (the address of "
            f"machine 0), or file://PATH."
        )
    world = per_machine * machines
    batch = cfg.SOLVER.IMS_PER_BATCH
    if not getattr(args, "eval_only", False) and batch > 0 and batch % world:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH = {batch} is the total batch of {world} processes and does "
            f"not divide by {world}: use a multiple of {world}."
        )


def _base_path(path, base):
    """Where a `_BASE_` entry of `path` points (detectron2's rule: relative to the file)."""
    base = os.path.expanduser(base)
    if base.startswith(("/", "https://", "http://")):
        return base
    return os.path.join(os.path.dirname(path), base)


def check_config_files(path):
    """The chain of YAML files `path` reads through `_BASE_`: each must parse, be a mapping and
    exist, and the chain must not loop. One line naming the file (and the line of a syntax
    error), where detectron2 would print a parser traceback or recurse until Python's limit.
    Returns the files' contents, `path`'s first."""
    chain, contents = [], []
    while True:
        real = os.path.realpath(path)
        if real in chain:
            loop = " -> ".join([*(os.path.basename(p) for p in chain), os.path.basename(real)])
            raise ConfigError(f"config file {path!r}: its _BASE_ chain loops ({loop}).")
        chain.append(real)
        try:
            with open(path) as f:
                data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"config file {path!r}{where}: not valid YAML ({problem}).") from None
        if data is None:
            return contents
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file {path!r}: holds a {type(data).__name__}, not KEY: VALUE pairs."
            )
        contents.append(data)
        base = data.get("_BASE_")
        if base is None:
            return contents
        if not isinstance(base, str):
            raise ConfigError(f"config file {path!r}: _BASE_ must be one file path, got {base!r}.")
        target = _base_path(path, base)
        if target.startswith(("https://", "http://")):
            return contents  # detectron2 fetches it; its errors are its own
        if not os.path.isfile(target):
            raise ConfigError(
                f"config file {path!r}: its _BASE_ {base!r} does not exist (looked for "
                f"{target!r}; a relative _BASE_ is relative to the file)."
            )
        path = target


def _check_choice(value, choices, key):
    if value not in choices:
        raise ConfigError(f"{key} = {value!r}: use one of {', '.join(choices)}.")


def check_latency_keys(cost):
    """NAS.COST.METRIC latency needs a table (LUT) and takes its target in ms (TARGET_MS);
    the other metrics take theirs in millions (TARGET_M): a target in the other key would be
    read in the wrong unit."""
    latency = cost.METRIC == "latency"
    if latency and not cost.LUT:
        raise ConfigError(
            "NAS.COST.METRIC latency needs a latency table: set NAS.COST.LUT to one built for "
            "the space with tools/build_latency_lut.py (README, 'Latency tables')."
        )
    if latency and cost.TARGET_M:
        raise ConfigError(
            f"NAS.COST.TARGET_M = {cost.TARGET_M} is in MFLOPs or M params, but NAS.COST.METRIC "
            f"is latency: give the latency target in ms as NAS.COST.TARGET_MS and set "
            f"NAS.COST.TARGET_M 0."
        )
    if not latency and cost.TARGET_MS:
        raise ConfigError(
            f"NAS.COST.TARGET_MS = {cost.TARGET_MS} is a latency target, but NAS.COST.METRIC is "
            f"{cost.METRIC or 'the space cost'!r}: set NAS.COST.METRIC latency (with "
            f"NAS.COST.LUT), or give the target as NAS.COST.TARGET_M."
        )


def check_config(cfg):
    """Every key's value (engine/config_rules.py), then the names and combinations."""
    check_values(cfg)
    _check_choice(cfg.TASK, TASKS, "TASK")
    _check_choice(cfg.NAS.COST.LOSS, COST_LOSSES, "NAS.COST.LOSS")
    _check_choice(cfg.NAS.SAMPLING, SAMPLINGS, "NAS.SAMPLING")
    _check_choice(cfg.NAS.DERIVE, DERIVES, "NAS.DERIVE")
    if not cfg.NAS.COST.TOLERANCE > 0:
        raise ConfigError(
            f"NAS.COST.TOLERANCE = {cfg.NAS.COST.TOLERANCE!r}: the relative miss of the searched "
            f"cost that is accepted without a warning must be > 0 (default 0.05)."
        )
    _check_choice(cfg.DATA.AUGMENT, AUGMENTS, "DATA.AUGMENT")
    if cfg.NAS.COST.METRIC:
        _check_choice(cfg.NAS.COST.METRIC, COST_METRICS, "NAS.COST.METRIC")
    check_latency_keys(cfg.NAS.COST)
    if cfg.TASK != "detection":  # detection's names: detection/config.py
        try:
            norm_name(cfg.MODEL.MOBILE_CV_NAS.NORM)
        except ValueError as e:
            raise ConfigError(f"MODEL.MOBILE_CV_NAS.NORM: {e}") from None
    if cfg.NAS.TAU.MIN > cfg.NAS.TAU.START:
        raise ConfigError(
            f"NAS.TAU.MIN = {cfg.NAS.TAU.MIN} is above NAS.TAU.START = {cfg.NAS.TAU.START}: the "
            f"temperature anneals from START down to MIN; lower MIN or raise START."
        )
    if len(cfg.DATA.MEAN) != len(cfg.DATA.STD):
        raise ConfigError("DATA.MEAN and DATA.STD must have the same length (or both be empty).")
    try:
        device = torch.device(cfg.MODEL.DEVICE)
    except RuntimeError:
        raise ConfigError(
            f"MODEL.DEVICE = {cfg.MODEL.DEVICE!r} is not a torch device: use cpu, cuda or cuda:N."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available here: add "
            f"MODEL.DEVICE cpu to the command line."
        )


def check_output_path(out):
    """OUTPUT_DIR must be a folder, or a path that can become one: not an existing file (the
    logger would append to it), not under a file, not in a place this user cannot write."""
    if not out:
        raise OutputDirError("OUTPUT_DIR is empty: set it to the folder the run writes to.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputDirError(
            f"OUTPUT_DIR {out!r} is a file, not a folder: set OUTPUT_DIR to a folder (a missing "
            f"one is created)."
        )
    existing = os.path.abspath(out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputDirError(
            f"OUTPUT_DIR {out!r} is under {existing!r}, which is a file: set OUTPUT_DIR to a "
            f"folder path."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputDirError(
            f"OUTPUT_DIR {out!r}: this user cannot write in {existing!r}; set OUTPUT_DIR to a "
            f"folder you can write to."
        )


#: Keys --resume may change: they do not change what the weights see (when things are
#: logged, evaluated and saved; where the files and the data loading run). Documented in the
#: README ("Resuming a run"). Every other difference from the run's config.yaml is refused.
SAFE_RESUME_CHANGES = (
    "OUTPUT_DIR",  # the same folder, moved or named by another path
    "MODEL.DEVICE",
    "MODEL.WEIGHTS",  # not read on resume: the run's own checkpoint is loaded
    "MODEL.ALLOW_PARTIAL_WEIGHTS",  # likewise
    "TEST.EVAL_ONLY_DIR",  # read by --eval-only only
    "DATALOADER.NUM_WORKERS",
    "SOLVER.CHECKPOINT_PERIOD",
    "TEST.EVAL_PERIOD",
    "NAS.LOG_PERIOD",
    "VIS_PERIOD",
    "CUDNN_BENCHMARK",
)


def _draw_seed(cfg):
    """SEED -1: one random seed, drawn here so every process (and config.yaml) has it."""
    cfg.SEED = int.from_bytes(os.urandom(4), "little") >> 1


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def resume_differences(cfg, saved):
    """The keys whose value in `cfg` is not the saved run's, other than the safe changes:
    [(key, saved value, new value)]. A growing SOLVER.MAX_ITER under WarmupMultiStepLR is the
    same run trained longer (its learning rate so far does not depend on the length); SEED -1
    means the saved run's seed."""
    mine, theirs = dict(walk(cfg)), dict(walk(saved))
    differ = []
    for key in sorted(mine.keys() | theirs.keys()):
        a, b = _plain(theirs.get(key, "<not set>")), _plain(mine.get(key, "<not set>"))
        if a == b or key in SAFE_RESUME_CHANGES or (key == "SEED" and b == -1):
            continue
        if key == "SOLVER.MAX_ITER" and _longer_multistep(cfg, saved):
            continue
        differ.append((key, a, b))
    return differ


def _longer_multistep(cfg, saved):
    return (
        cfg.SOLVER.MAX_ITER > saved.SOLVER.MAX_ITER
        and cfg.SOLVER.LR_SCHEDULER_NAME == saved.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR"
        and cfg.SOLVER.EPOCHS == 0
    )


def check_output_dir(cfg, resume, args=None):
    """A new run needs a folder without another run in it; --resume continues the run there
    with the same config (but for SAFE_RESUME_CHANGES). Resolves SEED -1: the resumed run's
    seed, else a new random one."""
    try:
        _check_output_dir(cfg, resume, args)
    finally:
        if cfg.SEED < 0:
            cfg.defrost()
            _draw_seed(cfg)
            cfg.freeze()


def _check_output_dir(cfg, resume, args):
    out = cfg.OUTPUT_DIR
    check_output_path(out)
    eval_only = cfg.TASK == "eval" or (cfg.TASK == "detection" and getattr(args, "eval_only", 0))
    if eval_only or not os.path.isdir(out):
        return
    found = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    found += sorted(f for f in os.listdir(out) if f.endswith(".pth"))
    if not found:
        return
    if not resume:
        raise OutputDirError(
            f"OUTPUT_DIR {out!r} holds another run ({', '.join(found[:5])}). Pass --resume to "
            f"continue that run, or set OUTPUT_DIR to a new folder (or delete this one)."
        )
    saved_path = os.path.join(out, "config.yaml")
    if not os.path.exists(saved_path):
        raise OutputDirError(
            f"--resume: OUTPUT_DIR {out!r} holds a run ({', '.join(found[:5])}) but not its "
            f"config.yaml, so it cannot be checked that this is the same run. Put the config "
            f"the run started with back as {saved_path!r}, or start a new run in a new "
            f"OUTPUT_DIR."
        )
    saved = new_config()
    saved.set_new_allowed(True)
    try:
        saved.merge_from_file(saved_path)
    except Exception as e:  # noqa: BLE001 - any unreadable config.yaml is the same answer
        raise OutputDirError(
            f"--resume: the run's config {saved_path!r} does not load ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); was it edited? Restore it, or "
            f"start a new run in a new OUTPUT_DIR."
        ) from None
    same = ("DATASETS.TRAIN",) if cfg.TASK == "detection" else ("NAS.SPACE", "DATA.TRAIN")
    for key in ("TASK", *same):  # another run altogether: said as such
        mine, theirs = _get(cfg, key), _get(saved, key)
        if mine != theirs:
            raise OutputDirError(
                f"--resume: OUTPUT_DIR {out!r} holds a run with {key} = {theirs!r}, not "
                f"{mine!r}. Resume it with its own config, or use a new OUTPUT_DIR."
            )
    differ = resume_differences(cfg, saved)
    if differ:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in differ[:6])
        more = f" (and {len(differ) - 6} more)" if len(differ) > 6 else ""
        raise OutputDirError(
            f"--resume continues the run in {out!r} with its own config, but "
            f"{len(differ)} key(s) differ from its config.yaml: {shown}{more}. Drop these "
            f"changes to resume, or start a new run in a new OUTPUT_DIR (MODEL.WEIGHTS can "
            f"start it from this run's weights). Safe to change on resume: "
            f"{', '.join(SAFE_RESUME_CHANGES)}."
        )
    if cfg.SEED < 0:
        cfg.defrost()
        cfg.SEED = saved.SEED
        cfg.freeze()


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


#: detectron2's SOLVER.MAX_ITER default: the value that means "not set" beside SOLVER.EPOCHS.
D2_MAX_ITER = get_cfg().SOLVER.MAX_ITER


def check_schedule(cfg):
    """The length of a search or train run: SOLVER.EPOCHS > 0 takes precedence over
    SOLVER.MAX_ITER (logged when the run starts); both set is an error, unless MAX_ITER is
    detectron2's default (it was not set)."""
    if cfg.SOLVER.EPOCHS > 0 and cfg.SOLVER.MAX_ITER != D2_MAX_ITER:
        raise ConfigError(
            f"SOLVER.EPOCHS = {cfg.SOLVER.EPOCHS} and SOLVER.MAX_ITER = {cfg.SOLVER.MAX_ITER} "
            f"both set the run's length. Set one: SOLVER.EPOCHS 0 to train SOLVER.MAX_ITER "
            f"iterations, or SOLVER.MAX_ITER {D2_MAX_ITER} (detectron2's default, i.e. not "
            f"set) to train SOLVER.EPOCHS epochs."
        )
