#!/usr/bin/env bash
# The one entry point for developers and CI.
#
#   bash tools/dev.sh test [pytest args...]      the linter, then the test suite (CI: .ci/run),
#                                                on 2 worker processes (pytest-xdist)
#   bash tools/dev.sh test -m "not slow"         the quick tier, for local work (leaves out the
#                                                paper-scale, ImageNet-config and 2-process tests)
#   bash tools/dev.sh lint [--fix] [paths...]    ruff check + ruff format --check (--fix: apply)
#   bash tools/dev.sh search [train_net args...] run a DMaskingNAS search (tools/train_net.py;
#                                                no arguments: the CPU demo config)
#
# On first use it creates .venv (python3 -m venv), installs the pinned torch/torchvision,
# this package in editable mode with its test extras (pytest, pytest-xdist, ruff), and, when
# `import detectron2` fails, detectron2 0.6 from its Python sources (tools/install_detectron2.sh;
# a detectron2 you installed yourself is kept). Later runs skip the
# installs while .venv still matches (a stamp keyed on a hash of setup.py, pyproject.toml and
# the pins). Set PYTHON to pick the interpreter that creates .venv (default: python3; Python
# 3.10-3.14, the versions the pinned torch has wheels for). SKIP_LINT=1 makes `test` skip the
# linter (local use only; .ci/run always lints).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.mobile_cv_nas-dev-stamp"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
# The Python versions torch==$TORCH_VERSION has wheels for (CPython); python_requires in setup.py
# is the same floor.
PY_MIN="3.10"
PY_MAX="3.14"

usage() {
    cat <<USAGE
usage: bash tools/dev.sh <command> [args...]

commands:
  test     the linter (as 'lint'), then the tests: python -m pytest -q tests [args...] on
           2 worker processes (MOBILE_CV_NAS_TEST_WORKERS, 0: one process)
           (SKIP_LINT=1 skips the linter; CI never does). Everything runs by default, as in
           CI; for quick local work leave out the tests marked slow (the paper-scale F/L/P
           supernets, the ImageNet config runs, the 2-process runs; see pytest.ini):
             bash tools/dev.sh test -m "not slow"
  lint     ruff check . and ruff format --check . (configuration: pyproject.toml);
           'lint --fix' applies ruff's fixes and formats the code; paths narrow it down
  search   run a DMaskingNAS search: python tools/train_net.py [args...]; with no arguments
           the CPU demo (--config-file configs/search/fashion_mnist_cpu.yaml)

The first run creates .venv with \$PYTHON (default python3; Python $PY_MIN-$PY_MAX) and installs
torch==$TORCH_VERSION, torchvision==$TORCHVISION_VERSION and this package
(pip install -e '.[test]').
USAGE
}

log() { echo "[dev.sh] $*" >&2; }

# "X.Y" of the interpreter $1; nothing (and a failure) when it does not run as Python.
py_version() {
    local v
    v="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || return 1
    [[ "$v" =~ ^[0-9]+\.[0-9]+$ ]] || return 1
    echo "$v"
}

# True when version $1 >= version $2 (both "X.Y").
version_ge() {
    local a_major="${1%%.*}" a_minor="${1#*.}" b_major="${2%%.*}" b_minor="${2#*.}"
    ((a_major > b_major || (a_major == b_major && a_minor >= b_minor)))
}

too_old() {
    log "error: $1 is Python $2: mobile_cv_nas needs Python >= $PY_MIN (torch $TORCH_VERSION has" \
        "no wheels for $2); set PYTHON=/path/to/python$PY_MIN+"
}

# The interpreter that creates .venv: $PYTHON, else python3; Python PY_MIN..PY_MAX.
check_base_python() {
    local base="$1" v
    if ! command -v "$base" >/dev/null 2>&1; then
        log "error: $base not found; mobile_cv_nas needs Python >= $PY_MIN: install it, or set" \
            "PYTHON=/path/to/python$PY_MIN+"
        exit 1
    fi
    if ! v="$(py_version "$base")"; then
        log "error: '$base' does not run as a Python interpreter;" \
            "set PYTHON=/path/to/python$PY_MIN+"
        exit 1
    fi
    if ! version_ge "$v" "$PY_MIN"; then
        too_old "$base" "$v"
        exit 1
    fi
    if ! version_ge "$PY_MAX" "$v"; then
        log "error: $base is Python $v: torch $TORCH_VERSION (pinned here) has wheels for Python" \
            "$PY_MIN-$PY_MAX only; set PYTHON=/path/to/python$PY_MIN-$PY_MAX"
        exit 1
    fi
}

