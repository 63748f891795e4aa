"""Progress lines with an ETA for the long measurements (a table's build, a calibration, the
benchmark): the mean time per item so far times the items left."""

from __future__ import annotations

import time


def _format_seconds(s):
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Progress lines with an ETA on a stream, at most one every `every_s` seconds."""

    def __init__(self, stream, total, done, every_s=2.0):
        self.stream, self.total, self.start_done, self.every_s = stream, total, done, every_s
        self.start = self.last = time.monotonic()

    def __call__(self, done, label="", force=False):
        t = time.monotonic()
        if self.stream is None or not (force or t - self.last >= self.every_s):
            return
        self.last = t
        elapsed, measured = t - self.start, done - self.start_done
        eta = "?" if measured == 0 else _format_seconds(elapsed / measured * (self.total - done))
        self.stream.write(
            f"[{done}/{self.total}] {100.0 * done / max(1, self.total):.1f}% elapsed "
            f"{_format_seconds(elapsed)} ETA {eta} {label}\n"
        )
        self.stream.flush()
