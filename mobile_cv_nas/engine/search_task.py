"""TASK: search: the DMaskingNAS search (engine/search_trainer.py) of a search space on a
classification dataset; writes the searched arch.yaml, its pictures and metrics.json
(engine/search_outputs.py)."""

import dataclasses
import logging
import math
import time

import torch
from detectron2.utils import comm

from ..search import GumbelSampler, Supernet
from ..search.cost_bounds import cost_range, metric_unit
from ..search.cost_loss import CostLoss
from ..search.space import as_search_space
from .data import SearchData, build_datasets
from .errors import ConfigError
from .run_setup import setup_run
from .search_outputs import write_search_outputs
from .search_trainer import SearchTrainer
from .trainer_base import iterations, log_schedule, train_to_end, with_max_iter

logger = logging.getLogger(__name__)


def attach_latency_table(cfg, supernet):
    """Load NAS.COST.LUT into the supernet (its expected latency joins `effective_cost`),
    refused (LatencyTableError) when it does not fit the space as searched. None without a
    table."""
    if not cfg.NAS.COST.LUT:
        return None
    return supernet.set_latency_table(cfg.NAS.COST.LUT, space_arg=cfg.NAS.SPACE).table


def log_latency_table(table, supernet):
    """What the table was measured on (the hardware the search targets) and its warnings."""
    logger.info(
        f"Latency table {table.path}: {len(table.entries)} entries, measured on {table.describe()}."
    )
    for warning in supernet.latency_warnings:
        logger.warning(warning)


def cost_target(cfg, supernet):
    """(metric, target, (cheapest, dearest)) of the search's cost term; a target below the
    cheapest architecture of the space is a ConfigError. The cost is counted in FLOPs, params
    or ns; NAS.COST.TARGET_M is in millions of FLOPs or params, NAS.COST.TARGET_MS (latency)
    in ms, millions of ns."""
    metric = cfg.NAS.COST.METRIC or supernet.space.cost
    low, high = cost_range(supernet, metric)
    unit = metric_unit(metric)
    key = "NAS.COST.TARGET_MS" if metric == "latency" else "NAS.COST.TARGET_M"
    given = cfg.NAS.COST.TARGET_MS if metric == "latency" else cfg.NAS.COST.TARGET_M
    if given > 0:
        target = given * 1e6
    else:
        target = math.sqrt(low * high)
        logger.info(f"{key} not set: the geometric middle {target / 1e6:.4g} {unit}")
    name = supernet.space.name or cfg.NAS.SPACE
    if target < low:
        raise ConfigError(
            f"{key} = {target / 1e6:.4g} {unit} cannot be reached: the cheapest "
            f"architecture of search space {name!r} costs {low / 1e6:.4g} {unit} (the dearest "
            f"{high / 1e6:.4g}). Set {key} between these, or search a smaller space."
        )
    if target > high:
        logger.warning(
            f"{key} = {target / 1e6:.4g} {unit} is above the dearest architecture "
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
    supernet = Supernet(
        space, sampler, norm=cfg.MODEL.MOBILE_CV_NAS.NORM, sampling=cfg.NAS.SAMPLING
    )
    table = attach_latency_table(cfg, supernet)
    metric, target, bounds = cost_target(cfg, supernet)
    cost_loss = CostLoss.from_config(cfg.NAS.COST, target)
    data = SearchData(cfg, datasets, supernet.max_resolution, rank, world)
    schedule_per_epoch, max_iter = iterations(cfg, data.iters_per_epoch)
    if cfg.NAS.ALPHA_START_EPOCH * schedule_per_epoch >= max_iter:
        raise ConfigError(
            f"NAS.ALPHA_START_EPOCH = {cfg.NAS.ALPHA_START_EPOCH} epochs of "
            f"{schedule_per_epoch} iterations is not before the end of the run ({max_iter} "
            f"iterations): the architecture would never be searched. Start the alphas earlier "
            f"or train longer."
        )
    trainer = SearchTrainer(cfg, supernet, data, cost_loss, metric, with_max_iter(cfg, max_iter))
    # a checkpoint that does not load fails here, before the run writes anything
    start_iter = trainer.resume_or_load(args.resume)

    setup_run(cfg, args, resumed=start_iter > 0)
    datasets.log_notes()
    if table is not None:
        log_latency_table(table, supernet)
    log_schedule(cfg, schedule_per_epoch, max_iter)
    logger.info(
        f"Search space {space.name!r}: {len(supernet.decisions)} searched decisions, "
        f"{metric} {bounds[0] / 1e6:.4g}..{bounds[1] / 1e6:.4g} {metric_unit(metric)}, target "
        f"{target / 1e6:.4g} {metric_unit(metric)}; "
        f"loss {cost_loss}; sampling {cfg.NAS.SAMPLING}; {len(data.weight_indices)} weight / "
        f"{len(data.alpha_indices)} alpha images, {data.iters_per_epoch} iterations per "
        f"epoch, {max_iter} iterations."
    )
    start = time.perf_counter()
    completed = train_to_end(trainer)
    if not completed:
        return None
    return write_search_outputs(trainer, data, metric, target, bounds, time.perf_counter() - start)
