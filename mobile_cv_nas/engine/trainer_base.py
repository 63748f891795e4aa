"""What the search, the classification and the detection trainers share, on detectron2's
TrainerBase: one set of writers (metric printer with ETA, events.json, TensorBoard) made when
training starts, resumable atomic checkpoints, the non-finite-loss stop and detectron2's
create_ddp_model on CPU or GPU."""

import logging
import math
import os
import statistics

import torch
from detectron2.engine import TrainerBase, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

from .checkpointer import AtomicCheckpointer
from .divergence import last_good_checkpoint, non_finite_error
from .errors import ConfigError
from .hooks import CheckpointHook

logger = logging.getLogger(__name__)


def wrap_ddp(model, device, **kwargs):
    """detectron2's create_ddp_model (DDP over the process group when there is one; `kwargs`
    go to DDP). On CPU with device_ids=None: create_ddp_model's default, [local rank], names
    a GPU, which torch refuses for a CPU module."""
    if torch.device(device).type != "cuda":
        kwargs.setdefault("device_ids", None)
    return create_ddp_model(model, **kwargs)


def run_writers(output_dir, max_iter):
    """The writers of every training task, on the main process (none on the others): the
    metric printer (with ETA), OUTPUT_DIR/events.json and TensorBoard's files."""
    if not comm.is_main_process():
        return []
    return [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "events.json")),
        TensorboardXWriter(output_dir),
    ]


def iterations(cfg, iters_per_epoch):
    """(iterations per schedule epoch, total iterations) from SOLVER.EPOCH_ITERS/EPOCHS or
    SOLVER.MAX_ITER: SOLVER.EPOCHS > 0 takes precedence (the config check refuses a
    SOLVER.MAX_ITER set beside it, see run_config.check_schedule)."""
    per_epoch = cfg.SOLVER.EPOCH_ITERS or iters_per_epoch
    total = cfg.SOLVER.EPOCHS * per_epoch if cfg.SOLVER.EPOCHS > 0 else cfg.SOLVER.MAX_ITER
    if total <= 0:  # EPOCHS > 0 with an epoch of 0 iterations: less data than one batch
        raise ConfigError(
            f"The run would train {total} iterations (SOLVER.EPOCHS {cfg.SOLVER.EPOCHS} x "
            f"{per_epoch} iterations per epoch): use more data, a smaller SOLVER.IMS_PER_BATCH "
            f"or SOLVER.EPOCH_ITERS > 0."
        )
    warmup = cfg.SOLVER.WARMUP_ITERS
    if cfg.SOLVER.WARMUP_FACTOR < 1.0 and warmup >= total:
        raise ConfigError(
            f"SOLVER.WARMUP_ITERS = {warmup} is not shorter than the run ({total} iterations): "
            f"the whole run would be warm-up. Shorten the warm-up, or set "
            f"SOLVER.WARMUP_FACTOR 1.0 for none."
        )
    return per_epoch, total


def log_schedule(cfg, per_epoch, total):
    """Log which key set the run's length (after setup_run, so that it is in log.txt)."""
    if cfg.SOLVER.EPOCHS > 0:
        logger.info(
            f"Schedule: SOLVER.EPOCHS {cfg.SOLVER.EPOCHS} x {per_epoch} iterations per epoch = "
            f"{total} iterations (SOLVER.EPOCHS takes precedence over SOLVER.MAX_ITER)."
        )
    else:
        logger.info(f"Schedule: SOLVER.MAX_ITER {total} iterations (SOLVER.EPOCHS is 0).")


def with_max_iter(cfg, max_iter):
    """A frozen copy of `cfg` with SOLVER.MAX_ITER = `max_iter` (for the LR schedule)."""
    schedule = cfg.clone()
    schedule.defrost()
    schedule.SOLVER.MAX_ITER = int(max_iter)
    schedule.freeze()
    return schedule


