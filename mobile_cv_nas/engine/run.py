"""The body of tools/train_net.py: the config, the output-folder guard and the three tasks
(search, train, eval).

Every check of the user's input (config keys and values, data folders, search space, arch,
cost target, output folder) runs before anything is written, so a bad input leaves no half
run behind. A run's files are written by the main process only; evaluation runs on every
process (each holds a shard of the data).
"""

import dataclasses
import difflib
import logging
import math
import os
import time

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from .. import model_zoo
from ..arch import build_model, load_checkpoint
from ..config import add_mobile_cv_nas_config, resolve_arch
from ..config.defaults import COST_LOSSES, TASKS
from ..data import build_eval_loader, eval_transform, train_transform
from ..flops import count_flops
from ..io import atomic_write, write_json
from ..search import GumbelSampler, Supernet
from ..search.cost_bounds import cost_range
from ..search.cost_loss import CostLoss
from ..search.space import as_search_space
from .classification_trainer import ClassificationTrainer
from .data import SearchData, build_datasets, per_process_batch
from .detection_task import add_detection_config, check_detection_config, run_detection
from .errors import ConfigError, OutputDirError
from .evaluation import evaluate_classifier
from .run_setup import setup_run
from .search_outputs import write_search_outputs
from .search_trainer import SearchTrainer
from .trainer_base import iterations

logger = logging.getLogger(__name__)

#: Files that mark a folder as holding a run.
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


def parse_args(argv=None):
    """detectron2's command line (--config-file, --resume, --eval-only, --num-gpus, ...,
    trailing KEY VALUE overrides)."""
    return default_argument_parser().parse_args(argv)


def new_config():
    """detectron2's defaults plus the project's keys (the detection ones too, so a detection
    config's MODEL.MOBILE_CV_NAS.* and DATASETS.COCO_JSON merge)."""
    return add_detection_config(add_mobile_cv_nas_config(get_cfg()))


def setup_cfg(args):
    """The frozen config of a command line: --config-file (with _BASE_), then the KEY VALUE
    overrides; a typo in a key is a ConfigError naming it (with the closest real keys)."""
    cfg = new_config()
    if args.config_file:
        if not os.path.isfile(args.config_file):
            raise ConfigError(f"Config file {args.config_file!r} does not exist.")
        try:
            cfg.merge_from_file(args.config_file)
        except KeyError as e:
            raise _key_error(cfg, e, f"config file {args.config_file!r}") from None
        except (ValueError, AssertionError) as e:
            raise ConfigError(f"config file {args.config_file!r}: {e}") from None
    flags = [o for o in args.opts if str(o).startswith("--")]
    if flags:
        raise ConfigError(
            f"{flags[0]} comes after the KEY VALUE overrides, where it is read as a config key: "
            f"put flags first (tools/train_net.py {flags[0]} --config-file FILE KEY VALUE ...)."
        )
    try:
        cfg.merge_from_list(args.opts)
    except KeyError as e:
        raise _key_error(cfg, e, "command line") from None
    except AssertionError as e:  # yacs asserts that an overridden key exists
        if str(e).startswith("Non-existent key"):
            raise _key_error(cfg, e, "command line") from None
        raise ConfigError(f"command line overrides {args.opts}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"command line overrides {args.opts}: {e}") from None
    if args.eval_only and cfg.TASK != "detection":  # detection: run_detection reads the flag
        cfg.TASK = "eval"
    check_config(cfg)
    if cfg.TASK == "detection":
        check_detection_config(cfg, train=not args.eval_only)
    if cfg.SEED < 0:  # resolved once here, so every process (and config.yaml) has the same
        cfg.SEED = int.from_bytes(os.urandom(4), "little") >> 1
    cfg.freeze()
    return cfg


def _check_choice(value, choices, key):
    if value not in choices:
        raise ConfigError(f"{key} = {value!r}: use one of {', '.join(choices)}.")


def check_config(cfg):
    _check_choice(cfg.TASK, TASKS, "TASK")
    _check_choice(cfg.NAS.COST.LOSS, COST_LOSSES, "NAS.COST.LOSS")
    _check_choice(cfg.DATA.AUGMENT, AUGMENTS, "DATA.AUGMENT")
    if cfg.NAS.COST.METRIC:
        _check_choice(cfg.NAS.COST.METRIC, ("flops", "params"), "NAS.COST.METRIC")
    if not 0 < cfg.NAS.WEIGHT_FRACTION < 1:
        raise ConfigError(f"NAS.WEIGHT_FRACTION = {cfg.NAS.WEIGHT_FRACTION}: must be in (0, 1).")
    if cfg.SOLVER.IMS_PER_BATCH <= 0:
        raise ConfigError("SOLVER.IMS_PER_BATCH must be > 0.")
    if len(cfg.DATA.MEAN) != len(cfg.DATA.STD):
        raise ConfigError("DATA.MEAN and DATA.STD must have the same length (or both be empty).")
    device = torch.device(cfg.MODEL.DEVICE)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available here: add "
            f"MODEL.DEVICE cpu to the command line."
        )


