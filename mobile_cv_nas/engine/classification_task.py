"""TASK: train and eval: an architecture trained from scratch as a classifier
(engine/classification_trainer.py), saved in the official checkpoint format; or a model
(MODEL.WEIGHTS, "zoo") evaluated on DATA.TEST."""

import dataclasses
import logging
import math
import os

import torch
from detectron2.utils import comm

from .. import model_zoo
from ..arch import build_model, load_checkpoint
from ..config import resolve_arch
from ..data import build_eval_loader, eval_transform, train_transform
from ..flops import count_flops
from ..integrity import write_with_hash
from ..io import atomic_write, write_json
from .classification_trainer import ClassificationTrainer
from .data import build_datasets, check_resize, per_process_batch
from .errors import ConfigError
from .evaluation import evaluate_classifier
from .run_setup import setup_run
from .trainer_base import (
    iteration_seconds,
    iterations,
    log_schedule,
    train_to_end,
    with_max_iter,
)

logger = logging.getLogger(__name__)


def _input(cfg, arch, info, datasets):
    """Input size, resize and normalisation: DATA.* when set, else the zoo entry's, else the
    arch's size and the dataset's statistics."""
    info = info or {}
    resolution = cfg.DATA.RESOLUTION or info.get("resolution") or arch.input_size
    resize = cfg.DATA.RESIZE or info.get("resize") or None
    check_resize(resize, int(resolution))
    stride = math.prod(block.stride for block in arch.blocks())
    if int(resolution) < stride:
        raise ConfigError(
            f"Input size {resolution} (DATA.RESOLUTION, else the arch's input_size) is below "
            f"the arch's total stride {stride}: its last feature map would be under one "
            f"pixel. Use an input of at least {stride}."
        )
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
    schedule_per_epoch, max_iter = iterations(cfg, per_epoch)
    eval_loader = _eval_loader(cfg, datasets, inp)
    trainer = ClassificationTrainer(
        cfg,
        model,
        datasets.train,
        transform,
        batch,
        with_max_iter(cfg, max_iter),
        rank,
        world,
        evaluate=lambda m: evaluate_classifier(m, eval_loader, cfg.MODEL.DEVICE),
    )
    # a checkpoint that does not load fails here, before the run writes anything
    start_iter = trainer.resume_or_load(args.resume)

    setup_run(cfg, args, resumed=start_iter > 0)
    datasets.log_notes()
    log_schedule(cfg, schedule_per_epoch, max_iter)
    logger.info(
        f"Training {arch.name or 'arch'} on {cfg.DATA.TRAIN}: {len(datasets.train)} "
        f"images, {len(datasets.classes)} classes, input {inp}, {max_iter} iterations."
    )
    if not train_to_end(trainer):
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
        # the launcher's per-iteration timer (median), to compare with a search's
        "iteration_time": {"iteration_s": iteration_seconds(trainer).get("median_s")},
    }
    if comm.is_main_process():
        out = cfg.OUTPUT_DIR
        official = {
            "state_dict": trainer.module.state_dict(),
            "model_ema": trainer.ema.ema_state() if trainer.ema is not None else None,
        }
        write_with_hash(os.path.join(out, "model_final.pth"), lambda f: torch.save(official, f))
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
    loader = _eval_loader(cfg, datasets, inp)  # a bad mean/std fails here, before any write
    setup_run(cfg, args)
    datasets.log_notes()
    result = evaluate_classifier(model.to(cfg.MODEL.DEVICE), loader, cfg.MODEL.DEVICE)
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