def iteration_seconds(trainer, split_at=None):
    """Median seconds per iteration as the launcher timed them (detectron2's IterationTimer
    hook, its warm-up left out), for metrics.json: comparable between a search and a train
    run of the same data and batch. With `split_at`, the iterations before it ("before") and
    from it ("from") separately: a search's weight-only and weight + alpha iterations."""
    storage = getattr(trainer, "storage", None)
    if storage is None or "time" not in storage.histories():
        return {}
    timed = storage.history("time").values()  # [(seconds, iteration)]

    def median(values):
        return statistics.median(values) if values else None

    out = {"median_s": median([s for s, _ in timed]), "count": len(timed)}
    if split_at is not None:
        out["before_median_s"] = median([s for s, i in timed if i < split_at])
        out["from_median_s"] = median([s for s, i in timed if i >= split_at])
    return out


def train_to_end(trainer):
    """Train from the start iteration `resume_or_load` set; False when stopped early."""
    if trainer.start_iter >= trainer.max_iter:
        logger.info(
            f"The run in {trainer.cfg.OUTPUT_DIR} is complete ({trainer.max_iter} "
            f"iterations); writing its results again."
        )
        trainer.iter = trainer.max_iter
        return True
    return trainer.run()


class DeferredWriter(hooks.PeriodicWriter):
    """detectron2's PeriodicWriter with its writers made when training starts: the JSON and
    TensorBoard writers create their files, and a run that fails before (a checkpoint that
    does not load on --resume) must leave OUTPUT_DIR as it was."""

    def __init__(self, build_writers, period=20):
        super().__init__([], period=period)
        self._build_writers = build_writers

    def before_train(self):
        self._writers = self._build_writers()


class _NoTracebackForNonFiniteLoss(logging.Filter):
    """detectron2's training loop logs "Exception during training:" with the traceback of
    whatever stopped it. A non-finite loss (ours, or detectron2's own FloatingPointError) is
    not a bug: its one-line message, printed by tools/train_net.py, is the whole story."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, FloatingPointError)


def quiet_non_finite_loss_tracebacks():
    """Install the filter on detectron2's training-loop logger (once)."""
    loop_logger = logging.getLogger("detectron2.engine.train_loop")
    if not any(isinstance(f, _NoTracebackForNonFiniteLoss) for f in loop_logger.filters):
        loop_logger.addFilter(_NoTracebackForNonFiniteLoss())


class ProjectTrainer(TrainerBase):
    """TrainerBase + the project's checkpointing and writers. Subclasses set `model`
    (unwrapped, what the checkpoint holds), `checkpointables` and implement `run_step`."""

    def __init__(self, cfg, model, max_iter, checkpointables):
        super().__init__()
        quiet_non_finite_loss_tracebacks()
        self.cfg = cfg
        self.max_iter = max_iter
        self.checkpointer = AtomicCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            trainer=self,
            **checkpointables,
        )

    def default_hooks(self, scheduler_optimizer, scheduler, state_hooks=()):
        """Timer, LR schedule, `state_hooks`, checkpoints. `state_hooks` (an EMA, the search's
        records) change checkpointed state after each step, so they run before the
        checkpoint hook: a checkpoint of iteration i then holds their update of iteration i,
        which a resumed run does not repeat."""
        period = self.cfg.SOLVER.CHECKPOINT_PERIOD
        return [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler_optimizer, scheduler),
            *state_hooks,
            CheckpointHook(self.checkpointer, period),
        ]

    def writer_hook(self, period=20):
        return DeferredWriter(lambda: run_writers(self.cfg.OUTPUT_DIR, self.max_iter), period)

    def resume_or_load(self, resume):
        """Continue from OUTPUT_DIR's last checkpoint when `resume` and there is one."""
        if resume and self.checkpointer.has_checkpoint():
            self.checkpointer.load(self.checkpointer.get_checkpoint_file())
            self.start_iter = self.iter + 1
        else:
            self.start_iter = 0
        return self.start_iter

    def last_checkpoint(self):
        return last_good_checkpoint(self.checkpointer)

    def check_finite(self, loss, what):
        value = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
        if not math.isfinite(value):
            raise non_finite_error(
                f"{what} ({value})",
                self.iter,
                self.last_checkpoint(),
                "SOLVER.BASE_LR, NAS.ALPHA_OPTIMIZER.BASE_LR",
            )

    def run(self):
        """Train from the (resumed) start iteration to max_iter."""
        self.train(self.start_iter, self.max_iter)
        return self.iter == self.max_iter