def check_output_dir(cfg, resume, args=None):
    """A new run needs a folder without another run in it; --resume continues the run there,
    if it is a run of the same task (and search space)."""
    out = cfg.OUTPUT_DIR
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
    if os.path.exists(saved_path):
        saved = new_config()
        saved.set_new_allowed(True)
        saved.merge_from_file(saved_path)
        same = ("DATASETS.TRAIN",) if cfg.TASK == "detection" else ("NAS.SPACE", "DATA.TRAIN")
        for key in ("TASK", *same):
            mine, theirs = _get(cfg, key), _get(saved, key)
            if mine != theirs:
                raise OutputDirError(
                    f"--resume: OUTPUT_DIR {out!r} holds a run with {key} = {theirs!r}, not "
                    f"{mine!r}. Resume it with its own config, or use a new OUTPUT_DIR."
                )


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _with_max_iter(cfg, max_iter):
    schedule = cfg.clone()
    schedule.defrost()
    schedule.SOLVER.MAX_ITER = int(max_iter)
    schedule.freeze()
    return schedule


# ------------------------------------------------------------------------------------ search


def cost_target(cfg, supernet):
    """(metric, target, (cheapest, dearest)) of the search's cost term; a target below the
    cheapest architecture of the space is a ConfigError."""
    metric = cfg.NAS.COST.METRIC or supernet.space.cost
    low, high = cost_range(supernet, metric)
    unit = "MFLOPs" if metric == "flops" else "M params"
    if cfg.NAS.COST.TARGET_M > 0:
        target = cfg.NAS.COST.TARGET_M * 1e6
    else:
        target = math.sqrt(low * high)
        logger.info(f"NAS.COST.TARGET_M not set: the geometric middle {target / 1e6:.4g} {unit}")
    name = supernet.space.name or cfg.NAS.SPACE
    if target < low:
        raise ConfigError(
            f"NAS.COST.TARGET_M = {target / 1e6:.4g} {unit} cannot be reached: the cheapest "
            f"architecture of search space {name!r} costs {low / 1e6:.4g} {unit} (the dearest "
            f"{high / 1e6:.4g}). Set NAS.COST.TARGET_M between these, or search a smaller space."
        )
    if target > high:
        logger.warning(
            f"NAS.COST.TARGET_M = {target / 1e6:.4g} {unit} is above the dearest architecture "
            f"of {name!r} ({high / 1e6:.4g} {unit}): the cost term will only favour cheaper ones."
        )
    return metric, target, (low, high)


def run_search(cfg, args):
    rank, world = comm.get_rank(), comm.get_world_size()
    datasets = build_datasets(cfg)
    space = dataclasses.replace(
        as_search_space(cfg.NAS.SPACE),
        num_classes=len(datasets.classes),
        in_channels=datasets.in_channels,
    )
    torch.manual_seed(cfg.SEED)  # the same initial weights on every process
    sampler = GumbelSampler(tau=cfg.NAS.TAU.START, seed=cfg.SEED, rank=rank)
    supernet = Supernet(space, sampler, norm=cfg.MODEL.MOBILE_CV_NAS.NORM)
    metric, target, bounds = cost_target(cfg, supernet)
    c = cfg.NAS.COST
    cost_loss = CostLoss(c.LOSS, target, a=c.A, b=c.B, lam=c.LAMBDA)
    data = SearchData(cfg, datasets, supernet.max_resolution, rank, world)
    _, max_iter = iterations(cfg, data.iters_per_epoch)
    trainer = SearchTrainer(cfg, supernet, data, cost_loss, metric, _with_max_iter(cfg, max_iter))
    # a checkpoint that does not load fails here, before the run writes anything
    start_iter = trainer.resume_or_load(args.resume)

    setup_run(cfg, args, resumed=start_iter > 0)
    logger.info(
        f"Search space {space.name!r}: {len(supernet.decisions)} searched decisions, "
        f"{metric} {bounds[0] / 1e6:.4g}..{bounds[1] / 1e6:.4g} M, target {target / 1e6:.4g} M; "
        f"loss {cost_loss}; {len(data.weight_indices)} weight / {len(data.alpha_indices)} alpha "
        f"images, {data.iters_per_epoch} iterations per epoch, {max_iter} iterations."
    )
    start = time.perf_counter()
    completed = _train(trainer)
    if not completed:
        return None
    return write_search_outputs(trainer, data, metric, target, bounds, time.perf_counter() - start)


