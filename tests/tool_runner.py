"""Run many command lines of tools/*.py, each in a process of its own, importing torch and
detectron2 once.

A fresh `python tools/train_net.py ...` spends seconds importing before it reads its first
argument, too slow for a table of dozens of bad inputs in a 10-minute suite. This script,
itself started as a subprocess, imports the tools' dependencies, then forks one child per
command line. The child runs the tool's file as `python tools/<tool>.py ARGS` does (runpy,
as __main__, with sys.argv set), in the case's working folder, with its stdout and stderr
in files of their own, and exits with the tool's status; an exception that escapes the tool
prints its traceback and exits 1, as the interpreter does.

    python tests/tool_runner.py < cases.json > results.json

cases.json: [{"tool": "train_net", "argv": [...], "cwd": "...", "env": {...}}, ...];
results.json: [{"status": int, "stdout": str, "stderr": str}, ...] in the same order.
"""

import json
import os
import runpy
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def _preload():
    """What every tool imports: paid once, in this process, before the first fork."""
    with warnings.catch_warnings():  # the tools filter their own; the filters are restored
        warnings.simplefilter("ignore")
        import detectron2.engine  # noqa: F401
        import torch  # noqa: F401

        import mobile_cv_nas.engine  # noqa: F401
        import mobile_cv_nas.publish  # noqa: F401


def _child(case, out_path, err_path):
    """In the forked child: become `python tools/<tool>.py argv` and exit with its status."""
    status = 1
    try:
        for fd, path in ((1, out_path), (2, err_path)):
            file_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(file_fd, fd)
            os.close(file_fd)
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        os.environ.update(case.get("env", {}))
        os.chdir(case.get("cwd") or os.getcwd())
        script = str(TOOLS / f"{case['tool']}.py")
        sys.argv = [script, *map(str, case["argv"])]
        try:
            runpy.run_path(script, run_name="__main__")
            status = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                status = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                status = 1
        except BaseException:  # noqa: BLE001 - what the interpreter does with it
            traceback.print_exc()
            status = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def run(cases):
    _preload()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases):
            out_path, err_path = os.path.join(tmp, f"{i}.out"), os.path.join(tmp, f"{i}.err")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(case, out_path, err_path)
            _, wait_status = os.waitpid(pid, 0)
            results.append(
                {
                    "status": os.waitstatus_to_exitcode(wait_status),
                    "stdout": Path(out_path).read_text(errors="replace"),
                    "stderr": Path(err_path).read_text(errors="replace"),
                }
            )
    return results


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
