"""Whether weights loaded into a detector fit it: the check of MODEL.WEIGHTS.

detectron2 loads what it can and warns about the rest, so weights of another detector (a C4
run's into an FPN config) or another backbone load as a handful of keys and the run trains or
evaluates a mostly random model. Here weights fit the model when

* every checkpoint key is a model key, of the model's shape (after the conversion of an
  ImageNet classification checkpoint onto the FBNet stages, classification_loading.py), and
* every key of the model's FBNet stages (the backbone's blocks and the C4 box head's stage)
  is filled.

Model keys outside the FBNet stages that the checkpoint lacks (FPN, RPN, box and mask heads)
start fresh: ImageNet weights of the backbone, or a Faster R-CNN's weights in a Mask R-CNN,
are detectron2's usual fine-tuning start. BatchNorm batch counters (`num_batches_tracked`)
are left out (a frozen batch norm has none). Weights that do not fit are refused (a
CheckpointError with the counts and the first keys), unless partial loads are allowed
(MODEL.ALLOW_PARTIAL_WEIGHTS): then what fits loads and the report is logged.
"""

import dataclasses

from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..arch.checkpoint import CheckpointError, key_listing
from .classification_loading import STAGE_HOLDERS, grouped_keys

_COUNTER = "num_batches_tracked"
#: The config key that allows partial loads (named in the messages).
PARTIAL_KEY = "MODEL.ALLOW_PARTIAL_WEIGHTS"


def stage_prefixes(model):
    """The key prefixes of the model's FBNet stages ("backbone.bottom_up.stages.", ...)."""
    if isinstance(model, (DistributedDataParallel, DataParallel)):
        model = model.module
    return tuple(
        f"{name}.stages." if name else "stages."
        for name, module in model.named_modules()
        if isinstance(module, STAGE_HOLDERS)
    )


def _without_counters(keys):
    return [k for k in keys if not k.endswith(_COUNTER)]


@dataclasses.dataclass
class WeightsFit:
    """What a checkpoint gave a model (batch counters left out).

    source: the weights' path or URL; model_keys: every model key;
    missing: model keys the checkpoint has nothing for (mis-shaped ones not included);
    misshaped: (key, checkpoint shape, model shape) of keys the model has with another shape;
    unexpected: checkpoint keys the model does not have; stages: prefixes of the FBNet stages.
    """

    source: str
    model_keys: list
    missing: list
    misshaped: list
    unexpected: list
    stages: tuple

    @classmethod
    def from_incompatible(cls, model, source, incompatible):
        """From fvcore's load result (missing_keys, unexpected_keys, incorrect_shapes)."""
        misshaped = [(k, tuple(a), tuple(b)) for k, a, b in incompatible.incorrect_shapes]
        shaped = {k for k, _, _ in misshaped}
        return cls(
            source=str(source),
            model_keys=_without_counters(model.state_dict()),
            missing=[k for k in _without_counters(incompatible.missing_keys) if k not in shaped],
            misshaped=[m for m in misshaped if not m[0].endswith(_COUNTER)],
            unexpected=_without_counters(incompatible.unexpected_keys),
            stages=stage_prefixes(model),
        )

    @property
    def loaded(self):
        """The model keys filled from the checkpoint."""
        left = set(self.missing) | {k for k, _, _ in self.misshaped}
        return [k for k in self.model_keys if k not in left]

    @property
    def unfilled_stage_keys(self):
        keys = self.missing + [k for k, _, _ in self.misshaped]
        return [k for k in keys if k.startswith(self.stages)] if self.stages else []

    @property
    def fits(self):
        return not (self.unexpected or self.misshaped or self.unfilled_stage_keys)

    def _counts(self):
        parts = []
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} checkpoint keys the model does not have")
        if self.misshaped:
            parts.append(f"{len(self.misshaped)} keys of another shape")
        if self.unfilled_stage_keys:
            parts.append(
                f"{len(self.unfilled_stage_keys)} keys of the model's FBNet stages not filled"
            )
        return ", ".join(parts)

    def _listings(self, limit):
        shaped = [f"{k}: checkpoint {a} vs model {b}" for k, a, b in self.misshaped]
        return [
            key_listing(title, keys, limit=limit)
            for title, keys in (
                ("checkpoint keys the model does not have", self.unexpected),
                ("keys of another shape", shaped),
                ("model keys not in the checkpoint", self.missing),
            )
            if keys
        ]

    def summary(self):
        """The log lines of a load: what loaded, what starts fresh, what was left out."""
        lines = [
            f"Loaded {len(self.loaded)} of the model's {len(self.model_keys)} keys from "
            f"{self.source!r}."
        ]
        if self.missing:
            lines.append(
                f"Initialised fresh, not in the checkpoint ({len(self.missing)} keys): "
                f"{grouped_keys(self.missing)}."
            )
        if self.misshaped:
            keys = [k for k, _, _ in self.misshaped]
            lines.append(
                f"Not loaded, another shape in the checkpoint ({len(keys)} keys, initialised "
                f"fresh): {grouped_keys(keys)}."
            )
        if self.unexpected:
            lines.append(
                f"Checkpoint keys the model does not have, not used ({len(self.unexpected)}): "
                f"{grouped_keys(self.unexpected)}."
            )
        return "\n".join(lines)

    def partial_warning(self):
        return (
            f"{PARTIAL_KEY} True: weights {self.source!r} do not fit the model "
            f"({self._counts()}); loaded what fits.\n{self.summary()}"
        )

    def error(self):
        first = (
            f"Weights {self.source!r} do not fit the model: {self._counts()} (the model has "
            f"{len(self.model_keys)} keys, {len(self.loaded)} would load). Are they the "
            f"weights of another detector or backbone (e.g. a C4 run's in an FPN config)? "
            f"MODEL.WEIGHTS takes weights of this config's model, or ImageNet weights of its "
            f"arch; to load only the keys that fit (e.g. a new head on a trained trunk), set "
            f"{PARTIAL_KEY} True."
        )
        return "\n".join([first, *self._listings(limit=5)])


def check_weights_fit(fit, allow_partial):
    """Refuse weights that do not fit (a CheckpointError), unless `allow_partial`."""
    if not fit.fits and not allow_partial:
        raise CheckpointError(fit.error())
