"""The full Fashion-MNIST (60k/10k) for users without root: the Debian package
`dataset-fashion-mnist` fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
the user cache, its contents checked against the published set's checksums.

    python tools/fetch_fashion_mnist.py        # then fashion_mnist_train/_val are the full set

Why checksums of the decompressed idx files rather than of the package: Debian may rebuild
the package (new compression, new version) while the images and labels stay Zalando's; a
mismatch then means the data changed, which is what a benchmark must not silently accept.
`apt-get download` itself checks the .deb against the archive's signed index.
"""

import gzip
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..io import resolve_cache_dir
from .errors import DatasetError

logger = logging.getLogger("mobile_cv_nas.data")

PACKAGE = "dataset-fashion-mnist"
#: Where the package keeps the files, inside the .deb.
PACKAGE_DIR = Path("usr/share/datasets/fashion-mnist")
#: sha256 of each decompressed idx file of the published Fashion-MNIST.
CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "train-labels-idx1-ubyte.gz": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}


def user_cache_dir(cache_dir=None):
    """`<cache>/fashion-mnist`, the cache being $MOBILE_CV_NAS_CACHE or iopath's default."""
    return Path(resolve_cache_dir(cache_dir)) / "fashion-mnist"


def content_sha256(path):
    """sha256 of a gzip file's decompressed bytes."""
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(folder, expected=None):
    """Raise DatasetError naming the first file of `folder` that is missing or whose content
    differs from `expected` ({file name: sha256}, default CONTENT_SHA256)."""
    for name, sha in (expected or CONTENT_SHA256).items():
        path = Path(folder) / name
        if not path.is_file():
            raise DatasetError(f"{path} is missing from the unpacked {PACKAGE}.")
        try:
            got = content_sha256(path)
        except (OSError, EOFError) as e:
            raise DatasetError(f"{path} is not a readable gzip file ({e}).") from None
        if got != sha:
            raise DatasetError(
                f"{path}: its content's sha256 is {got}, not the published Fashion-MNIST's "
                f"{sha}; the file was not installed."
            )


def _run(argv, cwd):
    try:
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise DatasetError(
            f"{argv[0]} not found: fetching {PACKAGE} needs Debian's apt-get and dpkg-deb "
            f"(or install the package, or set $MOBILE_CV_NAS_FASHION_MNIST to a folder "
            f"holding the four idx files)."
        ) from None
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or e.stdout or "").strip().splitlines()
        raise DatasetError(
            f"{' '.join(argv)} failed (exit {e.returncode}): "
            f"{detail[-1] if detail else 'no output'}"
        ) from None


def install_from_deb(deb, target, expected=None):
    """Unpack the .deb `deb` with dpkg-deb -x, check its idx files and move them into
    `target` (each by a rename, so a crash never leaves a half file there)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=target) as scratch:
        _run(["dpkg-deb", "-x", str(Path(deb).resolve()), scratch], cwd=scratch)
        unpacked = Path(scratch) / PACKAGE_DIR
        verify(unpacked, expected)
        for name in expected or CONTENT_SHA256:
            os.chmod(unpacked / name, 0o644)
            os.replace(unpacked / name, target / name)
    return target


def fetch_full_set(cache_dir=None):
    """The folder of the full set in the user cache, fetched and checked when not there yet
    (no root needed: `apt-get download` writes to the current folder)."""
    target = user_cache_dir(cache_dir)
    try:
        verify(target)
        logger.info("The full Fashion-MNIST is already in %s (checksums verified).", target)
        return target
    except DatasetError:
        pass
    if shutil.which("apt-get") is None:
        _run(["apt-get"], cwd=".")  # raises the "not found" error
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target) as scratch:
        logger.info("Downloading %s (31 MB) with apt-get download ...", PACKAGE)
        _run(["apt-get", "download", PACKAGE], cwd=scratch)
        debs = sorted(Path(scratch).glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise DatasetError(f"apt-get download {PACKAGE} wrote no .deb file.")
        install_from_deb(debs[-1], target)
    logger.info("The full Fashion-MNIST is in %s (checksums verified).", target)
    return target
