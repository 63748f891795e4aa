"""Resumable engine runs with progress: every search and training of the benchmark is a `Job`
whose folder is named by a fingerprint of its whole config (OUTPUT_DIR left out, the arch def
without its name in place of MODEL.MOBILE_CV_NAS.ARCH), so

  * a run whose folder holds metrics.json and the same fingerprint (benchmark_run.json) is
    finished: it is skipped and its metrics.json read back;
  * a run killed midway (folder with benchmark_run.json, no metrics.json) continues from its
    last checkpoint (the engine's --resume);
  * the same architecture trained with the same seed for two budgets or modes runs once.

`Progress` logs "run k of N" with an ETA from the runs executed so far (per kind: searches
and trainings take different times).
"""

import dataclasses
import hashlib
import json
import logging
import os
import time

from mobile_cv_nas.engine.errors import OutputDirError
from mobile_cv_nas.io import write_json

from .sampling import arch_key
from .training import engine_args, read_metrics, run_engine

logger = logging.getLogger(__name__)

SPEC_FILE = "benchmark_run.json"


def fingerprint(cfg, arch=None):
    """Hex digest of `cfg` without OUTPUT_DIR (and, with `arch`, with the arch def's canonical
    text, name left out, in place of the arch path)."""
    c = cfg.clone()
    c.defrost()
    c.OUTPUT_DIR = ""
    if arch is not None:
        c.MODEL.MOBILE_CV_NAS.ARCH = ""
    text = c.dump() + ("" if arch is None else arch_key(arch))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass
class Job:
    kind: str  # "search" or "train"
    label: str  # for the log
    folder: str
    config_file: str
    opts: list  # KEY VALUE overrides, OUTPUT_DIR included
    key: str  # fingerprint

    def spec(self):
        return {"kind": self.kind, "fingerprint": self.key}

    def state(self):
        """ "done", "partial" (killed midway: resume it) or "new"."""
        spec_path = os.path.join(self.folder, SPEC_FILE)
        if not os.path.isfile(spec_path):
            return "new"
        with open(spec_path) as f:
            saved = json.load(f)
        if saved != self.spec():
            raise OutputDirError(
                f"{self.folder} holds another benchmark run ({SPEC_FILE} differs); delete it "
                f"or use another --output."
            )
        return "done" if os.path.isfile(os.path.join(self.folder, "metrics.json")) else "partial"


def make_job(kind, label, base, config_file, opts, build_cfg, arch=None, stem=None):
    """A Job whose folder is `base`/<stem (default: label)>-<fingerprint prefix>;
    `build_cfg(config_file, opts)` checks the config (the same function that the run uses)."""
    probe = build_cfg(config_file, [*opts, "OUTPUT_DIR", os.path.join(base, "probe")])
    key = fingerprint(probe, arch)
    folder = os.path.join(base, f"{stem or label}-{key[:12]}")
    return Job(kind, label, folder, config_file, [*opts, "OUTPUT_DIR", folder], key)


def execute(job, build_cfg):
    """Run `job` unless finished; its metrics.json (a dict) and whether it ran now."""
    state = job.state()
    if state == "done":
        logger.info("%s: finished before, reusing %s", job.label, job.folder)
        return read_metrics(job.folder), False
    os.makedirs(job.folder, exist_ok=True)
    write_json(os.path.join(job.folder, SPEC_FILE), job.spec())
    cfg = build_cfg(job.config_file, job.opts)
    args = engine_args(job.config_file, job.opts, resume=state == "partial")
    if state == "partial":
        logger.info("%s: continuing the killed run in %s", job.label, job.folder)
    if run_engine(cfg, args) is None:
        raise RuntimeError(f"The {job.kind} run in {job.folder} did not complete.")
    return read_metrics(job.folder), True


class Progress:
    """Counts runs of each kind ("search", "train"); logs k of N and an ETA."""

    def __init__(self, totals):
        self.totals = dict(totals)
        self.done = dict.fromkeys(self.totals, 0)
        self.seconds = dict.fromkeys(self.totals, 0.0)
        self.executed = dict.fromkeys(self.totals, 0)

    def set_total(self, kind, total):
        self.totals[kind] = total

    def eta(self):
        """Seconds left, from the mean time of the runs executed (None before any ran)."""
        ran = sum(self.executed.values())
        if not ran:
            return None
        overall = sum(self.seconds.values()) / ran
        left = 0.0
        for kind, total in self.totals.items():
            mean = self.seconds[kind] / self.executed[kind] if self.executed[kind] else overall
            left += mean * max(0, total - self.done[kind])
        return left

    def record(self, kind, label, seconds, ran):
        self.done[kind] += 1
        if ran:
            self.executed[kind] += 1
            self.seconds[kind] += seconds
        k, n = sum(self.done.values()), sum(self.totals.values())
        eta = self.eta()
        logger.info(
            "Progress: run %d of %d done (%s %s, %s); ETA %s.",
            k,
            n,
            kind,
            label,
            f"{seconds:.0f} s" if ran else "reused",
            "unknown" if eta is None else _duration(eta),
        )
        return k, n, eta


def _duration(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def run_jobs(jobs, build_cfg, progress):
    """Execute `jobs` in order (each once: equal folders share a run); {folder: metrics}."""
    results = {}
    for job in jobs:
        if job.folder in results:
            continue
        start = time.perf_counter()
        metrics, ran = execute(job, build_cfg)
        results[job.folder] = metrics
        progress.record(job.kind, job.label, time.perf_counter() - start, ran)
    return results
