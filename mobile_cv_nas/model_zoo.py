"""FBNet/FBNetV2 models by name, with the official pretrained weights, and your own models.

    from mobile_cv_nas import model_zoo
    model = model_zoo.get("FBNetV2_F4", pretrained=True)
    backbone = model_zoo.get("FBNetV2_F4", features_only=True, out_features=["stage3", "stage5"])

Names are matched case-insensitively (aliases too); the info keeps the canonical name.
Weights are downloaded once into a cache (see mobile_cv_nas.io; `cache_dir=` or
$MOBILE_CV_NAS_CACHE picks the folder, and a filled cache works offline). `weights=` takes a
local path or URL instead of the catalog's. Weights files are read as data (tensors only); a
file that pickles other Python objects is read only when trusted or pinned by sha256 (the
catalog's, or `sha256=`), see mobile_cv_nas.arch.checkpoint.

User catalogs. Besides the built-in catalog (model_zoo/catalog.yaml), the zoo reads user
catalog directories, each `<dir>/catalog.yaml` (the same schema: optional `defaults` and
`aliases`, and `models`) with `<dir>/archs/<arch>.yaml` and usually `<dir>/weights/`
(see mobile_cv_nas.publish, which writes them). They come from $MOBILE_CV_NAS_CATALOGS
(os.pathsep-separated, read at each call) and from `add_catalog(dir)`. A catalog's `defaults`
apply to its own models only; a weights `url` may be a URL, an absolute path or a path relative
to its catalog directory. A model or alias name (case-insensitively) may be defined in one
catalog only: a name in two catalogs is an error naming both files.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch.nn as nn

from .arch import build_backbone, build_model, load_arch_def, load_checkpoint
from .data_files import model_zoo_dir
from .io import load_yaml

#: Environment variable listing user catalog directories (os.pathsep-separated).
CATALOGS_ENV = "MOBILE_CV_NAS_CATALOGS"

_BUILTIN = "the built-in catalog"
_FROM_ENV = f"added by ${CATALOGS_ENV}"
_FROM_API = "added by model_zoo.add_catalog()"
_CATALOG_FIELDS = {"defaults", "aliases", "models"}


class UnknownModelError(KeyError):
    def __str__(self):
        return self.args[0]


class CatalogError(RuntimeError):
    """A user catalog that is missing or malformed, or a model name defined in two catalogs."""


@dataclasses.dataclass
class _Catalog:
    dir: str
    data: dict
    origin: str  # _BUILTIN, _FROM_ENV or _FROM_API

    @property
    def file(self):
        return os.path.join(self.dir, "catalog.yaml")

    def described(self):
        return f"{self.file} ({self.origin})"


# --------------------------------------------------------------------------- reading catalogs

_added = []  # directories given to add_catalog(), resolved, in order
_parsed = {}  # catalog.yaml path -> (stat key, parsed data); re-read when the file changes


def _resolved(path):
    return str(Path(os.fspath(path)).expanduser().resolve())


def _stat_key(file):
    st = os.stat(file)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read(file, what, error):
    """The parsed YAML of `file`, cached until the file's mtime/size/inode changes."""
    key = _stat_key(file)
    cached = _parsed.get(file)
    if cached is None or cached[0] != key:
        cached = (key, load_yaml(file, what, error))
        _parsed[file] = cached
    return cached[1]


def _catalog():
    """The built-in catalog (model_zoo/catalog.yaml), parsed."""
    return _read(str(model_zoo_dir() / "catalog.yaml"), "model zoo catalog", RuntimeError)


def _check_user_catalog(data, where):
    """Raise CatalogError(`where` + the fault) unless `data` follows the catalog schema."""

    def fail(why):
        raise CatalogError(f"{where}: {why}")

    if not isinstance(data, dict):
        fail(f"expected a mapping with 'models', got {type(data).__name__}.")
    unknown = set(data) - _CATALOG_FIELDS
    if unknown:
        fail(f"unknown top-level field(s) {sorted(unknown)}; allowed: {sorted(_CATALOG_FIELDS)}.")
    models = data.get("models")
    if not isinstance(models, dict):
        fail(f"'models' must be a mapping of model name -> entry, got {models!r}.")
    if not isinstance(data.get("defaults") or {}, dict):
        fail(f"'defaults' must be a mapping, got {data['defaults']!r}.")
    for name, entry in models.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            fail(f"model {name!r}: an entry must be a mapping under a name, got {entry!r}.")
        if not isinstance(entry.get("arch"), str):
            fail(f"model {name!r}: 'arch' (a file name in archs/, without .yaml) is required.")
        weights = entry.get("weights")
        if weights is not None and not (
            isinstance(weights, dict) and isinstance(weights.get("url"), str)
        ):
            fail(f"model {name!r}: 'weights' must be null or a mapping with a 'url' string.")
    aliases = data.get("aliases") or {}
    if not isinstance(aliases, dict):
        fail(f"'aliases' must be a mapping of alias -> model name, got {aliases!r}.")
    for alias, target in aliases.items():
        if not isinstance(alias, str) or target not in models:
            fail(f"alias {alias!r} names {target!r}, which is not a model of this catalog.")