def _train(trainer):
    """Train from the start iteration `resume_or_load` set; False when stopped early."""
    if trainer.start_iter >= trainer.max_iter:
        logger.info(
            f"The run in {trainer.cfg.OUTPUT_DIR} is complete ({trainer.max_iter} "
            f"iterations); writing its results again."
        )
        trainer.iter = trainer.max_iter
        return True
    return trainer.run()


# ----------------------------------------------------------------------------- train / eval


def _input(cfg, arch, info, datasets):
    """Input size, resize and normalisation: DATA.* when set, else the zoo entry's, else the
    arch's size and the dataset's statistics."""
    info = info or {}
    resolution = cfg.DATA.RESOLUTION or info.get("resolution") or arch.input_size
    resize = cfg.DATA.RESIZE or info.get("resize") or None
    mean, std = datasets.mean, datasets.std
    if not (cfg.DATA.MEAN or cfg.DATA.STD) and info.get("mean") and info.get("std"):
        mean, std = tuple(info["mean"]), tuple(info["std"])
    return dict(
        resolution=int(resolution),
        resize=resize,
        mean=list(mean),
        std=list(std),
        in_channels=datasets.in_channels,
    )


def _build_classifier(cfg, arch, datasets):
    return build_model(
        arch,
        num_classes=len(datasets.classes),
        in_channels=datasets.in_channels,
        norm=cfg.MODEL.MOBILE_CV_NAS.NORM,
    )


def _load_weights(cfg, model, spec, info, datasets):
    """MODEL.WEIGHTS: a path/URL in the official format, or "zoo" (the zoo entry's weights)."""
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        return
    if weights != "zoo":
        load_checkpoint(model, weights)
        return
    if info is None:
        raise ConfigError(
            "MODEL.WEIGHTS zoo needs MODEL.MOBILE_CV_NAS.ARCH to be a zoo model name."
        )
    published = model_zoo.get(spec, pretrained=True)
    try:
        model.load_state_dict(published.state_dict())
    except RuntimeError:
        raise ConfigError(
            f"Zoo model {spec!r} was trained for {published.num_classes} classes and "
            f"{published.in_channels} input channels; DATA.TEST ({cfg.DATA.TEST}) has "
            f"{len(datasets.classes)} classes and {datasets.in_channels} channels."
        ) from None


def _eval_loader(cfg, datasets, inp):
    transform = eval_transform(
        inp["resolution"], inp["in_channels"], inp["mean"], inp["std"], resize=inp["resize"]
    )
    batch = per_process_batch(cfg, comm.get_world_size())
    return build_eval_loader(
        datasets.test,
        transform,
        batch,
        comm.get_rank(),
        comm.get_world_size(),
        cfg.DATALOADER.NUM_WORKERS,
    )


