"""The detection checkpointer: detectron2's DetectionCheckpointer that also reads classification
checkpoints (official format or bare, from a path, URL or fbnet_zoo://) and converts them onto
the FBNet stages of the model (classification_loading.py). Detection checkpoints load as usual.
Trainers use it in place of DetectionCheckpointer for MODEL.WEIGHTS.
"""

import logging
import pickle

from detectron2.checkpoint import DetectionCheckpointer

from ..arch.checkpoint import CheckpointError
from . import catalog  # noqa: F401  (registers fbnet_zoo://)
from .classification_loading import classification_weights, convert_classification_state_dict

logger = logging.getLogger(__name__)

_CLASSIFICATION = "__mobile_cv_nas_classification__"


class FBNetV2DetectionCheckpointer(DetectionCheckpointer):
    """detectron2's DetectionCheckpointer, plus classification checkpoints (official format or
    bare, from a path, URL or fbnet_zoo://) converted onto the FBNet stages of the model
    (convert_classification_state_dict). `conversion_report` is the last ConversionReport."""

    conversion_report = None

    def load(self, path, *args, **kwargs):
        """DetectionCheckpointer.load, left usable when it raises: detectron2 after 0.6 keeps
        the URL being loaded in `_parsed_url_during_load`, asserts it is None at the start of
        a load and resets it only after a successful one, so without the reset here one
        failed load (an unknown fbnet_zoo:// name, a checkpoint of another arch) would make
        every later load fail with a bare AssertionError."""
        try:
            return super().load(path, *args, **kwargs)
        finally:
            if getattr(self, "_parsed_url_during_load", None) is not None:
                self._parsed_url_during_load = None

    def _load_file(self, filename):
        try:
            loaded = super()._load_file(filename)
        except pickle.UnpicklingError as e:  # torch.load(weights_only=True) refused it
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"Checkpoint {filename!r} pickles Python objects besides tensors, which are "
                f"not read as weights ({first}). If you trust the file, re-save its weights "
                f"alone: model_zoo.get(name, pretrained=True, trusted=True) or "
                f"mobile_cv_nas.arch.read_checkpoint_state_dict(path, trusted=True), then "
                f'torch.save({{"state_dict": state_dict}}, new_path).'
            ) from None
        weights = classification_weights(loaded.get("model"))
        if weights is None:
            return loaded
        return {
            "model": weights,
            "__author__": "mobile_cv_nas classification checkpoint",
            "matching_heuristics": False,
            _CLASSIFICATION: filename,
        }

    def _load_model(self, checkpoint):
        source = checkpoint.pop(_CLASSIFICATION, None)
        if source is not None:
            converted, report = convert_classification_state_dict(
                checkpoint["model"], self.model, source=source
            )
            self.logger.info(report.summary())
            logger.debug("Loaded keys: %s", ", ".join(report.loaded))
            self.conversion_report = report
            checkpoint["model"] = converted
        return super()._load_model(checkpoint)
