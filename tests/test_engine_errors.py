"""tools/train_net.py on bad input and on failures: the user's mistakes are exit status 2 and
one line naming the problem with nothing written; a torn checkpoint is refused by name; a
checkpoint write that is interrupted leaves the previous one in force; a non-finite loss
stops the run (exit status 1) with its last good, finite checkpoint named."""

import io
import os
import shutil
import subprocess
import sys

import pytest
import torch
from engine_helpers import (
    REPO_ROOT,
    SEARCH_CONFIG,
    SEARCH_OPTS,
    TOOLS,
    TRAIN_CONFIG,
    one_line_error,
    search_argv,
    snapshot,
    subprocess_env,
    train_net,
)
from PIL import Image

from mobile_cv_nas.engine import checkpointer
from mobile_cv_nas.engine.search_trainer import SearchTrainer

REPO_SPACES = os.path.join(os.path.dirname(SEARCH_CONFIG), "..", "search_spaces")


@pytest.fixture(scope="module")
def run(shared_search_run):
    return shared_search_run


@pytest.fixture
def run_copy(run, tmp_path):
    """A copy of the shared finished search, to change."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


# ------------------------------------------------------------------------------ bad input


def _data_folders(root):
    (root / "empty").mkdir()
    for name in ("cat", "dog"):  # class folders without images
        (root / "no_images" / name).mkdir(parents=True)
        (root / "no_images" / name / "notes.txt").write_text("not an image")
        (root / "bad_image" / name).mkdir(parents=True)  # one of its images is truncated
        Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "bad_image" / name / "0.png")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "bad_image" / "dog" / "1.png")
    cut = (root / "bad_image" / "dog" / "1.png").read_bytes()
    (root / "bad_image" / "dog" / "1.png").write_bytes(cut[: len(cut) // 2])
    (root / "one_class" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "one_class" / "cat" / "0.png")
    return root


def _space_with_unknown_op(root):
    with open(os.path.join(REPO_SPACES, "fashion_mnist.yaml")) as f:
        text = f.read()
    assert "ir_k5, " in text
    path = root / "bad_space.yaml"
    path.write_text(text.replace("ir_k5, ", "ir_k55, "))
    return path


BAD_INPUTS = {
    # name: (overrides, words the one-line message must hold); {root} is the test's folder
    "missing data folder": (
        ["DATA.TRAIN", "{root}/no_such_folder", "DATA.TEST", "{root}/no_such_folder"],
        ["no_such_folder", "no such folder"],
    ),
    "empty data folder": (
        ["DATA.TRAIN", "{root}/empty", "DATA.TEST", "{root}/empty"],
        ["empty", "holds no class subfolders"],
    ),
    "class folders without images": (
        ["DATA.TRAIN", "{root}/no_images", "DATA.TEST", "{root}/no_images"],
        ["no_images", "hold no images", "cat", "dog"],
    ),
    "unreadable image": (
        ["DATA.TRAIN", "{root}/bad_image", "DATA.TEST", "{root}/bad_image"],
        ["bad_image/dog/1.png", "1 of 3 images cannot be read", "DATA.SKIP_BAD_IMAGES True"],
    ),
    "one class": (
        ["DATA.TRAIN", "{root}/one_class", "DATA.TEST", "{root}/one_class"],
        ["one_class has one class folder (cat)", "two classes at least"],
    ),
    "a zero DATA.STD entry": (
        ["DATA.MEAN", "[0.5]", "DATA.STD", "[0.0]"],
        ["DATA.STD = [0.0]", "must be a number > 0"],
    ),
    "DATA.MEAN for 3 channels on 1-channel data": (
        ["DATA.MEAN", "[0.5, 0.5, 0.5]", "DATA.STD", "[0.2, 0.2, 0.2]"],
        ["DATA.MEAN / DATA.STD have 3 values", "1 channel(s)"],
    ),
    "unknown search space": (
        ["NAS.SPACE", "fashion_mnst"],
        ["fashion_mnst", "Available search spaces", "fashion_mnist"],
    ),
    "unknown block op in a space": (
        ["NAS.SPACE", "{root}/bad_space.yaml"],
        ["Unknown block op 'ir_k55'", "Did you mean", "'ir_k5'"],
    ),
    "key typo on the command line": (
        ["NAS.SPCE", "tiny"],
        ["command line", "NAS.SPCE", "Did you mean NAS.SPACE"],
    ),
    "unreachable FLOP target": (
        ["NAS.COST.TARGET_M", "0.001"],
        ["NAS.COST.TARGET_M = 0.001", "cannot be reached", "cheapest", "fashion_mnist"],
    ),
    "both SOLVER.MAX_ITER and SOLVER.EPOCHS": (
        ["SOLVER.MAX_ITER", "7"],  # SEARCH_OPTS set SOLVER.EPOCHS 2
        ["SOLVER.EPOCHS = 2", "SOLVER.MAX_ITER = 7", "SOLVER.EPOCHS 0", "SOLVER.MAX_ITER 40000"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path):
    _data_folders(tmp_path)
    _space_with_unknown_op(tmp_path)
    before = snapshot(tmp_path)
    overrides, words = BAD_INPUTS[case]
    out = tmp_path / "out"
    status, err = train_net(search_argv(out, *(o.format(root=tmp_path) for o in overrides)))
    assert status == 2, err
    line = one_line_error(err)
    for word in words:
        assert word in line, (word, line)
    assert not out.exists()
    assert snapshot(tmp_path) == before


def test_unreadable_image_from_the_command_line(tmp_path):
    """tools/train_net.py as a user runs it: exit status 2, stderr one line, no OUTPUT_DIR."""
    _data_folders(tmp_path)
    out = tmp_path / "out"
    data = ["DATA.TRAIN", tmp_path / "bad_image", "DATA.TEST", tmp_path / "bad_image"]
    result = subprocess.run(
        [sys.executable, str(TOOLS / "train_net.py"), *map(str, search_argv(out, *data))],
        cwd=str(REPO_ROOT),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: DATA.TRAIN and DATA.TEST ({tmp_path}/bad_image): 1 of 3 ")
    assert f"{tmp_path}/bad_image/dog/1.png (PIL cannot open it" in line
    assert not out.exists()


def test_epochs_take_precedence_over_an_unset_max_iter(run):
    """SOLVER.EPOCHS with SOLVER.MAX_ITER at detectron2's default: EPOCHS sets the length, and
    the log says so."""
    log = (run / "log.txt").read_text()
    assert "SOLVER.EPOCHS 2 x 6 iterations per epoch = 12 iterations" in log
    assert "SOLVER.EPOCHS takes precedence over SOLVER.MAX_ITER" in log


def test_key_typo_in_a_yaml_file(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(f"_BASE_: {SEARCH_CONFIG}\nNAS:\n  SPCE: tiny\n")
    out = tmp_path / "out"
    status, err = train_net(["--config-file", config, *SEARCH_OPTS, "OUTPUT_DIR", out])
    assert status == 2
    line = one_line_error(err)
    assert "typo.yaml" in line and "NAS.SPCE" in line and "Did you mean NAS.SPACE" in line
    assert not out.exists()


def test_a_flag_after_the_overrides_is_named(tmp_path):
    """argparse reads everything after the first KEY VALUE as overrides: a trailing --resume
    is named, with where flags go, instead of yacs' "odd length" message."""
    out = tmp_path / "out"
    status, err = train_net([*search_argv(out), "--resume"])
    assert status == 2
    line = one_line_error(err)
    assert "--resume comes after the KEY VALUE overrides" in line and "put flags first" in line
    assert not out.exists()