# An existing .venv: its interpreter still runs and is recent enough.
check_venv_python() {
    local v
    if ! v="$(py_version "$PY")"; then
        log "error: $PY does not run (was its base interpreter removed or upgraded?)."
        log "Remove .venv (rm -rf .venv) and rerun; set PYTHON=/path/to/python$PY_MIN+ to pick one."
        exit 1
    fi
    if ! version_ge "$v" "$PY_MIN"; then
        too_old ".venv ($PY)" "$v"
        log "Remove .venv (rm -rf .venv) and rerun, with PYTHON=/path/to/python$PY_MIN+ if" \
            "python3 is older, to recreate it."
        exit 1
    fi
}

# A key for "what .venv was set up from"; any change to it re-runs the installs.
env_key() {
    "$PY" - "$TORCH_VERSION" "$TORCHVISION_VERSION" <<'PYEOF'
import hashlib, sys
h = hashlib.sha256(" ".join(sys.argv[1:]).encode())
for name in ("setup.py", "pyproject.toml"):
    try:
        with open(name, "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    except FileNotFoundError:
        pass
print(h.hexdigest())
PYEOF
}

# True when .venv has the pinned torch/torchvision (checked without importing torch).
torch_ok() {
    "$PY" - "$TORCH_VERSION" "$TORCHVISION_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want_torch, want_tv = sys.argv[1:]
base = lambda v: v.split("+")[0]
sys.exit(0 if base(version("torch")) == want_torch and base(version("torchvision")) == want_tv else 1)
PYEOF
}

# True when mobile_cv_nas imports, from outside the checkout, as this checkout's sources,
# and its dependencies and the test extras (pytest, pytest-xdist, ruff) are installed.
package_ok() {
    local found
    found="$(cd / && "$PY" - <<'PYEOF' 2>/dev/null
import importlib.util, os
import mobile_cv_nas
needed = ("fvcore", "iopath", "yaml", "numpy", "pytest", "xdist", "ruff")
missing = [m for m in needed if importlib.util.find_spec(m) is None]
print("missing: " + " ".join(missing) if missing else os.path.dirname(os.path.realpath(mobile_cv_nas.__file__)))
PYEOF
)" || return 1
    [ "$found" = "$(cd "$ROOT/mobile_cv_nas" && pwd -P)" ]
}

# True when detectron2 (any build: ours from tools/install_detectron2.sh, or the user's own)
# imports with the engine this project's launcher uses.
detectron2_ok() {
    (cd / && "$PY" -W ignore -c "import detectron2.engine" >/dev/null 2>&1)
}

# Editable installs of a pyproject.toml project need pip >= 21.3.
ensure_pip() {
    if ! "$PY" - <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if tuple(int(p) for p in version("pip").split(".")[:2]) >= (21, 3) else 1)
PYEOF
    then
        log "upgrading pip (editable installs need pip >= 21.3)"
        "$PY" -m pip install --upgrade "pip>=21.3"
    fi
}

ensure_env() {
    if [ ! -x "$PY" ]; then
        local base="${PYTHON:-python3}"
        check_base_python "$base"
        log "creating $VENV with $("$base" --version 2>&1)"
        if ! "$base" -m venv "$VENV"; then
            log "error: '$base -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)."
            rm -rf "$VENV"
            exit 1
        fi
    fi
    check_venv_python

    local key
    key="$(env_key)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] && torch_ok && package_ok \
        && detectron2_ok; then
        return 0
    fi

    ensure_pip
    local flags=()
    if [ -n "${CI:-}" ] || [ ! -t 1 ]; then
        flags+=(--progress-bar off)
    fi
    if torch_ok; then
        log "torch==$TORCH_VERSION and torchvision==$TORCHVISION_VERSION already installed"
    else
        log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
        "$PY" -m pip install ${flags[@]+"${flags[@]}"} "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
    fi
    log "installing mobile_cv_nas (pip install -e '.[test]')"
    "$PY" -m pip install ${flags[@]+"${flags[@]}"} -e ".[test]"
    if ! package_ok; then
        log "error: mobile_cv_nas does not import from $VENV after the install."
        exit 1
    fi
    if detectron2_ok; then
        log "detectron2 already installed: kept"
    else
        log "installing detectron2 0.6 from its Python sources (tools/install_detectron2.sh)"
        bash "$ROOT/tools/install_detectron2.sh" "$VENV"
    fi
    echo "$key" >"$STAMP"
}

