"""Training hooks on detectron2's HookBase: temperature annealing, periodic atomic
checkpoints, and an exponential moving average of the weights."""

import copy
import logging
import os
import sys

import torch
from detectron2.engine import HookBase, hooks
from detectron2.utils import comm

from ..integrity import remove_hash
from .divergence import last_good_checkpoint, non_finite_error, non_finite_tensors

logger = logging.getLogger(__name__)


class TemperatureHook(HookBase):
    """Sets the Gumbel-softmax temperature at every epoch: tau(epoch) of a
    `TemperatureSchedule` (the paper: 5.0 x exp(-0.045) per epoch)."""

    def __init__(self, sampler, schedule, iters_per_epoch):
        self.sampler, self.schedule, self.iters_per_epoch = sampler, schedule, iters_per_epoch

    def before_step(self):
        epoch = self.trainer.iter // self.iters_per_epoch
        self.sampler.tau = self.schedule(epoch)
        self.trainer.storage.put_scalar("tau", self.sampler.tau, smoothing_hint=False)


class CheckpointHook(hooks.PeriodicCheckpointer):
    """detectron2's PeriodicCheckpointer hook (fvcore's schedule: `<file_prefix>_{iter:07d}`
    every `period` iterations, the last `keep` of them kept, `<file_prefix>_final` after the
    last iteration, holding that iteration as detectron2's do; `checkpoint_*` in the search and
    train tasks, `model_*` in detection), on the main process, with a check that every weight
    is finite before each save.

    Nothing is saved after a failed iteration (a non-finite loss, an exception skips the
    iteration's after_step): the last good checkpoint stays the one `last_checkpoint` names.
    The checkpointer (AtomicCheckpointer) writes each file atomically, with its sha256 beside
    it; a checkpoint fvcore's schedule removes takes its sha256 file along.
    """

    def __init__(
        self,
        checkpointer,
        period,
        keep=2,
        file_prefix="checkpoint",
        learning_rates="SOLVER.BASE_LR, NAS.ALPHA_OPTIMIZER.BASE_LR",
    ):
        """`keep` None keeps every checkpoint; `learning_rates`: the keys a non-finite weight's
        message says to lower."""
        # period <= 0: no periodic checkpoints (fvcore's schedule divides by the period)
        period = int(period) if int(period) > 0 else sys.maxsize
        keep = None if keep is None else int(keep)
        super().__init__(checkpointer, period, max_to_keep=keep, file_prefix=file_prefix)
        self.learning_rates = learning_rates

    def _check_finite(self, iteration):
        bad = non_finite_tensors(self.checkpointer.model.state_dict())
        if bad:
            raise non_finite_error(
                f"weights ({len(bad)} tensor(s), first: {bad[0]}; not saved)",
                iteration,
                last_good_checkpoint(self.checkpointer),
                self.learning_rates,
            )

    def step(self, iteration, **kwargs):
        done = int(iteration) + 1
        if done % self.period == 0 or done >= self.max_iter:  # a save is due
            self._check_finite(iteration)
        kept = list(self.recent_checkpoints)
        super().step(iteration, **kwargs)
        for path in kept:
            if path not in self.recent_checkpoints and not os.path.exists(path):
                remove_hash(path)

    def after_step(self):
        if comm.is_main_process():  # the only process that writes (and deletes) checkpoints
            super().after_step()

    def after_train(self):
        comm.synchronize()  # the other processes wait for the final checkpoint


class PeriodicEvalHook(HookBase):
    """Evaluates every `period` iterations (TEST.EVAL_PERIOD; 0: never) before the last one
    (the task evaluates the final weights itself) and logs val_top1 / val_top5. Runs on
    every process: each evaluates its shard of the data."""

    def __init__(self, period, evaluate):
        self.period, self.evaluate = int(period), evaluate

    def after_step(self):
        done = self.trainer.iter + 1
        if self.period > 0 and done % self.period == 0 and done < self.trainer.max_iter:
            result = self.evaluate()
            self.trainer.storage.put_scalars(
                val_top1=result["top1"], val_top5=result["top5"], smoothing_hint=False
            )
            logger.info(
                f"Iteration {done}: val top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}%"
            )


class EMAHook(HookBase):
    """An exponential moving average of the model's floating-point state (weights and
    norm statistics), updated after every step; `ema_state()` is what evaluation and the
    published `model_ema` use. Its state is part of the trainer's checkpoint."""

    def __init__(self, model, decay):
        self.model, self.decay = model, float(decay)
        self.state = copy.deepcopy(model.state_dict())

    @torch.no_grad()
    def after_step(self):
        for key, value in self.model.state_dict().items():
            if not torch.is_tensor(value):
                self.state[key] = copy.deepcopy(value)
            elif value.is_floating_point():
                self.state[key].mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                self.state[key].copy_(value)

    def ema_state(self):
        return copy.deepcopy(self.state)

    def state_dict(self):
        return {"ema": self.state}

    def load_state_dict(self, state):
        self.state = copy.deepcopy(state["ema"])
