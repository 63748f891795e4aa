"""The whole benchmark: search at several FLOP budgets with each sampling mode (or read one
finished search), sample random architectures at each searched one's FLOPs, time the search
iterations, train every architecture (the searched ones with several seeds), and gather the
results dict (what report.json holds).

Layout of --output:
    searches/<mode>_<budget>M-<fp>/  each search's OUTPUT_DIR (arch.yaml, metrics.json, ...)
    archs/<point>_<name>.yaml        the arch def each training run trains
    runs/s<seed>-<fp>/               each training run's OUTPUT_DIR (metrics.json, ...)
    report.json, pareto.png
Folders are named by a fingerprint of their config (see jobs.py): a rerun with the same
options reuses every finished run and continues a killed one.
"""

import dataclasses
import json
import logging
import math
import os
import statistics

import torch

from mobile_cv_nas.arch import load_arch_def
from mobile_cv_nas.engine import new_config
from mobile_cv_nas.engine.errors import ConfigError
from mobile_cv_nas.search import Supernet
from mobile_cv_nas.search.cost_bounds import cost_range
from mobile_cv_nas.search.space import as_search_space

from .jobs import Progress, make_job, run_jobs
from .sampling import cost_of, sample_random_archs, space_for_arch
from .stats import compare
from .timing import time_modes
from .training import config_builder, data_overrides, sampling_overrides

logger = logging.getLogger(__name__)

SEARCHED = "searched"
build_search = config_builder("search")
build_train = config_builder("train")


class SearchDirError(ValueError):
    """--search-dir is not a finished search."""


@dataclasses.dataclass
class SearchRun:
    folder: str
    arch: object  # ArchDef
    cfg: object  # the search's config (CfgNode)
    metrics: dict | None


def load_search(folder, fallback_config):
    """A finished search: its arch.yaml, its config (config.yaml; else `fallback_config` with
    NAS.SPACE from metrics.json) and metrics.json when present."""
    arch_path = os.path.join(folder, "arch.yaml")
    if not os.path.isfile(arch_path):
        raise SearchDirError(
            f"--search-dir {folder!r} has no arch.yaml: give the OUTPUT_DIR of a finished "
            f"search (tools/train_net.py with a TASK: search config), or leave --search-dir "
            f"out to run the searches."
        )
    arch = load_arch_def(arch_path)
    if arch.name == arch_path:  # no name in the file
        arch = dataclasses.replace(arch, name=SEARCHED)
    metrics_path = os.path.join(folder, "metrics.json")
    metrics = None
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            metrics = json.load(f)
    cfg = new_config()
    cfg.set_new_allowed(True)
    config_path = os.path.join(folder, "config.yaml")
    if os.path.isfile(config_path):
        cfg.merge_from_file(config_path)
    elif metrics and metrics.get("space"):
        cfg.merge_from_file(fallback_config)
        cfg.NAS.SPACE = metrics["space"]
    else:
        raise SearchDirError(
            f"--search-dir {folder!r} has neither config.yaml nor a metrics.json naming the "
            f"search space."
        )
    cfg.freeze()
    return SearchRun(folder, arch, cfg, metrics)


def flop_range(search_config, opts):
    """(cheapest, dearest) FLOPs of the search space of `search_config`, with the data's
    classes and channels (as the search builds it)."""
    from mobile_cv_nas.engine.data import build_datasets

    cfg = build_search(search_config, [*opts, "OUTPUT_DIR", ""])
    datasets = build_datasets(cfg, train=False)
    space = dataclasses.replace(
        as_search_space(cfg.NAS.SPACE),
        num_classes=len(datasets.classes),
        in_channels=datasets.in_channels,
    )
    return cost_range(Supernet(space), "flops")


def budgets_m(opts, bounds):
    """The budgets in MFLOPs: --budgets-m as given, else --budgets (fractions of the space's
    FLOP range on a log scale: 0 the cheapest architecture, 1 the dearest)."""
    low, high = bounds
    if opts.get("budgets_m"):
        values = [float(v) for v in opts["budgets_m"]]
        for v in values:
            if not low / 1e6 <= v <= high / 1e6:
                raise ConfigError(
                    f"--budgets-m {v:g} is outside the space's range {low / 1e6:.4g}.."
                    f"{high / 1e6:.4g} MFLOPs."
                )
        return values
    for f in opts["budgets"]:
        if not 0 <= f <= 1:
            raise ConfigError(f"--budgets {f:g}: fractions of the FLOP range are in [0, 1].")
    return [math.exp(math.log(low) + f * math.log(high / low)) / 1e6 for f in opts["budgets"]]


