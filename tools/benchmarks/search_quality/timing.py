"""Cost of a search iteration relative to a training iteration of the space's largest
candidate, per sampling mode, measured in one process.

The trainers are the engine's own: the search task (`NAS.SAMPLING <mode>` where the engine
has the key) and the train task on the space's largest candidate
(`space.largest_arch_def()`: max resolution, widths, expansions, the largest op of every
block) are run in this process from the same config file and overrides, each in a temporary
OUTPUT_DIR, and stopped where they would start training (their `run` is replaced for the
duration): what is timed is the trainer that the task built, with its data, losses and
sampling mode.

  * search iteration: `run_step` at an iteration where alphas train (weight step + alpha
    step); weight step: the same with the alpha step switched off (the search before
    NAS.ALPHA_START_EPOCH);
  * training iteration: `run_step` of the train task's trainer, same batch size.

Steps alternate (every mode's search iteration and weight step, then a training iteration),
so slow phases of a shared machine hit all; ratios are of the medians after warm-up. Hooks
(logging, checkpoints) are not run.

Peak memory of one step of each kind: the bytes the trainer holds (parameters, buffers,
gradients, optimizer state) plus the largest increase of allocated memory during one step
(CUDA: `torch.cuda.max_memory_allocated`; CPU: the allocations torch's profiler records per
operator, summed in time order).
"""

import contextlib
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
from unittest import mock

import torch
from detectron2.utils.events import EventStorage

from mobile_cv_nas.arch import build_model, parse_arch_def
from mobile_cv_nas.engine import new_config
from mobile_cv_nas.engine.classification_trainer import ClassificationTrainer
from mobile_cv_nas.engine.search_trainer import SearchTrainer
from mobile_cv_nas.flops import count_flops

from .training import config_builder, engine_args, run_engine

logger = logging.getLogger(__name__)

#: The targets of the single-path search relative to a training iteration.
TARGETS = {"ratio": 2.5, "weight_step_ratio": 1.25, "memory_ratio": 1.3}


def capture_trainer(cls, cfg, args):
    """The trainer of class `cls` that the engine's task for `cfg` builds, not run."""
    captured = []

    def stop(self):
        captured.append(self)
        return False  # the task then returns None: "did not complete"

    with mock.patch.object(cls, "run", stop):
        run_engine(cfg, args)
    if not captured:
        raise RuntimeError(f"The {cfg.TASK} task built no {cls.__name__}.")
    return captured[0]


def _timed_step(trainer, alpha_step=True):
    """Seconds of one `run_step`; for a SearchTrainer with `alpha_step` False, the weight
    step alone."""
    alpha_start = getattr(trainer, "alpha_start_iter", None)
    if not alpha_step:
        trainer.alpha_start_iter = math.inf
    try:
        start = time.perf_counter()
        trainer.run_step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    finally:
        if alpha_start is not None:
            trainer.alpha_start_iter = alpha_start
    trainer.iter += 1
    trainer.storage.iter = trainer.iter
    return seconds


def _tensor_bytes(tensors):
    seen, total = set(), 0
    for t in tensors:
        if torch.is_tensor(t) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total


def held_bytes(trainer):
    """Bytes of the trainer's parameters, buffers, gradients and optimizer states."""
    module = getattr(trainer, "supernet", None) or trainer.module
    tensors = list(module.parameters()) + list(module.buffers())
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    for value in vars(trainer).values():
        if isinstance(value, torch.optim.Optimizer):
            for state in value.state.values():
                tensors += [v for v in state.values() if torch.is_tensor(v)]
    return _tensor_bytes(tensors)


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ start/stop lines go to file descriptor 2: silence them."""
    fd = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def step_peak_bytes(step, device):
    """Largest increase of allocated bytes during `step()`."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def peak_memory(trainer, alpha_step=True):
    """Held bytes plus the step's peak increase (one `run_step`)."""
    held = held_bytes(trainer)
    step = step_peak_bytes(lambda: _timed_step(trainer, alpha_step), trainer.device)
    return held + step


def _largest_arch(supernet):
    """The arch def of the largest candidate of the supernet's space (with the data's
    channels and classes)."""
    space = supernet.space
    arch = dict(space.largest_arch_def(space.in_channels), num_classes=space.num_classes)
    return parse_arch_def(arch)


