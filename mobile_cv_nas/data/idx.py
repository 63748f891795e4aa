"""The idx file format of (Fashion-)MNIST, read and written with the standard library.

One reader serves both the full Fashion-MNIST (the `.gz` files of the Debian package) and the
embedded subset (the same format, `.gz` or `.xz`), so the two can never disagree on layout.
An idx file is a 4-byte magic (two zero bytes, a dtype code, the number of dimensions), one
big-endian uint32 per dimension, then the row-major data; only unsigned bytes (code 0x08),
the one dtype Fashion-MNIST uses, are supported.
"""

import gzip
import lzma
import struct
from pathlib import Path

import numpy as np

UINT8 = 0x08
#: Suffixes tried, in order, when a file is looked up by its stem.
SUFFIXES = (".gz", ".xz", "")


class IdxFormatError(ValueError):
    """A file that is not a readable uint8 idx file."""


def _open(path):
    suffix = Path(path).suffix
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


def find_idx(folder, stem):
    """The file `stem` + one of SUFFIXES in `folder`, or None."""
    for suffix in SUFFIXES:
        path = Path(folder) / (stem + suffix)
        if path.is_file():
            return path
    return None


def read_idx(path):
    """The array stored in the idx file `path` (compressed by its suffix: .gz, .xz or none)."""
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise IdxFormatError(f"cannot read idx file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFormatError(f"{path} is not an idx file (bad magic number)")
    if data[2] != UINT8:
        raise IdxFormatError(f"{path}: idx dtype code {data[2]:#04x}, only uint8 (0x08) is read")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{path}: truncated idx header ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise IdxFormatError(
            f"{path}: header says shape {shape} ({expected} bytes), file holds "
            f"{len(data) - header} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def encode_idx(array):
    """The uncompressed idx bytes of a uint8 array."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"only uint8 arrays are written as idx, got {array.dtype}")
    header = bytes([0, 0, UINT8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def compress(raw, suffix):
    """`raw` compressed for `suffix` (.gz or .xz), byte-identical on every run: gzip with no
    file name and mtime 0, xz at preset 9e with a CRC64 check."""
    if suffix == ".gz":
        return gzip.compress(raw, compresslevel=9, mtime=0)
    if suffix == ".xz":
        return lzma.compress(
            raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9 | lzma.PRESET_EXTREME
        )
    raise ValueError(f"unknown compression suffix {suffix!r} (use .gz or .xz)")
