"""The one arch namespace, MODEL.MOBILE_CV_NAS, shared by classification and detection, and the
one resolution of its arch keys into an ArchDef.

Keys added here (detection adds OUT_FEATURES, HEAD_NORM, BOX_HEAD_BLOCKS to the same node):

* `ARCH` [""]: a model zoo name (`model_zoo.list_models()`, any letter case), or an arch YAML
  file (a path ending in .yaml/.yml, holding a path separator, or naming an existing file).
  Empty: the inline `ARCH_DEF`.
* `ARCH_DEF` [{}]: an inline arch def (the schema of mobile_cv_nas/arch/schema.py).
* `NORM` ["BN"]: every block's norm, by name (mobile_cv_nas.layers.norm: "BN", "SyncBN",
  "FrozenBN", "GN", detectron2's "naiveSyncBN" in detection, or our lower-case spellings);
  "" keeps the arch def's own.
* `WIDTH_DIVISOR` [0]: rounding of the mid and SE widths; 0 keeps the arch's. Another value
  changes the widths, so published weights then no longer fit.

detectron2-free: it takes any fvcore CfgNode.
"""

import copy
import dataclasses
import functools
import os

ARCH_NODE = "MODEL.MOBILE_CV_NAS"


class ArchConfigError(ValueError):
    """The arch keys do not name a usable arch; the message names the key and the fix."""


def add_arch_config(cfg, extra=None):
    """Add MODEL.MOBILE_CV_NAS.{ARCH, ARCH_DEF, NORM, WIDTH_DIVISOR}, and the {key: default} of
    `extra` (detection's keys); idempotent (keys already there keep their values)."""
    new_node = functools.partial(type(cfg))
    if "MOBILE_CV_NAS" not in cfg.MODEL:
        cfg.MODEL.MOBILE_CV_NAS = new_node()
    node = cfg.MODEL.MOBILE_CV_NAS
    defaults = {
        "ARCH": "",
        "ARCH_DEF": new_node(new_allowed=True),
        "NORM": "BN",
        "WIDTH_DIVISOR": 0,
        **(extra or {}),
    }
    for key, value in defaults.items():
        if key not in node:
            node[key] = value
    return cfg


def node_to_dict(node):
    """A plain dict (deep copy) of a CfgNode, e.g. the inline ARCH_DEF."""
    if isinstance(node, dict):
        return {k: node_to_dict(v) for k, v in node.items()}
    return copy.deepcopy(node)


def is_arch_file(spec):
    """True when ARCH names a YAML file rather than a zoo model."""
    return spec.endswith((".yaml", ".yml")) or os.sep in spec or os.path.isfile(spec)


def arch_node(cfg):
    """The MODEL.MOBILE_CV_NAS node; ArchConfigError naming the fix when it is not there."""
    node = cfg.MODEL.get("MOBILE_CV_NAS")
    if node is None:
        raise ArchConfigError(
            f"The config has no {ARCH_NODE} keys: call "
            f"mobile_cv_nas.config.add_arch_config(cfg) (detection: "
            f"mobile_cv_nas.detection.add_fbnetv2_config(cfg)) before merging the config file."
        )
    return node


def resolve_arch(cfg):
    """(ArchDef, zoo info or None) of MODEL.MOBILE_CV_NAS: ARCH (a zoo name or an arch YAML),
    else the inline ARCH_DEF, with WIDTH_DIVISOR applied. ArchConfigError names the key."""
    from .. import model_zoo  # the zoo imports torch modules; the config package does not
    from ..arch import ArchDefError, load_arch_def, parse_arch_def

    node = arch_node(cfg)
    spec, info = node.ARCH, None
    try:
        if spec and is_arch_file(spec):
            arch = load_arch_def(spec)
        elif spec:
            arch, info = model_zoo.get_arch_def(spec), model_zoo.get_model_info(spec)
        elif len(node.ARCH_DEF):
            arch = parse_arch_def(node_to_dict(node.ARCH_DEF), name=f"{ARCH_NODE}.ARCH_DEF")
        else:
            raise ArchConfigError(
                f"No architecture: set {ARCH_NODE}.ARCH to a model zoo name (see "
                f"mobile_cv_nas.model_zoo.list_models()) or an arch YAML file (e.g. the "
                f"arch.yaml a search wrote), or give {ARCH_NODE}.ARCH_DEF inline."
            )
    except (model_zoo.UnknownModelError, model_zoo.CatalogError, ArchDefError) as e:
        raise ArchConfigError(f"{ARCH_NODE}.ARCH {spec!r}: {e}") from None
    divisor = node.get("WIDTH_DIVISOR", 0)
    if divisor:
        if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 0:
            raise ArchConfigError(
                f"{ARCH_NODE}.WIDTH_DIVISOR: must be an integer >= 0 (0: the arch's), "
                f"got {divisor!r}."
            )
        arch = dataclasses.replace(arch, width_divisor=divisor)
    return arch, info
