"""Publish a trained model into a user catalog directory, so the model zoo loads it by name.

    from mobile_cv_nas import model_zoo
    from mobile_cv_nas.publish import publish_model

    publish_model("fmnist_tiny", "run/arch.yaml", "run/model_final.pth", "my_zoo",
                  metrics={"top1": 91.2, "top5": 99.8}, dataset="Fashion-MNIST",
                  mean=[0.2860], std=[0.3530], resolution=28)
    model_zoo.add_catalog("my_zoo")  # or: export MOBILE_CV_NAS_CATALOGS=my_zoo
    model = model_zoo.get("fmnist_tiny", pretrained=True)

A catalog directory holds `catalog.yaml` (the schema of model_zoo/catalog.yaml),
`archs/<name>.yaml` and `weights/<name>.pth`. Everything is checked before anything is
written: the name (unique across the built-in and every registered catalog, case-insensitively),
the arch def, and that the weights load strictly into the model the arch builds. The files are
then staged beside their targets (mobile_cv_nas.io.stage_write, the first half of the project's
one atomic write: normal file modes) and moved into place with os.replace,
catalog.yaml last, so a failure leaves no half-written file and the catalog never names a file
that is not there. Comments in an existing catalog.yaml are not kept.

Integrity: weights with a sha256 recorded beside them (what training runs write, see
mobile_cv_nas.integrity) are published only if their bytes are the ones written; weights
without one are published with a warning, as their content cannot be checked. The writes
hold an exclusive lock on the catalog directory, under which the temporaries an interrupted
publish left there (and in archs/, weights/) are removed and reported.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import logging
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

import yaml

from . import model_zoo
from .arch import (
    ArchDef,
    ArchDefError,
    CheckpointError,
    build_model,
    load_arch_def,
    load_checkpoint,
    parse_arch_def,
)
from .flops import count_flops
from .integrity import hash_path, unrecorded_warning
from .io import DownloadError, local_path, remove_stray_temporaries, sha256sum, stage_write
from .validation import check_positive_int

#: A model name: a letter or underscore, then letters, digits, `_` or `-` (it names files).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_METRICS = ("top1", "top5")
_TARGET = "the catalog being published into"

logger = logging.getLogger(__name__)


class PublishError(ValueError):
    """A model that cannot be published as asked; nothing was written."""


def _check_name(name):
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PublishError(
            f"Model name {name!r} is not valid: use a letter or '_' followed by letters, digits, "
            f"'_' or '-' (it names the files archs/<name>.yaml and weights/<name>.pth)."
        )


def _target_catalog(directory):
    """The parsed catalog of the directory published into, or None when it has none yet."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise PublishError(f"Catalog directory {directory!r} exists and is not a directory.")
    if not os.path.isfile(os.path.join(directory, "catalog.yaml")):
        return None
    return model_zoo._user_catalog(directory, _TARGET).data


def _check_unique(name, directory, target, overwrite):
    """The key of the entry `name` replaces in `target` (None if new). Raises PublishError when
    the name is taken in another catalog, or in this one without `overwrite`."""
    file = os.path.join(directory, "catalog.yaml")
    index = model_zoo._index(model_zoo._catalogs(exclude=(directory,)))
    spelled = index.by_lower.get(name.lower())
    if spelled is not None:
        other = index.models[index.aliases.get(spelled, spelled)]
        raise PublishError(
            f"Cannot publish {name!r} into {file}: the name is taken by {spelled!r} in "
            f"{other.described()}. Names are unique across catalogs (case-insensitively); "
            f"pick another name."
        )
    if target is None:
        return None
    low = name.lower()
    for alias in target.get("aliases") or {}:
        if alias.lower() == low:
            raise PublishError(
                f"Cannot publish {name!r} into {file}: {alias!r} is an alias there. Remove the "
                f"alias or pick another name."
            )
    for known in target["models"]:
        if known.lower() == low:
            if not overwrite:
                raise PublishError(
                    f"Model {known!r} is already in {file}; pass overwrite=True (--overwrite) "
                    f"to replace it, or pick another name."
                )
            return known
    return None


def _check_free(path, what, overwrite, users):
    """Refuse to clobber `path` when another catalog entry uses it, or without `overwrite`."""
    if not os.path.lexists(path):
        return
    if users:
        raise PublishError(
            f"{what} {path} exists and belongs to model(s) {sorted(users)} of the catalog; "
            f"pick another name."
        )
    if not overwrite:
        raise PublishError(
            f"{what} {path} already exists (not in catalog.yaml); pass overwrite=True "
            f"(--overwrite) to replace it, or remove it."
        )


def _arch_def(arch, name, resolution):
    """The arch def (ArchDef, mapping or YAML path) named `name`, at `resolution` (default its
    input_size); checked to survive the YAML round trip the catalog needs."""
    if isinstance(arch, ArchDef):
        arch = copy.deepcopy(arch)
    elif isinstance(arch, dict):
        arch = parse_arch_def(copy.deepcopy(arch))
    else:
        arch = load_arch_def(arch)
    if resolution is None:
        resolution = arch.input_size
    check_positive_int(resolution, "resolution", PublishError)
    arch = dataclasses.replace(arch, name=name, input_size=resolution)
    try:
        text = arch.to_yaml()
        parse_arch_def(yaml.safe_load(text))
    except yaml.YAMLError as e:
        raise PublishError(
            f"The arch def of {name!r} cannot be written as YAML (a callable option such as a "
            f"norm function? use its name): {e}"
        ) from None
    return arch, text


