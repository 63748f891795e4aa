"""Helpers shared by the tests of tools/train_net.py and the engine: the command line run
in-process, tiny search/train settings on the embedded Fashion-MNIST subset, and snapshots of
output folders. The search run shared by every test of the session is conftest.py's
`shared_search_run` fixture."""

import contextlib
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS = REPO_ROOT / "tools"
SEARCH_CONFIG = str(REPO_ROOT / "configs" / "search" / "fashion_mnist_cpu.yaml")
TRAIN_CONFIG = str(REPO_ROOT / "configs" / "train" / "fashion_mnist_cpu.yaml")

#: The embedded 10k/2k subset: present in every checkout (the full set may not be installed).
SUBSET_DATA = ["DATA.TRAIN", "fashion_mnist_subset_train", "DATA.TEST", "fashion_mnist_subset_val"]

#: A search of 2 epochs of 6 iterations, a periodic checkpoint every 3 iterations, alphas
#: trained from the first iteration and a record (events.json line) every 3 iterations.
SEARCH_ITERS = 12
SEARCH_OPTS = SUBSET_DATA + [
    "SOLVER.IMS_PER_BATCH", "16",
    "SOLVER.EPOCHS", "2",
    "SOLVER.EPOCH_ITERS", "6",
    "SOLVER.CHECKPOINT_PERIOD", "3",
    "NAS.ALPHA_START_EPOCH", "0",
    "NAS.LOG_PERIOD", "3",
]  # fmt: skip


def load_tool(name):
    """tools/<name>.py as a module (the tools folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool(name):
    """tools/<name>.py loaded once, as an import is: kept in sys.modules (as `_tool_<name>`)."""
    module = sys.modules.get(f"_tool_{name}")
    if module is None:
        module = sys.modules[f"_tool_{name}"] = load_tool(name)
    return module


def train_net(argv):
    """`tools/train_net.py argv` in this process: (exit status, stderr text)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = tool("train_net").cli([str(a) for a in argv])
    return status, err.getvalue()


def search_argv(out, *extra, config=SEARCH_CONFIG):
    return ["--config-file", config, *SEARCH_OPTS, "OUTPUT_DIR", str(out), *extra]


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return env


def start_train_net(argv, log_file, **popen_kwargs):
    """tools/train_net.py in a child process (its output to `log_file`; `popen_kwargs` go to
    subprocess.Popen)."""
    return subprocess.Popen(
        [sys.executable, str(TOOLS / "train_net.py"), *map(str, argv)],
        cwd=str(REPO_ROOT),
        env=subprocess_env(),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        **popen_kwargs,
    )


def wait_for_checkpoint(process, out, log_path, timeout):
    """Wait until the run of `process` has written `out`/last_checkpoint; fail with the end of
    its log if it ends first, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (Path(out) / "last_checkpoint").exists():
        assert process.poll() is None, Path(log_path).read_text()[-3000:]
        assert time.monotonic() < deadline, f"no checkpoint within {timeout} s"
        time.sleep(0.02)


def final_alphas(out, name="checkpoint_final.pth"):
    """{decision name: alpha} of a search checkpoint (the supernet's state under "model")."""
    data = torch.load(os.path.join(out, name), map_location="cpu", weights_only=True)
    alphas = {
        k[len("decisions.") : -len(".alpha")]: v
        for k, v in data["model"].items()
        if k.startswith("decisions.") and k.endswith(".alpha")
    }
    assert alphas, f"no decisions.*.alpha in {out}/{name}"
    return alphas


def assert_same_alphas(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for name in a:
        if atol == 0.0:
            assert torch.equal(a[name], b[name]), (name, a[name], b[name])
        else:
            assert torch.allclose(a[name], b[name], rtol=0, atol=atol), (name, a[name], b[name])


def snapshot(folder):
    """{relative path: sha256} of every file under `folder` (None: the folder is absent)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_line_error(err):
    """The single `error: ...` line of a run that failed on the user's input (no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _main_dumping_alphas(dump_dir, cfg, args):
    """The launcher's main on one process, which also saves this process's final alphas
    (before the outputs are written) to dump_dir/rank<r>.pt: only rank 0 writes the run's
    checkpoint, so this is how the other ranks' alphas are seen."""
    from detectron2.utils import comm

    from mobile_cv_nas.engine import run, search_task

    write_outputs = search_task.write_search_outputs

    def dump_then_write(trainer, *args, **kwargs):
        torch.save(
            {
                "rank": comm.get_rank(),
                "world_size": comm.get_world_size(),
                "sampler_rank": trainer.supernet.sampler.rank,
                "data_rank": trainer.data.rank,
                "alphas": {
                    n: d.alpha.detach().clone() for n, d in trainer.supernet.decisions.items()
                },
            },
            os.path.join(dump_dir, f"rank{comm.get_rank()}.pt"),
        )
        return write_outputs(trainer, *args, **kwargs)

    search_task.write_search_outputs = dump_then_write
    try:
        return run.main(cfg, args)
    finally:
        search_task.write_search_outputs = write_outputs


def cli_dumping_alphas(argv, dump_dir):
    """tools/train_net.py's cli(argv) with every launched process saving its final alphas
    into dump_dir (see _main_dumping_alphas); the exit status."""
    import functools

    module = load_tool("train_net")
    module.main = functools.partial(_main_dumping_alphas, str(dump_dir))
    return module.cli([str(a) for a in argv])


if __name__ == "__main__":  # python tests/engine_helpers.py DUMP_DIR train_net-args...
    sys.exit(cli_dumping_alphas(sys.argv[2:], sys.argv[1]))