def run_train(cfg, args):
    rank, world = comm.get_rank(), comm.get_world_size()
    datasets = build_datasets(cfg)
    arch, info = resolve_arch(cfg)
    inp = _input(cfg, arch, info, datasets)
    torch.manual_seed(cfg.SEED)
    model = _build_classifier(cfg, arch, datasets)
    _load_weights(cfg, model, cfg.MODEL.MOBILE_CV_NAS.ARCH, info, datasets)
    batch = per_process_batch(cfg, world)
    transform = train_transform(
        inp["resolution"], inp["in_channels"], inp["mean"], inp["std"], cfg.DATA.AUGMENT
    )
    per_epoch = len(datasets.train) // (batch * world)
    if per_epoch == 0:
        raise ConfigError(
            f"DATA.TRAIN ({cfg.DATA.TRAIN}) has {len(datasets.train)} images, fewer than one "
            f"batch (SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH})."
        )
    _, max_iter = iterations(cfg, per_epoch)
    eval_loader = _eval_loader(cfg, datasets, inp)
    trainer = ClassificationTrainer(
        cfg,
        model,
        datasets.train,
        transform,
        batch,
        _with_max_iter(cfg, max_iter),
        rank,
        world,
        evaluate=lambda m: evaluate_classifier(m, eval_loader, cfg.MODEL.DEVICE),
    )
    # a checkpoint that does not load fails here, before the run writes anything
    start_iter = trainer.resume_or_load(args.resume)

    setup_run(cfg, args, resumed=start_iter > 0)
    logger.info(
        f"Training {arch.name or 'arch'} on {cfg.DATA.TRAIN}: {len(datasets.train)} "
        f"images, {len(datasets.classes)} classes, input {inp}, {max_iter} iterations."
    )
    if not _train(trainer):
        return None
    final = _build_classifier(cfg, arch, datasets)
    final.load_state_dict(trainer.final_state_dict())
    result = evaluate_classifier(final.to(cfg.MODEL.DEVICE), eval_loader, cfg.MODEL.DEVICE)
    trained = dataclasses.replace(
        arch,
        num_classes=len(datasets.classes),
        in_channels=datasets.in_channels,
        input_size=inp["resolution"],
    )
    report = count_flops(final.cpu(), inp["resolution"])
    metrics = {
        "task": "train",
        "arch": trained.name,
        "val_top1": result["top1"],
        "val_top5": result["top5"],
        "val_count": result["count"],
        "dataset": cfg.DATA.TEST,
        "train_dataset": cfg.DATA.TRAIN,
        "classes": datasets.classes,
        "input": inp,
        "flops_m": report.mflops,
        "params_m": report.mparams,
        "iterations": trainer.max_iter,
        "ema": trainer.ema is not None,
    }
    if comm.is_main_process():
        out = cfg.OUTPUT_DIR
        official = {
            "state_dict": trainer.module.state_dict(),
            "model_ema": trainer.ema.ema_state() if trainer.ema is not None else None,
        }
        atomic_write(os.path.join(out, "model_final.pth"), lambda f: torch.save(official, f))
        atomic_write(os.path.join(out, "arch.yaml"), lambda f: f.write(trained.to_yaml()), "w")
        write_json(os.path.join(out, "metrics.json"), metrics)
        logger.info(
            f"Validation top-1 {result['top1']:.2f}% top-5 {result['top5']:.2f}% on "
            f"{result['count']} images; weights: {out}/model_final.pth (official format)."
        )
    comm.synchronize()
    return metrics


def run_eval(cfg, args):
    datasets = build_datasets(cfg, train=False)
    arch, info = resolve_arch(cfg)
    inp = _input(cfg, arch, info, datasets)
    model = _build_classifier(cfg, arch, datasets)
    _load_weights(cfg, model, cfg.MODEL.MOBILE_CV_NAS.ARCH, info, datasets)
    setup_run(cfg, args)
    result = evaluate_classifier(
        model.to(cfg.MODEL.DEVICE), _eval_loader(cfg, datasets, inp), cfg.MODEL.DEVICE
    )
    metrics = {
        "task": "eval",
        "arch": cfg.MODEL.MOBILE_CV_NAS.ARCH or arch.name,
        "weights": cfg.MODEL.WEIGHTS,
        "val_top1": result["top1"],
        "val_top5": result["top5"],
        "val_count": result["count"],
        "dataset": cfg.DATA.TEST,
        "input": inp,
    }
    if comm.is_main_process():
        logger.info(
            f"Evaluation on {cfg.DATA.TEST}: top-1 {result['top1']:.2f}%, top-5 "
            f"{result['top5']:.2f}% ({result['count']} images)"
        )
        if cfg.OUTPUT_DIR:
            write_json(os.path.join(cfg.OUTPUT_DIR, "metrics_eval.json"), metrics)
    return metrics


TASK_RUNNERS = {
    "search": run_search,
    "train": run_train,
    "eval": run_eval,
    "detection": run_detection,
}


def main(cfg, args):
    """Run the config's task in this process (one of the launched ones)."""
    return TASK_RUNNERS[cfg.TASK](cfg, args)