def _check_numbers(values, what, channels):
    if values is None:
        return None
    if (
        not isinstance(values, (list, tuple))
        or len(values) != channels
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ):
        raise PublishError(
            f"{what} must be a list of {channels} number(s), one per input channel, got {values!r}."
        )
    return [float(v) for v in values]


def _check_metrics(metrics):
    metrics = dict(metrics or {})
    unknown = set(metrics) - set(_METRICS)
    if unknown:
        raise PublishError(
            f"Unknown metrics {sorted(unknown)}; publish_model takes {list(_METRICS)} "
            f"(accuracies in %); FLOPs and params are counted."
        )
    out = {}
    for key in _METRICS:
        value = metrics.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100
        ):
            raise PublishError(f"Metric {key!r} must be a percentage in [0, 100], got {value!r}.")
        out[key] = None if value is None else float(value)
    return out


def _load_weights(weights, name, arch):
    """(local file, model) after loading `weights` strictly into build_model(arch)."""
    try:
        file = local_path(weights)
    except (DownloadError, ValueError) as e:
        raise PublishError(f"Cannot fetch the weights of {name!r}: {e}") from None
    if not os.path.isfile(file):
        raise PublishError(f"Weights file {os.fspath(weights)!r} does not exist.")
    model = build_model(arch)
    try:
        # The user's own file (e.g. a training run's model_final.pth, which may pickle more than
        # tensors), so trusted; checked against the sha256 recorded beside it, if any. Once
        # published, its sha256 in the catalog pins it.
        load_checkpoint(model, file, trusted=True)
    except CheckpointError as e:
        raise PublishError(f"Cannot publish {name!r}: {e}") from None
    if not os.path.exists(hash_path(file)):
        logger.warning(
            unrecorded_warning(file, "Weights file")
            + " The catalog pins the sha256 of the file as it is now."
        )
    return file, model.eval()


class _AtomicWrites:
    """Files staged beside their targets (io.stage_write: normal mode, on disk), moved into
    place in `commit` (in the order added); on failure every staged file, every file moved into
    a new place and every directory created are removed."""

    def __init__(self):
        self.pending = []  # (temporary, target)
        self.created = []  # directories made, in order
        self.placed = []  # targets that did not exist before commit

    def makedirs(self, path):
        parent = os.path.dirname(path)
        if not os.path.isdir(path):
            if parent and parent != path:
                self.makedirs(parent)
            os.mkdir(path)
            self.created.append(path)

    def _stage(self, target, write, mode):
        self.makedirs(os.path.dirname(target))
        self.pending.append((stage_write(target, write, mode), target))
        return self.pending[-1][0]

    def text(self, target, text):
        self._stage(target, lambda f: f.write(text), "w")

    def copy(self, target, source, sha256):
        def write(f):
            with open(source, "rb") as src:
                shutil.copyfileobj(src, f)

        if sha256sum(self._stage(target, write, "wb")) != sha256:
            raise PublishError(f"Copying {source} to {target} changed its content; retry.")

    def commit(self):
        for tmp, target in self.pending:
            existed = os.path.lexists(target)
            os.replace(tmp, target)
            if not existed:
                self.placed.append(target)
        self.pending = []

    def rollback(self):
        for path in [tmp for tmp, _ in self.pending] + self.placed:
            try:
                os.remove(path)
            except OSError:
                pass
        for directory in reversed(self.created):
            try:
                os.rmdir(directory)  # only when still empty
            except OSError:
                pass