run_env() {
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
}

# ruff check + ruff format --check on [paths...] (default: the checkout). With 'fix' as $1:
# ruff's safe fixes, then the formatter, then a check that reports what is left to do by hand.
run_lint() {
    local fix="$1" status=0
    shift
    if [ $# -eq 0 ]; then set -- .; fi
    if [ "$fix" = fix ]; then
        "$PY" -m ruff check --fix-only --quiet "$@" || status=$?
        "$PY" -m ruff format "$@" || status=$?
        "$PY" -m ruff check "$@" || status=$?
        if [ "$status" -ne 0 ]; then
            log "lint --fix: what is reported above has no safe automatic fix; fix it by hand."
        fi
        return "$status"
    fi
    "$PY" -m ruff check "$@" || status=$?
    "$PY" -m ruff format --check "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        log "lint failed. 'bash tools/dev.sh lint --fix' applies ruff's fixes and formats the code;"
        log "fix what it reports as left by hand (configuration: [tool.ruff] in pyproject.toml)."
    fi
    return "$status"
}

cmd="${1:-}"
if [ $# -gt 0 ]; then shift; fi

case "$cmd" in
    lint)
        fix=check
        paths=()
        for arg in "$@"; do
            case "$arg" in
                --fix) fix=fix ;;
                -*)
                    log "error: unknown lint option '$arg' (lint [--fix] [paths...])"
                    exit 2
                    ;;
                *) paths+=("$arg") ;;
            esac
        done
        ensure_env
        run_lint "$fix" ${paths[@]+"${paths[@]}"}
        ;;
    test)
        ensure_env
        if [ "${SKIP_LINT:-}" = 1 ]; then
            log "SKIP_LINT=1: not running the linter"
        elif ! run_lint check; then
            log "test: stopped before pytest because the linter failed (SKIP_LINT=1 skips it)."
            exit 1
        fi
        run_env
        # `tests` unless the arguments already name test files or folders.
        targets=(tests)
        for arg in "$@"; do
            if [[ "$arg" != -* ]] && [ -e "${arg%%::*}" ]; then
                targets=()
                break
            fi
        done
        # Two worker processes (pytest-xdist), one torch thread each: the suite is mostly
        # single-threaded torch work, so on 2 cores it takes about half the time. A module's
        # tests stay on one worker (--dist loadscope), so its fixtures are built once.
        # MOBILE_CV_NAS_TEST_WORKERS=0 runs everything in this process.
        workers="${MOBILE_CV_NAS_TEST_WORKERS:-2}"
        parallel=()
        if [[ ! "$workers" =~ ^[0-9]+$ ]]; then
            log "error: MOBILE_CV_NAS_TEST_WORKERS must be a number (0: no worker processes)," \
                "got '$workers'"
            exit 2
        elif [ "$workers" -gt 1 ]; then
            parallel=(-n "$workers" --dist loadscope)
        fi
        exec "$PY" -m pytest -q ${parallel[@]+"${parallel[@]}"} ${targets[@]+"${targets[@]}"} "$@"
        ;;
    search)
        ensure_env
        run_env
        # No arguments: the CPU demo (the embedded Fashion-MNIST subset, or the full set when
        # the Debian package dataset-fashion-mnist is installed), a few minutes on 2 cores.
        if [ $# -eq 0 ]; then
            set -- --config-file configs/search/fashion_mnist_cpu.yaml
        fi
        exec "$PY" tools/train_net.py "$@"
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        if [ -n "$cmd" ]; then log "error: unknown command '$cmd'"; fi
        usage >&2
        exit 2
        ;;
esac
