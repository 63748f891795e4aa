#!/usr/bin/env bash
# Install detectron2 (v0.6, Python sources only, no C++/CUDA ops) into a virtualenv.
#
#   bash tools/install_detectron2.sh [VENV]      (default VENV: .venv of this checkout)
#
# detectron2 is not on PyPI in built form. The sdist `pb1-detectron2==0.6` carries the v0.6
# Python sources; this script builds it as a pure-Python wheel:
#   * no C++ extension (a placeholder detectron2/_C.py makes imports work and makes the few
#     compiled ops -- deformable conv backward, rotated boxes, fast COCO eval -- raise a clear
#     ImportError when used; the paths this project uses do not need them);
#   * the model-zoo config YAMLs are shipped (the sdist's setup.py globs them from the cwd);
#   * dev/caffe2-only requirements (black, future, pydot) are dropped, the runtime ones are
#     installed explicitly, and numpy>=1.24 works (the removed np.bool/np.int/np.float
#     aliases are replaced by the builtins).
# tools/dev.sh runs this only when `import detectron2` fails: a detectron2 you built yourself
# (0.6 or newer) is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
PY="$VENV/bin/python"
SDIST="pb1-detectron2==0.6"
SDIST_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

log() { echo "[install_detectron2] $*" >&2; }

if [ ! -x "$PY" ]; then
    log "error: $PY not found: create the virtualenv first (bash tools/dev.sh test does)."
    exit 1
fi
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    log "error: torch is not installed in $VENV; detectron2's setup.py imports it."
    exit 1
fi

flags=()
if [ -n "${CI:-}" ] || [ ! -t 1 ]; then
    flags+=(--progress-bar off)
fi

# 1) detectron2 0.6's runtime requirements, with the pins it needs on today's packages:
#    Pillow<10 (Image.LINEAR), setuptools<81 (pkg_resources in detectron2/model_zoo).
log "installing detectron2's runtime requirements"
"$PY" -m pip install ${flags[@]+"${flags[@]}"} \
    'Pillow>=7.1,<10' 'setuptools<81' 'pycocotools>=2.0.2' 'termcolor>=1.1' 'yacs>=0.1.8' \
    tabulate cloudpickle 'tqdm>4.29.0' tensorboard 'fvcore>=0.1.5,<0.1.6' \
    'iopath>=0.1.7,<0.1.10' 'omegaconf>=2.1' 'hydra-core>=1.1'

# 2) the sdist, checked against its known sha256 (--no-build-isolation: its metadata step
#    imports torch).
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log "downloading $SDIST (Python sources, ~520 KB)"
"$PY" -m pip download ${flags[@]+"${flags[@]}"} --no-deps --no-binary :all: \
    --no-build-isolation -d "$WORK" "$SDIST"
ARCHIVE="$WORK/pb1-detectron2-0.6.tar.gz"
echo "$SDIST_SHA256  $ARCHIVE" | sha256sum -c --quiet -
tar xzf "$ARCHIVE" -C "$WORK"
SRC="$WORK/pb1-detectron2-0.6"

# 3) setup.py: no extension, ship the model-zoo configs, drop dev/caffe2-only requirements.
sed -i 's/^    ext_modules=get_extensions(),$/    ext_modules=[],/' "$SRC/setup.py"
sed -i 's/^    package_data={"detectron2.model_zoo": get_model_zoo_configs()},$/    package_data={"detectron2.model_zoo": ["configs\/**\/*.yaml", "configs\/**\/*.py"]},/' \
    "$SRC/setup.py"
sed -i -e '/"black==21.4b2",/d' -e '/"future",  # used by caffe2/d' \
    -e '/"pydot",  # used to save caffe2 SVGs/d' "$SRC/setup.py"
if ! grep -q '^    ext_modules=\[\],$' "$SRC/setup.py" \
    || ! grep -q '"configs/\*\*/\*.yaml"' "$SRC/setup.py"; then
    log "error: the sdist's setup.py is not the one this script knows how to patch."
    exit 1
fi

# 4) numpy >= 1.24 removed np.bool / np.int / np.float: use the builtins.
grep -rlE 'np\.(bool|int|float)[^_0-9a-zA-Z]' "$SRC/detectron2" --include=*.py \
    | xargs -r sed -i -E 's/np\.(bool|int|float)([^_0-9a-zA-Z])/\1\2/g'

# 5) a placeholder for the compiled extension: imports work, using a compiled op raises.
cat >"$SRC/detectron2/_C.py" <<'PYEOF'
"""Placeholder for detectron2's compiled extension (installed by mobile_cv_nas's
tools/install_detectron2.sh from Python sources): imports work, using a compiled op raises."""

_MESSAGE = (
    "detectron2._C.{0} is a compiled C++/CUDA op, but this detectron2 was installed from "
    "Python sources without its C++ extension. Features that need it (deformable conv "
    "backward, rotated boxes, ROIAlignRotated, nms_rotated, COCOEvaluator(use_fast_impl=True)) "
    "are unavailable: use use_fast_impl=False, or build detectron2 with its compiled ops."
)


def get_compiler_version():
    return "not built (pure-Python detectron2: detectron2._C is a placeholder)"


def get_cuda_version():
    return "not built"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(_MESSAGE.format(name), name="detectron2._C")
PYEOF

# 6) build and install the pure-Python wheel.
log "building and installing detectron2 0.6 (pure Python)"
"$PY" -m pip install ${flags[@]+"${flags[@]}"} --no-deps --no-build-isolation "$SRC"

# 7) sanity: it imports, with its engine and model-zoo configs.
"$PY" - <<'PYEOF'
import warnings

warnings.filterwarnings("ignore", category=UserWarning)
import detectron2
from detectron2 import model_zoo
from detectron2.engine import TrainerBase  # noqa: F401

model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
print(f"[install_detectron2] detectron2 {detectron2.__version__} installed")
PYEOF
