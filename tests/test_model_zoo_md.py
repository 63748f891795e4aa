"""model_zoo/MODEL_ZOO.md is generated from the catalog and must be up to date."""

import subprocess
import sys

TOOL = "tools/model_zoo_md.py"


def run_tool(repo_root, *args):
    return subprocess.run(
        [sys.executable, str(repo_root / TOOL), *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_model_zoo_md_is_up_to_date(repo_root):
    result = run_tool(repo_root, "--check")
    assert result.returncode == 0, result.stderr + "\nrun: python tools/model_zoo_md.py"


def test_check_detects_a_stale_file(repo_root, tmp_path):
    out = tmp_path / "MODEL_ZOO.md"
    assert run_tool(repo_root, "--output", str(out)).returncode == 0
    text = out.read_text()
    for name in ["FBNetV2_F1", "FBNetV2_L2", "fbnet_c", "FBNetV2_F5", "56.41", "423.91"]:
        assert name in text
    assert run_tool(repo_root, "--check", "--output", str(out)).returncode == 0
    out.write_text(text.replace("56.41", "56.40"))
    stale = run_tool(repo_root, "--check", "--output", str(out))
    assert stale.returncode == 1 and "stale" in stale.stderr
    assert run_tool(repo_root, "--check", "--output", str(tmp_path / "absent.md")).returncode == 1
