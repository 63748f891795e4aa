"""The DMaskingNAS search (paper Sec. 4.1) on detectron2's engine.

Every iteration is two steps: a weight step (SGD, cross-entropy) on a batch of the weight
split (NAS.WEIGHT_FRACTION of the training set, 80% in the paper), then, from epoch
NAS.ALPHA_START_EPOCH on, an alpha step (Adam, cross-entropy combined with the effective
cost, see mobile_cv_nas/search/cost_loss.py) on a batch of the other part. The temperature
follows TemperatureSchedule per epoch. Each step samples its own Gumbel gates.
"""

import logging

import torch
import torch.nn.functional as F
from detectron2.solver import build_lr_scheduler
from detectron2.utils import comm

from ..search import TemperatureSchedule
from .hooks import TemperatureHook
from .search_record import SearchRecorder
from .trainer_base import ProjectTrainer, wrap_ddp

logger = logging.getLogger(__name__)


class SearchTrainer(ProjectTrainer):
    def __init__(self, cfg, supernet, data, cost_loss, metric, schedule_cfg):
        """`data`: a SearchData (engine/data.py); `cost_loss`: a CostLoss of `metric`
        ("flops" or "params"); `schedule_cfg`: cfg with SOLVER.MAX_ITER set to the run's
        length (for the LR schedule)."""
        self.supernet = supernet.to(cfg.MODEL.DEVICE)
        self.data = data
        self.cost_loss = cost_loss
        self.metric = metric
        self.device = cfg.MODEL.DEVICE
        self.iters_per_epoch = data.iters_per_epoch
        self.alpha_start_iter = cfg.NAS.ALPHA_START_EPOCH * self.iters_per_epoch
        params = supernet.weight_parameters()
        self.weight_optimizer = torch.optim.SGD(
            params,
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        )
        opt = cfg.NAS.ALPHA_OPTIMIZER
        self.alpha_optimizer = torch.optim.Adam(
            supernet.arch_parameters(),
            lr=opt.BASE_LR,
            betas=tuple(opt.BETAS),
            weight_decay=opt.WEIGHT_DECAY,
        )
        self.scheduler = build_lr_scheduler(schedule_cfg, self.weight_optimizer)
        super().__init__(
            cfg,
            self.supernet,
            schedule_cfg.SOLVER.MAX_ITER,
            dict(
                weight_optimizer=self.weight_optimizer,
                alpha_optimizer=self.alpha_optimizer,
                scheduler=self.scheduler,
            ),
        )
        # single_path: each rank runs its own sampled path, so each step uses other weights
        # (and the alphas also outside the forward, in the cost term), which DDP's reducer
        # cannot follow; the gradients are averaged over the processes by hand instead
        self.average_grads = cfg.NAS.SAMPLING == "single_path" and comm.get_world_size() > 1
        self.model = self.supernet if self.average_grads else wrap_ddp(self.supernet, self.device)
        tau = cfg.NAS.TAU
        self.recorder = SearchRecorder(supernet, cfg.NAS.LOG_PERIOD, metric, cost_loss.target)
        self.register_hooks(
            [
                TemperatureHook(
                    supernet.sampler,
                    TemperatureSchedule(tau.START, tau.DECAY, tau.MIN),
                    self.iters_per_epoch,
                )
            ]
            + self.default_hooks(self.weight_optimizer, self.scheduler, [self.recorder])
            # events.json gets a line at every record (the alpha entropies, tau, costs)
            + [self.writer_hook(cfg.NAS.LOG_PERIOD)]
        )
        self._weight_batches = self._alpha_batches = None

    def _average_grads(self, params):
        """single_path on several processes: every gradient averaged over them (a weight
        another process's path used gets its share; one no path used stays zero)."""
        if not self.average_grads:
            return
        world = comm.get_world_size()
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world)

    def _batches(self):
        if self._weight_batches is None:  # built here: the start iteration is known now
            alpha_start = max(0, self.iter - self.alpha_start_iter)
            self._weight_batches = iter(self.data.weight_loader(self.iter))
            self._alpha_batches = iter(self.data.alpha_loader(alpha_start))
        return self._weight_batches

    def _step(self, batches):
        images, labels = next(batches)
        logits = self.model(images.to(self.device))
        labels = labels.to(self.device)
        ce = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(1) == labels).double().mean()
        return ce, accuracy

    def run_step(self):
        storage = self.storage
        self.model.train()
        ce, accuracy = self._step(self._batches())
        self.check_finite(ce, "weight-step loss")
        self.supernet.zero_grad(set_to_none=True)
        ce.backward()
        self._average_grads(self.supernet.weight_parameters())
        self.weight_optimizer.step()
        with torch.no_grad():
            cost = self.supernet.effective_cost()
        storage.put_scalars(loss_ce=ce.item(), accuracy=accuracy.item())
        storage.put_scalars(
            effective_mflops=float(cost.flops) / 1e6, effective_mparams=float(cost.params) / 1e6
        )
        if cost.latency is not None:
            storage.put_scalars(effective_latency_ms=float(cost.latency) / 1e6)
        if self.iter >= self.alpha_start_iter:
            ce, accuracy = self._step(self._alpha_batches)
            loss, term = self.cost_loss.alpha_loss(ce, self.supernet, self.metric)
            self.check_finite(loss, "alpha-step loss")
            self.supernet.zero_grad(set_to_none=True)
            loss.backward()
            self._average_grads(self.supernet.arch_parameters())
            self.alpha_optimizer.step()
            storage.put_scalars(
                alpha_loss=loss.item(),
                alpha_ce=ce.item(),
                alpha_accuracy=accuracy.item(),
                cost_term=term.item(),
            )
