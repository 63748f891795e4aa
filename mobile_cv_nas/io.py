"""Files and URLs through iopath: one PathManager with HTTP download and a local cache."""

import hashlib
import os
from urllib.parse import urlparse

import yaml
from iopath.common.file_io import HTTPURLHandler, PathManager

#: Environment variable naming the download cache (default: iopath's, ~/.torch/iopath_cache).
CACHE_ENV = "MOBILE_CV_NAS_CACHE"

path_manager = PathManager()
path_manager.register_handler(HTTPURLHandler())


def default_cache_dir():
    return os.environ.get(CACHE_ENV) or None


def local_path(path, cache_dir=None):
    """A local file for `path` (plain path, file:// URL or http(s) URL, downloaded and cached).

    An URL already in the cache is not downloaded again, so a filled cache works offline.
    """
    path = str(path)
    if path.startswith("file://"):
        path = path[len("file://"):]
    if path.startswith(("http://", "https://")):
        cache_dir = cache_dir or default_cache_dir()
        if cache_dir:
            # iopath remembers each URL's first cache; honour the folder asked for now
            cached = os.path.join(cache_dir, urlparse(path).path.lstrip("/"))
            if os.path.isfile(cached):
                return cached
            return path_manager.get_local_path(path, force=True, cache_dir=cache_dir)
        return path_manager.get_local_path(path)
    return path_manager.get_local_path(path)


def sha256sum(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def load_yaml(path, what, error=ValueError):
    """The parsed YAML of `path` (any iopath path). `what` names the file in errors
    ("arch def", "search space"); a missing file or bad YAML raises `error` naming the file
    and, for bad YAML, the line and column."""
    path = os.fspath(path)
    try:
        with path_manager.open(path, "r") as f:
            return yaml.safe_load(f)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise error(f"{what} file {path!r} does not exist.") from None
    except yaml.YAMLError as e:
        raise error(f"{what} file {path!r} is not valid YAML: {e}") from None