def _as_train(search_cfg, arch_path, output_dir):
    """The search's config as a train run of `arch_path`: the same data, batch and solver;
    the NAS keys (which a train run refuses when set) back at their defaults."""
    cfg = search_cfg.clone()
    cfg.defrost()
    cfg.TASK = "train"
    cfg.MODEL.MOBILE_CV_NAS.ARCH = arch_path
    cfg.OUTPUT_DIR = output_dir
    cfg.NAS = new_config().NAS
    cfg.freeze()
    return cfg


def time_modes(config_file, opts, mode_opts, iters=20, warmup=3):
    """Medians of a search iteration and of its weight step per sampling mode, and of a
    training iteration of the space's largest candidate, alternated in this process; peak
    memory of each; ratios to the training iteration. `config_file` + `opts`: the search's
    config; `mode_opts`: {mode: its overrides}."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"Need iters >= 1 and warmup >= 0, got {iters} and {warmup}.")
    scratch = tempfile.mkdtemp(prefix="search_quality_timing_")
    build_search = config_builder("search")
    # long enough a schedule for the steps timed (the LR schedule does not change the cost)
    long = ["SOLVER.EPOCHS", 10 * (iters + warmup + 2)]
    try:
        searches = {}
        for mode, extra in mode_opts.items():
            o = [*opts, *long, *extra, "OUTPUT_DIR", os.path.join(scratch, f"search_{mode}")]
            cfg = build_search(config_file, o)
            trainer = capture_trainer(SearchTrainer, cfg, engine_args(config_file, o))
            trainer.iter = trainer.start_iter = trainer.alpha_start_iter
            searches[mode] = trainer
        largest = _largest_arch(trainer.supernet)
        largest_path = os.path.join(scratch, "largest.yaml")
        with open(largest_path, "w") as f:
            f.write(largest.to_yaml())
        o = [*opts, *long, "OUTPUT_DIR", os.path.join(scratch, "train")]
        train_cfg = _as_train(cfg, largest_path, os.path.join(scratch, "train"))
        plain = capture_trainer(ClassificationTrainer, train_cfg, engine_args(config_file, o))
        plain.iter = plain.start_iter = 0
        times = {m: {"search": [], "weight": []} for m in searches}
        times["train"] = []
        with contextlib.ExitStack() as stack:
            for trainer in [*searches.values(), plain]:
                trainer.storage = stack.enter_context(EventStorage(trainer.iter))
            for i in range(iters + warmup):
                step = {m: (_timed_step(t), _timed_step(t, False)) for m, t in searches.items()}
                train_s = _timed_step(plain)
                if i >= warmup:
                    for m, (s, w) in step.items():
                        times[m]["search"].append(s)
                        times[m]["weight"].append(w)
                    times["train"].append(train_s)
            train_bytes = peak_memory(plain)
            memory = {m: peak_memory(t) for m, t in searches.items()}
        cost = count_flops(build_model(largest), largest.input_size)
        batch = train_cfg.SOLVER.IMS_PER_BATCH
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    train_s = statistics.median(times["train"])
    modes = {}
    for m in searches:
        search_s = statistics.median(times[m]["search"])
        weight_s = statistics.median(times[m]["weight"])
        modes[m] = {
            "search_step_s": search_s,
            "weight_step_s": weight_s,
            "ratio": search_s / train_s,
            "weight_step_ratio": weight_s / train_s,
            "peak_bytes": memory[m],
            "memory_ratio": memory[m] / train_bytes,
            "step_times_s": times[m],
        }
        logger.info(
            "%s: search iteration %.1f ms (%.2fx), weight step %.1f ms (%.2fx), peak memory "
            "%.1f MB (%.2fx) vs a training iteration of the largest candidate %.1f ms, %.1f MB.",
            m,
            1e3 * search_s,
            modes[m]["ratio"],
            1e3 * weight_s,
            modes[m]["weight_step_ratio"],
            memory[m] / 1e6,
            modes[m]["memory_ratio"],
            1e3 * train_s,
            train_bytes / 1e6,
        )
    return {
        "modes": modes,
        "train_step_s": train_s,
        "train_peak_bytes": train_bytes,
        "train_step_times_s": times["train"],
        "targets": {"single_path": dict(TARGETS)},
        "iters": iters,
        "warmup": warmup,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "device": str(train_cfg.MODEL.DEVICE),
        "largest_arch": {
            "flops_m": cost.mflops,
            "params_m": cost.mparams,
            "input_size": largest.input_size,
        },
    }
