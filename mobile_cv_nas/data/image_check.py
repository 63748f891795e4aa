"""Finding the image files that cannot be read, before a run starts, so that a truncated file,
a file that is not an image, an empty file or a dangling link is named at once instead of
stopping the run hours later inside a loader worker.

Each file is opened and fully decoded, as the loader will (a header check misses truncated
JPEGs: they only fail when their data is decoded), JPEGs at a reduced size: about 1 ms for a
500x375 JPEG on one core. Threads share the work: PIL releases the GIL while it decodes.
"""

import os
from concurrent.futures import ThreadPoolExecutor

from PIL import UnidentifiedImageError

from .image_folder import listing
from .image_modes import load_image

#: Files per task handed to a thread (a future per file would cost memory on ImageNet).
CHUNK = 256


def _broken_link(path):
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"a link to {os.readlink(path)!r}, which does not exist"
    except OSError as e:
        return f"a link that cannot be followed ({os.readlink(path)!r}: {e.strerror})"
    return "a link that cannot be followed"


def image_problem(path):
    """Why the file at `path` cannot be read as an RGB image, or None when it can."""
    try:
        if os.path.islink(path) and not os.path.exists(path):
            return _broken_link(path)
        if not os.path.isfile(path):
            return "not a regular file"
        if os.path.getsize(path) == 0:
            return "an empty file"
        load_image(path, "RGB", draft=True)
    except UnidentifiedImageError:
        return (
            "PIL cannot open it: not an image, a truncated or corrupt header, or a format this "
            "PIL cannot read"
        )
    except PermissionError:
        return "cannot be read: permission denied"
    except Exception as e:  # PIL's decoders raise OSError, SyntaxError, ValueError, ...
        return f"cannot be decoded: {e}"
    return None


def _problems(paths):
    return [(path, problem) for path in paths if (problem := image_problem(path)) is not None]


def find_bad_images(paths, threads=1, progress=None):
    """[(path, problem)] of the files in `paths` that cannot be read (see image_problem), in
    the order of `paths`. `threads` decode in parallel; `progress(done)` is called as the
    files are checked."""
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    bad, done = [], 0
    with ThreadPoolExecutor(max(1, int(threads))) as pool:
        for chunk, found in zip(chunks, pool.map(_problems, chunks), strict=True):
            bad.extend(found)
            done += len(chunk)
            if progress is not None:
                progress(done)
    return bad


def describe_bad_images(bad):
    """The first of `bad` ([(path, problem)]) as "path (problem), ... and N more"."""
    return listing(f"{path} ({problem})" for path, problem in bad)