def test_cuda_device_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    status, err = train_net(search_argv(out, "MODEL.DEVICE", "cuda"))
    assert status == 2
    line = one_line_error(err)
    assert "MODEL.DEVICE" in line and "CUDA is not available" in line and "cpu" in line
    assert not out.exists()


def test_output_dir_holding_a_run_needs_resume(run_copy):
    before = snapshot(run_copy)
    status, err = train_net(search_argv(run_copy))
    assert status == 2
    line = one_line_error(err)
    assert str(run_copy) in line and "holds another run" in line and "--resume" in line
    assert snapshot(run_copy) == before


def test_resume_of_a_run_of_another_task(run_copy):
    before = snapshot(run_copy)
    argv = ["--resume", "--config-file", TRAIN_CONFIG, *SEARCH_OPTS[:4], "OUTPUT_DIR", run_copy]
    status, err = train_net([*argv, "MODEL.MOBILE_CV_NAS.ARCH", run_copy / "arch.yaml"])
    assert status == 2
    line = one_line_error(err)
    assert "TASK = 'search'" in line and "'train'" in line and str(run_copy) in line
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------------------- checkpoints


def test_torn_last_checkpoint_is_refused_by_name(run_copy):
    last = run_copy / (run_copy / "last_checkpoint").read_text().strip()
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])  # a torn write
    before = snapshot(run_copy)
    status, err = train_net(["--resume", *search_argv(run_copy)])
    assert status == 2
    line = one_line_error(err)
    assert str(last) in line and "changed since it was written" in line  # its sha256 tells
    assert snapshot(run_copy) == before  # no log, config, events or checkpoint written
    # without its recorded sha256 (a run of an older version), torch.load tells
    os.remove(f"{last}.sha256")
    status, err = train_net(["--resume", *search_argv(run_copy)])
    assert status == 2
    line = one_line_error(err)
    assert str(last) in line and "truncated or corrupt" in line


