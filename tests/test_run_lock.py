"""One run per OUTPUT_DIR (an OS lock held by the launcher for the run's life, released however
the holder ends) and OUTPUT_DIR checked before anything is written: not a file, not under a
file."""

import os
import signal
import subprocess
import sys

import pytest
from engine_helpers import search_argv, subprocess_env, train_net

from mobile_cv_nas.engine.errors import OutputDirError
from mobile_cv_nas.engine.run_lock import lock_path, output_dir_lock


def test_a_second_run_in_a_locked_output_dir_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    with output_dir_lock(str(out)):
        status, err = train_net(search_argv(out))
    assert status == 2
    line = err.strip().splitlines()[-1]
    assert "is in use by another run" in line and f"pid {os.getpid()}" in line
    assert "another folder" in line
    assert not out.exists()  # refused before anything was written


def test_the_lock_is_one_per_folder_however_spelled(tmp_path):
    out = tmp_path / "run"
    assert lock_path(str(out)) == lock_path(f"{tmp_path}/./run/")
    assert lock_path(str(out)) != lock_path(str(tmp_path / "other"))
    with output_dir_lock(str(out)):
        with pytest.raises(OutputDirError, match="in use by another run"):
            with output_dir_lock(f"{tmp_path}/./run"):
                pass
        with output_dir_lock(str(tmp_path / "other")):  # another folder: free
            pass
    with output_dir_lock(str(out)):  # released at the end of the block
        pass


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    out = str(tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from mobile_cv_nas.engine.run_lock import output_dir_lock\n"
            "with output_dir_lock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(120)\n",
            out,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirError, match=f"pid {holder.pid}"):
            with output_dir_lock(out):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with output_dir_lock(out):  # free again: no stale marker
            pass
    finally:
        holder.kill()
        holder.wait()


def test_an_output_dir_that_is_a_file_is_refused_and_left_alone(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's notes\n")
    status, err = train_net(search_argv(notes))
    assert status == 2
    assert "is a file, not a folder" in err.strip().splitlines()[-1]
    assert notes.read_text() == "the user's notes\n"


def test_an_output_dir_under_a_file_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    status, err = train_net(search_argv(notes / "run"))
    assert status == 2
    assert "which is a file" in err.strip().splitlines()[-1]
    assert notes.read_text() == "x"


def test_a_batch_that_does_not_divide_by_the_processes_is_refused_before_spawning(tmp_path):
    out = tmp_path / "run"
    status, err = train_net(["--num-gpus", "2", *search_argv(out, "SOLVER.IMS_PER_BATCH", "15")])
    assert status == 2
    line = err.strip().splitlines()[-1]
    assert "SOLVER.IMS_PER_BATCH = 15" in line and "multiple of 2" in line
    assert not out.exists()
    status, err = train_net(["--num-gpus", "0", *search_argv(out)])
    assert status == 2 and "--num-gpus 0" in err