def _point_label(mode, budget):
    return f"{mode}_{budget:.4g}M"


def _write_arch(output, name, arch):
    path = os.path.join(output, "archs", f"{name}.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = arch.to_yaml()
    if os.path.isfile(path):
        with open(path) as f:
            if f.read() == text:
                return path  # unchanged: a rerun leaves the file as it was
    with open(path, "w") as f:
        f.write(text)
    return path


def _search_summary(search):
    m = search.metrics or {}
    keys = ("space", "iterations", "seconds", "cost_target_m", "inherited_val_top1", "dataset")
    out = {k: m[k] for k in keys if k in m}
    out.setdefault("space", search.cfg.NAS.SPACE)
    if m.get("seconds") and m.get("iterations"):
        out["seconds_per_iteration"] = m["seconds"] / m["iterations"]
    return out


def _row(costed, metrics, run_dir, seed, output):
    return {
        "name": costed.arch.name,
        "flops_m": costed.mflops,
        "params_m": costed.mparams,
        "input_size": costed.arch.input_size,
        "val_top1": metrics["val_top1"],
        "val_top5": metrics["val_top5"],
        "val_count": metrics["val_count"],
        "seed": seed,
        "iterations": metrics["iterations"],
        "run_dir": os.path.relpath(run_dir, output),
    }


def run_benchmark(opts):
    """Run the benchmark for the resolved options of `cli.resolve_args`; the results dict."""
    out = opts["output"]
    data = data_overrides(opts["data"])
    common = [*data, *opts["overrides"]]
    # a train run refuses NAS.* keys (it does not read them): the searches' only
    train_common = [
        x
        for key, value in zip(common[::2], common[1::2], strict=True)
        if not str(key).startswith("NAS.")
        for x in (key, value)
    ]
    mode_opts = {mode: sampling_overrides(mode) for mode in opts["modes"]}
    seeds = [opts["seed"] + i for i in range(opts["searched_seeds"])]
    random_seeds = [opts["seed"] + i for i in range(opts["random_seeds"])]
    per_point = len(seeds) + opts["num_random"] * len(random_seeds)

    # 1. the searches (or the given one)
    points = []
    if opts["search_dir"]:
        progress = Progress({"search": 0, "train": per_point})
        search = load_search(opts["search_dir"], opts["search_config"])
        budget = (search.metrics or {}).get("cost_target_m") or float(search.cfg.NAS.COST.TARGET_M)
        mode = search.cfg.NAS.get("SAMPLING", "mixture")
        points.append(dict(mode=mode, budget_m=budget, search=search))
        bounds, config_for_timing = None, opts["search_config"]
        if os.path.isfile(os.path.join(opts["search_dir"], "config.yaml")):
            config_for_timing = os.path.join(opts["search_dir"], "config.yaml")
    else:
        bounds = flop_range(opts["search_config"], common)
        budgets = budgets_m(opts, bounds)
        logger.info(
            "FLOP range of the space %.4g..%.4g MFLOPs; budgets %s MFLOPs; modes %s.",
            bounds[0] / 1e6,
            bounds[1] / 1e6,
            ", ".join(f"{b:.4g}" for b in budgets),
            ", ".join(opts["modes"]),
        )
        jobs = []
        for mode in opts["modes"]:
            for budget in budgets:
                search_opts = [*common, "NAS.COST.TARGET_M", budget, *mode_opts[mode]]
                label = _point_label(mode, budget)
                job = make_job(
                    "search",
                    label,
                    os.path.join(out, "searches"),
                    opts["search_config"],
                    search_opts,
                    build_search,
                )
                jobs.append(job)
                points.append(dict(mode=mode, budget_m=budget, folder=job.folder))
        n_points = len(points)
        progress = Progress({"search": len(jobs), "train": n_points * per_point})
        run_jobs(jobs, build_search, progress)
        for p in points:
            p["search"] = load_search(p.pop("folder"), opts["search_config"])
        config_for_timing = opts["search_config"]

    # 2. random architectures at each searched one's FLOPs; the training jobs
    train_jobs = []
    for p in points:
        search = p["search"]
        label = _point_label(p["mode"], p["budget_m"])
        space = space_for_arch(search.cfg.NAS.SPACE, search.arch)
        searched = cost_of(search.arch)
        logger.info(
            "%s: searched arch %.4f MFLOPs, %.4f M params, input %d.",
            label,
            searched.mflops,
            searched.mparams,
            search.arch.input_size,
        )
        randoms = sample_random_archs(
            space,
            searched.flops,
            opts["num_random"],
            seed=opts["seed"],
            tolerance=opts["tolerance"],
            max_tries=opts["max_tries"],
            exclude=[search.arch],
        )
        p.update(searched=searched, randoms=randoms, space=space.name or str(search.cfg.NAS.SPACE))
        p["searched_jobs"], p["random_jobs"] = [], []
        entries = [(SEARCHED, searched, seeds, p["searched_jobs"])] + [
            (f"random_{i + 1}", c, random_seeds, p["random_jobs"]) for i, c in enumerate(randoms)
        ]
        for name, costed, run_seeds, sink in entries:
            arch_path = _write_arch(out, f"{label}_{name}", costed.arch)
            for seed in run_seeds:
                job = make_job(
                    "train",
                    f"{label}_{name}_s{seed}",
                    os.path.join(out, "runs"),
                    opts["train_config"],
                    [*train_common, "SEED", seed, "MODEL.MOBILE_CV_NAS.ARCH", arch_path],
                    build_train,
                    arch=costed.arch,
                    stem=f"s{seed}",  # equal arch and seed: one run, shared by points
                )
                sink.append((costed, seed, job))
                train_jobs.append(job)
    progress.set_total("train", len({j.folder for j in train_jobs}))

    # 3. the cost of a search iteration, per mode
    timing = None
    if opts["timing_iters"] > 0:
        timing = time_modes(
            config_for_timing,
            [*common],
            {m: mode_opts[m] for m in opts["modes"]},
            opts["timing_iters"],
            opts["timing_warmup"],
        )

    # 4. the trainings
    metrics = run_jobs(train_jobs, build_train, progress)

    results_points = []
    for p in points:
        searched_rows = [
            _row(c, metrics[j.folder], j.folder, s, out) for c, s, j in p["searched_jobs"]
        ]
        random_rows = []
        for c, s, j in p["random_jobs"]:
            row = _row(c, metrics[j.folder], j.folder, s, out)
            row["choices"] = c.choices
            random_rows.append(row)
        # a random arch trained with several seeds counts with its mean
        by_arch = {}
        for r in random_rows:
            by_arch.setdefault(r["name"], []).append(r["val_top1"])
        random_means = [statistics.fmean(v) for v in by_arch.values()]
        stats = compare([r["val_top1"] for r in searched_rows], random_means)
        results_points.append(
            {
                "mode": p["mode"],
                "budget_m": p["budget_m"],
                "search_dir": os.path.relpath(p["search"].folder, out)
                if not opts["search_dir"]
                else p["search"].folder,
                "search": _search_summary(p["search"]),
                "space": p["space"],
                "searched": searched_rows,
                "random": random_rows,
                "stats": stats,
            }
        )
    return {
        "settings": {
            "search_dir": opts["search_dir"],
            "search_config": opts["search_config"],
            "train_config": opts["train_config"],
            "overrides": list(opts["overrides"]),
            "data": opts["data"],
            "train_data": [data[1], data[3]],
            "modes": list(opts["modes"]),
            "budgets_m": [p["budget_m"] for p in points],
            "flop_range_m": None if bounds is None else [b / 1e6 for b in bounds],
            "seed": opts["seed"],
            "searched_seeds": seeds,
            "random_seeds": random_seeds,
            "num_random": opts["num_random"],
            "tolerance": opts["tolerance"],
            "max_tries": opts["max_tries"],
            "threads": torch.get_num_threads(),
        },
        "points": results_points,
        "timing": timing,
    }
