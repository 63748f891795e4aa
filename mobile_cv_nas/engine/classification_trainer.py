"""The `train` task: an architecture trained from scratch as an ordinary classifier (no
masks), SGD with detectron2's LR schedules (WarmupCosineLR in the shipped recipes), optional
label smoothing and EMA, validation every TEST.EVAL_PERIOD iterations; the result is saved in
the official checkpoint format.

The step is a plain one, detectron2's SimpleTrainer (as DefaultTrainer runs it) over the
classifier and its loss (ClassifierLoss); events.json gets its `total_loss` (averaged over
the processes), `data_time` and the batch `accuracy`."""

import copy
import math

import torch
import torch.nn.functional as F
from detectron2.engine import SimpleTrainer
from detectron2.solver import build_lr_scheduler
from detectron2.utils.events import get_event_storage

from ..data import build_train_loader
from .hooks import EMAHook, PeriodicEvalHook
from .trainer_base import ProjectTrainer, wrap_ddp


class ClassifierLoss(torch.nn.Module):
    """The classifier (DDP-wrapped or not) and its loss, as SimpleTrainer's step calls a
    model: a batch (images, labels) in, {"loss_cls": cross-entropy} out. A non-finite loss
    stops the run here (`check_finite`), before its backward and the optimizer's step."""

    def __init__(self, model, device, label_smoothing, check_finite):
        super().__init__()
        self.model, self.device, self.label_smoothing = model, device, label_smoothing
        self.check_finite = check_finite

    def forward(self, batch):
        images, labels = (t.to(self.device) for t in batch)
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.check_finite(loss, "training loss")
        accuracy = (logits.detach().argmax(1) == labels).double().mean().item()
        get_event_storage().put_scalar("accuracy", accuracy)
        return {"loss_cls": loss}


class ClassificationTrainer(ProjectTrainer):
    def __init__(
        self,
        cfg,
        model,
        train_data,
        transform,
        batch_size,
        schedule_cfg,
        rank,
        world,
        evaluate=None,
    ):
        """`evaluate`: model -> {"top1", "top5"} on the validation data, for TEST.EVAL_PERIOD."""
        self.device = cfg.MODEL.DEVICE
        self.module = model.to(self.device)
        self.train_data, self.transform, self.batch_size = train_data, transform, batch_size
        self.rank, self.world = rank, world
        self.optimizer = torch.optim.SGD(
            model.parameters(),
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        )
        self.scheduler = build_lr_scheduler(schedule_cfg, self.optimizer)
        super().__init__(
            cfg,
            self.module,
            schedule_cfg.SOLVER.MAX_ITER,
            dict(optimizer=self.optimizer, scheduler=self.scheduler),
        )
        self.model = wrap_ddp(self.module, self.device)
        self.ema = EMAHook(self.module, cfg.SOLVER.EMA.DECAY) if cfg.SOLVER.EMA.ENABLED else None
        periodic, write_period = None, 20
        if evaluate is not None and cfg.TEST.EVAL_PERIOD > 0:
            periodic = PeriodicEvalHook(cfg.TEST.EVAL_PERIOD, lambda: evaluate(self.eval_model()))
            # the writers keep the latest value of a scalar: write each evaluation's
            write_period = math.gcd(write_period, cfg.TEST.EVAL_PERIOD)
        self.register_hooks(
            self.default_hooks(self.optimizer, self.scheduler, [self.ema] if self.ema else [])
            + [periodic, self.writer_hook(write_period)]
        )
        self.loss_model = ClassifierLoss(
            self.model, self.device, cfg.SOLVER.LABEL_SMOOTHING, self.check_finite
        )
        self._trainer = None

    def _step_trainer(self):
        """detectron2's SimpleTrainer over the loss model, made at the first step: its loader
        starts at the start iteration, which resume_or_load set."""
        loader = build_train_loader(
            self.train_data,
            self.transform,
            self.batch_size,
            self.cfg.SEED,
            rank=self.rank,
            world_size=self.world,
            start_iter=self.iter,
            num_workers=self.cfg.DATALOADER.NUM_WORKERS,
        )
        return SimpleTrainer(self.loss_model, loader, self.optimizer)

    def run_step(self):
        if self._trainer is None:
            self._trainer = self._step_trainer()
        self.loss_model.train()  # a periodic evaluation left it in eval mode
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def eval_model(self):
        """The model as evaluated and published: with the EMA's weights when enabled."""
        if self.ema is None:
            return self.module
        model = copy.deepcopy(self.module)
        model.load_state_dict(self.ema.ema_state())
        return model

    def final_state_dict(self):
        """The weights to evaluate and publish: the EMA's when enabled."""
        return self.ema.ema_state() if self.ema is not None else self.module.state_dict()
