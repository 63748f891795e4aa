"""One run per OUTPUT_DIR: an exclusive OS lock (flock) that the launcher holds for the run's
whole life, taken before anything is written.

Why an OS lock rather than a marker file: the kernel releases it when the holder ends, however
it ends (kill -9 included), so a crashed run never blocks the next one, and two runs started
together cannot both get it. The lock file lives in the temporary folder, named by the output
folder's real path, so taking it writes nothing into OUTPUT_DIR (a run whose input is then
refused leaves no folder behind). It records its holder (pid, start time, command) for the
message a second run prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import time

from .errors import OutputDirError


def lock_path(output_dir: str) -> str:
    """The lock file of `output_dir` (any spelling of the same folder gives the same file)."""
    real = os.path.realpath(os.path.abspath(output_dir))
    digest = hashlib.sha256(real.encode()).hexdigest()[:20]
    folder = os.path.join(tempfile.gettempdir(), f"mobile_cv_nas-locks-{os.getuid()}")
    return os.path.join(folder, f"{digest}.lock")


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that is still starting"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid')}, started {started}: {info.get('command', '?')}"


@contextlib.contextmanager
def output_dir_lock(output_dir: str):
    """Hold the exclusive lock of `output_dir` for the duration of the `with` block; a second
    holder is refused at once with an OutputDirError naming the first."""
    path = lock_path(output_dir)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirError(
                f"OUTPUT_DIR {output_dir!r} is in use by another run ({_holder(fd)}). Wait for "
                f"it to end, or set OUTPUT_DIR to another folder."
            ) from None
        info = {"pid": os.getpid(), "started": time.time(), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode())
        yield path
    finally:
        os.close(fd)  # releases the lock
