"""Start a run in one or several processes: detectron2's `launch` on GPUs, and the same
on CPU with the gloo backend.

detectron2's launcher asserts CUDA in every worker it spawns (and uses NCCL), so it runs more
than one process only on GPUs; on CPU this module spawns the workers itself, sets up
detectron2's process groups the same way, and then calls the same main function. Errors
that are the user's (a bad config, data folder, ...) end a worker with exit status 2 and
one message, not a traceback per process.

Workers end with their launcher (`end_with_launcher`), however it ends: a worker that
outlived a killed launcher would finish the run on its own, keep the rendezvous port bound
and race the `--resume` the user starts next.
"""

import ctypes
import datetime
import functools
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

logger = logging.getLogger(__name__)
# torch's spawn logs each worker it stops after another one failed; that worker's own
# one-line error (printed by the launcher) is what the user needs
logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)

TIMEOUT = datetime.timedelta(minutes=30)
#: The exit statuses of a worker that printed its error (a user error, a non-finite loss).
REPORTED_EXITS = (1, 2)


class WorkerExit(Exception):
    """A worker ended with `status` and its one-line error (the message; empty when it left
    none): the launcher prints it once and exits with that status, without a traceback."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_launcher(launcher_pid):
    """Make this worker process end when its launcher (`launcher_pid`, its parent) does: the
    kernel's parent-death signal on Linux, else a thread that watches the parent; and at
    once if the launcher is already gone."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != launcher_pid:  # it died before the signal was armed
        os._exit(1)
    if not armed:

        def watch():
            while os.getppid() == launcher_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="end-with-launcher", daemon=True).start()


def _run_reporting_errors(main_func, args, user_errors, error_dir):
    """`main_func(*args)` in a worker; a user error (status 2) or a non-finite loss (1) ends
    the worker with its one-line message left in `error_dir` for the launcher to print once,
    instead of one message per process. Anything else keeps its traceback."""
    try:
        return main_func(*args)
    except (*user_errors, FloatingPointError) as e:
        status = 1 if isinstance(e, FloatingPointError) else 2
        rank = comm.get_rank()
        with open(os.path.join(error_dir, f"{rank:05d}.txt"), "w") as f:
            f.write(" ".join(str(e).split()))
        sys.exit(status)


def _reported_error(error_dir):
    """The message of the lowest rank that left one (all ranks usually fail alike)."""
    names = sorted(os.listdir(error_dir)) if os.path.isdir(error_dir) else []
    for name in names:
        with open(os.path.join(error_dir, name)) as f:
            return f.read()
    return ""


def _gpu_worker_main(launcher_pid, main_func, user_errors, error_dir, *args):
    """detectron2's workers run this: tied to the launcher, then `main_func(*args)`."""
    end_with_launcher(launcher_pid)
    return _run_reporting_errors(main_func, args, user_errors, error_dir)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_local_group(processes_per_machine, machine_rank, num_machines):
    """detectron2's per-machine process group (comm.get_local_rank/size), in the API of
    the installed detectron2 (0.6 keeps a module global; newer ones have a function)."""
    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(processes_per_machine)
        return
    for m in range(num_machines):
        ranks = list(range(m * processes_per_machine, (m + 1) * processes_per_machine))
        group = dist.new_group(ranks)
        if m == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def _cpu_worker(
    local_rank,
    main_func,
    processes,
    num_machines,
    machine_rank,
    url,
    args,
    user_errors,
    error_dir,
    launcher_pid=None,
):
    if launcher_pid is not None:
        end_with_launcher(launcher_pid)
    rank = machine_rank * processes + local_rank
    try:
        dist.init_process_group(
            "gloo",
            init_method=url,
            world_size=processes * num_machines,
            rank=rank,
            timeout=TIMEOUT,
        )
    except Exception as e:
        logger.error(f"Process group initialisation at {url} failed: {e}")
        raise
    _set_local_group(processes, machine_rank, num_machines)
    comm.synchronize()
    try:
        _run_reporting_errors(main_func, args, user_errors, error_dir)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(
    main_func,
    num_processes,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    device="cuda",
    user_errors=(),
):
    """Run `main_func(*args)` in `num_processes` processes per machine.

    On CUDA this is detectron2's `launch`; on CPU (`device` "cpu", or no CUDA) several
    processes use gloo over `dist_url` (tcp://host:port, "auto" or None: a free local port).
    """
    world = num_machines * num_processes
    if world <= 1:
        return d2_launch(main_func, 1, args=args)
    error_dir = tempfile.mkdtemp(prefix="mobile_cv_nas-errors-")
    try:
        return _launch_workers(
            main_func,
            num_processes,
            num_machines,
            machine_rank,
            dist_url,
            args,
            device,
            tuple(user_errors),
            error_dir,
        )
    except mp.ProcessExitedException as e:
        if e.exit_code in REPORTED_EXITS:
            raise WorkerExit(e.exit_code, _reported_error(error_dir)) from None
        raise
    finally:
        shutil.rmtree(error_dir, ignore_errors=True)


def _launch_workers(
    main_func,
    num_processes,
    num_machines,
    machine_rank,
    dist_url,
    args,
    device,
    user_errors,
    error_dir,
):
    use_cpu = torch.device(device).type == "cpu" or not torch.cuda.is_available()
    if not use_cpu:  # detectron2 spawns the workers: tie them to this process
        main_func = functools.partial(
            _gpu_worker_main, os.getpid(), main_func, user_errors, error_dir
        )
        return d2_launch(
            main_func,
            num_processes,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=args,
        )
    if dist_url in (None, "auto"):
        if num_machines > 1:
            raise ValueError("--dist-url auto works on one machine only: give tcp://host:port.")
        dist_url = f"tcp://127.0.0.1:{free_port()}"
    mp.start_processes(
        _cpu_worker,
        nprocs=num_processes,
        args=(
            main_func,
            num_processes,
            num_machines,
            machine_rank,
            dist_url,
            args,
            user_errors,
            error_dir,
            os.getpid(),
        ),
        join=True,
        daemon=False,
        start_method="spawn",
    )