def _user_catalog(directory, origin):
    """The validated user catalog in `directory` (resolved); CatalogError naming the file and
    where the directory came from when it is missing or malformed."""
    file = os.path.join(directory, "catalog.yaml")
    if not os.path.isdir(directory):
        raise CatalogError(f"User catalog directory {directory!r} ({origin}) does not exist.")
    if not os.path.isfile(file):
        raise CatalogError(
            f"User catalog directory {directory!r} ({origin}) has no catalog.yaml "
            f"(expected {file}; mobile_cv_nas.publish.publish_model writes it)."
        )
    try:
        data = _read(file, "Model catalog", CatalogError)
    except CatalogError as e:
        raise CatalogError(f"{e} (This catalog was {origin}.)") from None
    _check_user_catalog(data, f"Model catalog {file} ({origin})")
    return _Catalog(directory, data, origin)


def _env_dirs():
    return [p for p in os.environ.get(CATALOGS_ENV, "").split(os.pathsep) if p.strip()]


def _user_dirs():
    """(resolved directory, origin) of every user catalog, $MOBILE_CV_NAS_CATALOGS first,
    each directory once."""
    out = {}
    for path in _env_dirs():
        out.setdefault(_resolved(path), _FROM_ENV)
    for path in _added:
        out.setdefault(path, _FROM_API)
    return list(out.items())


def _catalogs(exclude=()):
    """Every catalog, the built-in first; user directories in `exclude` (resolved) skipped."""
    out = [_Catalog(str(model_zoo_dir()), _catalog(), _BUILTIN)]
    for directory, origin in _user_dirs():
        if directory not in exclude:
            out.append(_user_catalog(directory, origin))
    return out


@dataclasses.dataclass
class _Index:
    models: dict  # canonical model name -> its _Catalog
    aliases: dict  # alias -> canonical model name
    by_lower: dict  # lower-case model or alias name -> its spelling; model names win


def _index(catalogs):
    """The names of `catalogs`; CatalogError when a name (case-insensitively) is in two."""
    owner = {}  # lower-case name -> (spelling, catalog)
    index = _Index({}, {}, {})
    for catalog in catalogs:
        models, aliases = catalog.data["models"], catalog.data.get("aliases") or {}
        for known in list(models) + sorted(aliases):
            low = known.lower()
            spelled, other = owner.setdefault(low, (known, catalog))
            if other is not catalog:
                raise CatalogError(
                    f"Model name {known!r} of {catalog.described()} is also defined in "
                    f"{other.described()} (as {spelled!r}). Model and alias names must be unique "
                    f"across catalogs (case-insensitively): rename one of them."
                )
            index.by_lower.setdefault(low, known)
        index.models.update(dict.fromkeys(models, catalog))
        index.aliases.update(aliases)
    return index


# --------------------------------------------------------------------------- user catalog API


def add_catalog(path):
    """Add the user catalog directory `path` to the zoo (in this process); returns its resolved
    path. Idempotent. It is read at once: a missing or malformed catalog, or a model name
    already in another catalog, raises CatalogError and the directory is not added."""
    directory = _resolved(path)
    if directory in _added:
        return directory
    catalogs = _catalogs(exclude=(directory,))
    _index([*catalogs, _user_catalog(directory, _FROM_API)])
    _added.append(directory)
    return directory


def remove_catalog(path):
    """Undo `add_catalog(path)`; True if it was added. ($MOBILE_CV_NAS_CATALOGS is not
    changed: a directory listed there stays in the zoo.)"""
    directory = _resolved(path)
    if directory in _added:
        _added.remove(directory)
        return True
    return False


def catalog_dirs():
    """The catalog directories the zoo reads now: the built-in one, then the user ones."""
    return [str(model_zoo_dir())] + [directory for directory, _ in _user_dirs()]


# --------------------------------------------------------------------------- models


def list_models():
    """Names of every catalog model, built-in and user (aliases not included)."""
    return sorted(_index(_catalogs()).models)


