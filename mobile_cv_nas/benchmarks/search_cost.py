"""Benchmark of the DMaskingNAS cost claim: searching k channel options per conv by masking
costs about what training the widest network costs, whatever k (FBNetV2 Sec. 3.1, 4.1).

Three variants of one inverted-residual network, same depth and strides, are trained for a
step (soft Gumbel gates, train mode, forward + backward + SGD step on the weights):

  * ``masked``: the `Supernet` (MaskedChannel: one conv at max width, output masked, Eq. 3);
  * ``plain``:  the max-width network without masks (`derive_arch` with every decision at its
    max, built by `mobile_cv_nas.arch.build_model`); the same for every k;
  * ``dnas``:   conventional DNAS (`ConventionalChannel`: one conv (+BN) per option width, each
    output zero-padded to max width and summed with its Gumbel weight, Eq. 1) in place of
    every MaskedChannel. With its per-option convs set to slices of the shared weights it
    computes exactly the masked supernet (Eq. 1 == Eq. 3 with shared weights).

Metrics per configuration, each in a fresh process (`isolation="subprocess"`):
  * saved bytes: the bytes autograd saves for backward in one training step, exact, from
    `torch.autograd.graph.saved_tensors_hooks`; each storage is counted once (dedupe by
    `untyped_storage().data_ptr()`), and storages of parameters (nn.Parameter, and views of
    them) are excluded: activations only (the input batch is included);
  * peak RSS (CPU) or peak allocated memory (CUDA) during training steps, raw and minus the
    memory after the model, optimizer and batch are built;
  * step time: median over the timed steps after warm-up (CUDA: synchronised). The masked
    supernet's steps alternate with steps of the plain network in the same process, and its
    time ratio is the paired one (robust to machine load), unless `--no-pair`.

Worker processes run with glibc malloc told to keep freed memory (`--malloc steady`, see
`STEADY_MALLOC_TUNABLES`); with glibc's defaults, per-step page-fault churn adds system time
that depends on allocation layout rather than on the method.

Resolution search: the supernet at fixed (max) channels with only the resolution decision,
against the plain network at the max resolution; the target bound on its time ratio is
sum_i (r_i / r_max)^2 * 1.10, shown next to the FLOP ratio sum_i FLOPs(r_i) / FLOPs(r_max)
(`mobile_cv_nas.flops.count_flops` of the plain model).

`tools/benchmark_search.py` is the command line; `main(argv)` here is the same.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arch import build_model
from ..search.derive import derive_arch
from ..search.gumbel import GumbelSampler
from ..search.masked_channel import MaskedChannel
from ..search.supernet import Supernet

DEFAULT_KS = (1, 2, 4, 8, 16, 32)
DEFAULT_RESOLUTION_SETS = ((64,), (64, 56), (64, 56, 48), (64, 56, 48, 40))
DEFAULT_OUTPUT_DIR = os.path.join("output", "benchmark_search")
VARIANTS = ("masked", "plain", "dnas")

#: The benchmark network: (op, max output channels, stride, repeat, expansion). Every searched
#: conv gets k options ending at the same max: block outputs up to these widths, expansion (mid)
#: widths up to expansion x the block's widest input (None: a plain conv, no expansion).
DEFAULT_LAYOUT = (
    ("conv_k3_hs", 32, 2, 1, None),  # stem
    ("ir_k3_hs", 32, 2, 1, 2),
    ("ir_k5_se_hs", 64, 1, 2, 4),  # the repeat copy keeps a residual add
    ("ir_k3_hs", 128, 2, 1, 4),
    ("ir_pool_hs", 256, 1, 1, 4),  # expand, global pool, project; the classifier follows
)
NUM_CLASSES = 100

#: glibc malloc settings for the worker processes (`--malloc steady`): keep freed memory in the
#: heap instead of returning it to the OS (trim) or mmap-ing big blocks afresh, so that a step
#: does not re-fault (and the kernel re-zero) tens of MB of pages. With glibc's defaults that
#: churn depends on the allocation pattern, not on the method. Measured on the default CPU run:
#: the plain network alone 24-26k minor faults and 234-244 ms per step (steady: ~50 faults,
#: 182 ms); paired masked/plain time ratio 0.97-1.06 for *identical* networks (k=1) and
#: 1.07-1.15 at k=32 (steady: 1.00 and 1.02).
STEADY_MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184"

#: Targets (ratios; `ratio <= bound` passes).
TARGET_MASKED_K_MEMORY = 1.02  # saved bytes, masked k=max / k=min
TARGET_MASKED_PLAIN_MEMORY = 1.05  # saved bytes, masked k=max / plain
TARGET_MASKED_PLAIN_TIME = 1.10  # step time, masked k=max / plain
TARGET_RESOLUTION_SLACK = 1.10  # time ratio <= sum (r_i / r_max)^2 * this

REFERENCE_NOTE = (
    "Reference points at k=32 (memory, time vs the plain max-width network): activation-mask "
    "implementation 1.22x memory, 1.18x time; NNI weight masking 1.12x, 1.26x; conventional "
    "DNAS 11.6x memory (paper)."
)
SAVED_NOTE = (
    "saved = bytes autograd saves for backward in one training step (exact, "
    "saved_tensors_hooks, each storage once); activations only: nn.Parameters (and views of "
    "them) excluded, the input batch included."
)


# --------------------------------------------------------------------------- search space


def option_range(max_value, k):
    """k evenly spaced options ending at `max_value`: [max - (k-1)*s, ..., max], s = max // k."""
    if k < 1:
        raise ValueError(f"Need at least one option, got k={k}.")
    if k == 1:
        return [max_value]
    step = max_value // k
    if step < 1:
        raise ValueError(f"Cannot fit {k} options up to {max_value} channels.")
    return list(range(max_value - (k - 1) * step, max_value + 1, step))


