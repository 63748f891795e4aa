"""The search's history for its curves: every NAS.LOG_PERIOD iterations, the temperature,
the effective cost, the argmax architecture's cost and every decision's probabilities.

The records are hook state, so they are in every checkpoint and a resumed search's curves
continue the interrupted ones."""

import math

import torch
import torch.nn.functional as F
from detectron2.engine import HookBase

from ..search.cost_bounds import argmax_cost


def probabilities(decision):
    return [round(p, 6) for p in F.softmax(decision.alpha.detach().double(), -1).tolist()]


def entropy(probs):
    return float(-sum(p * math.log(p) for p in probs if p > 0))


def option_label(value):
    return (
        value
        if isinstance(value, str)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


class SearchRecorder(HookBase):
    def __init__(self, supernet, period, metric, target):
        self.supernet, self.period = supernet, max(1, int(period))
        self.metric, self.target = metric, float(target)
        self.records = []

    @torch.no_grad()
    def record(self):
        net = self.supernet
        trainer = self.trainer
        record = {
            "iteration": trainer.iter + 1,
            "epoch": (trainer.iter + 1) / trainer.iters_per_epoch,
            "tau": net.sampler.tau,
            "cost": float(net.effective_cost().of(self.metric)),
            "argmax_cost": float(argmax_cost(net).of(self.metric)),
            "cost_target": self.target,
            "cost_metric": self.metric,
            "probs": {name: probabilities(d) for name, d in net.decisions.items()},
        }
        if not self.records:
            record["option_labels"] = {
                name: [option_label(o) for o in d.options] for name, d in net.decisions.items()
            }
        self.records.append(record)
        entropies = {name: entropy(p) for name, p in record["probs"].items()}
        storage = trainer.storage
        storage.put_scalars(
            mean_alpha_entropy=sum(entropies.values()) / max(1, len(entropies)),
            argmax_cost_m=record["argmax_cost"] / 1e6,
            smoothing_hint=False,
        )
        storage.put_scalars(
            **{f"alpha_entropy/{k}": v for k, v in entropies.items()}, smoothing_hint=False
        )

    def after_step(self):
        done = self.trainer.iter + 1
        if done % self.period == 0 or done == self.trainer.max_iter:
            self.record()

    def state_dict(self):
        return {"records": self.records}

    def load_state_dict(self, state):
        self.records = list(state["records"])