@contextlib.contextmanager
def _locked(directory):
    """An exclusive lock (flock) on the catalog `directory` while it is written, so that a
    second publish into it waits; under it, the temporaries that an interrupted publish left
    are removed (none can be a write in progress) and reported."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        strays = []
        for folder in ("", "archs", "weights"):
            strays += [
                os.path.join(folder, n)
                for n in remove_stray_temporaries(os.path.join(directory, folder))
            ]
        if strays:
            logger.warning(
                f"Removed {len(strays)} temporary file(s) that an interrupted publish left in "
                f"{directory}: {', '.join(strays)}."
            )
        yield
    finally:
        os.close(fd)  # releases the lock


def _catalog_yaml(data):
    header = (
        "# Model catalog (schema: model_zoo/catalog.yaml of mobile_cv_nas), written by\n"
        "# mobile_cv_nas.publish.publish_model; comments here are not kept when it rewrites it.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def publish_model(
    name: str,
    arch: ArchDef | dict[str, Any] | str | os.PathLike,
    weights: str | os.PathLike,
    catalog_dir: str | os.PathLike,
    *,
    metrics: Mapping[str, float] | None = None,
    dataset: str | None = None,
    mean: list[float] | tuple[float, ...] | None = None,
    std: list[float] | tuple[float, ...] | None = None,
    resolution: int | None = None,
    resize: int | None = None,
    url: str | None = None,
    copy_weights: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Publish a model into the user catalog directory `catalog_dir`; returns its entry.

    Args:
        name: the model's zoo name (letters, digits, `_`, `-`), not already in the built-in or
            any registered catalog ($MOBILE_CV_NAS_CATALOGS, model_zoo.add_catalog), nor in
            `catalog_dir` unless `overwrite`.
        arch: an ArchDef, arch-def mapping or arch YAML path; written as archs/<name>.yaml.
        weights: an official-format checkpoint ({"state_dict", optional "model_ema"}) or a bare
            state dict file (path or URL). It must load strictly into build_model(arch). It is
            read with trusted=True (the caller's own file); the catalog pins its sha256.
        metrics: {"top1", "top5"} accuracies in %, optional; FLOPs and params are counted at
            `resolution` with mobile_cv_nas.flops.count_flops.
        dataset, mean, std: what the model was trained on and its input normalisation (one
            value per input channel), recorded in the entry.
        resolution: the eval crop (default the arch's input_size); resize: the short side
            resized to before the crop, or None.
        url: where the catalog says the weights are (a URL, an absolute path or a path relative
            to `catalog_dir`). Default: the copy, weights/<name>.pth, or without
            `copy_weights` the absolute path of `weights`.
        copy_weights: copy the weights file to <catalog_dir>/weights/<name>.pth (the file to
            upload when `url` is given).
        overwrite: replace an entry of the same name in `catalog_dir` (and its files).
    """
    _check_name(name)
    directory = model_zoo._resolved(catalog_dir)
    catalog_file = os.path.join(directory, "catalog.yaml")
    target = _target_catalog(directory)
    replaced = _check_unique(name, directory, target, overwrite)
    others = {k: v for k, v in (target or {}).get("models", {}).items() if k != replaced}

    try:
        arch, arch_text = _arch_def(arch, name, resolution)
    except ArchDefError as e:
        raise PublishError(f"Cannot publish {name!r}: {e}") from None
    if resize is not None:
        check_positive_int(resize, "resize", PublishError)
    if dataset is not None and not isinstance(dataset, str):
        raise PublishError(f"dataset must be a string, got {dataset!r}.")
    if url is not None and (not isinstance(url, str) or not url):
        raise PublishError(f"url must be a non-empty string, got {url!r}.")
    mean = _check_numbers(mean, "mean", arch.in_channels)
    std = _check_numbers(std, "std", arch.in_channels)
    if std is not None and not all(v > 0 for v in std):
        raise PublishError(f"std must be positive, got {std}.")
    scores = _check_metrics(metrics)

    arch_file = os.path.join(directory, "archs", f"{name}.yaml")
    _check_free(
        arch_file, "Arch file", overwrite, [k for k, v in others.items() if v["arch"] == name]
    )
    weights_file = os.path.join(directory, "weights", f"{name}.pth")
    if copy_weights:
        users = [
            k
            for k, v in others.items()
            if v.get("weights")
            and os.path.normpath(model_zoo.weights_location({**v, "catalog": directory}))
            == weights_file
        ]
        _check_free(weights_file, "Weights file", overwrite, users)

    source, model = _load_weights(weights, name, arch)
    digest = sha256sum(source)
    if url is None:
        url = f"weights/{name}.pth" if copy_weights else os.path.abspath(source)
    elif not copy_weights and ("://" not in url or url.startswith("file://")):
        # a local file the catalog will name: it must be these weights
        local = model_zoo.weights_location(
            {"weights": {"url": url}, "catalog": directory}
        ).removeprefix("file://")
        if not os.path.isfile(local) or sha256sum(local) != digest:
            raise PublishError(
                f"url {url!r} names {local}, which is missing or is not the weights file "
                f"{os.fspath(weights)!r} (sha256 differs)."
            )
    cost = count_flops(model, arch.input_size)

    entry = {
        "arch": name,
        "resolution": arch.input_size,
        "resize": resize,
        "weights": {"url": url, "sha256": digest},
        "metrics": {"flops_m": cost.flops / 1e6, "params_m": cost.params / 1e6, **scores},
        "dataset": dataset,
        "mean": mean,
        "std": std,
        "in_channels": arch.in_channels,
    }
    data = copy.deepcopy(target) if target is not None else {"models": {}}
    models = data["models"]
    if replaced is not None and replaced != name:
        # a new spelling of the same name: the entry keeps its place under the new key
        data["models"] = models = {(name if k == replaced else k): v for k, v in models.items()}
    models[name] = entry

    writes = _AtomicWrites()
    try:
        writes.makedirs(directory)
        with _locked(directory):
            writes.text(arch_file, f"# {name}: published by mobile_cv_nas.publish\n{arch_text}")
            if copy_weights:
                writes.copy(weights_file, source, digest)
            writes.text(catalog_file, _catalog_yaml(data))
            writes.commit()
    except BaseException:
        writes.rollback()
        raise
    return copy.deepcopy(entry)
