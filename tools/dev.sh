#!/usr/bin/env bash
# The one entry point for developers and CI.
#
#   bash tools/dev.sh test [pytest args...]      run the test suite
#   bash tools/dev.sh search [train_net args...] run a DMaskingNAS search (tools/train_net.py)
#
# On first use it creates .venv (python3 -m venv), installs the pinned torch/torchvision and
# then this package in editable mode with its test extras. Later runs skip the installs while
# .venv still matches (a stamp keyed on a hash of setup.py, pyproject.toml and the pins).
# Set PYTHON to pick the interpreter that creates .venv (default: python3, >= 3.9).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.mobile_cv_nas-dev-stamp"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"

usage() {
    cat <<USAGE
usage: bash tools/dev.sh <command> [args...]

commands:
  test     run the tests: python -m pytest -q tests [args...]
  search   run a DMaskingNAS search: python tools/train_net.py [args...]

The first run creates .venv and installs torch==$TORCH_VERSION, torchvision==$TORCHVISION_VERSION
and this package (pip install -e '.[test]').
USAGE
}

log() { echo "[dev.sh] $*" >&2; }

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
# and its dependencies and pytest are installed.
package_ok() {
    local found
    found="$(cd / && "$PY" - <<'PYEOF' 2>/dev/null
import importlib.util, os
import mobile_cv_nas
missing = [m for m in ("fvcore", "iopath", "yaml", "numpy", "pytest") if importlib.util.find_spec(m) is None]
print("missing: " + " ".join(missing) if missing else os.path.dirname(os.path.realpath(mobile_cv_nas.__file__)))
PYEOF
)" || return 1
    [ "$found" = "$(cd "$ROOT/mobile_cv_nas" && pwd -P)" ]
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
        if ! command -v "$base" >/dev/null 2>&1; then
            log "error: $base not found; install Python >= 3.9 (or set PYTHON=/path/to/python3)."
            exit 1
        fi
        if ! "$base" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
            log "error: $base is $("$base" --version 2>&1); mobile_cv_nas needs Python >= 3.9."
            exit 1
        fi
        log "creating $VENV with $("$base" --version 2>&1)"
        if ! "$base" -m venv "$VENV"; then
            log "error: '$base -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)."
            rm -rf "$VENV"
            exit 1
        fi
    fi

    local key
    key="$(env_key)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] && torch_ok && package_ok; then
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
    echo "$key" >"$STAMP"
}

run_env() {
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
}

cmd="${1:-}"
if [ $# -gt 0 ]; then shift; fi

case "$cmd" in
    test)
        ensure_env
        run_env
        # `tests` unless the arguments already name test files or folders.
        targets=(tests)
        for arg in "$@"; do
            if [[ "$arg" != -* ]] && [ -e "${arg%%::*}" ]; then
                targets=()
                break
            fi
        done
        exec "$PY" -m pytest -q ${targets[@]+"${targets[@]}"} "$@"
        ;;
    search)
        if [ ! -f "$ROOT/tools/train_net.py" ]; then
            log "error: tools/train_net.py is not in this checkout yet: the search launcher"
            log "arrives with a later change. 'bash tools/dev.sh test' runs the tests meanwhile."
            exit 2
        fi
        ensure_env
        run_env
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
