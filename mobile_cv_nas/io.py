"""Files and URLs: local paths through iopath, http(s) URLs downloaded once into a cache.

Why our own cache layout instead of iopath's HTTPURLHandler: that handler remembers each URL's
first cache folder per process and keys the cache on the URL path alone (two hosts collide).
Here an URL is cached at `<cache>/<host>/<url path>`, a file already there is used without any
network call (a filled cache works offline), and a download goes to a temporary folder beside
its target and is moved into place with os.replace, so a crash never leaves a torn file; the
file gets the normal mode under the umask, as every file `atomic_write` writes. The transfer
itself is iopath's `download`.
"""

import hashlib
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import urllib.error
from urllib.parse import urlparse

import iopath.common.download as iopath_download
import yaml
from iopath.common.file_io import PathManager, get_cache_dir

#: Environment variable naming the download cache (default: iopath's, $FVCORE_CACHE or
#: ~/.torch/iopath_cache).
CACHE_ENV = "MOBILE_CV_NAS_CACHE"

#: Local paths (and any handler a user registers, e.g. for a blob store) go through this.
path_manager = PathManager()


class DownloadError(OSError):
    """An URL that could not be downloaded; `target` is where a copy placed by hand is used."""

    def __init__(self, url, target, reason):
        super().__init__(
            f"Could not download {url} ({reason}). Without network, put the file at {target}"
        )
        self.url, self.target, self.reason = url, target, reason


def resolve_cache_dir(cache_dir=None):
    """`cache_dir`, else $MOBILE_CV_NAS_CACHE, else iopath's default cache folder."""
    return str(cache_dir or os.environ.get(CACHE_ENV) or get_cache_dir())


def url_cache_path(url, cache_dir=None):
    """Where the http(s) `url` is cached: `<cache>/<host>/<url path>` (`<host>_<port>` when
    the URL names a port)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if parsed.port:
        host = f"{host}_{parsed.port}"
    parts = posixpath.normpath("/" + parsed.path).strip("/").split("/")
    if not host or parts == [""] or ".." in parts:
        raise ValueError(f"Cannot cache URL {url!r}: it needs a host and a file path.")
    return os.path.join(resolve_cache_dir(cache_dir), host, *parts)


def _reason(error):
    if isinstance(error, urllib.error.HTTPError):
        error.close()
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}"


def download(url, target):
    """Download `url` to the file `target` atomically; raises DownloadError."""
    folder = os.path.dirname(target)
    tmp_dir = None
    try:
        os.makedirs(folder, exist_ok=True)
        tmp_dir = tempfile.mkdtemp(prefix=".download-", dir=folder)
        name = os.path.basename(target)
        # a progress bar for people at a terminal, not in logs
        fetched = iopath_download.download(
            url, tmp_dir, filename=name, progress=sys.stderr.isatty()
        )
        os.chmod(fetched, _normal_mode())  # as atomic_write's files, whatever made it
        os.replace(fetched, target)
    except Exception as e:
        raise DownloadError(url, target, _reason(e)) from None
    finally:
        if tmp_dir:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def local_path(path, cache_dir=None):
    """A local file for `path`: a plain path, a file:// URL, or an http(s) URL (downloaded
    into the cache unless already there). Raises DownloadError when a download fails."""
    path = os.fspath(path)
    if path.startswith("file://"):
        return path[len("file://") :]
    if path.startswith(("http://", "https://")):
        target = url_cache_path(path, cache_dir)
        return target if os.path.isfile(target) else download(path, target)
    return path_manager.get_local_path(path)


def sha256sum(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def load_yaml(path, what, error=ValueError):
    """The parsed YAML of `path` (a path or URL, see `local_path`). `what` names the file in
    errors ("arch def", "search space"); a missing file or bad YAML raises `error` naming the
    file and, for bad YAML, the line and column."""
    path = os.fspath(path)
    try:
        with path_manager.open(local_path(path), "r") as f:
            return yaml.safe_load(f)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise error(f"{what} file {path!r} does not exist.") from None
    except DownloadError as e:
        raise error(f"{what} file: {e}") from None
    except yaml.YAMLError as e:
        raise error(f"{what} file {path!r} is not valid YAML: {e}") from None


def stage_write(path, write, mode="wb"):
    """The first half of `atomic_write`: call `write(file)` on a new temporary file beside
    `path` (same folder, so os.replace is atomic) and return its name; the caller moves it into
    place with os.replace (or removes it). The file has the normal mode under the umask (0644
    by default, not mkstemp's private 0600) and is flushed to disk. For writes of several files
    that must all succeed before any replaces its target (publish_model); on failure the
    temporary is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            os.chmod(tmp, _normal_mode())  # mkstemp's file is private (0600)
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _remove(tmp)
        raise
    return tmp


#: The names stage_write's temporaries get (mkstemp: prefix, 8 characters of
#: [a-z0-9_], suffix), so that the next start of a writer finds the ones a crash left.
_STAGED = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stray_temporaries(folder):
    """Remove the temporaries (stage_write's names) that an interrupted write left in
    `folder` (not its subfolders); returns their names, sorted. Only for a folder whose
    writer holds it alone (a run's OUTPUT_DIR under its lock, a catalog during a publish): a
    temporary of a write in progress would be removed too."""
    try:
        names = sorted(n for n in os.listdir(folder) if _STAGED.fullmatch(n))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path):
            _remove(path)
            removed.append(name)
    return removed


def atomic_write(path, write, mode="wb"):
    """Write `path` by calling `write(file)` on a temporary file that then replaces it.

    The one atomic write of the project (checkpoints, published files, pictures, caches): a
    reader sees the old file or the new one, never half of one, and the file gets the normal
    mode under the umask (0644 by default), not mkstemp's private 0600."""
    tmp = stage_write(path, write, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def write_json(path, data):
    """`data` as indented JSON at `path`, written atomically (values JSON lacks as str)."""
    atomic_write(
        path, lambda f: json.dump(data, f, indent=2, sort_keys=True, default=str), mode="w"
    )


def _normal_mode():
    """The mode open() gives a new file: 0666 less the umask (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
