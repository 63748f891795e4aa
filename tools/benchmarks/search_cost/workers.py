"""Running one configuration in a fresh worker process (clean peak RSS, no shared allocator).

Worker processes run with glibc malloc told to keep freed memory (`--malloc steady`, see
`STEADY_MALLOC_TUNABLES`); with glibc's defaults, per-step page-fault churn adds system time
that depends on allocation layout rather than on the method.
"""

import json
import logging
import os
import subprocess
import sys

import mobile_cv_nas

from .measure import measure_config

logger = logging.getLogger(__name__)

#: glibc malloc settings for the worker processes (`--malloc steady`): keep freed memory in the
#: heap instead of returning it to the OS (trim) or mmap-ing big blocks afresh, so that a step
#: does not re-fault (and the kernel re-zero) tens of MB of pages. With glibc's defaults that
#: churn depends on the allocation pattern, not on the method. This project's measurements on
#: the default CPU run (one 2-core machine): the plain network alone 24-26k minor faults and
#: 234-244 ms per step (steady: ~50 faults, 182 ms); paired masked/plain time ratio 0.97-1.06
#: for *identical* networks (k=1) and 1.07-1.15 at k=32 (steady: 1.00 and 1.02).
STEADY_MALLOC_TUNABLES = (
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184"
)

#: A worker imports this module under the name this process imported it by (`benchmarks...`
#: from the tools/ scripts and the tests).
_WORKER_CODE = (
    "import warnings; warnings.filterwarnings('ignore', category=FutureWarning); "
    f"from {__name__} import worker_main; worker_main()"
)


def _import_roots():
    """The folders that hold the `mobile_cv_nas` package and this benchmark package (tools/),
    as this process imported them."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(mobile_cv_nas.__file__)))
    benchmark_root = os.path.abspath(__file__)
    for _ in range(__name__.count(".") + 1):  # benchmarks/search_cost/workers.py -> tools/
        benchmark_root = os.path.dirname(benchmark_root)
    return [package_root, benchmark_root]


def worker_env(config):
    """The environment of a worker: both packages importable, its threads, its malloc."""
    env = dict(os.environ)
    paths = [*_import_roots(), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    threads = config.get("threads")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if config.get("malloc", "steady") == "steady" and sys.platform.startswith("linux"):
        env["GLIBC_TUNABLES"] = ":".join(
            t for t in (env.get("GLIBC_TUNABLES"), STEADY_MALLOC_TUNABLES) if t
        )
    return env


def measure_in_subprocess(config, timeout=None):
    """`measure_config` in a fresh interpreter (clean peak RSS); config/result as JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER_CODE],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        env=worker_env(config),
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"Benchmark worker for {config} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    if proc.stderr.strip():
        logger.debug("Worker stderr:\n%s", proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_main():
    """A worker's entry point: a config as JSON on stdin, its result as the last stdout line."""
    config = json.loads(sys.stdin.read())
    result = measure_config(config)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


def measure_function(isolation):
    """The function measuring one config: in a fresh process ("subprocess") or here ("none")."""
    if isolation == "subprocess":
        return measure_in_subprocess
    if isolation == "none":
        return measure_config
    raise ValueError(f"Unknown isolation {isolation!r}; expected 'subprocess' or 'none'.")
