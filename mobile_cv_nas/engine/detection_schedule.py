"""A detection config's schedule fitted to the run's batch and length
(SOLVER.REFERENCE_IMS_PER_BATCH).

The shipped configs set BASE_LR 0.02 and a 1000-iteration warm-up for a total batch of 16
and 90000 iterations (detectron2's 1x schedule). Run as they are with the CPU recipe's batch
of 2 and 20 iterations, they would train with 8 times the learning rate per image, and the
whole run would be warm-up. With SOLVER.REFERENCE_IMS_PER_BATCH > 0 (16 in the shipped
configs), the total batch BASE_LR is set for:

* BASE_LR is scaled by IMS_PER_BATCH / REFERENCE_IMS_PER_BATCH: the linear scaling rule
  (Goyal et al. 2017) that detectron2's `auto_scale_workers` applies for another number of
  workers, here for another batch;
* WARMUP_ITERS is at most a tenth of MAX_ITER (at least 1 iteration, when it was > 0).

0 keeps BASE_LR and WARMUP_ITERS as given (detectron2's behaviour). Like auto_scale_workers,
this changes the trainer's copy of the config only: config.yaml keeps the values given, and a
resumed run fits them the same way. Each change is logged.
"""

import logging

logger = logging.getLogger(__name__)

#: The longest warm-up, as a share of SOLVER.MAX_ITER.
WARMUP_SHARE = 0.1


def fit_schedule(cfg):
    """`cfg`, or a copy with BASE_LR and WARMUP_ITERS fitted to its batch and length."""
    reference = cfg.SOLVER.REFERENCE_IMS_PER_BATCH
    if reference <= 0:
        return cfg
    batch, max_iter = cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.MAX_ITER
    base_lr = cfg.SOLVER.BASE_LR * batch / reference
    warmup = cfg.SOLVER.WARMUP_ITERS
    if warmup > 0:
        warmup = min(warmup, max(1, int(max_iter * WARMUP_SHARE)))
    if base_lr == cfg.SOLVER.BASE_LR and warmup == cfg.SOLVER.WARMUP_ITERS:
        return cfg
    fitted = cfg.clone()
    fitted.defrost()
    if base_lr != cfg.SOLVER.BASE_LR:
        logger.info(
            f"SOLVER.BASE_LR {cfg.SOLVER.BASE_LR:g} is for a total batch of {reference} "
            f"(SOLVER.REFERENCE_IMS_PER_BATCH); this run's is {batch} (SOLVER.IMS_PER_BATCH): "
            f"training with a learning rate of {base_lr:g} (linear scaling; "
            f"SOLVER.REFERENCE_IMS_PER_BATCH 0 keeps BASE_LR as given)."
        )
        fitted.SOLVER.BASE_LR = base_lr
    if warmup != cfg.SOLVER.WARMUP_ITERS:
        logger.info(
            f"SOLVER.WARMUP_ITERS {cfg.SOLVER.WARMUP_ITERS} is more than a tenth of the run's "
            f"{max_iter} iterations (SOLVER.MAX_ITER): warm-up shortened to {warmup} "
            f"iteration(s) (SOLVER.REFERENCE_IMS_PER_BATCH 0 keeps it as given)."
        )
        fitted.SOLVER.WARMUP_ITERS = warmup
    if cfg.is_frozen():
        fitted.freeze()
    return fitted
