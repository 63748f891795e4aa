"""Config files that cannot be read end the command with exit 2 and one line naming the file
(and the line of a YAML syntax error): a syntax error, a missing _BASE_, a _BASE_ loop,
a file that is not KEY: VALUE pairs. Nothing is written."""

import pytest
from engine_helpers import SEARCH_CONFIG, train_net


def _run(config, tmp_path):
    out = tmp_path / "out"
    status, err = train_net(["--config-file", str(config), "OUTPUT_DIR", str(out)])
    assert status == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert not out.exists()
    return lines[0]


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_BASE_: {SEARCH_CONFIG}\nNAS:\n  SPACE: [tiny\nSOLVER:\n  BASE_LR: 0.1\n")
    line = _run(bad, tmp_path)
    assert "bad.yaml" in line and "line " in line and "not valid YAML" in line


def test_a_syntax_error_in_a_base_names_the_base(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("NAS: {SPACE: tiny\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\n")
    line = _run(child, tmp_path)
    assert "base.yaml" in line and "not valid YAML" in line


def test_a_missing_base_is_named(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: ../nowhere/Base.yaml\nTASK: search\n")
    line = _run(child, tmp_path)
    assert "child.yaml" in line and "'../nowhere/Base.yaml' does not exist" in line


@pytest.mark.parametrize("length", [1, 3])
def test_a_base_loop_is_one_line(tmp_path, length):
    names = [f"c{i}.yaml" for i in range(length)]
    for i, name in enumerate(names):
        (tmp_path / name).write_text(f"_BASE_: {names[(i + 1) % length]}\n")
    line = _run(tmp_path / names[0], tmp_path)
    assert "_BASE_ chain loops" in line and " -> ".join([*names, names[0]]) in line


def test_a_file_that_is_not_key_value_pairs(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- TASK\n- search\n")
    line = _run(bad, tmp_path)
    assert "list.yaml" in line and "not KEY: VALUE pairs" in line
