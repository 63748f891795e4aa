"""Official-format checkpoint I/O: read `model.pth` files and load them strictly.

The official file is a dict; the weights are under `model_ema` when present and not None,
else under `state_dict`; a `module.` prefix (DataParallel/DDP) is stripped from each key.
Loading is strict: any missing, unexpected or mis-shaped key raises CheckpointError with
the full list, never a silent partial load. The one tolerance is BatchNorm's
`num_batches_tracked` counter, which a frozen BatchNorm does not have: it may be absent on
either side, as torch's own loaders allow.

A checkpoint is data, so it is read with `weights_only=True`; a file that also pickles other
Python objects (whose unpickling runs code) is read fully only when the caller trusts it
(`trusted=True`) or pinned its sha256. A local file with a sha256 recorded beside it (what
training runs write, mobile_cv_nas.integrity) is checked against it. Every failure is one
short CheckpointError naming the file and the fix, without the chained traceback of the
underlying error; only a downloaded copy in the cache is ever said to be deleted.
"""

import collections
import os
import re

import torch
from torch.serialization import MAGIC_NUMBER, get_unsafe_globals_in_checkpoint

from ..integrity import other_checkpoints, verify_hash
from ..io import DownloadError, local_path, sha256sum

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save since torch 1.6
# older torch.save files start with a pickled long, this magic number
_LEGACY_MAGIC = b"\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little")
_COUNTER = "num_batches_tracked"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def _strip_prefix(state_dict, prefix):
    return collections.OrderedDict(
        (k[len(prefix) :] if k.startswith(prefix) else k, v) for k, v in state_dict.items()
    )


def _described(path, file):
    return repr(path) if str(path) == str(file) else f"{path!r} ({file})"


def _downloaded(path):
    """Whether `path` is an URL whose file is a downloaded copy in the cache (one that can be
    deleted and fetched again), not the user's own file."""
    return str(path).startswith(("http://", "https://"))


def _corrupt(path, file, why="is truncated, corrupt or not a PyTorch checkpoint"):
    if _downloaded(path):
        fix = f"Delete the downloaded copy {file} to download it again, or pass another file."
    else:
        fix = "Pass another file, or restore this one from where it came from."
    return CheckpointError(f"Checkpoint {_described(path, file)} {why}. {fix}")


def _pin_mismatch(path, file, actual, expected, pinned_by):
    """The error for a file whose sha256 is not the pinned one. A downloaded copy may be
    deleted and fetched again; a local file may be the user's only copy, so it changed since
    it was published (or pinned), and nothing tells to delete it."""
    by = f" ({pinned_by})" if pinned_by else ""
    if _downloaded(path):
        return CheckpointError(
            f"The downloaded copy {file} of {path} has sha256 {actual}, expected {expected}{by}: "
            f"the download is corrupt or the file at that URL changed. Delete {file} to "
            f"download it again."
        )
    if pinned_by:
        return CheckpointError(
            f"Weights file {_described(path, file)} changed since it was published: its sha256 "
            f"is now {actual}, expected {expected}{by}. It was not loaded and was left as it "
            f"is. Restore the published file (from a backup, or from where it was uploaded), "
            f"or, if its new content is intended, publish it again (--overwrite) to pin its "
            f"new sha256."
        )
    return CheckpointError(
        f"Weights file {_described(path, file)} changed since its sha256 was pinned: it is now "
        f"{actual}, expected {expected}. It was not loaded and was left as it is."
    )


def _file_format(file):
    """'zip' or 'legacy' for a torch.save file, else a CheckpointError reason."""
    with open(file, "rb") as f:
        head = f.read(64)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if _LEGACY_MAGIC in head[:32]:
        return "legacy"
    if not head:
        return "is empty, not a PyTorch checkpoint"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<head")):
        return "is an HTML/XML page (an error page saved in its place?), not a PyTorch checkpoint"
    return "is corrupt or not a PyTorch checkpoint (unknown file header)"


def _unsafe_globals(file, kind, error):
    """The non-weights globals a readable checkpoint needs; [] when the file is corrupt."""
    if kind == "zip":
        try:
            return sorted(get_unsafe_globals_in_checkpoint(file))
        except Exception:
            return []
    # legacy files: torch names the first offending global in its error
    return re.findall(r"Unsupported global: GLOBAL (\S+)", str(error))[:1]


def _load(path, file, allow_pickle):
    kind = _file_format(file)
    if kind not in ("zip", "legacy"):
        raise _corrupt(path, file, kind)
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        needs = _unsafe_globals(file, kind, e)
    if not needs:
        raise _corrupt(path, file)
    if not allow_pickle:
        raise CheckpointError(
            f"Checkpoint {_described(path, file)} holds Python objects besides tensors "
            f"({', '.join(needs)}), and unpickling them runs code. If you trust its source, pass "
            f"trusted=True, or pin the file with sha256={sha256sum(file)!r}; or re-save only its "
            f"weights with torch.save({{'state_dict': sd}}, path)."
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=False)
    except Exception:
        raise _corrupt(path, file) from None


def _run_hint(file):
    """How to get a run's results back when one of its files changed: its folder holds
    `last_checkpoint`, naming another checkpoint than `file`."""
    folder = os.path.dirname(os.path.abspath(file))
    try:
        with open(os.path.join(folder, "last_checkpoint")) as f:
            last = f.read().strip()
    except OSError:
        return ""
    if not last or last == os.path.basename(file):
        return ""
    return (
        f" This is a run's folder: rerunning its command with --resume continues from its "
        f"last checkpoint ({last}) and writes its results again."
    )