def _lookup(name):
    """(canonical name, its _Catalog) of `name` (a model or alias, in any letter case)."""
    index = _index(_catalogs())
    models, aliases = index.models, index.aliases
    spelled = name if name in models or name in aliases else index.by_lower.get(str(name).lower())
    canonical = aliases.get(spelled, spelled)
    if canonical not in models:
        by_lower = index.by_lower
        close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model {name!r}.{hint} Available models: {', '.join(sorted(models))}."
        )
    return canonical, models[canonical]


def _resolve(name):
    """The canonical model name of `name` (a model or alias, in any letter case)."""
    return _lookup(name)[0]


def get_model_info(name):
    """Catalog entry of `name` (arch, resolution, resize, weights, metrics, mean/std, ...) over
    its catalog's defaults, plus `name` (canonical) and `catalog` (the directory it is from)."""
    name, catalog = _lookup(name)
    info = copy.deepcopy(catalog.data.get("defaults") or {})
    info.update(copy.deepcopy(catalog.data["models"][name]))
    info["name"] = name
    info["catalog"] = catalog.dir
    return info


def get_arch_def(name):
    """The arch def of a zoo model, with its input_size set to the model's resolution."""
    info = get_model_info(name)
    arch = load_arch_def(Path(info["catalog"]) / "archs" / f"{info['arch']}.yaml")
    arch.name = info["name"]
    if info.get("resolution") is not None:
        arch.input_size = info["resolution"]
    channels = info.get("in_channels")
    if channels is not None and channels != arch.in_channels:
        raise CatalogError(
            f"Model {info['name']!r} of {os.path.join(info['catalog'], 'catalog.yaml')} takes "
            f"in_channels {channels}, but its arch def archs/{info['arch']}.yaml has "
            f"{arch.in_channels}."
        )
    return arch


def weights_location(info):
    """Where the weights of a model (its `get_model_info`) are: the catalog's `url`, URLs and
    absolute paths as they are, other paths relative to the model's catalog directory."""
    url, catalog_dir = info["weights"]["url"], info["catalog"]
    if "://" in url:
        return url
    path = os.path.expanduser(url)
    return path if os.path.isabs(path) else os.path.join(catalog_dir, path)


def get(
    name: str,
    pretrained: bool = False,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    features_only: bool = False,
    out_features: Sequence[str] | None = None,
    trusted: bool = False,
    sha256: str | None = None,
    norm: str | Callable[[int], nn.Module] | None = None,
) -> nn.Module:
    """Build a zoo model by name: a classifier (`arch.FBNetClassifier`), or with
    `features_only` / `out_features` a backbone (`arch.FBNetBackbone`).

    Args:
        pretrained: load the catalog's weights (or `weights`, a local path/URL override).
        num_classes: a classifier with another number of classes; pretrained weights then
            fill the backbone only. 0: no classifier, the model returns pooled features.
        features_only / out_features: return the backbone alone, giving a dict of stage
            features (`stage0` ... `stage6`, default all; a list of names).
        norm: every block's norm, a name ("bn", "sync_bn", "frozen_bn", "gn") or a callable
            channels -> module (default "bn"); batch-norm weights load into any of the BNs.
        trusted: also unpickle Python objects besides tensors in the weights file (catalog
            or `weights=`), which runs code: only for files whose source you trust. Without
            it such a file is read only when its sha256 is pinned and matches.
        sha256: the expected sha256 of the weights file (default: the catalog's, if any).
    """
    info = get_model_info(name)
    arch = get_arch_def(name)
    if features_only or out_features is not None:
        if num_classes is not None:
            raise ValueError("num_classes applies to the classifier; a backbone has no head.")
        names = out_features
        if names is None:
            names = [f"stage{i}" for i in range(len(arch.stages))]
        model = build_backbone(arch, out_features=names, norm=norm)
        target = model
    else:
        model = build_model(arch, num_classes=num_classes, norm=norm)
        target = model if num_classes in (None, arch.num_classes) else model.backbone
    if pretrained or weights is not None:
        pinned_by = None
        if weights is None:
            if not info.get("weights"):
                raise ValueError(
                    f"Model {info['name']!r} has no published weights; use pretrained=False "
                    f"or pass weights=<path or URL>."
                )
            weights = weights_location(info)
            if not sha256 and info["weights"].get("sha256"):
                sha256 = info["weights"]["sha256"]
                pinned_by = f"recorded in {os.path.join(info['catalog'], 'catalog.yaml')}"
        load_checkpoint(
            target,
            weights,
            sha256=sha256,
            cache_dir=cache_dir,
            trusted=trusted,
            pinned_by=pinned_by,
        )
    model.model_info = info
    return model
