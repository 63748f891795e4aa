"""The library is usable without detectron2: importing its packages does not import it
(only mobile_cv_nas.engine and mobile_cv_nas.detection do)."""

import json
import subprocess
import sys

from engine_helpers import REPO_ROOT, subprocess_env

LIBRARY = (
    "layers",
    "blocks",
    "arch",
    "model_zoo",
    "search",
    "flops",
    "data",
    "visualization",
    "publish",
    "config",
)

# In a fresh interpreter: the detectron2 modules loaded after importing the library, then
# after importing the engine (which does use detectron2: the check can see it).
CHECK = """
import importlib, json, sys

def detectron2_modules():
    return sorted(m for m in sys.modules if m == "detectron2" or m.startswith("detectron2."))

for name in {library!r}:
    importlib.import_module("mobile_cv_nas." + name)
library = detectron2_modules()
importlib.import_module("mobile_cv_nas.engine")
print(json.dumps({{"library": library, "engine": detectron2_modules()}}))
"""


def test_library_imports_without_detectron2():
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(library=LIBRARY)],
        cwd=str(REPO_ROOT),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["library"] == []
    assert "detectron2" in loaded["engine"]  # the engine does import it
