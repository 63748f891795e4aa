"""tools/train_net.py --num-gpus 2 on the CPU: two spawned processes (gloo, DDP) search
together, every rank ends with the same alphas (the ones rank 0 checkpoints), rank 0 writes
the run's outputs; a worker's user error is one line and exit status 2 (the launcher's
too, without a traceback)."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from engine_helpers import (
    assert_same_alphas,
    cli_dumping_alphas,
    final_alphas,
    search_argv,
    start_train_net,
    train_net,
    wait_for_checkpoint,
)
from PIL import Image

from mobile_cv_nas.arch import build_model, load_arch_def
from mobile_cv_nas.data import DatasetError
from mobile_cv_nas.engine.errors import USER_ERRORS
from mobile_cv_nas.engine.launch import _cpu_worker

WORLD = 2


@pytest.mark.slow  # two spawned processes
@pytest.mark.parametrize("sampling", ["mixture", "single_path"])
def test_two_process_cpu_search(tmp_path, sampling):
    out, dumps = tmp_path / "out", tmp_path / "ranks"
    dumps.mkdir()
    # 6 iterations of a global batch of 16 (8 per process)
    argv = ["--num-gpus", WORLD, *search_argv(out, "SOLVER.EPOCHS", "1", "NAS.SAMPLING", sampling)]
    assert cli_dumping_alphas(argv, dumps) == 0
    ranks = [torch.load(dumps / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for r, dump in enumerate(ranks):
        # a process group of two, each process its own Gumbel noise and its own data shard
        assert (dump["rank"], dump["world_size"]) == (r, WORLD)
        assert dump["sampler_rank"] == r and dump["data_rank"] == r
    assert_same_alphas(ranks[0]["alphas"], ranks[1]["alphas"])
    assert_same_alphas(ranks[0]["alphas"], final_alphas(out))  # what rank 0 saved
    assert any(not torch.equal(a, torch.zeros_like(a)) for a in ranks[0]["alphas"].values())

    # the run's outputs, written once (by rank 0)
    assert (out / "last_checkpoint").read_text().strip() == "checkpoint_final.pth"
    data = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert data["trainer"]["iteration"] == 5  # the last iteration (0-based), as detectron2's
    build_model(load_arch_def(out / "arch.yaml"))
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["iterations"] == 6
    assert metrics["inherited_val_count"] == 2000  # both shards of the val split, summed
    for picture in ("arch.png", "search_curves.png"):
        with Image.open(out / picture) as image:
            image.load()


def _fails_like_a_bad_data_folder():
    raise DatasetError("dataset source 'no_such_folder': no such folder")


def test_a_worker_with_a_user_error_exits_2_leaving_its_message(tmp_path, capsys):
    """One worker of a world of one, in this process: the message is left for the launcher
    (which prints it once, not once per process) and the worker exits 2."""
    url = f"file://{tmp_path / 'init'}"
    errors = tmp_path / "errors"
    errors.mkdir()
    args = (_fails_like_a_bad_data_folder, 1, 1, 0, url, (), USER_ERRORS, str(errors))
    with pytest.raises(SystemExit) as exit_info:
        _cpu_worker(0, *args)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ""
    assert [p.read_text() for p in errors.iterdir()] == [
        "dataset source 'no_such_folder': no such folder"
    ]
    assert not torch.distributed.is_initialized()  # the process group was taken down


@pytest.mark.parametrize("status", [1, 2])
def test_launcher_prints_the_workers_error_once(tmp_path, monkeypatch, status):
    """Both workers failed alike with `status`: train_net prints the lowest rank's message
    once and exits with it (not torch's ProcessExitedException traceback)."""

    def workers_exit(*args, **kwargs):
        error_dir = Path(kwargs["args"][7])
        for rank in (1, 0):
            (error_dir / f"{rank:05d}.txt").write_text(f"bad input seen by rank {rank}")
        raise mp.ProcessExitedException(
            f"process 1 terminated with exit code {status}", 1, 4242, status
        )

    monkeypatch.setattr(mp, "start_processes", workers_exit)
    out = tmp_path / "out"
    code, err = train_net(["--num-gpus", WORLD, *search_argv(out)])
    assert code == status
    assert err == "error: bad input seen by rank 0\n"
    assert not out.exists()


def test_launcher_keeps_a_worker_crash_as_an_error(tmp_path, monkeypatch):
    def worker_killed(*args, **kwargs):
        raise mp.ProcessExitedException(
            "process 0 terminated with signal SIGKILL", 0, 4242, -9, "SIGKILL"
        )

    monkeypatch.setattr(mp, "start_processes", worker_killed)
    with pytest.raises(mp.ProcessExitedException):
        train_net(["--num-gpus", WORLD, *search_argv(tmp_path / "out")])


def _children(pid):
    """Child pids of `pid` (Linux /proc: the platform CI runs on)."""
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(p) for p in f.read().split())
    return found


def _running(pid):
    """True while `pid` exists and is not a zombie (one nobody reaped is over too)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
    except (FileNotFoundError, StopIteration, ProcessLookupError):
        return False
    return "Z" not in state.split()[1]


@pytest.mark.slow  # two spawned processes, killed, then a resumed run
def test_killing_the_launcher_ends_its_workers_and_resume_works(tmp_path):
    out = tmp_path / "out"
    argv = ["--num-gpus", WORLD, *search_argv(out, "SOLVER.EPOCHS", "3")]  # 18 iterations
    with open(tmp_path / "launcher.log", "w") as log:
        # as a background job of a script starts it: SIGINT ignored (inherited by the
        # workers), so torch's own parent-death SIGINT cannot end them
        launcher = start_train_net(
            argv, log, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
        )
        try:
            wait_for_checkpoint(launcher, out, tmp_path / "launcher.log", timeout=180)
            workers = _children(launcher.pid)
            assert len(workers) >= WORLD
            launcher.send_signal(signal.SIGKILL)
            launcher.wait()
            # at once: orphans would go on training (here for another 10-20 s) and finish
            deadline = time.monotonic() + 5
            while any(_running(p) for p in workers):
                assert time.monotonic() < deadline, "workers outlived their launcher"
                time.sleep(0.1)
            assert (out / "last_checkpoint").read_text().strip() != "checkpoint_final.pth"
        finally:
            launcher.kill()
            launcher.wait()
    # the README's advice works: no worker holds the run, the port or the folder
    status, err = train_net(["--resume", *argv])
    assert status == 0, err
    assert (out / "last_checkpoint").read_text().strip() == "checkpoint_final.pth"
