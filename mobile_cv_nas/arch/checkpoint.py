"""Official-format checkpoint I/O: read `model.pth` files and load them strictly.

The official file is a dict; the weights are under `model_ema` when present and not None,
else under `state_dict`; a `module.` prefix (DataParallel/DDP) is stripped from each key.
Loading is strict: any missing, unexpected or mis-shaped key raises CheckpointError with
the full list, never a silent partial load.
"""

import collections
import os
import pickle

import torch

from ..io import local_path, sha256sum


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def _strip_prefix(state_dict, prefix):
    return collections.OrderedDict(
        (k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in state_dict.items()
    )


def read_checkpoint_state_dict(path, sha256=None, cache_dir=None, trusted=False):
    """The model weights of an official-format checkpoint at `path` (local path or URL).

    Only tensors and plain containers are unpickled unless `trusted` (a file whose source
    you trust may hold other Python objects).
    """
    try:
        file = local_path(path, cache_dir=cache_dir)
    except Exception as e:  # network or handler errors: say which file and what to do
        raise CheckpointError(
            f"Could not fetch checkpoint {path!r}: {e}. Pass a local file or file:// URL as "
            f"the weights, or put the file in the cache directory (cache_dir=... or "
            f"$MOBILE_CV_NAS_CACHE)."
        ) from e
    if not os.path.isfile(file):
        raise CheckpointError(f"Checkpoint file {path!r} does not exist.")
    if sha256:
        actual = sha256sum(file)
        if actual != sha256:
            raise CheckpointError(
                f"Checkpoint {path!r} ({file}) has sha256 {actual}, expected {sha256}. "
                f"The download is corrupt or the file was replaced: delete it and retry."
            )
    try:
        # weights_only: a checkpoint is data; never run pickled code from a download
        data = torch.load(file, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"Checkpoint {path!r} ({file}) holds Python objects besides tensors and plain "
            f"containers, which are not unpickled for safety: {e}. If you trust its source, "
            f"pass trusted=True; or re-save its weights with torch.save({{'state_dict': sd}}, path)."
        ) from e
    except Exception as e:
        raise CheckpointError(
            f"Could not read checkpoint {path!r} ({file}): {type(e).__name__}: {e}. The file "
            f"is truncated or not a PyTorch checkpoint; delete it and download it again."
        ) from e
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


def _listing(title, keys, limit=20):
    shown = "\n".join(f"    {k}" for k in keys[:limit])
    more = f"\n    ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"  {title} ({len(keys)}):\n{shown}{more}"


def check_state_dict(model, state_dict, source="checkpoint"):
    """Raise CheckpointError listing every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
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
                parts.append(_listing(title, keys))
        parts.append("Check that the checkpoint was trained for this arch def.")
        raise CheckpointError("\n".join(parts))


def load_checkpoint(model, checkpoint, sha256=None, cache_dir=None, trusted=False):
    """Load an official-format checkpoint (path, URL or state dict) into `model`, strictly.

    A backbone (a model with `stages` but no `backbone`) takes the `backbone.` weights and
    ignores the classifier head.
    """
    source = checkpoint if isinstance(checkpoint, str) else "state dict"
    if isinstance(checkpoint, dict):
        state_dict = extract_state_dict(checkpoint)
    else:
        state_dict = read_checkpoint_state_dict(
            checkpoint, sha256=sha256, cache_dir=cache_dir, trusted=trusted
        )
    if not hasattr(model, "backbone") and hasattr(model, "stages"):
        state_dict = collections.OrderedDict(
            (k[len("backbone."):], v) for k, v in state_dict.items() if k.startswith("backbone.")
        )
    check_state_dict(model, state_dict, source=source)
    model.load_state_dict(state_dict, strict=True)
    return model
