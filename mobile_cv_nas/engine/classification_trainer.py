"""The `train` task: an architecture trained from scratch as an ordinary classifier (no
masks), SGD with detectron2's LR schedules (WarmupCosineLR in the shipped recipes), optional
label smoothing and EMA; the result is saved in the official checkpoint format."""

import torch
import torch.nn.functional as F
from detectron2.solver import build_lr_scheduler

from ..data import build_train_loader
from .hooks import EMAHook
from .trainer_base import ProjectTrainer, wrap_ddp


class ClassificationTrainer(ProjectTrainer):
    def __init__(self, cfg, model, train_data, transform, batch_size, schedule_cfg, rank, world):
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
        self.label_smoothing = cfg.SOLVER.LABEL_SMOOTHING
        self.ema = EMAHook(self.module, cfg.SOLVER.EMA.DECAY) if cfg.SOLVER.EMA.ENABLED else None
        self.register_hooks(
            self.default_hooks(self.optimizer, self.scheduler, [self.ema] if self.ema else [])
            + [self.writer_hook()]
        )
        self._batches = None

    def run_step(self):
        if self._batches is None:
            self._batches = iter(
                build_train_loader(
                    self.train_data,
                    self.transform,
                    self.batch_size,
                    self.cfg.SEED,
                    rank=self.rank,
                    world_size=self.world,
                    start_iter=self.iter,
                    num_workers=self.cfg.DATALOADER.NUM_WORKERS,
                )
            )
        self.model.train()
        images, labels = next(self._batches)
        images, labels = images.to(self.device), labels.to(self.device)
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.check_finite(loss, "training loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        accuracy = (logits.detach().argmax(1) == labels).double().mean().item()
        self.storage.put_scalars(loss_cls=loss.item(), accuracy=accuracy)

    def final_state_dict(self):
        """The weights to evaluate and publish: the EMA's when enabled."""
        return self.ema.ema_state() if self.ema is not None else self.module.state_dict()
