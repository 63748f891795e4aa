"""Cost of a search iteration relative to a training iteration of the space's largest
candidate, measured in one process.

  * search iteration: `SearchTrainer.run_step` of the engine at an iteration where alphas
    train, i.e. a weight step (SGD on a batch of the weight split) and an alpha step (Adam on
    a batch of the alpha split, cross-entropy combined with the effective cost), with the
    supernet, data and losses built as the search task builds them from the search's config;
  * training iteration: `ClassificationTrainer.run_step` of the engine on the plain model of
    `space.largest_arch_def()` (max resolution, widths, expansions, the largest op of every
    block), same batch size, same data transform.

Both include fetching their batches (DATALOADER.NUM_WORKERS of the config: 0 = in the loop),
as the real runs do; hooks (logging, checkpoints) are not run. The weight step alone (what
the search does before NAS.ALPHA_START_EPOCH) is timed too, and one batch fetch apart, for an
estimate of the ratio without data loading. The steps alternate (search iteration, weight
step, training iteration), so slow phases of a shared machine hit all three; ratios are of
the medians after warm-up.
"""

import dataclasses
import logging
import math
import shutil
import statistics
import tempfile
import time

import torch
from detectron2.utils.events import EventStorage

from mobile_cv_nas.arch import build_model, parse_arch_def
from mobile_cv_nas.data import train_transform
from mobile_cv_nas.engine.classification_trainer import ClassificationTrainer
from mobile_cv_nas.engine.data import SearchData, build_datasets, per_process_batch
from mobile_cv_nas.engine.run import cost_target
from mobile_cv_nas.engine.search_trainer import SearchTrainer
from mobile_cv_nas.flops import count_flops
from mobile_cv_nas.search import GumbelSampler, Supernet
from mobile_cv_nas.search.cost_loss import CostLoss
from mobile_cv_nas.search.space import as_search_space

logger = logging.getLogger(__name__)


def cfg_with(cfg, **changes):
    """A copy of a frozen cfg with dotted-key changes (`SOLVER__MAX_ITER=5`)."""
    out = cfg.clone()
    out.defrost()
    for key, value in changes.items():
        node = out
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    out.freeze()
    return out


def build_search_trainer(cfg, datasets, max_iter):
    """The engine's SearchTrainer as the search task builds it (one process)."""
    space = dataclasses.replace(
        as_search_space(cfg.NAS.SPACE),
        num_classes=len(datasets.classes),
        in_channels=datasets.in_channels,
    )
    torch.manual_seed(cfg.SEED)
    sampler = GumbelSampler(tau=cfg.NAS.TAU.START, seed=cfg.SEED, rank=0)
    supernet = Supernet(space, sampler, norm=cfg.MODEL.MOBILE_CV_NAS.NORM)
    metric, target, _ = cost_target(cfg, supernet)
    c = cfg.NAS.COST
    cost_loss = CostLoss(c.LOSS, target, a=c.A, b=c.B, lam=c.LAMBDA)
    data = SearchData(cfg, datasets, supernet.max_resolution, 0, 1)
    schedule = cfg_with(cfg, SOLVER__MAX_ITER=max_iter)
    trainer = SearchTrainer(cfg, supernet, data, cost_loss, metric, schedule)
    trainer.iter = trainer.start_iter = trainer.alpha_start_iter  # alpha steps from here on
    return trainer, space


def build_largest_trainer(cfg, datasets, space, max_iter):
    """The engine's ClassificationTrainer on the plain model of the space's largest
    candidate; (trainer, its arch def)."""
    arch = parse_arch_def(space.largest_arch_def(space.in_channels))
    torch.manual_seed(cfg.SEED)
    model = build_model(
        arch,
        num_classes=len(datasets.classes),
        in_channels=datasets.in_channels,
        norm=cfg.MODEL.MOBILE_CV_NAS.NORM,
    )
    transform = train_transform(
        arch.input_size, datasets.in_channels, datasets.mean, datasets.std, cfg.DATA.AUGMENT
    )
    batch = per_process_batch(cfg, 1)
    schedule = cfg_with(cfg, SOLVER__MAX_ITER=max_iter)
    trainer = ClassificationTrainer(cfg, model, datasets.train, transform, batch, schedule, 0, 1)
    trainer.iter = trainer.start_iter = 0
    return trainer, arch


