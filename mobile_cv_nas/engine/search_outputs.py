"""What a finished search leaves in OUTPUT_DIR (main process), besides its checkpoints:

- arch.yaml: the derived architecture (argmax of every decision), an arch def that
  `load_arch_def`, `build_model`, the `train` task and `tools/publish_model.py` take;
- arch.png: the architecture in the paper's Fig. 6 style;
- search_curves.png: temperature, effective cost and the alphas' probabilities over time;
- metrics.json: costs, the final decisions and the accuracy of the derived architecture with
  the supernet's weights.
"""

import dataclasses
import logging
import os

import torch
from detectron2.utils import comm
from fvcore.nn.precise_bn import update_bn_stats

from ..arch import build_model
from ..flops import count_flops
from ..io import atomic_write, write_json
from ..search import derive_arch, derive_model
from ..search.budget import budget_argmax, choices_applied
from ..search.cost_bounds import metric_unit
from ..search.cost_loss import search_landing
from ..search.latency import predict_latency
from ..visualization import plot_architecture, plot_search_curves
from .evaluation import evaluate_classifier
from .search_record import probabilities
from .trainer_base import iteration_seconds

logger = logging.getLogger(__name__)


RECALIBRATION_BATCHES = 20


def recalibrate_norms(model, batches, count, device):
    """Re-estimate the batch-norm statistics of `model` on `count` training batches (fvcore's
    precise-BN `update_bn_stats`: the true average of the per-batch statistics).

    The supernet's statistics were gathered under soft gates (mixtures of every op and
    width); the derived network's activations differ, so its inherited statistics are
    re-estimated before it is evaluated (the usual one-shot NAS practice)."""
    model.train()  # update_bn_stats re-estimates the norms in training mode
    with torch.no_grad():
        update_bn_stats(model, (images.to(device) for images, _ in batches), count)
    model.eval()
    return model


def derived_choices(trainer, metric, target):
    """({decision: option index} of the derived architecture, its cost or None,
    [BudgetChange]). NAS.DERIVE budget: the most probable architecture within
    NAS.COST.TOLERANCE of the target; argmax: every decision's argmax."""
    net = trainer.supernet
    if trainer.cfg.NAS.DERIVE == "argmax":
        return {n: int(d.alpha.argmax()) for n, d in net.decisions.items()}, None, []
    return budget_argmax(net, metric, target, trainer.cfg.NAS.COST.TOLERANCE)


def inherited_accuracy(trainer, data, net):
    """Validation accuracy of the derived architecture with the supernet's weights (norm
    statistics re-estimated): what the search's argmax is worth before any retraining."""
    model = derive_model(net, inherit=True).to(trainer.device)
    recalibrate_norms(model, iter(data.weight_loader(0)), RECALIBRATION_BATCHES, trainer.device)
    return evaluate_classifier(model, data.eval_loader(), trainer.device)


def search_iteration_time(trainer):
    """The launcher's per-iteration timer, split: weight-only iterations (before
    NAS.ALPHA_START_EPOCH) and search iterations (weight + alpha step), medians in seconds."""
    timed = iteration_seconds(trainer, split_at=trainer.alpha_start_iter)
    if not timed:
        return {}
    return {
        "search_iteration_s": timed["from_median_s"],
        "weight_step_s": timed["before_median_s"],
        "timed_iterations": timed["count"],
    }


