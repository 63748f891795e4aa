"""`fbnet_zoo://<model name>`: the URL scheme naming a zoo model's ImageNet checkpoint, as an
iopath handler registered with detectron2's PathManager and the project's (mobile_cv_nas.io)
on import.

`MODEL.WEIGHTS fbnet_zoo://FBNetV2_F4` (any zoo model with weights, built-in or user catalog)
resolves to the zoo's weights file, downloaded once into the cache (mobile_cv_nas.io) and
checked against the catalog's sha256 when it has one.
"""

import os

from detectron2.utils.file_io import PathManager as D2PathManager
from iopath.common.file_io import PathHandler

from .. import model_zoo
from ..arch.checkpoint import CheckpointError, fetch_checkpoint
from ..io import path_manager

#: The URL scheme naming a zoo model's ImageNet checkpoint: fbnet_zoo://<model name>.
ZOO_PREFIX = "fbnet_zoo://"


def zoo_weights_file(name, cache_dir=None):
    """The local file of zoo model `name`'s published weights (downloaded into the cache if
    needed, sha256-checked when the catalog pins it); CheckpointError when it has none or
    cannot be fetched."""
    try:
        info = model_zoo.get_model_info(name)
    except (model_zoo.UnknownModelError, model_zoo.CatalogError) as e:
        raise CheckpointError(f"{ZOO_PREFIX}{name}: {e}") from None
    weights = info.get("weights")
    if not weights:
        raise CheckpointError(
            f"{ZOO_PREFIX}{name}: model {info['name']!r} has no published weights; use another "
            f"zoo model or a checkpoint file as MODEL.WEIGHTS."
        )
    try:
        catalog = os.path.join(info["catalog"], "catalog.yaml")
        return fetch_checkpoint(
            model_zoo.weights_location(info),
            sha256=weights.get("sha256"),
            cache_dir=cache_dir,
            pinned_by=f"recorded in {catalog}",
        )
    except CheckpointError as e:
        raise CheckpointError(f"{ZOO_PREFIX}{name}: {e}") from None


class FBNetZooHandler(PathHandler):
    """iopath handler of `fbnet_zoo://<model name>`: the zoo model's weights file."""

    PREFIX = ZOO_PREFIX

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _get_local_path(self, path, force=False, **kwargs):
        return zoo_weights_file(path[len(self.PREFIX) :].strip("/"))

    def _open(self, path, mode="r", buffering=-1, **kwargs):
        return open(self._get_local_path(path), mode, buffering=buffering)

    def _isfile(self, path, **kwargs):
        try:
            return os.path.isfile(self._get_local_path(path))
        except CheckpointError:
            return False

    _exists = _isfile


def register_zoo_handler():
    """Register `fbnet_zoo://` with detectron2's PathManager and the project's (done on
    import; again is harmless)."""
    for manager in (D2PathManager, path_manager):
        manager.register_handler(FBNetZooHandler(), allow_override=True)


register_zoo_handler()
