"""FBNet/FBNetV2 models by name, with the official pretrained weights.

    from mobile_cv_nas import model_zoo
    model = model_zoo.get("FBNetV2_F4", pretrained=True)
    backbone = model_zoo.get("FBNetV2_F4", features_only=True, out_features=["stage3", "stage5"])

Names are matched case-insensitively (aliases too); the info keeps the canonical name.
Weights are downloaded once into a cache (see mobile_cv_nas.io; `cache_dir=` or
$MOBILE_CV_NAS_CACHE picks the folder, and a filled cache works offline). `weights=` takes a
local path or URL instead of the catalog's. Weights files are read as data (tensors only); a
file that pickles other Python objects is read only when trusted or pinned by sha256 (the
catalog's, or `sha256=`), see mobile_cv_nas.arch.checkpoint.
"""

import copy
import difflib
import functools

from .arch import build_backbone, build_model, load_arch_def, load_checkpoint
from .data_files import model_zoo_dir
from .io import load_yaml


class UnknownModelError(KeyError):
    def __str__(self):
        return self.args[0]


@functools.cache
def _catalog():
    return load_yaml(model_zoo_dir() / "catalog.yaml", "model zoo catalog", RuntimeError)


def list_models():
    """Names of every catalog model (aliases not included)."""
    return sorted(_catalog()["models"])


def _resolve(name):
    """The canonical model name of `name` (a model or alias, in any letter case)."""
    catalog = _catalog()
    models, aliases = catalog["models"], catalog.get("aliases", {})
    by_lower = {}  # lower-case name -> its spelling in the catalog; model names win
    for known in list(models) + sorted(aliases):
        by_lower.setdefault(known.lower(), known)
    spelled = name if name in models or name in aliases else by_lower.get(str(name).lower())
    canonical = aliases.get(spelled, spelled)
    if canonical not in models:
        close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model {name!r}.{hint} Available models: {', '.join(list_models())}."
        )
    return canonical


def get_model_info(name):
    """Catalog entry of `name` (arch, resolution, resize, weights, metrics, mean/std, BN eps)."""
    name = _resolve(name)
    info = copy.deepcopy(_catalog().get("defaults", {}))
    info.update(copy.deepcopy(_catalog()["models"][name]))
    info["name"] = name
    return info


def get_arch_def(name):
    """The arch def of a zoo model, with its input_size set to the model's resolution."""
    info = get_model_info(name)
    arch = load_arch_def(model_zoo_dir() / "archs" / f"{info['arch']}.yaml")
    arch.name = info["name"]
    arch.input_size = info["resolution"]
    return arch


def get(
    name,
    pretrained=False,
    weights=None,
    cache_dir=None,
    num_classes=None,
    features_only=False,
    out_features=None,
    trusted=False,
    sha256=None,
    norm=None,
):
    """Build a zoo model by name.

    Args:
        pretrained: load the official weights (or `weights`, a local path/URL override).
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
        if weights is None:
            if not info.get("weights"):
                raise ValueError(
                    f"Model {info['name']!r} has no published weights; use pretrained=False "
                    f"or pass weights=<path or URL>."
                )
            weights = info["weights"]["url"]
            sha256 = sha256 or info["weights"].get("sha256")
        load_checkpoint(target, weights, sha256=sha256, cache_dir=cache_dir, trusted=trusted)
    model.model_info = info
    return model
