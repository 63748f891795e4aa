"""The detection checkpointer: detectron2's DetectionCheckpointer that also reads classification
checkpoints (official format or bare, from a path, URL or fbnet_zoo://) and converts them onto
the FBNet stages of the model (classification_loading.py). Detection checkpoints load as usual.
Trainers use it in place of DetectionCheckpointer for MODEL.WEIGHTS and for their checkpoints.

Its checkpoints (model_XXXXXXX.pth, model_final.pth) are written atomically with their sha256
beside them (mobile_cv_nas.integrity; fvcore writes them in place, and a kill mid-write left a
torn file that `last_checkpoint` named), and a file with a recorded sha256 is checked against
it when it is loaded (--resume, MODEL.WEIGHTS): one whose bytes changed is refused by name.

MODEL.WEIGHTS is loaded with `load_weights`, which refuses weights that do not fit the model
(weights_fit.py: another detector's, another backbone's), unless partial loads are allowed.
"""

import logging
import os
import pickle

from detectron2.checkpoint import DetectionCheckpointer

from ..arch.checkpoint import CheckpointError
from ..integrity import (
    HashedSaveMixin,
    other_checkpoints,
    unrecorded_warning,
    verify_hash,
)
from . import catalog  # noqa: F401  (registers fbnet_zoo://)
from .classification_loading import classification_weights, convert_classification_state_dict
from .weights_fit import WeightsFit, check_weights_fit

logger = logging.getLogger(__name__)

_CLASSIFICATION = "__mobile_cv_nas_classification__"


class FBNetV2DetectionCheckpointer(HashedSaveMixin, DetectionCheckpointer):
    """detectron2's DetectionCheckpointer, plus classification checkpoints (official format or
    bare, from a path, URL or fbnet_zoo://) converted onto the FBNet stages of the model
    (convert_classification_state_dict). `conversion_report` is the last ConversionReport;
    `weights_fit` the WeightsFit of the last `load_weights`."""

    conversion_report = None
    weights_fit = None
    _resuming = False
    _allow_partial = None  # None: not loading with load_weights
    _weights_source = None

    def load_weights(self, path, *, allow_partial=False):
        """Load MODEL.WEIGHTS (a detection checkpoint, or a classification one converted onto
        the FBNet stages) into the model, without its checkpointables. Weights that do not fit
        the model are a CheckpointError with the key report, or, with `allow_partial`, load
        what fits and log the report as a warning. Sets `weights_fit`."""
        self.weights_fit = None
        self._allow_partial, self._weights_source = bool(allow_partial), path
        try:
            return self.load(path, checkpointables=[])
        finally:
            self._allow_partial = self._weights_source = None

    def resume_or_load(self, path, *, resume=True):
        self._resuming = resume and self.has_checkpoint()
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._resuming = False

    def _way_out(self, path):
        """The other checkpoints beside `path` and what to do, for the messages refusing it."""
        others = other_checkpoints(path)
        if self._resuming:
            last = os.path.join(self.save_dir, "last_checkpoint")
            return (
                f"{others} To resume from another one, write its file name into {last!r}; or "
                f"start over without --resume in a new OUTPUT_DIR."
            )
        return f"{others} Pass another file as MODEL.WEIGHTS."

    def load(self, path, *args, **kwargs):
        """DetectionCheckpointer.load, left usable when it raises: detectron2 after 0.6 keeps
        the URL being loaded in `_parsed_url_during_load`, asserts it is None at the start of
        a load and resets it only after a successful one, so without the reset here one
        failed load (an unknown fbnet_zoo:// name, a checkpoint of another arch) would make
        every later load fail with a bare AssertionError."""
        if self._resuming and not os.path.isfile(path):  # fvcore asserts
            raise CheckpointError(
                f"Checkpoint {path!r}, named in "
                f"{os.path.join(self.save_dir, 'last_checkpoint')!r}, is not a file, so the run "
                f"cannot resume.{self._way_out(path)}"
            )
        try:
            return super().load(path, *args, **kwargs)
        finally:
            if getattr(self, "_parsed_url_during_load", None) is not None:
                self._parsed_url_during_load = None

    def _load_file(self, filename):
        refused = " The run cannot resume from it." if self._resuming else ""
        hint = refused + self._way_out(filename)
        verified = verify_hash(filename, CheckpointError, "Checkpoint", hint)
        if not verified and self._resuming:
            self.logger.warning(unrecorded_warning(filename) + " Resuming from it unverified.")
        try:
            loaded = super()._load_file(filename)
        except pickle.UnpicklingError as e:
            if "Unsupported global" not in str(e):  # not torch.load(weights_only=True)'s refusal
                raise CheckpointError(
                    f"Checkpoint {filename!r} is corrupt or not a PyTorch checkpoint.{hint}"
                ) from None
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"Checkpoint {filename!r} pickles Python objects besides tensors, which are "
                f"not read as weights ({first}). If you trust the file, re-save its weights "
                f"alone: model_zoo.get(name, pretrained=True, trusted=True) or "
                f"mobile_cv_nas.arch.read_checkpoint_state_dict(path, trusted=True), then "
                f'torch.save({{"state_dict": state_dict}}, new_path).'
            ) from None
        except Exception as e:
            raise CheckpointError(
                f"Checkpoint {filename!r} is truncated or corrupt ({type(e).__name__}).{hint}"
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
        incompatible = super()._load_model(checkpoint)
        if self._allow_partial is not None:
            fit = WeightsFit.from_incompatible(self.model, self._weights_source, incompatible)
            check_weights_fit(fit, self._allow_partial)
            if not fit.fits:
                self.logger.warning(fit.partial_warning())
            elif source is None:  # a classification checkpoint's report is logged above
                self.logger.info(fit.summary())
            self.weights_fit = fit
        return incompatible
