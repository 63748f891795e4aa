"""ImageNet (classification) weights for the detection models.

A classification checkpoint (the official format `{"state_dict", "model_ema"}`, as the zoo's
files and the train task's `model_final.pth`, or a bare state dict) has keys
`backbone.stages.xif<stage>_<block>.*` and `head.conv.*`. In a detection model the same blocks
sit elsewhere, and `convert_classification_state_dict` maps them:

* C4: `backbone.stages.X` (stages up to the C4 feature) and `roi_heads.stages.X` (the box
  head's copy of the later stages, e.g. `xif5_*`);
* FPN / RetinaNet: `backbone.bottom_up.stages.X`.

Every FBNet block of the model must be filled (a missing or mis-shaped key is a CheckpointError
listing them all: a checkpoint of another arch is reported, not half loaded); the classifier
(`head.conv`) and the stages detection does not use (the global-pool stage) are left out; the
rest of the model (FPN, RPN, box head and predictor) starts fresh. Batch counters
(`num_batches_tracked`) load where the model's norm has one and are skipped where it has none
(frozen batch norms, of whichever detectron2 version). The log says which keys loaded, which
modules start fresh and which checkpoint keys were not used.

`load_classification_weights(model, path_or_state_dict)` loads one without a checkpointer;
`FBNetV2DetectionCheckpointer` (detection_checkpoint.py) does it for MODEL.WEIGHTS.
"""

import collections
import dataclasses
import logging
import os
import re

from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..arch.checkpoint import (
    CheckpointError,
    extract_state_dict,
    key_listing,
    read_checkpoint_state_dict,
)
from .backbone import FBNetV2Backbone
from .heads import FBNetV2C4ROIHeads

logger = logging.getLogger(__name__)

_COUNTER = "num_batches_tracked"
_SOURCE_PREFIX = "backbone.stages."
_BLOCK = re.compile(r"xif(\d+)_\d+")


def _strip(data):
    """The weights of an official-format or bare state dict, `module.` stripped; None if
    `data` is neither."""
    if not isinstance(data, dict) or not data:
        return None
    try:
        return extract_state_dict(data)
    except CheckpointError:
        return None


def classification_weights(data):
    """The classification state dict in `data` (official format or bare; `stages.*` keys of a
    bare backbone are read as `backbone.stages.*`), or None when `data` is not one (e.g. a
    detection checkpoint)."""
    weights = _strip(data)
    if weights is None:
        return None
    keys = list(weights)
    if not all(k.startswith((_SOURCE_PREFIX, "stages.", "head.")) for k in keys):
        return None
    if not any(k.startswith((_SOURCE_PREFIX, "stages.")) for k in keys):
        return None
    return collections.OrderedDict(
        ("backbone." + k if k.startswith("stages.") else k, v) for k, v in weights.items()
    )


#: Module types whose `stages` hold blocks named as in the classification model.
STAGE_HOLDERS = (FBNetV2Backbone, FBNetV2C4ROIHeads)


def _unwrap(model):
    return model.module if isinstance(model, (DistributedDataParallel, DataParallel)) else model


def _group(key, by_block):
    """The module a key is reported under: its FBNet block (`by_block`, for checkpoint keys),
    else its first two components (`roi_heads.box_predictor`)."""
    m = re.match(r"(.*?stages\.xif\d+_\d+)\.", key) if by_block else None
    return m.group(1) if m else ".".join(key.split(".")[:2])


def grouped_keys(keys, by_block=False):
    """`module (count), ...` of state-dict keys, for the load reports."""
    counts = collections.Counter(_group(k, by_block) for k in keys)
    return ", ".join(f"{g} ({n})" for g, n in counts.items())


@dataclasses.dataclass
class ConversionReport:
    """What a classification checkpoint gave a detection model.

    loaded: model keys filled from the checkpoint (every key of every FBNet stage);
    fresh: model keys the checkpoint has nothing for (FPN, RPN, box head...), left as built;
    unused: checkpoint keys detection does not use (the classifier, the global-pool stage);
    targets: {module prefix: block names} of the FBNet stages filled.
    """

    source: str
    loaded: list
    fresh: list
    unused: list
    targets: dict

    def summary(self):
        blocks = "; ".join(
            f"{prefix}: {names[0]} ... {names[-1]} ({len(names)} blocks)"
            for prefix, names in self.targets.items()
        )
        lines = [
            f"Loaded {len(self.loaded)} keys from classification checkpoint {self.source!r} "
            f"into the FBNet stages ({blocks}).",
            f"Initialised fresh, not in the checkpoint ({len(self.fresh)} keys): "
            f"{grouped_keys(self.fresh) or 'nothing'}.",
            f"Checkpoint keys not used by detection ({len(self.unused)}): "
            f"{grouped_keys(self.unused, by_block=True) or 'none'}.",
        ]
        return "\n".join(lines)


def _stage_of(key):
    m = _BLOCK.match(key[len(_SOURCE_PREFIX) :]) if key.startswith(_SOURCE_PREFIX) else None
    return int(m.group(1)) if m else None


