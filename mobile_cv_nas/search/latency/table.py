"""The latency table (LUT): its file format, its look-ups, and the checks that keep a table that
does not fit from being used silently.

File (JSON, written by `tools/build_latency_lut.py`):

    {"format": "mobile_cv_nas.latency_table", "version": 1,
     "meta": {
       "space": {"name": "fbnetv2_f", "sha256": "...", "definition": {... the space ...}},
       "device": "cpu", "threads": 1, "batch": 1, "dtype": "float32", "torch": "2.4.1",
       "machine": {"cpu": "AMD EPYC 7B13", "cpu_cores": 2, "arch": "x86_64", "system": "Linux"},
       "grid_points": 3, "configurations": 50188, "planned": 5492, "complete": true,
       "timing": {...}, "created": "...", "updated": "...", "build_seconds": 512.3,
       "command": "python tools/build_latency_lut.py --space fbnetv2_f ...",
       "interpolation_check": {"count": 100, "median_abs_error": 0.02, ...}},
     "entries": {"ir_k3|in=16|out=24|s=2|hw=112|mid=48": 0.734, ...},   # measured, ms
     "holdout": {...}}                        # measured off the grid, for the error check

`entries` are the measured configurations (`configs.BlockConfig.key`), medians in
milliseconds; a configuration off the grid is interpolated from them (`grid.GridIndex`).

What is checked, and why (`check_table`):

* the space (refused): the table holds the configurations of the space it was built for, as
  its `sha256` (the space's content: rows, resolutions, widths, divisor, in_channels,
  num_classes; not its name or cost) says; another space's blocks are other modules;
* completeness (refused): a build that stopped has holes, and an interpolation across a hole
  would use grid points further apart than the build chose; every configuration the space (or
  arch def) needs must be measured or interpolated from a full cell of grid points;
* device, threads, batch, dtype (refused, where the caller says what it expects: the
  benchmark, `--device`/`--threads` of the tools): latencies of another setting are other
  numbers. A search does not compare them with anything: the table names the hardware the
  search targets, which need not be the one the search runs on; it logs them;
* torch version (a warning; refused with `strict=True`): kernels change between versions,
  but a table stays a fair model of the same hardware;
* machine (a warning where the caller gives one): another CPU model.

Every refusal is a `LatencyTableError` (a one-line user error) naming what differs and the
command that rebuilds the table.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import os
import shlex

import torch

from ...io import write_json
from .configs import BlockConfig
from .errors import LatencyTableError
from .grid import GridIndex

FORMAT = "mobile_cv_nas.latency_table"
VERSION = 1
#: The measurement settings a caller may expect; a table measured otherwise is refused.
SETTINGS = ("device", "threads", "batch", "dtype")


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def space_definition(space, in_channels=None):
    """The space's content that its blocks depend on (`to_dict` without name and cost), with
    `in_channels` (the supernet's image channels) when given."""
    definition = space.to_dict()
    definition.pop("name", None)
    definition.pop("cost", None)
    if in_channels is not None:
        definition["in_channels"] = in_channels
    return definition


def space_fingerprint(space, in_channels=None):
    """{"name", "sha256", "definition"} of a SearchSpace, as a table's meta records it."""
    definition = space_definition(space, in_channels)
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return {
        "name": space.name,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "definition": definition,
    }


def entries_fingerprint(table) -> str:
    """sha256 of a table's measured entries: a calibration belongs to these numbers."""
    text = json.dumps(sorted(table.entries.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def build_command(
    space,
    output,
    device="cpu",
    threads=1,
    batch=1,
    grid=3,
    num_classes=None,
    in_channels=None,
    calibrate=None,
):
    """The command line of `tools/build_latency_lut.py` that builds (or continues) a table
    (`calibrate` None: the tool's default)."""
    words = ["python", "tools/build_latency_lut.py", "--space", str(space)]
    words += ["--output", str(output), "--device", str(device), "--threads", str(threads)]
    words += ["--batch", str(batch), "--grid", str(grid)]
    if num_classes is not None:
        words += ["--num-classes", str(num_classes)]
    if in_channels is not None:
        words += ["--in-channels", str(in_channels)]
    if calibrate is not None:
        words += ["--calibrate", str(calibrate)]
    return shlex.join(words)


def _space_differences(have, want):
    """Which parts of two space definitions differ, in words."""
    out = []
    for key in sorted(set(have) | set(want)):
        if key == "stages" or have.get(key) == want.get(key):
            continue
        out.append(f"{key} {have.get(key)!r} in the table, {want.get(key)!r} here")
    stages_a, stages_b = have.get("stages", []), want.get("stages", [])
    if len(stages_a) != len(stages_b):
        out.append(f"{len(stages_a)} stages in the table, {len(stages_b)} here")
    else:
        for s, (a, b) in enumerate(zip(stages_a, stages_b, strict=True)):
            if a != b:
                rows = [r for r in range(max(len(a), len(b))) if a[r : r + 1] != b[r : r + 1]]
                out.append(f"stage {s} row {rows[0]} differs")
    return "; ".join(out) or "their definitions differ"


class LatencyTable:
    """A latency table: `meta`, measured `entries` {key: ms}, `holdout` {key: ms}."""

    def __init__(self, meta, entries=None, holdout=None, path=None):
        self.meta = meta
        self.entries = dict(entries or {})
        self.holdout = dict(holdout or {})
        self.path = path
        self._index = None

    # ---- file
    @classmethod
    def load(cls, path, check_calibration=True) -> LatencyTable:
        """The table at `path`; LatencyTableError for a file that is not one, or (with
        `check_calibration`) whose calibration is malformed (a build calibrates it again)."""
        path = os.fspath(path)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise LatencyTableError(
                f"Latency table {path!r} does not exist: build it with "
                f"tools/build_latency_lut.py --space <space> --output {path}."
            ) from None
        except (OSError, ValueError) as e:
            raise LatencyTableError(f"Latency table {path!r} cannot be read: {e}.") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LatencyTableError(
                f'{path!r} is not a latency table (no "format": {FORMAT!r}); build one with '
                f"tools/build_latency_lut.py."
            )
        if data.get("version") != VERSION:
            raise LatencyTableError(
                f"Latency table {path!r} has format version {data.get('version')!r}; this "
                f"version of mobile_cv_nas reads version {VERSION}: rebuild it."
            )
        table = cls(data.get("meta") or {}, data.get("entries"), data.get("holdout"), path)
        for key, ms in table.entries.items():
            try:
                BlockConfig.from_key(key)
            except ValueError as e:
                raise LatencyTableError(f"Latency table {path!r}: {e}") from None
            if not isinstance(ms, (int, float)) or not ms >= 0:
                raise LatencyTableError(
                    f"Latency table {path!r}: entry {key!r} is {ms!r}, not a time in ms >= 0."
                )
        problem = table.calibration_problem()
        if problem and check_calibration:
            raise LatencyTableError(
                f"Latency table {path!r}: {problem}; calibrate it again: {table.rebuild_command()}"
            )
        return table

    def calibration_problem(self):
        """What is wrong with meta["calibration"] (a string), or None."""
        calibration = self.meta.get("calibration")
        if calibration is None:
            return None
        calibration = calibration if isinstance(calibration, dict) else {}
        for field, low_ok in (("scale", False), ("offset_ms", True)):
            value = calibration.get(field)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and (0 <= value if low_ok else 0 < value) and value < math.inf):
                sign = ">=" if low_ok else ">"
                return f"meta.calibration.{field} is {value!r}, not a number {sign} 0"
        return None

    def to_dict(self):
        return {
            "format": FORMAT,
            "version": VERSION,
            "meta": copy.deepcopy(self.meta),
            "entries": dict(sorted(self.entries.items())),
            "holdout": dict(sorted(self.holdout.items())),
        }

    def save(self, path=None):
        """Written atomically: a reader (or a killed build) sees the old file or the new one."""
        path = self.path if path is None else os.fspath(path)
        self.meta["updated"] = now()
        write_json(path, self.to_dict())
        self.path = path

    # ---- what it was measured on
    @property
    def where(self):
        return f"Latency table {self.path!r}" if self.path else "The latency table"

    @property
    def scale(self) -> float:
        """A whole model's latency per ms of its entries (`calibrate`): every prediction
        multiplies the entries by it; 1.0 for a table not calibrated."""
        calibration = self.meta.get("calibration")
        return float(calibration["scale"]) if calibration else 1.0

    @property
    def offset_ms(self) -> float:
        """What every whole model pays once beyond its scaled entries (`calibrate`); 0.0 for
        a table not calibrated."""
        calibration = self.meta.get("calibration")
        return float(calibration["offset_ms"]) if calibration else 0.0

    @property
    def width_divisor(self):
        return self.meta["space"]["definition"]["width_divisor"]

    def describe(self):
        """One line: what the numbers were measured on."""
        m = self.meta
        machine = m.get("machine", {})
        hardware = machine.get("gpu") or machine.get("cpu", "?")
        cores = f", {machine['cpu_cores']} cores" if machine.get("cpu_cores") else ""
        threads = m.get("threads")
        calibration = m.get("calibration")
        calibrated = (
            f", calibrated on {calibration.get('measured_archs')} whole models "
            f"({calibration['offset_ms']:.3g} ms + {calibration['scale']:.3f} x entries)"
            if calibration
            else ", not calibrated"
        )
        return (
            f"{m.get('device', '?')} ({hardware}{cores}), {threads} thread"
            f"{'s' if threads != 1 else ''}, batch {m.get('batch')}, {m.get('dtype')}, "
            f"torch {m.get('torch')}, space {m.get('space', {}).get('name')!r}{calibrated}"
        )

    def rebuild_command(self, **changes):
        """The command that rebuilds this table, with `changes` (space=..., threads=...)."""
        m = self.meta
        args = {
            "space": m.get("space", {}).get("name"),
            "output": self.path or "lut.json",
            "device": m.get("device", "cpu"),
            "threads": m.get("threads", 1),
            "batch": m.get("batch", 1),
            "grid": m.get("grid_points", 3),
        }
        args.update(m.get("build_args", {}))
        calibration = m.get("calibration")
        if isinstance(calibration, dict) and isinstance(calibration.get("archs"), int):
            args["calibrate"] = calibration["archs"]  # calibrated after its build, maybe
        args.update(changes)
        return build_command(**args)

    # ---- look-ups
    @property
    def index(self):
        if self._index is None:
            entries = {BlockConfig.from_key(k): v for k, v in self.entries.items()}
            self._index = GridIndex(entries)
        return self._index

    def add(self, config: BlockConfig, ms: float):
        self.entries[config.key] = float(ms)
        self._index = None

    def find(self, config: BlockConfig):
        """(ms, measured exactly) or None (see grid.GridIndex.lookup)."""
        return self.index.lookup(config)

    def lookup(self, config: BlockConfig) -> float:
        """Milliseconds of `config`, measured or interpolated; LatencyTableError if neither."""
        found = self.find(config)
        if found is None:
            raise LatencyTableError(
                f"{self.where} has no entry for {config.key} and no grid around it: "
                f"rebuild it: {self.rebuild_command()}"
            )
        return found[0]

    def missing(self, configs):
        """The configurations of `configs` the table can neither look up nor interpolate."""
        return [c for c in configs if self.find(c) is None]

    def check_covers(self, configs, what, why=None):
        """LatencyTableError naming the first missing configurations of `what` (and `why`
        they may be missing), if any."""
        missing = self.missing(configs)
        if missing:
            shown = ", ".join(c.key for c in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            why = why or "entries were removed from it"
            raise LatencyTableError(
                f"{self.where} lacks {len(missing)} configuration(s) of {what} ({shown}{more}), "
                f"measured or between grid points ({why}); rebuild it: {self.rebuild_command()}"
            )


def check_table(
    table,
    space=None,
    *,
    in_channels=None,
    space_arg=None,
    device=None,
    threads=None,
    batch=None,
    dtype=None,
    machine=None,
    strict=False,
):
    """Check that `table` fits (see the module doc); returns the warnings (strings), raises
    LatencyTableError for a refusal. `space`: the SearchSpace it will be used for (its
    configurations must all be covered; `in_channels`: the supernet's image channels;
    `space_arg`: how the rebuild command names the space, default its name). `device`,
    `threads`, `batch`, `dtype`: the settings the caller needs (None: not checked).
    `machine`: the machine description to compare (a warning). `strict`: another torch
    version is refused, not warned about."""
    meta = table.meta
    if not meta.get("complete", False):
        measured, planned = len(table.entries), meta.get("planned", "?")
        raise LatencyTableError(
            f"{table.where} is incomplete: its build stopped after {measured} of {planned} "
            f"measurements. Rerun its build to continue where it stopped: "
            f"{table.rebuild_command()}"
        )
    if space is not None:
        from .configs import space_configs

        want = space_fingerprint(space, in_channels)
        have = meta.get("space", {})
        if have.get("sha256") != want["sha256"]:
            differences = _space_differences(have.get("definition", {}), want["definition"])
            definition = want["definition"]
            command = table.rebuild_command(
                space=space_arg or space.name,
                num_classes=definition["num_classes"],
                in_channels=definition["in_channels"],
            )
            raise LatencyTableError(
                f"{table.where} was measured for search space {have.get('name')!r}, not for "
                f"{space.name!r} as searched here ({differences}): rebuild it for this space: "
                f"{command}"
            )
        table.check_covers(space_configs(space, in_channels), f"search space {space.name!r}")
    asked = {"device": device, "threads": threads, "batch": batch, "dtype": dtype}
    for name in SETTINGS:
        value = asked[name]
        if value is None or str(meta.get(name)) == str(value):
            continue
        raise LatencyTableError(
            f"{table.where} was measured with {name} {meta.get(name)!r}, not {value!r} as asked: "
            f"latencies of another setting are other numbers; rebuild it: "
            f"{table.rebuild_command(**{name: value})}"
        )
    warnings = []
    calibration = meta.get("calibration")
    if not calibration:
        warnings.append(
            f"{table.where} is not calibrated on whole networks: its predictions are sums of "
            f"blocks timed alone, which run faster than inside a network (11-26% on the F "
            f"space on a 2-core CPU); calibrate it (seconds): "
            f"{table.rebuild_command(calibrate=20)}"
        )
    elif calibration.get("entries_sha256") != entries_fingerprint(table):
        warnings.append(
            f"{table.where}: its calibration was measured for other entries than it holds now; "
            f"calibrate it again: "
            f"{table.rebuild_command()}"
        )
    current = torch.__version__
    if meta.get("torch") != current:
        message = (
            f"{table.where} was measured with torch {meta.get('torch')}, this is torch "
            f"{current}: kernels change between versions, so its numbers may be off; rebuild "
            f"it: {table.rebuild_command()}"
        )
        if strict:
            raise LatencyTableError(message)
        warnings.append(message)
    if machine is not None:
        theirs = meta.get("machine", {})
        differs = [k for k in ("cpu", "cpu_cores", "gpu") if theirs.get(k) != machine.get(k)]
        if differs:
            warnings.append(
                f"{table.where} was measured on another machine ("
                + ", ".join(f"{k} {theirs.get(k)!r}, here {machine.get(k)!r}" for k in differs)
                + f"): its numbers are that machine's; rebuild it here: "
                f"{table.rebuild_command()}"
            )
    return warnings


def load_latency_table(path, space=None, **expect):
    """(LatencyTable, warnings) of the file at `path`, checked by `check_table(table, space,
    **expect)`."""
    if isinstance(path, LatencyTable):
        table = path
    else:
        table = LatencyTable.load(path)
    return table, check_table(table, space, **expect)
