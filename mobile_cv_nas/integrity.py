"""Content hashes recorded beside the files a run writes (checkpoints, final weights), so that
a file whose bytes changed afterwards (a flipped bit, a partial copy, an edit, another file
copied over it) is refused by name instead of loaded without a word.

Why beside the file, `<file>.sha256` in `sha256sum`'s format (`sha256sum -c` checks it too),
rather than inside: it is checked without unpickling anything, works for any file, and leaves
the official checkpoint layout as it is. The hash is taken of the complete temporary file,
before it is renamed into place; the hash of a file being replaced is removed first, so a
crash between the two renames leaves a file with no hash (used with a warning where it
matters), never one with a wrong hash.
"""

import contextlib
import os
import re

from .io import atomic_write, sha256sum, stage_write

SUFFIX = ".sha256"
_LINE = re.compile(r"([0-9a-fA-F]{64})(?:[ \t]\*?(.*?))?\n?", re.DOTALL)


def hash_path(path):
    """Where the sha256 of `path` is recorded: `<path>.sha256`."""
    return os.fspath(path) + SUFFIX


def remove_hash(path):
    """Remove the sha256 recorded for `path` (when the file itself is removed)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(hash_path(path))


def write_with_hash(path, write, mode="wb"):
    """io.atomic_write of `path`, then its sha256 recorded beside it (atomically too); returns
    the sha256."""
    tmp = stage_write(path, write, mode)
    try:
        digest = sha256sum(tmp)
        remove_hash(path)  # from here until the new hash is written, the file has none
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    name = os.path.basename(path)
    atomic_write(hash_path(path), lambda f: f.write(f"{digest}  {name}\n"), mode="w")
    return digest


def recorded_sha256(path):
    """The sha256 recorded beside `path`, or None when none is; ValueError saying what is
    wrong when `<path>.sha256` is not a sha256 line."""
    record = _read_record(path)
    return record and record[0]


def _read_record(path):
    """(sha256, the file name it records or '') of `<path>.sha256`; None when there is none."""
    try:
        with open(hash_path(path), encoding="utf-8") as f:
            text = f.read(4096)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot be read ({type(e).__name__}: {e})") from None
    match = _LINE.fullmatch(text)
    if not match:
        raise ValueError("does not hold a sha256 (64 hex digits, then the file name)")
    return match.group(1).lower(), (match.group(2) or "").strip()


def verify_hash(path, error, what="File", hint=""):
    """True when `path` has the sha256 recorded beside it, False when none is recorded; raises
    `error` (one line naming the file, both hashes, then `hint`) when its bytes changed since
    it was written or the record cannot be read. The file is never touched.

    A file renamed with its record (which names the old file) is accepted when its sha256
    matches; when it does not and the record names another file, the record may be the one
    that was copied, so the message says that rather than that the file changed."""
    path = os.fspath(path)
    record = hash_path(path)
    try:
        found = _read_record(path)
    except ValueError as e:
        raise error(
            f"{what} {path!r} cannot be verified: {record!r}, the sha256 recorded when it was "
            f"written, {e}.{hint} If you trust the file, delete {record!r} to use it unverified."
        ) from None
    if found is None:
        return False
    recorded, named = found
    actual = sha256sum(path)
    if actual == recorded:
        return True
    name = os.path.basename(path)
    if named and named != name:
        raise error(
            f"{what} {path!r} cannot be verified: {os.path.basename(record)} records the "
            f"sha256 of {named!r}, not of {name!r} (copied or renamed from another file's?), and "
            f"{name}'s sha256 is not that one ({actual[:16]}... vs {recorded[:16]}...).{hint} "
            f"If you trust the file, delete {record!r} to use it unverified."
        )
    raise error(
        f"{what} {path!r} changed since it was written: its sha256 is now {actual[:16]}..., "
        f"the one recorded beside it ({os.path.basename(record)}) is {recorded[:16]}... "
        f"It was left as it is.{hint} If the change was intended, delete {record!r} to use "
        f"the file unverified."
    )


def unrecorded_warning(path, what="Checkpoint"):
    """The warning for a file that has no recorded sha256 where one is expected."""
    return (
        f"{what} {os.fspath(path)!r} has no recorded sha256 ({os.path.basename(hash_path(path))} "
        f"is missing: written by an older version, or copied or renamed without it), so its "
        f"content cannot be checked against what was written."
    )


def other_checkpoints(path):
    """' Other checkpoints there: a.pth, b.pth.' for the other .pth files in `path`'s folder
    ('' when none), for the messages that refuse `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return ""
    own = os.path.basename(path)
    others = sorted(
        n
        for n in names
        if n.endswith(".pth") and n != own and os.path.isfile(os.path.join(folder, n))
    )
    return f" Other checkpoints there: {', '.join(others)}." if others else ""


class HashedSaveMixin:
    """`save` and `tag_last_checkpoint` of an fvcore Checkpointer (the classification tasks'
    and detection's), written atomically, the file's sha256 recorded beside it before
    `last_checkpoint` names it: fvcore writes both in place. A subclass adds entries to the
    file with `extra_checkpoint_data`."""

    def extra_checkpoint_data(self):
        return {}

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        import torch  # the rest of this module is file handling only

        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(self.extra_checkpoint_data())
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        write_with_hash(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(path, lambda f: f.write(last_filename_basename), mode="w")