def write_search_outputs(trainer, data, metric, target, bounds, seconds):
    net = trainer.supernet
    choices, derived_cost, changes = derived_choices(trainer, metric, target)
    with choices_applied(net, choices):
        accuracy = inherited_accuracy(trainer, data, net)
        arch = derive_arch(net, name=f"{net.space.name}_searched" if net.space.name else None)
    report = count_flops(build_model(arch), arch.input_size)
    searched = {"flops_m": report.mflops, "params_m": report.mparams}
    if net.latency is not None:
        searched["latency_ms"] = predict_latency(arch, net.latency.table)
    searched["input_size"] = arch.input_size
    tolerance = trainer.cfg.NAS.COST.TOLERANCE
    landing, warnings = search_landing(net, metric, target, bounds, tolerance, derived_cost)
    landing["budget_changes"] = [dataclasses.asdict(c) for c in changes]
    metrics = {
        "task": "search",
        "space": net.space.name,
        "dataset": trainer.cfg.DATA.TRAIN,
        "classes": data.datasets.classes,
        "iterations": trainer.max_iter,
        "iterations_per_epoch": trainer.iters_per_epoch,
        "epochs": trainer.max_iter / trainer.iters_per_epoch,
        "final_tau": net.sampler.tau,
        "cost_metric": metric,
        "cost_target_m": target / 1e6,
        "space_cost_range_m": [bounds[0] / 1e6, bounds[1] / 1e6],
        # target, argmax cost, relative miss, expected cost (NAS.COST.TOLERANCE)
        "landing": landing,
        "warnings": warnings,
        "searched": searched,
        # the derived arch with the supernet's weights, norms re-estimated; not retrained
        "inherited_val_top1": accuracy["top1"],
        "inherited_val_count": accuracy["count"],
        "decisions": {
            name: {
                "options": list(d.options),
                "probs": probabilities(d),
                "chosen": d.options[choices[name]],
            }
            for name, d in net.decisions.items()
        },
        "seconds": seconds,
        "iteration_time": search_iteration_time(trainer),
    }
    if net.latency is not None:
        table = net.latency.table
        metrics["latency_table"] = {
            "path": table.path,
            "measured_on": table.describe(),
            "space": table.meta.get("space", {}).get("name"),
            "entries": len(table.entries),
            "interpolation_check": table.meta.get("interpolation_check"),
            "calibration": {"offset_ms": table.offset_ms, "scale": table.scale}
            if table.meta.get("calibration")
            else None,
            "warnings": list(net.latency_warnings),
        }
    if comm.is_main_process():
        if changes:
            logger.info(
                f"The argmax architecture costs {landing['argmax_cost_m']:.4g} "
                f"{metric_unit(metric)} "
                f"({landing['argmax_relative_miss']:+.1%} off the target); the derived one "
                f"(NAS.DERIVE budget) changes {len(changes)} decision(s) to land at "
                f"{landing['relative_miss']:+.1%}: " + "; ".join(map(str, changes))
            )
        for warning in warnings:
            logger.warning(warning)
        timed = metrics["iteration_time"]
        if timed.get("search_iteration_s"):
            weight = timed["weight_step_s"]
            logger.info(
                f"Iteration time ({trainer.cfg.NAS.SAMPLING}, median): search iteration "
                f"(weight + alpha step) {timed['search_iteration_s']:.4f} s"
                + (f", weight step alone {weight:.4f} s" if weight else "")
                + "; compare a train run's iteration_time (metrics.json) at the same batch."
            )
        out = trainer.cfg.OUTPUT_DIR
        atomic_write(os.path.join(out, "arch.yaml"), lambda f: f.write(arch.to_yaml()), "w")
        plot_architecture(arch, os.path.join(out, "arch.png"), flops_m=report.mflops)
        plot_search_curves(
            trainer.recorder.records,
            os.path.join(out, "search_curves.png"),
            title=f"DMaskingNAS search over {net.space.name}",
        )
        write_json(os.path.join(out, "metrics.json"), metrics)
        latency = f"{searched['latency_ms']:.4g} ms predicted, " if "latency_ms" in searched else ""
        logger.info(
            f"Searched architecture: {report.mflops:.3f} MFLOPs, {report.mparams:.4f} M params, "
            f"{latency}input {arch.input_size}; with the supernet's weights (not retrained) it "
            f"has val top-1 {accuracy['top1']:.2f}%. Wrote arch.yaml, arch.png, search_curves.png, "
            f"metrics.json to {out}."
        )
    comm.synchronize()
    return metrics
