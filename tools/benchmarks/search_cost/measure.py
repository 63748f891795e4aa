"""Measuring one configuration: saved bytes of a training step, peak memory, step time.

A training step is forward + cross-entropy + backward + an SGD (momentum) step on the weights
(soft Gumbel gates, train mode). Per configuration `measure_config` records:

  * saved bytes: what autograd saves for backward in one step (`SavedTensorMeter`, exact,
    activations only);
  * peak RSS (CPU) or peak allocated memory (CUDA) during the steps, raw and minus the memory
    after the model, optimizer and batch are built;
  * step time: median over the timed steps after warm-up (CUDA: synchronised). With `paired`,
    the steps alternate with steps of the plain network in the same process and the time
    ratio is the paired one (robust to machine load).
"""

import contextlib
import gc
import logging
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from mobile_cv_nas.search import Supernet

from .network import DEFAULT_LAYOUT, NUM_CLASSES, build_variant, plain_model
from .saved_tensors import SavedTensorMeter

logger = logging.getLogger(__name__)


def _loss(model, x, target):
    return F.cross_entropy(model(x), target)


def train_step(model, optimizer, x, target):
    optimizer.zero_grad(set_to_none=True)
    loss = _loss(model, x, target)
    loss.backward()
    optimizer.step()
    return loss


def weight_optimizer(model, lr=0.01):
    """SGD with momentum on the weights only (not a supernet's architecture logits)."""
    params = model.weight_parameters() if isinstance(model, Supernet) else model.parameters()
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def saved_bytes_of_step(model, x, target, by_module=False):
    """(saved activation bytes, excluded parameter bytes[, by module]) of one training step."""
    meter = SavedTensorMeter(exclude=model.parameters())
    attribution = meter.attribute_to_modules(model) if by_module else contextlib.nullcontext()
    with attribution, meter:
        loss = _loss(model, x, target)
    loss.backward()
    model.zero_grad(set_to_none=True)
    if by_module:
        return meter.bytes, meter.excluded_bytes, meter.by_module
    return meter.bytes, meter.excluded_bytes


# ------------------------------------------------------------------------ process memory


def _read_status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes():
    kb = _read_status_kb("VmRSS")
    return None if kb is None else kb * 1024


def reset_peak_rss():
    """Reset the kernel's peak-RSS counter (VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    kb = _read_status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb if sys.platform == "darwin" else kb * 1024
    return kb * 1024


def peak_minus_build(m):
    """Peak memory of a measurement minus that after build: CUDA allocated, else RSS."""
    return m.get("cuda_peak_minus_build_bytes", m.get("peak_rss_minus_build_bytes"))


# ------------------------------------------------------------------- one configuration


def measure_config(config):
    """Build one configuration and measure it; returns a dict of metrics.

    config keys: variant, k, resolutions, batch, size, device, warmup, repeats,
    time_budget (seconds of timed steps; fewer repeats for slow configs, >= min_repeats),
    min_repeats, threads, seed, layout, num_classes, paired.
    """
    torch.manual_seed(config.get("seed", 0))
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    device = torch.device(config.get("device", "cpu"))
    cuda = device.type == "cuda"
    layout = tuple(tuple(r) for r in config.get("layout", DEFAULT_LAYOUT))
    num_classes = config.get("num_classes", NUM_CLASSES)
    resolutions = tuple(config.get("resolutions", (config["size"],)))
    model = build_variant(config["variant"], config.get("k", 1), resolutions, layout, num_classes)
    model.to(device).train()
    optimizer = weight_optimizer(model)
    size = max(resolutions)
    x = torch.randn(config["batch"], 3, size, size, device=device)
    target = torch.randint(0, num_classes, (config["batch"],), device=device)
    n_params = sum(p.numel() for p in model.parameters())

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    gc.collect()
    rss_build = rss_bytes()
    peak_reset = reset_peak_rss()
    if not peak_reset and not cuda:
        logger.debug("Cannot reset the peak-RSS counter here; the peak includes earlier use.")
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        cuda_build = torch.cuda.memory_allocated(device)

    faults = {}  # model id -> [minor page faults, system CPU seconds] over its timed steps

    def timed_step(m, opt):
        sync()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        train_step(m, opt, x, target)
        sync()
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        f = faults.setdefault(id(m), [0, 0.0])
        f[0] += r1.ru_minflt - r0.ru_minflt
        f[1] += r1.ru_stime - r0.ru_stime
        return dt

    t_start = time.perf_counter()
    warmup = max(1, int(config.get("warmup", 1)))
    warmup_times = [timed_step(model, optimizer) for _ in range(warmup)]
    faults.clear()
    saved, excluded = saved_bytes_of_step(model, x, target)
    paired = bool(config.get("paired")) and config["variant"] != "plain"

    def n_repeats(step_s):
        repeats = int(config.get("repeats", 5))
        budget = config.get("time_budget")
        if budget:
            floor = int(config.get("min_repeats", 3))
            repeats = min(repeats, max(floor, int(budget / max(step_s, 1e-9))))
        return repeats

    timed = []
    if not paired:
        timed = [timed_step(model, optimizer) for _ in range(n_repeats(warmup_times[-1]))]
    sync()
    result = {
        "variant": config["variant"],
        "k": config.get("k", 1),
        "resolutions": list(resolutions),
        "params": n_params,
        "saved_bytes": saved,
        "saved_param_bytes_excluded": excluded,
        "rss_after_build_bytes": rss_build,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_rss_reset": peak_reset,
    }
    if result["peak_rss_bytes"] is not None and rss_build is not None:
        result["peak_rss_minus_build_bytes"] = result["peak_rss_bytes"] - rss_build
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
        result["cuda_peak_allocated_bytes"] = peak
        result["cuda_peak_minus_build_bytes"] = peak - cuda_build

    if paired:  # after the memory readings: alternate steps with the plain network
        plain = plain_model(layout, num_classes, size).to(device).train()
        plain_opt = weight_optimizer(plain)
        plain_warm = [timed_step(plain, plain_opt) for _ in range(warmup)]
        faults.pop(id(plain), None)
        plain_timed = []
        for i in range(n_repeats(warmup_times[-1] + plain_warm[-1])):
            if i % 2:  # alternate which goes first
                plain_timed.append(timed_step(plain, plain_opt))
                timed.append(timed_step(model, optimizer))
            else:
                timed.append(timed_step(model, optimizer))
                plain_timed.append(timed_step(plain, plain_opt))
        result["paired_plain_minor_faults_per_step"] = faults[id(plain)][0] / len(plain_timed)
        result["paired_plain_step_time_s"] = statistics.median(plain_timed)
        result["paired_plain_step_times_s"] = plain_timed
        result["paired_time_ratio"] = statistics.median(timed) / statistics.median(plain_timed)
    result.update(
        step_time_s=statistics.median(timed),
        step_times_s=timed,
        warmup_times_s=warmup_times,
        repeats=len(timed),
        minor_faults_per_step=faults[id(model)][0] / len(timed),
        sys_time_per_step_s=faults[id(model)][1] / len(timed),
        glibc_tunables=os.environ.get("GLIBC_TUNABLES"),
        wall_s=time.perf_counter() - t_start,
    )
    return result
