"""Content hashes beside the files a run writes (mobile_cv_nas.integrity): recorded when the
file is written, checked when it is loaded, so that a checkpoint whose bytes changed (which
torch.load may still read without complaint) is refused by name with the other checkpoints;
and the temporaries of an interrupted write, removed at the next start."""

import hashlib
import logging
import os
import re
import shutil

import pytest
import torch

from mobile_cv_nas import integrity
from mobile_cv_nas.arch import CheckpointError
from mobile_cv_nas.engine.checkpointer import AtomicCheckpointer
from mobile_cv_nas.io import remove_stray_temporaries, stage_write


def change_bytes(path, count=400):
    """Zero `count` bytes in the middle of `path` (as the reporter's changed checkpoint)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(count)
    path.write_bytes(bytes(data))


def write_file(path, text):
    return integrity.write_with_hash(str(path), lambda f: f.write(text.encode()))


def test_the_hash_is_recorded_beside_the_file_in_sha256sum_format(tmp_path):
    path = tmp_path / "model_final.pth"
    digest = write_file(path, "weights")
    assert digest == hashlib.sha256(b"weights").hexdigest()
    assert (tmp_path / "model_final.pth.sha256").read_text() == f"{digest}  model_final.pth\n"
    assert integrity.verify_hash(path, CheckpointError) is True


def test_changed_bytes_are_refused_with_both_hashes(tmp_path):
    path = tmp_path / "model.pth"
    recorded = write_file(path, "x" * 2000)
    change_bytes(path)
    with pytest.raises(CheckpointError) as err:
        integrity.verify_hash(path, CheckpointError, "Checkpoint", " HINT.")
    msg = str(err.value)
    now = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"Checkpoint {str(path)!r} changed since it was written" in msg
    assert now[:16] in msg and recorded[:16] in msg and msg.count("\n") == 0
    assert " HINT. " in msg and f"delete {str(path) + '.sha256'!r}" in msg


def test_a_file_without_a_record_is_unverified_and_a_bad_record_refused(tmp_path):
    path = tmp_path / "third_party.pth"
    path.write_bytes(b"weights")
    assert integrity.verify_hash(path, CheckpointError) is False
    (tmp_path / "third_party.pth.sha256").write_text("not a hash\n")
    with pytest.raises(CheckpointError, match="does not hold a sha256"):
        integrity.verify_hash(path, CheckpointError)


def test_a_renamed_pair_is_accepted_and_another_files_record_named(tmp_path):
    write_file(tmp_path / "a.pth", "A")
    write_file(tmp_path / "b.pth", "B")
    renamed = tmp_path / "c.pth"
    os.rename(tmp_path / "a.pth", renamed)
    os.rename(tmp_path / "a.pth.sha256", tmp_path / "c.pth.sha256")
    assert integrity.verify_hash(renamed, CheckpointError) is True  # the bytes are intact
    shutil.copy(tmp_path / "b.pth.sha256", tmp_path / "c.pth.sha256")
    with pytest.raises(CheckpointError) as err:
        integrity.verify_hash(renamed, CheckpointError)
    msg = str(err.value)
    assert "c.pth.sha256 records the sha256 of 'b.pth', not of 'c.pth'" in msg
    assert "changed since" not in msg  # the record may be what was copied, not the file


def test_a_replace_that_fails_leaves_no_wrong_hash(tmp_path, monkeypatch):
    """The old hash goes before the file is replaced: a crash in between leaves a file without
    a hash (unverified), never a file with another file's hash (a false alarm)."""
    path = tmp_path / "model_final.pth"
    write_file(path, "old")
    monkeypatch.setattr(integrity.os, "replace", _fail)
    with pytest.raises(OSError, match="crash"):
        write_file(path, "new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old" and integrity.verify_hash(path, CheckpointError) is False
    assert [p.name for p in tmp_path.iterdir()] == ["model_final.pth"]  # no temporary left


def _fail(*args):
    raise OSError("crash")


def test_stray_temporaries_are_removed_and_named(tmp_path):
    stray = stage_write(str(tmp_path / "checkpoint_0000009.pth"), lambda f: f.write(b"half"))
    for name in (".keep", "notes.tmp", ".x.tmp", "checkpoint_0000009.pth.sha256"):
        (tmp_path / name).write_text("mine")
    assert remove_stray_temporaries(tmp_path) == [os.path.basename(stray)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".keep",
        ".x.tmp",
        "checkpoint_0000009.pth.sha256",
        "notes.tmp",
    ]
    assert remove_stray_temporaries(tmp_path / "missing") == []


# --------------------------------------------------------------------------- resume


@pytest.fixture
def saved(tmp_path):
    """An AtomicCheckpointer of a small model with two checkpoints in tmp_path."""
    model = torch.nn.Linear(64, 64)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    checkpointer.logger = logging.getLogger("test_integrity")  # fvcore's may not propagate
    for name in ("checkpoint_0000004", "checkpoint_0000009"):
        checkpointer.save(name, iteration=int(name[-7:]))
    return checkpointer, tmp_path


def test_resume_refuses_a_checkpoint_whose_bytes_changed(saved):
    checkpointer, out = saved
    last = out / "checkpoint_0000009.pth"
    change_bytes(last)
    # torch reads the changed file without a word: only its recorded hash tells
    assert torch.load(last, weights_only=True)["iteration"] == 9
    with pytest.raises(CheckpointError) as err:
        checkpointer.load(checkpointer.get_checkpoint_file())
    msg = str(err.value)
    assert str(last) in msg and "changed since it was written" in msg
    assert (
        "cannot resume from it" in msg and "Other checkpoints there: checkpoint_0000004.pth" in msg
    )
    assert f"write its file name into {str(out / 'last_checkpoint')!r}" in msg
    # the way out it names: the other checkpoint resumes
    (out / "last_checkpoint").write_text("checkpoint_0000004.pth")
    assert checkpointer.load(checkpointer.get_checkpoint_file())["iteration"] == 4


def test_resume_from_a_checkpoint_without_a_hash_warns(saved, caplog):
    checkpointer, out = saved
    os.remove(out / "checkpoint_0000009.pth.sha256")
    with caplog.at_level(logging.WARNING, logger="test_integrity"):
        assert checkpointer.load(checkpointer.get_checkpoint_file())["iteration"] == 9
    assert re.search(r"checkpoint_0000009\.pth' has no recorded sha256.*unverified", caplog.text)


def test_last_checkpoint_naming_a_missing_file_is_a_checkpoint_error(saved):
    checkpointer, out = saved
    os.rename(out / "checkpoint_0000009.pth", out / "renamed.pth")
    with pytest.raises(CheckpointError) as err:
        checkpointer.load(checkpointer.get_checkpoint_file())
    msg = str(err.value)
    assert "checkpoint_0000009.pth', named in" in msg and "is not a file" in msg
    assert "Other checkpoints there: checkpoint_0000004.pth, renamed.pth" in msg
