"""The whole benchmark: (optionally run the demo search,) read the search, sample the random
architectures, time the iterations, train every architecture, and gather the results dict
(what the JSON holds).

Layout of --output:
    archs/<run>.yaml    the arch def each run trains (searched.yaml, random_1.yaml, ...)
    runs/<run>/         each training run's OUTPUT_DIR (metrics.json, model_final.pth, log)
    search/             the search, with --run-search and no --search-dir
    report.json, accuracy_vs_mflops.png
"""

import dataclasses
import json
import logging
import os
import time

from mobile_cv_nas.arch import load_arch_def
from mobile_cv_nas.engine import new_config

from .report import interpretation, summarize
from .sampling import cost_of, sample_random_archs, space_for_arch
from .timing import cfg_with, time_iterations
from .training import (
    check_new_run_dirs,
    run_engine,
    search_cfg,
    train_arch,
    train_cfg,
)

logger = logging.getLogger(__name__)

SEARCHED = "searched"


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
            f"search (tools/train_net.py with a TASK: search config), or pass --run-search."
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


def _arch_path(output, name):
    return os.path.join(output, "archs", f"{name}.yaml")


def _write_arch(output, name, arch):
    path = _arch_path(output, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(arch.to_yaml())
    return path


def _search_summary(search):
    m = search.metrics or {}
    keys = ("space", "iterations", "seconds", "cost_target_m", "inherited_val_top1", "dataset")
    out = {k: m[k] for k in keys if k in m}
    out.setdefault("space", search.cfg.NAS.SPACE)
    if m.get("seconds") and m.get("iterations"):
        out["seconds_per_iteration"] = m["seconds"] / m["iterations"]
    return out


def run_benchmark(opts):
    """Run the benchmark for the resolved options of `cli.resolve_args`; the results dict."""
    out = opts["output"]
    names = [SEARCHED] + [f"random_{i + 1}" for i in range(opts["num_random"])]
    # run name -> (arch name, training seed): every arch with --seed, the searched one again
    # with each --noise-seeds seed
    plan = {name: (name, opts["seed"]) for name in names}
    plan.update({f"{SEARCHED}_seed{s}": (SEARCHED, s) for s in opts["noise_seeds"]})
    # every config checked and every run folder free before anything runs
    runs = {
        run: train_cfg(
            opts["train_config"],
            _arch_path(out, arch),
            os.path.join(out, "runs", run),
            seed,
            opts["overrides"],
        )
        for run, (arch, seed) in plan.items()
    }
    check_new_run_dirs([cfg for cfg, _ in runs.values()])

    if opts["run_search"]:
        cfg, args = search_cfg(opts["search_config"], opts["search_dir"])
        check_new_run_dirs([cfg])
        logger.info("Running the search %s into %s ...", opts["search_config"], cfg.OUTPUT_DIR)
        start = time.perf_counter()
        if run_engine(cfg, args) is None:
            raise RuntimeError(f"The search in {cfg.OUTPUT_DIR} did not complete.")
        logger.info("Search done in %.0f s.", time.perf_counter() - start)
    search = load_search(opts["search_dir"], opts["search_config"])
    space = space_for_arch(search.cfg.NAS.SPACE, search.arch)

    searched = cost_of(search.arch)
    logger.info(
        "Searched arch %s: %.4f MFLOPs, %.4f M params, input %d.",
        search.arch.name,
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
    archs = {SEARCHED: searched, **dict(zip(names[1:], randoms, strict=True))}
    for name, costed in archs.items():
        _write_arch(out, name, costed.arch)

    timing = None
    if opts["timing_iters"] > 0:
        train0 = runs[SEARCHED][0]
        timing_cfg = cfg_with(
            search.cfg,
            DATA__TRAIN=train0.DATA.TRAIN,
            DATA__TEST=train0.DATA.TEST,
            MODEL__DEVICE=train0.MODEL.DEVICE,
        )
        timing = time_iterations(timing_cfg, opts["timing_iters"], opts["timing_warmup"])

    trained = {}
    for name, (cfg, args) in runs.items():
        start = time.perf_counter()
        metrics = train_arch(cfg, args)
        costed = archs[plan[name][0]]
        if abs(metrics["flops_m"] - costed.mflops) > 1e-9:
            logger.warning(
                "%s: the run counts %.6f MFLOPs, the benchmark %.6f.",
                name,
                metrics["flops_m"],
                costed.mflops,
            )
        trained[name] = {
            "name": name,
            "arch": costed.arch.name,
            "arch_yaml": os.path.relpath(_arch_path(out, plan[name][0]), out),
            "run_dir": os.path.relpath(cfg.OUTPUT_DIR, out),
            "flops_m": costed.mflops,
            "params_m": costed.mparams,
            "input_size": costed.arch.input_size,
            "val_top1": metrics["val_top1"],
            "val_top5": metrics["val_top5"],
            "val_count": metrics["val_count"],
            "seed": cfg.SEED,
            "iterations": metrics["iterations"],
            "train_s": time.perf_counter() - start,
        }
        if costed.choices:
            trained[name]["choices"] = costed.choices

    searched_row = dict(trained[SEARCHED], name=search.arch.name)
    random_rows = [trained[n] for n in names[1:]]
    seed_rows = [trained[n] for n in plan if n not in names]
    summary = summarize(
        searched_row["val_top1"],
        [r["val_top1"] for r in random_rows],
        [searched_row["val_top1"]] + [r["val_top1"] for r in seed_rows] if seed_rows else None,
    )
    train0 = runs[SEARCHED][0]
    return {
        "settings": {
            "search_dir": opts["search_dir"],
            "ran_search": opts["run_search"],
            "search_config": opts["search_config"] if opts["run_search"] else None,
            "train_config": opts["train_config"],
            "overrides": list(opts["overrides"]),
            "train_data": [train0.DATA.TRAIN, train0.DATA.TEST],
            "seed": opts["seed"],
            "noise_seeds": list(opts["noise_seeds"]),
            "num_random": opts["num_random"],
            "tolerance": opts["tolerance"],
            "max_tries": opts["max_tries"],
            "space": space.name or str(search.cfg.NAS.SPACE),
            "threads": opts["threads"],
        },
        "search": _search_summary(search),
        "searched": searched_row,
        "random": random_rows,
        "seed_runs": seed_rows,
        "summary": summary,
        "timing": timing,
        "interpretation": interpretation(summary),
    }