def _timed_step(trainer, alpha_step=True):
    """Seconds of one `run_step`; for a SearchTrainer with `alpha_step` False, the weight
    step alone (as in the search's epochs before NAS.ALPHA_START_EPOCH)."""
    alpha_start = getattr(trainer, "alpha_start_iter", None)
    if not alpha_step:
        trainer.alpha_start_iter = math.inf
    try:
        start = time.perf_counter()
        trainer.run_step()
        seconds = time.perf_counter() - start
    finally:
        if alpha_start is not None:
            trainer.alpha_start_iter = alpha_start
    trainer.iter += 1
    trainer.storage.iter = trainer.iter
    return seconds


def _batch_seconds(loader, count):
    batches = iter(loader)
    times = []
    for _ in range(count + 1):  # the first builds the iterator's state: not counted
        start = time.perf_counter()
        next(batches)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def time_iterations(search_cfg, iters=20, warmup=3):
    """Median seconds of a search iteration (and of its weight step alone) and of a training
    iteration of the space's largest candidate, alternated in this process; a dict (see the
    module doc). Also the median time of fetching one batch (already inside both).

    `search_cfg`: the search's config (its NAS.*, SOLVER.* and DATA.*; OUTPUT_DIR is replaced
    by a temporary folder, removed afterwards)."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"Need iters >= 1 and warmup >= 0, got {iters} and {warmup}.")
    scratch = tempfile.mkdtemp(prefix="search_quality_timing_")
    try:
        cfg = cfg_with(search_cfg, OUTPUT_DIR=scratch)
        datasets = build_datasets(cfg)
        total = iters + warmup
        search, space = build_search_trainer(cfg, datasets, max_iter=10 * (total + 1))
        plain, largest = build_largest_trainer(cfg, datasets, space, max_iter=total + 1)
        times = {"search": [], "weight": [], "train": []}
        with EventStorage(search.iter) as search.storage, EventStorage(0) as plain.storage:
            for i in range(total):
                step = {
                    "search": _timed_step(search),
                    "weight": _timed_step(search, alpha_step=False),
                    "train": _timed_step(plain),
                }
                if i >= warmup:
                    for key, value in step.items():
                        times[key].append(value)
        batch_s = _batch_seconds(search.data.weight_loader(0), iters)
        cost = count_flops(build_model(largest), largest.input_size)
        supernet_params = sum(p.numel() for p in search.supernet.weight_parameters())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = {key: statistics.median(values) for key, values in times.items()}
    search_s, weight_s, train_s = median["search"], median["weight"], median["train"]
    compute_train = train_s - batch_s
    result = {
        "search_step_s": search_s,
        "weight_step_s": weight_s,
        "train_step_s": train_s,
        "ratio": search_s / train_s,
        "weight_step_ratio": weight_s / train_s,
        "batch_fetch_s": batch_s,
        # the same ratio without fetching batches (two per search iteration, one per training
        # iteration): an estimate, from medians measured apart
        "ratio_without_data": (search_s - 2 * batch_s) / compute_train
        if compute_train > 0
        else None,
        "step_times_s": times,
        "iters": iters,
        "warmup": warmup,
        "batch": per_process_batch(cfg, 1),
        "threads": torch.get_num_threads(),
        "device": str(cfg.MODEL.DEVICE),
        "data": cfg.DATA.TRAIN,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "largest_arch": {
            "name": largest.name,
            "flops_m": cost.mflops,
            "params_m": cost.mparams,
            "input_size": largest.input_size,
        },
        "supernet_weight_params_m": supernet_params / 1e6,
        "resolutions": list(space.resolutions),
    }
    logger.info(
        "Search iteration (weight + alpha step) %.1f ms (weight step alone %.1f ms), training "
        "iteration of the largest candidate %.1f ms: ratio %.2f (medians of %d after %d "
        "warm-up; one batch fetch %.1f ms).",
        1e3 * search_s,
        1e3 * weight_s,
        1e3 * train_s,
        result["ratio"],
        iters,
        warmup,
        1e3 * batch_s,
    )
    return result