def test_checkpoint_with_changed_bytes_is_refused_with_the_others(run_copy):
    """The reporter's case: 400 bytes changed in the middle of the last checkpoint, which
    torch.load reads without a word (see test_integrity), is refused by its sha256."""
    last = run_copy / "checkpoint_final.pth"
    data = bytearray(last.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 400] = bytes(400)
    last.write_bytes(bytes(data))
    before = snapshot(run_copy)
    status, err = train_net(["--resume", *search_argv(run_copy)])
    assert status == 2
    line = one_line_error(err)
    assert f"Checkpoint {str(last)!r} changed since it was written" in line
    assert "Other checkpoints there: checkpoint_0000008.pth, checkpoint_0000011.pth." in line
    assert f"write its file name into {str(run_copy / 'last_checkpoint')!r}" in line
    assert snapshot(run_copy) == before


def test_last_checkpoint_naming_a_missing_file_is_one_line(run_copy):
    (run_copy / "checkpoint_final.pth").rename(run_copy / "final.pth")
    status, err = train_net(["--resume", *search_argv(run_copy)])
    assert status == 2
    line = one_line_error(err)
    assert "checkpoint_final.pth', named in" in line and "is not a file" in line
    assert "final.pth" in line.split("Other checkpoints there:")[1]


def test_garbage_last_checkpoint_is_refused_by_name(run_copy):
    (run_copy / "checkpoint_0000008.pth").write_bytes(b"not a checkpoint at all\n" * 10)
    (run_copy / "last_checkpoint").write_text("checkpoint_0000008.pth")
    before = snapshot(run_copy)
    status, err = train_net(["--resume", *search_argv(run_copy)])
    assert status == 2
    line = one_line_error(err)
    assert str(run_copy / "checkpoint_0000008.pth") in line and "checkpoint_final.pth" in line
    assert snapshot(run_copy) == before


class DiskFull(OSError):
    pass


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    out = tmp_path / "out"
    save = torch.save
    seen = {}

    def save_then_fail(obj, f, *args, **kwargs):
        if "first" not in seen:  # checkpoint_0000002: written as usual
            seen["first"] = save(obj, f, *args, **kwargs)
            return
        seen["previous"] = snapshot(out)  # the folder just before the second write
        buffer = io.BytesIO()
        save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # half of the file, then
        raise DiskFull(28, "No space left on device")

    monkeypatch.setattr(checkpointer.torch, "save", save_then_fail)
    # 6 iterations: checkpoint_0000002, then checkpoint_0000005 fails mid-write
    # the machine's error, not the project's: one line, exit 2
    status, err = train_net(search_argv(out, "SOLVER.EPOCHS", "1"))
    monkeypatch.undo()
    assert status == 2 and "No space left on device" in one_line_error(err)
    assert "previous" in seen
    assert (out / "last_checkpoint").read_text().strip() == "checkpoint_0000002.pth"
    assert not (out / "checkpoint_final.pth").exists()
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    files = snapshot(out)
    for name in ("checkpoint_0000002.pth", "last_checkpoint"):
        assert files[name] == seen["previous"][name], name
    data = torch.load(out / "checkpoint_0000002.pth", map_location="cpu", weights_only=True)
    assert data["trainer"]["iteration"] == 2


# -------------------------------------------------------------------------- non-finite loss


def test_non_finite_loss_stops_at_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "out"
    step = SearchTrainer._step

    def nan_from_iteration_4(self, batches):
        ce, accuracy = step(self, batches)
        return (ce * float("nan") if self.iter >= 4 else ce), accuracy

    monkeypatch.setattr(SearchTrainer, "_step", nan_from_iteration_4)
    status, err = train_net(search_argv(out))
    monkeypatch.undo()
    assert status == 1
    line = one_line_error(err)
    assert "Non-finite weight-step loss" in line and "iteration 4" in line
    assert str(out / "checkpoint_0000002.pth") in line and "new OUTPUT_DIR" in line
    # detectron2's "Exception during training:" traceback is not logged for it either
    assert "Traceback" not in (out / "log.txt").read_text()
    assert (out / "last_checkpoint").read_text().strip() == "checkpoint_0000002.pth"
    assert not (out / "checkpoint_final.pth").exists()
    data = torch.load(out / "checkpoint_0000002.pth", map_location="cpu", weights_only=True)
    weights = [v for v in data["model"].values() if torch.is_tensor(v) and v.is_floating_point()]
    assert weights and all(torch.isfinite(v).all() for v in weights)


def test_exploding_learning_rate_stops_the_run(tmp_path):
    out = tmp_path / "out"
    status, err = train_net(search_argv(out, "SOLVER.BASE_LR", "1e30"))
    assert status == 1
    line = one_line_error(err)
    assert "Non-finite" in line and "(none yet)" in line and "SOLVER.BASE_LR" in line
    assert not (out / "last_checkpoint").exists()
    assert not [p for p in out.iterdir() if p.suffix == ".pth"]
