"""The errors that are the user's to fix (bad config, data, space, arch, checkpoint, output
folder): tools/train_net.py prints their one-line message and exits with status 2."""

from ..arch import ArchDefError, CheckpointError
from ..config import ArchConfigError
from ..data import DatasetError
from ..detection import DetectionConfigError, DetectionDataError
from ..model_zoo import CatalogError, UnknownModelError
from ..search import SearchAdapterError, SearchSpaceError
from ..search.latency import LatencyTableError


class ConfigError(ValueError):
    """A config key or value that cannot work; the message names it and the fix."""


class OutputDirError(ValueError):
    """OUTPUT_DIR holds another run."""


USER_ERRORS = (
    ArchConfigError,
    ArchDefError,
    CatalogError,
    CheckpointError,
    ConfigError,
    DatasetError,
    DetectionConfigError,
    DetectionDataError,
    LatencyTableError,
    OutputDirError,
    SearchAdapterError,
    SearchSpaceError,
    UnknownModelError,
)