def _expansion_spec(cin, expansion, k):
    """Expansion options giving k mid widths ending at expansion * cin (exact for cin = 2^n)."""
    if k == 1:
        return expansion
    top = round(expansion * cin)
    mids = option_range(top, k)
    step = mids[1] - mids[0]
    return [mids[0] / cin, top / cin, step / cin]


def benchmark_space(k=1, resolutions=(64,), layout=DEFAULT_LAYOUT, num_classes=NUM_CLASSES):
    """Search-space mapping (schema: `mobile_cv_nas.search.space`) of the benchmark network
    with k options for every block output width and every expansion (mid) width."""
    stages = []
    cin = 3
    for op, width, stride, repeat, expansion in layout:
        channels = width if k == 1 else [option_range(width, k)[0], width, width // k]
        row = {"op": op, "channels": channels, "stride": stride}
        if repeat != 1:
            row["repeat"] = repeat
        if expansion is not None:
            row["expansion"] = _expansion_spec(cin, expansion, k)
        stages.append([row])
        cin = width
    return {
        "name": f"benchmark_k{k}",
        "resolutions": sorted(resolutions, reverse=True),
        "width_divisor": 1,  # keep every option (no rounding of mid / SE widths)
        "num_classes": num_classes,
        "stages": stages,
    }


def build_supernet(k=1, resolutions=(64,), layout=DEFAULT_LAYOUT, num_classes=NUM_CLASSES,
                   mode="soft", seed=0):
    """The masked supernet; checks every channel decision got exactly k options."""
    space = benchmark_space(k, resolutions, layout, num_classes)
    net = Supernet(space, sampler=GumbelSampler(mode=mode, seed=seed))
    for block in net.backbone.stages.children():
        searched = [block.out_choice] + ([block.mid_choice] if block.spec.expansions else [])
        for decision in searched:
            if len(decision.options) != k:
                raise ValueError(
                    f"Decision {decision.name} has {len(decision.options)} options "
                    f"{list(decision.options)}, expected {k}: pick widths divisible by k."
                )
    return net


def set_max_decisions(supernet):
    """Make every decision's argmax its largest option (max widths, max resolution)."""
    with torch.no_grad():
        for d in list(supernet.decisions.values()) + list(supernet.fixed_decisions.values()):
            best = max(range(len(d.options)), key=lambda i: d.options[i])
            d.alpha.zero_()
            d.alpha[best] = 1.0
    return supernet


def plain_model(layout=DEFAULT_LAYOUT, num_classes=NUM_CLASSES, resolution=64):
    """The max-width network, no masks: `build_model(derive_arch(...))` at every max."""
    net = set_max_decisions(build_supernet(1, (resolution,), layout, num_classes))
    return build_model(derive_arch(net))


# ------------------------------------------------------------------- conventional DNAS (Eq. 1)


class ConventionalChannel(nn.Module):
    """Conventional DNAS over the widths of one MaskedChannel (Eq. 1).

    One conv (+BN) per option width on the same input (a depthwise conv sees the first c_i
    input channels); each output zero-padded to max width, weighted by its Gumbel gate and
    summed; then the layer's activation. Weights start as slices of the masked layer's
    shared weights, so that at creation it computes exactly what the MaskedChannel does.
    """

    def __init__(self, masked):
        super().__init__()
        conv = masked.conv
        self.__dict__["choice"] = masked.choice
        self.widths = tuple(masked.widths)
        self.max_width = conv.out_channels
        self.depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if conv.groups != 1 and not self.depthwise:
            raise NotImplementedError("ConventionalChannel handles dense and depthwise convs only.")
        bn = masked._modules.get("bn")
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList() if bn is not None else None
        with torch.no_grad():
            for w in self.widths:
                c = nn.Conv2d(
                    w if self.depthwise else conv.in_channels,
                    w,
                    conv.kernel_size,
                    stride=conv.stride,
                    padding=conv.padding,
                    groups=w if self.depthwise else 1,
                    bias=conv.bias is not None,
                )
                c.weight.copy_(conv.weight[:w])
                if conv.bias is not None:
                    c.bias.copy_(conv.bias[:w])
                self.convs.append(c)
                if bn is not None:
                    b = nn.BatchNorm2d(w, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                                       track_running_stats=bn.track_running_stats)
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        if getattr(bn, name) is not None:
                            getattr(b, name).copy_(getattr(bn, name)[:w])
                    self.bns.append(b)
        relu = masked._modules.get("relu")
        if relu is not None:
            self.relu = relu

    def forward(self, x):
        gates = self.choice.current_gates()
        out = None
        for i, w in enumerate(self.widths):
            y = self.convs[i](x[:, :w] if self.depthwise else x)
            if self.bns is not None:
                y = self.bns[i](y)
            if w < self.max_width:
                y = F.pad(y, (0, 0, 0, 0, 0, self.max_width - w))
            y = y * gates[i]  # Eq. 1: g_i * zero-padded output of option i
            out = y if out is None else out + y
        if "relu" in self._modules:
            out = self.relu(out)
        return out

    def extra_repr(self):
        return f"choice={self.choice.name!r}, widths={list(self.widths)}"


def to_conventional(supernet):
    """Replace every MaskedChannel of `supernet` (in place) by a ConventionalChannel."""
    targets = [
        (parent, name, child)
        for parent in supernet.modules()
        for name, child in parent.named_children()
        if isinstance(child, MaskedChannel)
    ]
    for parent, name, child in targets:
        setattr(parent, name, ConventionalChannel(child))
    return supernet


def build_variant(variant, k=1, resolutions=(64,), layout=DEFAULT_LAYOUT,
                  num_classes=NUM_CLASSES):
    if variant == "masked":
        return build_supernet(k, resolutions, layout, num_classes)
    if variant == "dnas":
        return to_conventional(build_supernet(k, resolutions, layout, num_classes))
    if variant == "plain":
        return plain_model(layout, num_classes, max(resolutions))
    raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")


# ---------------------------------------------------------------------- saved-tensor bytes


def _storage_key(t):
    s = t.untyped_storage()
    return (t.device.type, t.device.index, s.data_ptr()), s.nbytes()


class SavedTensorMeter:
    """Context manager recording what autograd saves for backward, each storage once.

    Tensors that are `nn.Parameter`s, or share storage with one of `exclude` (e.g. a
    model's parameters), are counted apart as `excluded_bytes`.
        with SavedTensorMeter(model.parameters()) as m:
            loss = model(x).sum()
        m.bytes  # activations saved for loss.backward()
    """

    def __init__(self, exclude=()):
        self.excluded_keys = {_storage_key(p)[0] for p in exclude}
        self.storages = {}  # key -> nbytes of counted storages
        self.excluded = {}
        self.num_saved = 0
        self.module_stack = []
        self.by_module = {}
        self._hooks = None

    def _pack(self, t):
        self.num_saved += 1
        key, nbytes = _storage_key(t)
        if isinstance(t, nn.Parameter) or key in self.excluded_keys:
            self.excluded[key] = nbytes
        elif key not in self.storages:
            self.storages[key] = nbytes
            where = self.module_stack[-1] if self.module_stack else ""
            self.by_module[where] = self.by_module.get(where, 0) + nbytes
        return t

    @staticmethod
    def _unpack(t):
        return t

    @property
    def bytes(self):
        return sum(self.storages.values())

    @property
    def excluded_bytes(self):
        return sum(self.excluded.values())

    @contextlib.contextmanager
    def attribute_to_modules(self, model):
        """Within this context, also attribute saved bytes to the innermost running module."""
        stack = self.module_stack

        def enter(name):
            def hook(module, args):
                stack.append(name)
            return hook

        def leave(module, args, output):
            stack.pop()

        handles = []
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self._hooks = None
        return False


# ----------------------------------------------------------------------------- measurement


def _loss(model, x, target):
    return F.cross_entropy(model(x), target)


def train_step(model, optimizer, x, target):
    optimizer.zero_grad(set_to_none=True)
    loss = _loss(model, x, target)
    loss.backward()
    optimizer.step()
    return loss


def weight_optimizer(model, lr=0.01):
    """SGD with momentum on the weights only (not the architecture logits)."""
    params = model.weight_parameters() if isinstance(model, Supernet) else list(model.parameters())
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


def _read_status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_bytes():
    kb = _read_status_kb("VmRSS")
    return None if kb is None else kb * 1024


def _reset_peak_rss():
    """Reset the kernel's peak-RSS counter (VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes():
    kb = _read_status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb if sys.platform == "darwin" else kb * 1024
    return kb * 1024


def measure_config(config):
    """Build one configuration and measure it; returns a dict of metrics.

    config keys: variant, k, resolutions, batch, size, device, warmup, repeats,
    time_budget (seconds of timed steps; fewer repeats for slow configs, >= min_repeats),
    min_repeats, threads, seed, layout, num_classes.
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
    rss_build = _rss_bytes()
    peak_reset = _reset_peak_rss()
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
        "peak_rss_bytes": _peak_rss_bytes(),
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


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measure_in_subprocess(config, timeout=None):
    """`measure_config` in a fresh interpreter (clean peak RSS); config/result as JSON."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH")) if p)
    threads = config.get("threads")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if config.get("malloc", "steady") == "steady" and sys.platform.startswith("linux"):
        env["GLIBC_TUNABLES"] = ":".join(
            t for t in (env.get("GLIBC_TUNABLES"), STEADY_MALLOC_TUNABLES) if t)
    code = (
        "import warnings; warnings.filterwarnings('ignore', category=FutureWarning); "
        "from mobile_cv_nas.benchmarks.search_cost import _worker; _worker()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(config), capture_output=True, text=True,
        env=env, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"Benchmark worker for {config} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker():
    config = json.loads(sys.stdin.read())
    result = measure_config(config)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------- the run


def _flop_ratio(layout, num_classes, resolutions):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation chatter of fvcore's tracing
        from ..flops import count_flops

        model = plain_model(layout, num_classes, max(resolutions))
        flops = {r: count_flops(model, r).flops for r in resolutions}
    return sum(flops.values()) / flops[max(resolutions)], flops


def _peak(m):
    """Peak memory of a measurement minus that after build: CUDA allocated, else RSS."""
    return m.get("cuda_peak_minus_build_bytes", m.get("peak_rss_minus_build_bytes"))


def _fmt_bytes(n):
    if n is None:
        return "n/a"
    return f"{n / 2 ** 20:.1f}"


class _Progress:
    def __init__(self, total, stream=sys.stderr, quiet=False):
        self.total, self.done, self.stream, self.quiet = total, 0, stream, quiet
        self.start = time.perf_counter()
        self.weights_done = 0.0
        self.weights_total = 0.0

    def begin(self, label, weight, remaining_weight):
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        if self.weights_done > 0:
            eta = elapsed / self.weights_done * remaining_weight
            eta_s = f"ETA {eta:.0f}s"
        else:
            eta_s = "ETA ?"
        print(f"[{self.done + 1}/{self.total}] {label} (elapsed {elapsed:.0f}s, {eta_s})",
              file=self.stream, flush=True)

    def end(self, weight):
        self.done += 1
        self.weights_done += weight


def _config_weight(variant, k, n_res):
    """Rough relative wall time of a configuration (fitted on the default CPU run), for the ETA."""
    if variant == "dnas":
        return 1.2 + 0.15 * k
    if variant == "masked":
        return 1.4 if n_res == 1 else 1.6
    return 1.0


def run_benchmark(args, log=sys.stderr):
    """Run every configuration; returns the results dict (also what --json writes)."""
    args = dict(args)
    layout = tuple(tuple(r) for r in args["layout"])
    size = args["size"]
    resolution_sets = [sorted(s, reverse=True) for s in args["resolution_sets"]]
    base = {
        "batch": args["batch"], "size": size, "device": args["device"],
        "warmup": args["warmup"], "repeats": args["repeats"], "time_budget": args["time_budget"],
        "min_repeats": args["min_repeats"], "threads": args["threads"], "seed": args["seed"],
        "malloc": args["malloc"],
        "layout": [list(r) for r in layout], "num_classes": args["num_classes"],
    }
    plain_key = ("plain", 1, (size,))  # the max-width network: the same for every k
    configs = [plain_key]  # (variant, k, resolutions)
    for k in args["ks"]:
        for variant in args["variants"]:
            key = plain_key if variant == "plain" else (variant, k, (size,))
            if key not in configs:
                configs.append(key)
    for s in resolution_sets:
        if max(s) != size:
            raise ValueError(f"Resolution set {s} must have the input size {size} as its max.")
        key = ("masked", 1, tuple(s))
        if key not in configs:
            configs.append(key)
    measure = measure_in_subprocess if args["isolation"] == "subprocess" else measure_config
    progress = _Progress(len(configs), stream=log, quiet=args.get("quiet", False))
    weights = [_config_weight(v, k, len(r)) for v, k, r in configs]
    measured = {}
    t0 = time.perf_counter()
    for i, (variant, k, res) in enumerate(configs):
        label = f"{variant} k={k} resolutions={list(res)}"
        progress.begin(label, weights[i], sum(weights[i:]))
        cfg = dict(base, variant=variant, k=k, resolutions=list(res),
                   paired=args["paired"] and variant == "masked")
        measured[(variant, k, res)] = measure(cfg)
        progress.end(weights[i])
    wall = time.perf_counter() - t0
    plain = measured[plain_key]

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    isolated = args["isolation"] == "subprocess"

    def peak_ratio(a, b):  # peaks in one shared process mean nothing
        return ratio(_peak(a), _peak(b)) if isolated else None

    def time_ratio(m):  # paired (alternating steps in one process) where measured so
        if "paired_time_ratio" in m:
            return m["paired_time_ratio"]
        return ratio(m["step_time_s"], plain["step_time_s"])

    channel_rows = []
    for k in args["ks"]:
        row = {"k": k}
        for variant in args["variants"]:
            m = plain if variant == "plain" else measured[(variant, k, (size,))]
            row[variant] = m
            row[f"{variant}_saved_vs_plain"] = ratio(m["saved_bytes"], plain["saved_bytes"])
            row[f"{variant}_time_vs_plain"] = time_ratio(m)
            row[f"{variant}_time_ratio_paired"] = "paired_time_ratio" in m
            row[f"{variant}_peak_vs_plain"] = peak_ratio(m, plain)
        channel_rows.append(row)

    resolution_rows = []
    for s in resolution_sets:
        s = tuple(s)
        m = measured[("masked", 1, s)]
        pixel_ratio = sum((r / size) ** 2 for r in s)
        flop_ratio, flops = _flop_ratio(layout, args["num_classes"], s)
        resolution_rows.append({
            "resolutions": list(s),
            "n": len(s),
            "supernet": m,
            "time_vs_plain": time_ratio(m),
            "time_ratio_paired": "paired_time_ratio" in m,
            "saved_vs_plain": ratio(m["saved_bytes"], plain["saved_bytes"]),
            "peak_vs_plain": peak_ratio(m, plain),
            "pixel_ratio": pixel_ratio,
            "time_bound": pixel_ratio * TARGET_RESOLUTION_SLACK,
            "flop_ratio": flop_ratio,
            "flops_per_resolution": {str(r): f for r, f in flops.items()},
        })

    results = {
        "settings": {
            "batch": args["batch"], "size": size, "device": args["device"], "ks": list(args["ks"]),
            "resolution_sets": [list(s) for s in resolution_sets], "warmup": args["warmup"],
            "repeats": args["repeats"], "time_budget_s": args["time_budget"],
            "threads": args["threads"], "isolation": args["isolation"],
            "layout": [list(r) for r in layout],
            "num_classes": args["num_classes"], "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "paired": args["paired"], "malloc": args["malloc"],
        },
        "notes": [SAVED_NOTE, REFERENCE_NOTE,
                  ("plain = the max-width network (no masks), the same for every k, measured "
                   "once; dnas = one conv(+BN) per option, zero-padded to max width, "
                   "Gumbel-weighted sum (Eq. 1), every searched conv."),
                  ("time x of the masked supernet (channel and resolution rows) is paired: "
                   "median of its steps / median of plain steps alternated with them in the "
                   "same process (robust to machine load); other time x divide by the separate "
                   "plain run." if args["paired"] else
                   "time x = median step time / that of the separate plain run."),
                  ("malloc: steady (worker env GLIBC_TUNABLES=" + STEADY_MALLOC_TUNABLES + "): freed "
                   "memory stays in the heap, no per-step page-fault churn; flt = minor page "
                   "faults per timed step." if args["malloc"] == "steady" and isolated else
                   "malloc: process default; flt = minor page faults per timed step (page-fault "
                   "churn of glibc's trim/mmap adds time that depends on allocation layout)."),
                  "peak = peak RSS (CUDA: max_memory_allocated) during the steps minus the "
                  "value after building model, optimizer and batch"
                  + ("; the masked rows' process also steps the plain network (paired timing), "
                     "so their peak holds both models: saved bytes is the exact memory measure."
                     if isolated and args["paired"] else "." if isolated else
                     "; in-process runs (isolation none): not comparable, no ratio.")],
        "plain": plain,
        "channels": channel_rows,
        "resolution": resolution_rows,
        "measure_wall_s": wall,
    }
    results["targets"] = evaluate_targets(results)
    results["this_run_reference"] = this_run_reference(results)
    return results


# ------------------------------------------------------------------------------- targets


def evaluate_targets(results):
    rows = []

    def add(name, value, bound):
        rows.append({
            "target": name, "value": value, "bound": bound,
            "pass": value is not None and value <= bound,
        })

    ch = {r["k"]: r for r in results["channels"]}
    if ch and all("masked" in r for r in ch.values()):
        kmin, kmax = min(ch), max(ch)
        if kmax != kmin:
            add(f"masked saved memory k={kmax} / k={kmin}",
                ch[kmax]["masked"]["saved_bytes"] / ch[kmin]["masked"]["saved_bytes"],
                TARGET_MASKED_K_MEMORY)
        add(f"masked k={kmax} / plain saved memory", ch[kmax]["masked_saved_vs_plain"],
            TARGET_MASKED_PLAIN_MEMORY)
        add(f"masked k={kmax} / plain step time", ch[kmax]["masked_time_vs_plain"],
            TARGET_MASKED_PLAIN_TIME)
    for r in results["resolution"]:
        add(f"resolution {r['resolutions']} time / plain <= sum((r/rmax)^2) x "
            f"{TARGET_RESOLUTION_SLACK:.2f}", r["time_vs_plain"], r["time_bound"])
    return rows


# ------------------------------------------------------------------------------- output


def _star(paired):
    return "*" if paired else ""


def _f(v, fmt="{:.2f}"):
    return "n/a" if v is None else fmt.format(v)


def format_report(results):
    s = results["settings"]
    lines = []
    mem = "CUDA peak alloc" if s["device"].startswith("cuda") else "peak RSS"
    lines.append(
        f"Channel search cost vs k (batch {s['batch']}, {s['size']}x{s['size']}, device "
        f"{s['device']}, threads {s['threads']}, isolation {s['isolation']})"
    )
    lines.append("  saved/peak in MiB; peak = peak during steps minus after build (raw peak); "
                 "time = median ms/step; x = ratio to plain; * = paired time ratio")
    head = (f"{'k':>3} | {'variant':<7} | {'saved':>8} {'x':>6} | {mem + ' (raw)':>22} {'x':>6} | "
            f"{'time':>8} {'x':>6} | {'n':>3} | {'flt':>6} | {'params':>9}")
    lines.append(head)
    lines.append("-" * len(head))
    for row in results["channels"]:
        for variant in VARIANTS:
            if variant not in row:
                continue
            m = row[variant]
            peak = _peak(m)
            raw = m.get("cuda_peak_allocated_bytes", m.get("peak_rss_bytes"))
            peak_x = row.get(f"{variant}_peak_vs_plain")
            lines.append(
                f"{row['k']:>3} | {variant:<7} | {_fmt_bytes(m['saved_bytes']):>8} "
                f"{_f(row[f'{variant}_saved_vs_plain']):>6} | "
                f"{_fmt_bytes(peak) + ' (' + _fmt_bytes(raw) + ')':>22} {_f(peak_x):>6} | "
                f"{m['step_time_s'] * 1e3:>8.1f} "
                f"{_f(row[f'{variant}_time_vs_plain']) + _star(row[f'{variant}_time_ratio_paired']):>6} | "
                f"{m['repeats']:>3} | {m.get('minor_faults_per_step', 0):>6.0f} | "
                f"{m['params']:>9}"
            )
    if results["resolution"]:
        lines.append("")
        lines.append("Resolution search (supernet at max channels, resolution decision only) vs "
                     f"plain at {s['size']}")
        head = (f"{'resolutions':<18} | {'saved':>8} {'x':>6} | {'time':>8} {'x':>6} | "
                f"{'sum(r/rmax)^2':>13} {'bound':>6} | {'FLOPs x':>7} | {'n':>3}")
        lines.append(head)
        lines.append("-" * len(head))
        for r in results["resolution"]:
            m = r["supernet"]
            lines.append(
                f"{str(r['resolutions']):<18} | {_fmt_bytes(m['saved_bytes']):>8} "
                f"{_f(r['saved_vs_plain']):>6} | {m['step_time_s'] * 1e3:>8.1f} "
                f"{_f(r['time_vs_plain']) + _star(r['time_ratio_paired']):>6} | "
                f"{r['pixel_ratio']:>13.3f} {r['time_bound']:>6.3f} | "
                f"{r['flop_ratio']:>7.3f} | {m['repeats']:>3}"
            )
    lines.append("")
    lines.append("Targets")
    for t in results["targets"]:
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {_f(t['value'], '{:.3f}')}"
                     f" <= {t['bound']:.3f}")
    ours = this_run_reference(results)
    if ours:
        lines.append("  " + ours)
    lines.append("")
    for note in results["notes"]:
        lines.append("* " + note)
    return "\n".join(lines)


def this_run_reference(results):
    """'This run at k=K: masked a x memory, b x time; dnas c x memory, d x time' (vs plain)."""
    if not results["channels"]:
        return ""
    row = max(results["channels"], key=lambda r: r["k"])
    parts = []
    for variant in ("masked", "dnas"):
        if variant in row:
            peak = row[f"{variant}_peak_vs_plain"]
            parts.append(f"{variant} {_f(row[f'{variant}_saved_vs_plain'])}x saved memory, "
                         + ("" if peak is None else f"{peak:.2f}x peak RSS, ")
                         + f"{_f(row[f'{variant}_time_vs_plain'])}x time")
    return f"This run at k={row['k']} (vs plain): " + "; ".join(parts) + "."


def write_plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["k"] for r in results["channels"]]
    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"masked": ("o-", "masked supernet (Eq. 3)"), "plain": ("s--", "plain max-width"),
              "dnas": ("^-", "conventional DNAS (Eq. 1)")}
    for variant in VARIANTS:
        if not all(variant in r for r in results["channels"]):
            continue
        style, label = styles[variant]
        ax_mem.plot(ks, [r[variant]["saved_bytes"] / 2 ** 20 for r in results["channels"]],
                    style, label=label)
        ax_time.plot(ks, [r[variant]["step_time_s"] * 1e3 for r in results["channels"]],
                     style, label=label)
    for ax in (ax_mem, ax_time):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlabel("channel options per conv (k)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax_mem.set_yscale("log")
    ax_mem.set_ylabel("saved activation bytes per step (MiB)")
    ax_time.set_ylabel("median step time (ms)")
    s = results["settings"]
    fig.suptitle(f"Channel search cost (batch {s['batch']}, {s['size']}x{s['size']}, "
                 f"{s['device']})")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- CLI


def _int_list(text):
    return [int(v) for v in text.replace(",", " ").split()]


def _res_sets(text):
    """'64;64,56;64,56,48' -> [[64], [64, 56], [64, 56, 48]]."""
    return [_int_list(part) for part in text.split(";") if part.strip()]


def build_parser():
    p = argparse.ArgumentParser(
        description="Benchmark channel search by masking (DMaskingNAS) against the plain "
                    "max-width network and conventional DNAS; and resolution search.",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 32; quick 4)")
    p.add_argument("--size", type=int, default=None, help="input size (default 64; quick 32)")
    p.add_argument("--ks", type=_int_list, default=None,
                   help="channel option counts, e.g. '1,2,4,8,16,32' (the default)")
    p.add_argument("--resolutions", dest="resolution_sets", type=_res_sets, default=None,
                   help="resolution option sets, ';'-separated, max first and = --size "
                        "(default '64;64,56;64,56,48;64,56,48,40'); '' to skip")
    p.add_argument("--variants", type=lambda t: [v for v in t.replace(",", " ").split()],
                   default=list(VARIANTS), help="subset of masked,plain,dnas")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up steps before the saved-bytes step (itself a forward + "
                        "backward) and the timed steps (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps (default 10)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds of timed steps per config; slow configs run fewer repeats, at "
                        "least --min-repeats (default 6; 0 = always --repeats)")
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: OMP_NUM_THREADS, else 1)")
    p.add_argument("--isolation", choices=("subprocess", "none"), default=None,
                   help="run each config in a fresh process (default) or in this one (quick)")
    p.add_argument("--no-pair", dest="paired", action="store_false",
                   help="time the masked supernet alone (ratios against the separate plain "
                        "run) instead of alternating its steps with the plain network's")
    p.add_argument("--malloc", choices=("steady", "default"), default="steady",
                   help="glibc malloc in the worker processes: 'steady' keeps freed memory "
                        "(no trim / fresh mmap per step, see STEADY_MALLOC_TUNABLES; default) or "
                        "glibc's 'default' (page-fault churn adds load-dependent time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for tests: batch 4, 32x32, k 1,4, resolutions 32;32,24, "
                        "in-process, 1 warm-up + 2 steps")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR)
    p.add_argument("--json", default=None, help="write results here (default OUTPUT_DIR/results.json; '' = none)")
    p.add_argument("--plot", default=None, help="write the plot here (default OUTPUT_DIR/benchmark.png)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 if any target FAILs")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


QUICK_LAYOUT = (
    ("conv_k3_hs", 8, 2, 1, None),
    ("ir_k3_hs", 8, 1, 1, 2),
    ("ir_k5_se_hs", 16, 2, 2, 2),
    ("ir_pool_hs", 32, 1, 1, 2),
)


def resolve_args(ns):
    args = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    quick = args["quick"]
    defaults = {
        "batch": 4 if quick else 32,
        "size": 32 if quick else 64,
        "ks": [1, 4] if quick else list(DEFAULT_KS),
        "warmup": 1,
        "repeats": 2 if quick else 10,
        "time_budget": 0 if quick else 6.0,
        "isolation": "none" if quick else "subprocess",
    }
    for key, value in defaults.items():
        if args.get(key) is None:
            args[key] = value
    if args.get("resolution_sets") is None:
        args["resolution_sets"] = (
            [[32], [32, 24]] if quick else [list(s) for s in DEFAULT_RESOLUTION_SETS]
        )
    args["repeats"] = max(1, args["repeats"])
    args["min_repeats"] = min(max(1, args["min_repeats"]), args["repeats"])
    if args.get("threads") is None:
        try:
            args["threads"] = int(os.environ.get("OMP_NUM_THREADS", "1"))
        except ValueError:
            args["threads"] = 1
    args["layout"] = [list(r) for r in (QUICK_LAYOUT if quick else DEFAULT_LAYOUT)]
    args.setdefault("num_classes", NUM_CLASSES)
    unknown = [v for v in args["variants"] if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"Unknown variant(s) {unknown}; choose from {VARIANTS}.")
    if "plain" not in args["variants"]:
        raise SystemExit("The 'plain' variant is the reference of every ratio; keep it.")
    if args["device"].startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available.")
    if args["json"] is None:  # "" = do not write
        args["json"] = os.path.join(args["output_dir"], "results.json")
    args["plot"] = None if args["no_plot"] else (
        args["plot"] or os.path.join(args["output_dir"], "benchmark.png"))
    return args


def main(argv=None):
    t0 = time.perf_counter()
    args = resolve_args(build_parser().parse_args(argv))
    torch.set_num_threads(args["threads"])
    results = run_benchmark(args)
    results["total_wall_s"] = time.perf_counter() - t0
    print(format_report(results))
    print(f"\nwall time {results['total_wall_s']:.1f}s")
    if args["json"]:
        os.makedirs(os.path.dirname(os.path.abspath(args["json"])), exist_ok=True)
        with open(args["json"], "w") as f:
            json.dump(results, f, indent=1)
        print(f"JSON: {args['json']}")
    if args["plot"]:
        print(f"plot: {write_plot(results, args['plot'])}")
    failed = [t for t in results["targets"] if not t["pass"]]
    return 1 if args["strict"] and failed else 0


if __name__ == "__main__":
    sys.exit(main())