def fetch_checkpoint(path, sha256=None, cache_dir=None, pinned_by=None):
    """The local file of checkpoint `path` (a URL is downloaded into the cache once),
    checked against `sha256` when given (`pinned_by` says who recorded it, e.g. a catalog,
    for the message), and against the sha256 recorded beside it when the file has one
    (mobile_cv_nas.integrity: what training runs write); CheckpointError with the fix
    otherwise."""
    try:
        file = local_path(path, cache_dir=cache_dir)
    except DownloadError as e:
        raise CheckpointError(
            f"Could not fetch checkpoint {e.url} ({e.reason}).\nWithout network, put the file "
            f"at {e.target}, or pass a local file as the weights."
        ) from None
    except ValueError as e:
        raise CheckpointError(f"Could not fetch checkpoint: {e}") from None
    if not os.path.isfile(file):
        raise CheckpointError(f"Checkpoint file {path!r} does not exist.")
    if sha256:
        actual = sha256sum(file)
        if actual != sha256:
            raise _pin_mismatch(path, file, actual, sha256, pinned_by)
    if not _downloaded(path):
        hint = f"{other_checkpoints(file)}{_run_hint(file)}"
        verify_hash(file, CheckpointError, "Checkpoint", hint)
    return file


def read_checkpoint_state_dict(path, sha256=None, cache_dir=None, trusted=False, pinned_by=None):
    """The model weights of an official-format checkpoint at `path` (local path or URL).

    Only tensors and plain containers are unpickled, unless the file needs more and either
    `trusted` is set or `sha256` pins it (a mismatching sha256 is an error in any case).
    """
    file = fetch_checkpoint(path, sha256=sha256, cache_dir=cache_dir, pinned_by=pinned_by)
    data = _load(path, file, allow_pickle=trusted or bool(sha256))
    return extract_state_dict(data, source=path)


def extract_state_dict(data, source="checkpoint"):
    """Pick the weights out of an official-format dict and strip `module.` prefixes."""
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{source!r} holds a {type(data).__name__}, not a checkpoint dict "
            f"(expected keys 'model_ema' or 'state_dict')."
        )
    if data.get("model_ema") is not None:
        weights = data["model_ema"]
    elif data.get("state_dict") is not None:
        weights = data["state_dict"]
    elif data and all(isinstance(v, torch.Tensor) for v in data.values()):
        weights = data  # a bare state_dict
    else:
        raise CheckpointError(
            f"{source!r} has neither 'model_ema' nor 'state_dict' weights "
            f"(top-level keys: {sorted(data)[:10]})."
        )
    return _strip_prefix(weights, "module.")


def key_listing(title, keys, limit=20):
    """An indented list of state-dict keys under `title`, cut at `limit` (load errors)."""
    shown = "\n".join(f"    {k}" for k in keys[:limit])
    more = f"\n    ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"  {title} ({len(keys)}):\n{shown}{more}"


def _reconcile_counters(expected, state_dict):
    """`state_dict` with BatchNorm `num_batches_tracked` counters made to fit `expected`:
    dropped where the model's norm layer has none (frozen BN), filled with the model's
    current value where the checkpoint's BN lacks one. Any other key is left alone."""
    out = collections.OrderedDict()

    def running_mean(key):
        return key[: -len(_COUNTER)] + "running_mean"

    for k, v in state_dict.items():
        if not (k.endswith(_COUNTER) and k not in expected and running_mean(k) in expected):
            out[k] = v
    for k, v in expected.items():
        if k.endswith(_COUNTER) and k not in out and running_mean(k) in out:
            out[k] = v.clone()
    return out


def check_state_dict(model, state_dict, source="checkpoint"):
    """The state dict to load into `model` (BatchNorm counters reconciled, see
    `_reconcile_counters`); raises CheckpointError listing every missing, unexpected and
    mis-shaped key."""
    expected = model.state_dict()
    state_dict = _reconcile_counters(expected, state_dict)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or misshaped:
        parts = [f"Checkpoint {source!r} does not match the model:"]
        for title, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("mis-shaped keys", misshaped),
        ):
            if keys:
                parts.append(key_listing(title, keys))
        parts.append("Check that the checkpoint was trained for this arch def.")
        raise CheckpointError("\n".join(parts))
    return state_dict


def load_checkpoint(model, checkpoint, sha256=None, cache_dir=None, trusted=False, pinned_by=None):
    """Load an official-format checkpoint (path, URL or state dict) into `model`, strictly.

    A backbone (a model with `stages` but no `backbone`) takes the `backbone.` weights and
    ignores the classifier head. `sha256` pins the file (`pinned_by`, e.g. "the catalog
    <file>", names who recorded it in the message of a mismatch); `trusted` (or a pinned
    sha256) allows a file that pickles Python objects besides tensors.
    """
    if isinstance(checkpoint, dict):
        source = "state dict"
        state_dict = extract_state_dict(checkpoint)
    else:
        source = os.fspath(checkpoint)
        state_dict = read_checkpoint_state_dict(
            source, sha256=sha256, cache_dir=cache_dir, trusted=trusted, pinned_by=pinned_by
        )
    if not hasattr(model, "backbone") and hasattr(model, "stages"):
        state_dict = collections.OrderedDict(
            (k[len("backbone.") :], v) for k, v in state_dict.items() if k.startswith("backbone.")
        )
    state_dict = check_state_dict(model, state_dict, source=source)
    model.load_state_dict(state_dict, strict=True)
    return model