def convert_classification_state_dict(state_dict, model, source="checkpoint"):
    """Map a classification state dict (or official-format dict) onto `model`'s FBNet stages.

    Returns (state dict of model keys to load, ConversionReport). Raises CheckpointError when
    `state_dict` is not a classification checkpoint, when the model has no FBNet stages, or
    when the checkpoint does not fill them exactly (listing missing, mis-shaped and unexpected
    keys: the sign of a checkpoint of another arch).
    """
    weights = classification_weights(state_dict)
    if weights is None:
        raise CheckpointError(
            f"{source!r} is not a classification checkpoint (keys backbone.stages.* and head.*)."
        )
    model = _unwrap(model)
    holders = [(n, m) for n, m in model.named_modules() if isinstance(m, STAGE_HOLDERS)]
    if not holders:
        raise CheckpointError(
            f"The model ({type(model).__name__}) has no FBNet stages (FBNetV2Backbone or "
            f"FBNetV2C4ROIHeads) to load classification checkpoint {source!r} into."
        )
    expected = model.state_dict()
    mapping, targets = {}, {}  # model key -> checkpoint key; prefix -> block names
    for name, holder in holders:
        prefix = f"{name}.stages." if name else "stages."
        targets[prefix[:-1]] = list(holder.stages._modules)
        for key in expected:
            if key.startswith(prefix):
                mapping[key] = _SOURCE_PREFIX + key[len(prefix) :]
    used_stages = {_stage_of(src) for src in mapping.values()}
    mapped_sources = set(mapping.values())

    first_conv = next((src for src in mapping.values() if src.endswith(".weight")), "")
    converted, loaded, missing, misshaped = collections.OrderedDict(), [], [], []
    for key, src in mapping.items():
        if src not in weights:
            if not key.endswith(_COUNTER):  # a counter the checkpoint lacks keeps its value
                missing.append(src)
            continue
        have, want = tuple(weights[src].shape), tuple(expected[key].shape)
        if _gray_to_colour(have, want) and _stage_of(src) == _stage_of(first_conv):
            converted[key] = weights[src].repeat(1, want[1], 1, 1) / want[1]
            loaded.append(key)
            logger.info(f"{src}: 1-channel stem weights spread over {want[1]} channels (w / 3)")
            continue
        if have != want:
            misshaped.append(f"{src}: checkpoint {have} vs model {want} ({key})")
            continue
        converted[key] = weights[src]
        loaded.append(key)
    unexpected, unused = [], []
    for src in weights:
        if src in mapped_sources:
            continue
        if src.endswith(_COUNTER) and src[: -len(_COUNTER)] + "running_mean" in mapped_sources:
            continue  # a frozen batch norm has no counter
        (unexpected if _stage_of(src) in used_stages else unused).append(src)
    if missing or misshaped or unexpected:
        arch = getattr(holders[0][1], "arch_def", None)
        arch_name = getattr(arch, "name", None)
        counts = ", ".join(
            f"{len(keys)} {what}"
            for what, keys in (
                ("missing", missing),
                ("mis-shaped", misshaped),
                ("unexpected", unexpected),
            )
            if keys
        )
        parts = [
            f"Classification checkpoint {source!r} does not fit the FBNet stages of the "
            f"detection model (arch {arch_name!r}): {counts} keys. Was it trained for another "
            f"arch? MODEL.MOBILE_CV_NAS.ARCH (and WIDTH_DIVISOR) must describe the arch the "
            f"checkpoint was trained for."
        ]
        for title, keys in (
            ("missing keys", missing),
            ("mis-shaped keys", misshaped),
            ("unexpected keys, in stages the model uses", unexpected),
        ):
            if keys:
                parts.append(key_listing(title, keys, limit=10))
        raise CheckpointError("\n".join(parts))
    fresh = [k for k in expected if k not in mapping]
    report = ConversionReport(str(source), loaded, fresh, unused, targets)
    return converted, report


def _gray_to_colour(have, want):
    """A conv weight of a 1-channel stem where the model's stem takes 3 channels."""
    return (
        len(have) == 4
        and len(want) == 4
        and have[1] == 1
        and want[1] == 3
        and have[0] == want[0]
        and have[2:] == want[2:]
    )


def load_classification_weights(model, weights, *, sha256=None, cache_dir=None, trusted=False):
    """Load a classification checkpoint (path, URL, fbnet_zoo://<name>, or a state dict /
    official-format dict) into a detection model's FBNet stages; returns the
    ConversionReport (also logged). `sha256` / `trusted` as for load_checkpoint."""
    if isinstance(weights, dict):
        source, data = "state dict", weights
    else:
        source = os.fspath(weights)
        data = read_checkpoint_state_dict(
            source, sha256=sha256, cache_dir=cache_dir, trusted=trusted
        )
    converted, report = convert_classification_state_dict(data, model, source=source)
    result = _unwrap(model).load_state_dict(converted, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # converted has model keys only
    logger.info(report.summary())
    logger.debug("Loaded keys: %s", ", ".join(report.loaded))
    return report
