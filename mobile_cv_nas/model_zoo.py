"""FBNet/FBNetV2 models by name, with the official pretrained weights.

    from mobile_cv_nas import model_zoo
    model = model_zoo.get("FBNetV2_F4", pretrained=True)
    backbone = model_zoo.get("FBNetV2_F4", features_only=True, out_features=["stage3", "stage5"])

Weights are read with iopath (HTTP download into a cache; `cache_dir=` or
$MOBILE_CV_NAS_CACHE picks the folder, and a filled cache works offline). `weights=` takes a
local path or URL instead of the catalog's.
"""

import copy
import difflib
import functools

import yaml

from .arch import build_backbone, build_model, load_arch_def, load_checkpoint
from .data_files import model_zoo_dir


class UnknownModelError(KeyError):
    def __str__(self):
        return self.args[0]


@functools.lru_cache(maxsize=None)
def _catalog():
    with open(model_zoo_dir() / "catalog.yaml") as f:
        return yaml.safe_load(f)


def list_models():
    """Names of every catalog model (aliases not included)."""
    return sorted(_catalog()["models"])


def _resolve(name):
    catalog = _catalog()
    name = catalog.get("aliases", {}).get(name, name)
    if name not in catalog["models"]:
        known = list_models() + sorted(catalog.get("aliases", {}))
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownModelError(
            f"Unknown model {name!r}.{hint} Available models: {', '.join(list_models())}."
        )
    return name


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
):
    """Build a zoo model by name.

    Args:
        pretrained: load the official weights (or `weights`, a local path/URL override).
        num_classes: a classifier with another number of classes; pretrained weights then
            fill the backbone only.
        features_only / out_features: return the backbone alone, giving a dict of stage
            features (`stage0` ... `stage6`, default all).
        trusted: unpickle any Python object in a `weights=` file, not only tensors (only
            for files whose source you trust); the catalog's official files always are.
    """
    info = get_model_info(name)
    arch = get_arch_def(name)
    if features_only or out_features is not None:
        if num_classes is not None:
            raise ValueError("num_classes applies to the classifier; a backbone has no head.")
        if out_features is not None and len(out_features) == 0:
            raise ValueError("out_features is empty; name at least one stage, e.g. ['stage4'].")
        names = out_features or [f"stage{i}" for i in range(len(arch.stages))]
        model = build_backbone(arch, out_features=names)
        target = model
    else:
        model = build_model(arch, num_classes=num_classes)
        target = model if num_classes in (None, arch.num_classes) else model.backbone
    if pretrained or weights is not None:
        sha256 = None
        if weights is None:
            if not info.get("weights"):
                raise ValueError(
                    f"Model {info['name']!r} has no published weights; use pretrained=False "
                    f"or pass weights=<path or URL>."
                )
            weights, sha256 = info["weights"]["url"], info["weights"].get("sha256")
            # the catalog's own URL is the official file: unpickle it as the official loader does
            trusted = True
        load_checkpoint(target, weights, sha256=sha256, cache_dir=cache_dir, trusted=trusted)
    model.model_info = info
    return model
