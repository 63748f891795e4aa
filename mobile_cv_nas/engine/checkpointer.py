"""Resumable checkpoints that survive a crash: written atomically, read strictly, and with
the random-number state, so that `--resume` continues exactly where a run stopped.

fvcore's Checkpointer writes the file in place, so a kill mid-write leaves a torn file that
`last_checkpoint` may already point to, and it loads model weights leniently (missing keys
are only logged). Here every file is written to a temporary name and renamed into place
(a reader sees the old file or the new one, never half of one), `last_checkpoint` is
updated the same way after the file is complete and its sha256 is recorded beside it
(mobile_cv_nas.integrity). A file whose bytes changed since it was written, that does not load
or does not fit the model is a CheckpointError naming it, the other checkpoints and the way
out.
"""

import os
import random

import torch
from fvcore.common.checkpoint import Checkpointer

from ..arch.checkpoint import CheckpointError
from ..integrity import HashedSaveMixin, unrecorded_warning, verify_hash

LAST = "last_checkpoint"


def rng_state():
    """The random-number state of this process (python and torch; CUDA when present)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


class AtomicCheckpointer(HashedSaveMixin, Checkpointer):
    """fvcore's Checkpointer with atomic writes, recorded hashes, strict loads, clear errors
    and RNG state."""

    def extra_checkpoint_data(self):
        return {"rng": rng_state()}

    def _others(self, path):
        others = sorted(
            os.path.basename(p)
            for p in self.get_all_checkpoint_files()
            if os.path.abspath(p) != os.path.abspath(path)
        )
        return f" Other checkpoints there: {', '.join(others)}." if others else ""

    def _way_out(self):
        return (
            f" To resume from another one, write its file name into "
            f"{os.path.join(self.save_dir, LAST)!r}; or start over without --resume in a new "
            f"OUTPUT_DIR."
        )

    def _load_file(self, f):
        hint = f" The run cannot resume from it.{self._others(f)}{self._way_out()}"
        if not verify_hash(f, CheckpointError, "Checkpoint", hint):
            self.logger.warning(unrecorded_warning(f) + " Resuming from it unverified.")
        try:
            data = torch.load(f, map_location=torch.device("cpu"), weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"Checkpoint {f!r} is truncated or corrupt ({type(e).__name__}), so the run "
                f"cannot resume from it.{self._others(f)}{self._way_out()}"
            ) from None
        if not isinstance(data, dict) or "model" not in data:
            raise CheckpointError(
                f"{f!r} is not a training checkpoint of this project (no 'model' entry); "
                f"published weights are loaded with MODEL.WEIGHTS, not --resume."
            )
        return data

    def _load_model(self, checkpoint):
        try:
            self.model.load_state_dict(checkpoint.pop("model"), strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[:4]
            raise CheckpointError(
                "The checkpoint does not fit the model this config builds (was it written "
                "by another config?): " + " ".join(line.strip() for line in first)
            ) from None
        return None

    def load(self, path, checkpointables=None):
        if path and not os.path.isfile(path):  # fvcore asserts
            last = os.path.join(self.save_dir, LAST)
            named = f"Checkpoint {path!r}, named in {last!r}, is not a file"
            if not os.path.basename(path):
                named = f"{last!r} names no checkpoint"
            raise CheckpointError(
                f"{named}, so the run cannot resume.{self._others(path)}{self._way_out()}"
            )
        checkpoint = super().load(path, checkpointables)
        if checkpointables is None and "rng" in checkpoint:
            set_rng_state(checkpoint.pop("rng"))
        return checkpoint
