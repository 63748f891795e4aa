"""The value rules of every config key, and the checker that walks the keys.

yacs checks a value's type against the default's; it does not know that a learning rate must
be > 0 or a period >= 1, and detectron2 finds out deep inside training, or never (a period
of 0 silently means "off"). Here every key of the config (the project's and detectron2's)
has a rule, looked up by its full name or by the node it is under, and `check_values` walks
the whole config before anything is written. A key without a rule is an error in this
module, not in the user's config: the tests build the full config and fail when a key was
added without one, so a new key cannot skip the check. detectron2 keys that only
architectures this project never builds read (ResNets, keypoints, panoptic, ...) get the
checks every key gets: numbers finite.

A rule is a function of the value that returns None when the value is fine, else what the
value must be ("must be > 0"); combinations of keys are checked in engine/run_config.py.

A value that is fine but that the run's task never reads (`SOLVER.AMP.ENABLED` in a search,
`NAS.SPACE` in a detection run) would be accepted and silently do nothing: `check_task_reads`
refuses a key set away from its default when the task does not read it.
"""

import functools
import math
import numbers

from ..detection import IMAGE_CHECKS
from .errors import ConfigError

# ------------------------------------------------------------------------------ rules


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def any_value(_):
    """Checked where it is used (the message there names the key), or free text."""
    return None


def boolean(v):
    return None if isinstance(v, bool) else "must be True or False"


def text(v):
    return None if isinstance(v, str) else "must be a string"


def non_empty_text(v):
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def int_at_least(low):
    def rule(v):
        return None if _is_int(v) and v >= low else f"must be an integer >= {low}"

    return rule


def number_in(low, high, low_open=False, high_open=False):
    """A real number in the interval [low, high], `*_open` excluding that end; None: no
    bound."""

    def rule(v):
        ok = _is_number(v) and math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if ok:
            return None
        if high is None:
            return f"must be a number {'>' if low_open else '>='} {low}"
        if low is None:
            return f"must be a number {'<' if high_open else '<='} {high}"
        lo, hi = f"{'(' if low_open else '['}{low}", f"{high}{')' if high_open else ']'}"
        return f"must be a number in {lo}, {hi}"

    return rule


def finite(v):
    return None if _is_number(v) and math.isfinite(v) else "must be a finite number"


positive = number_in(0, None, low_open=True)
non_negative = number_in(0, None)
probability = number_in(0, 1)
positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def choice(*names):
    def rule(v):
        return None if v in names else f"must be one of {', '.join(map(repr, names))}"

    return rule


def list_of(item, length=None, min_length=0):
    """A list/tuple whose items each pass `item` (and of `length` items, when given)."""

    def rule(v):
        if not isinstance(v, list | tuple):
            return "must be a list"
        if length is not None and len(v) != length:
            return f"must be a list of {length} values"
        if len(v) < min_length:
            return f"must be a list of at least {min_length} value(s)"
        for i, x in enumerate(v):
            why = item(x)
            if why is not None:
                return f"item {i} ({x!r}) {why}"
        return None

    return rule


def ascending(item):
    """A list of `item`s in increasing order (iteration steps, IoU thresholds)."""
    inner = list_of(item)

    def rule(v):
        why = inner(v)
        if why is None and any(b <= a for a, b in zip(v, v[1:], strict=False)):
            why = "must be in increasing order"
        return why

    return rule


def optional(inner):
    def rule(v):
        return None if v is None else inner(v)

    return rule


def class_fraction(v):
    """DATA.CLASS_FRACTION: a share in (0, 1] or a whole count > 1."""
    if _is_number(v) and 0 < v <= 1:
        return None
    if _is_number(v) and v > 1 and float(v).is_integer():
        return None
    return "must be a share in (0, 1] or a whole number of classes > 1"


def cost_target(v):
    """NAS.COST.TARGET_M / TARGET_MS: 0 means the space's middle; a target is > 0."""
    if _is_number(v) and math.isfinite(v) and v >= 0:
        return None
    return "must be >= 0 (0: the space's middle)"


def anchor_lists(item):
    """detectron2's per-level anchor lists: [[...], ...] (one list per feature level)."""
    return list_of(list_of(item, min_length=1), min_length=1)


NORMS = ("", "BN", "SyncBN", "FrozenBN", "GN", "nnSyncBN", "naiveSyncBN", "LN")
POOLERS = ("ROIPool", "ROIAlign", "ROIAlignV2", "ROIAlignRotated")
BOX_LOSSES = ("smooth_l1", "giou", "diou", "ciou")
IOU_LABELS = list_of(choice(-1, 0, 1), min_length=2)
BOX_WEIGHTS = list_of(positive, length=4)

# ------------------------------------------------------------------------------ the table

#: Rules by full key, or by a node ("MODEL.RESNETS.") for every key under it. The project's
#: keys (mobile_cv_nas/config/defaults.py, detection/config.py) and the detectron2 keys the
#: tasks read have a rule of their own.
RULES = {
    # ---- the project's keys
    "TASK": non_empty_text,  # its choices: run_config.check_config
    "DATA.TRAIN": non_empty_text,
    "DATA.TEST": non_empty_text,
    "DATA.CLASS_FRACTION": class_fraction,
    "DATA.AUGMENT": text,  # choices: run_config.check_config
    "DATA.MEAN": list_of(finite),
    "DATA.STD": list_of(positive),
    "DATA.RESIZE": non_negative_int,
    "DATA.RESOLUTION": non_negative_int,
    "DATA.SKIP_BAD_IMAGES": boolean,
    "MODEL.MOBILE_CV_NAS.ARCH": text,  # resolved by config.resolve_arch
    "MODEL.MOBILE_CV_NAS.ARCH_DEF.": any_value,  # parsed by arch.parse_arch_def
    "MODEL.MOBILE_CV_NAS.NORM": text,  # names: layers.norm (classification), detection/config
    "MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR": non_negative_int,  # 0: the arch def's own
    "MODEL.MOBILE_CV_NAS.OUT_FEATURES": list_of(non_empty_text),  # detection/config checks
    "MODEL.MOBILE_CV_NAS.HEAD_NORM": text,  # detection/config checks the names
    "MODEL.MOBILE_CV_NAS.BOX_HEAD_BLOCKS": list_of(any_value, min_length=1),  # arch schema
    "DATASETS.COCO_JSON": list_of(list_of(non_empty_text, length=3)),
    "DATASETS.COCO_JSON_IMAGE_CHECK": choice(*IMAGE_CHECKS),
    "MODEL.ALLOW_PARTIAL_WEIGHTS": boolean,  # detection: detection/weights_fit.py
    "SOLVER.REFERENCE_IMS_PER_BATCH": non_negative_int,  # 0: BASE_LR, WARMUP_ITERS as given
    "TEST.EVAL_ONLY_DIR": non_empty_text,  # not OUTPUT_DIR: detection_task.check_eval_only_dir
    "SOLVER.EPOCHS": non_negative_int,  # 0: SOLVER.MAX_ITER sets the length
    "SOLVER.EPOCH_ITERS": non_negative_int,  # 0: one pass over the data
    "SOLVER.LABEL_SMOOTHING": number_in(0, 1, high_open=True),
    "SOLVER.EMA.ENABLED": boolean,
    "SOLVER.EMA.DECAY": number_in(0, 1, low_open=True, high_open=True),
    "NAS.SPACE": non_empty_text,
    "NAS.WEIGHT_FRACTION": number_in(0, 1, low_open=True, high_open=True),
    "NAS.ALPHA_START_EPOCH": non_negative_int,  # and < the schedule: SearchTrainer
    "NAS.ALPHA_OPTIMIZER.BASE_LR": positive,
    "NAS.ALPHA_OPTIMIZER.BETAS": list_of(number_in(0, 1, high_open=True), length=2),
    "NAS.ALPHA_OPTIMIZER.WEIGHT_DECAY": non_negative,
    "NAS.TAU.START": positive,
    "NAS.TAU.DECAY": number_in(0, 1, low_open=True),
    "NAS.TAU.MIN": positive,  # and <= NAS.TAU.START: run_config.check_config
    "NAS.COST.LOSS": text,  # choices: run_config.check_config
    "NAS.COST.METRIC": text,  # choices: run_config.check_config
    "NAS.COST.LUT": text,  # a latency table: loaded and checked by search_task.cost_target
    "NAS.COST.TARGET_M": cost_target,
    "NAS.COST.TARGET_MS": cost_target,  # with METRIC latency only: run_config.check_config
    "NAS.COST.A": positive,
    "NAS.COST.B": positive,
    "NAS.COST.LAMBDA": non_negative,
    "NAS.COST.BETA": non_negative,
    "NAS.COST.TOLERANCE": number_in(0, 1, low_open=True),
    "NAS.DERIVE": text,  # choices: run_config.check_config
    "NAS.SAMPLING": text,  # choices: run_config.check_config
    "NAS.LOG_PERIOD": positive_int,
    # ---- detectron2's keys the tasks read
    "VERSION": any_value,
    # -1: a random seed, drawn once and saved in config.yaml; numpy takes < 2**32 (+ rank)
    "SEED": lambda v: (
        None if _is_int(v) and -1 <= v < 2**31 else "must be an integer in -1..2147483647"
    ),
    "OUTPUT_DIR": text,  # run_config.check_output_path (its message for an empty one)
    "CUDNN_BENCHMARK": boolean,
    "VIS_PERIOD": non_negative_int,
    "GLOBAL.HACK": any_value,
    "MODEL.DEVICE": non_empty_text,  # run_config.check_config: a torch device here
    "MODEL.WEIGHTS": text,
    "MODEL.META_ARCHITECTURE": non_empty_text,  # registry: detection/config
    "MODEL.LOAD_PROPOSALS": boolean,
    "MODEL.MASK_ON": boolean,
    "MODEL.KEYPOINT_ON": boolean,
    "MODEL.PIXEL_MEAN": list_of(finite, min_length=1),
    "MODEL.PIXEL_STD": list_of(positive, min_length=1),
    "MODEL.BACKBONE.NAME": non_empty_text,
    "MODEL.BACKBONE.FREEZE_AT": non_negative_int,  # the upper bound: detection/backbone
    "MODEL.FPN.IN_FEATURES": list_of(non_empty_text),
    "MODEL.FPN.OUT_CHANNELS": positive_int,
    "MODEL.FPN.NORM": choice(*NORMS),
    "MODEL.FPN.FUSE_TYPE": choice("sum", "avg"),
    "MODEL.PROPOSAL_GENERATOR.NAME": non_empty_text,
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": non_negative,
    "MODEL.ANCHOR_GENERATOR.NAME": non_empty_text,
    "MODEL.ANCHOR_GENERATOR.SIZES": anchor_lists(positive),
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": anchor_lists(positive),
    "MODEL.ANCHOR_GENERATOR.ANGLES": anchor_lists(finite),
    "MODEL.ANCHOR_GENERATOR.OFFSET": number_in(0, 1, high_open=True),
    "MODEL.RPN.HEAD_NAME": non_empty_text,
    "MODEL.RPN.IN_FEATURES": list_of(non_empty_text, min_length=1),
    "MODEL.RPN.BOUNDARY_THRESH": int_at_least(-1),
    "MODEL.RPN.IOU_THRESHOLDS": ascending(probability),
    "MODEL.RPN.IOU_LABELS": IOU_LABELS,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": positive_int,
    "MODEL.RPN.POSITIVE_FRACTION": number_in(0, 1, low_open=True),
    "MODEL.RPN.BBOX_REG_LOSS_TYPE": choice(*BOX_LOSSES),
    "MODEL.RPN.BBOX_REG_LOSS_WEIGHT": non_negative,
    "MODEL.RPN.BBOX_REG_WEIGHTS": BOX_WEIGHTS,
    "MODEL.RPN.SMOOTH_L1_BETA": non_negative,
    "MODEL.RPN.LOSS_WEIGHT": non_negative,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": positive_int,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": positive_int,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": positive_int,
    "MODEL.RPN.POST_NMS_TOPK_TEST": positive_int,
    "MODEL.RPN.NMS_THRESH": probability,
    "MODEL.RPN.CONV_DIMS": list_of(int_at_least(-1), min_length=1),  # -1: the input's
    "MODEL.ROI_HEADS.NAME": non_empty_text,
    "MODEL.ROI_HEADS.NUM_CLASSES": positive_int,
    "MODEL.ROI_HEADS.IN_FEATURES": list_of(non_empty_text, min_length=1),
    "MODEL.ROI_HEADS.IOU_THRESHOLDS": ascending(probability),
    "MODEL.ROI_HEADS.IOU_LABELS": IOU_LABELS,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": positive_int,
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": number_in(0, 1, low_open=True),
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": probability,
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": probability,
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT": boolean,
    "MODEL.ROI_BOX_HEAD.NAME": text,
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": choice(*BOX_LOSSES),
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": non_negative,
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": BOX_WEIGHTS,
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": non_negative,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": positive_int,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": non_negative_int,
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": choice(*POOLERS),
    "MODEL.ROI_BOX_HEAD.NUM_FC": non_negative_int,
    "MODEL.ROI_BOX_HEAD.FC_DIM": positive_int,
    "MODEL.ROI_BOX_HEAD.NUM_CONV": non_negative_int,
    "MODEL.ROI_BOX_HEAD.CONV_DIM": positive_int,
    "MODEL.ROI_BOX_HEAD.NORM": choice(*NORMS),
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": boolean,
    "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES": boolean,
    "MODEL.ROI_MASK_HEAD.NAME": non_empty_text,
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": positive_int,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": non_negative_int,
    "MODEL.ROI_MASK_HEAD.POOLER_TYPE": choice(*POOLERS),
    "MODEL.ROI_MASK_HEAD.NUM_CONV": non_negative_int,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": positive_int,
    "MODEL.ROI_MASK_HEAD.NORM": choice(*NORMS),
    "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK": boolean,
    "MODEL.RETINANET.NUM_CLASSES": positive_int,
    "MODEL.RETINANET.IN_FEATURES": list_of(non_empty_text, min_length=1),
    "MODEL.RETINANET.NUM_CONVS": non_negative_int,
    "MODEL.RETINANET.IOU_THRESHOLDS": ascending(probability),
    "MODEL.RETINANET.IOU_LABELS": IOU_LABELS,
    "MODEL.RETINANET.PRIOR_PROB": number_in(0, 1, low_open=True, high_open=True),
    "MODEL.RETINANET.SCORE_THRESH_TEST": probability,
    "MODEL.RETINANET.TOPK_CANDIDATES_TEST": positive_int,
    "MODEL.RETINANET.NMS_THRESH_TEST": probability,
    "MODEL.RETINANET.BBOX_REG_WEIGHTS": BOX_WEIGHTS,
    "MODEL.RETINANET.FOCAL_LOSS_GAMMA": non_negative,
    "MODEL.RETINANET.FOCAL_LOSS_ALPHA": number_in(None, 1),  # < 0: no class weighting
    "MODEL.RETINANET.SMOOTH_L1_LOSS_BETA": non_negative,
    "MODEL.RETINANET.BBOX_REG_LOSS_TYPE": choice(*BOX_LOSSES),
    "MODEL.RETINANET.NORM": choice(*NORMS),
    "INPUT.MIN_SIZE_TRAIN": list_of(positive_int, min_length=1),
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": choice("choice", "range"),
    "INPUT.MAX_SIZE_TRAIN": positive_int,
    "INPUT.MIN_SIZE_TEST": non_negative_int,  # 0: no resizing
    "INPUT.MAX_SIZE_TEST": positive_int,
    "INPUT.RANDOM_FLIP": choice("none", "horizontal", "vertical"),
    "INPUT.CROP.ENABLED": boolean,
    "INPUT.CROP.TYPE": choice("relative_range", "relative", "absolute", "absolute_range"),
    "INPUT.CROP.SIZE": list_of(positive, length=2),
    "INPUT.FORMAT": choice("BGR", "RGB", "L", "YUV-BT.601"),
    "INPUT.MASK_FORMAT": choice("polygon", "bitmask"),
    "DATASETS.TRAIN": list_of(non_empty_text),  # registered: detection_task.check_datasets
    "DATASETS.TEST": list_of(non_empty_text),
    "DATASETS.PROPOSAL_FILES_TRAIN": list_of(non_empty_text),
    "DATASETS.PROPOSAL_FILES_TEST": list_of(non_empty_text),
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN": positive_int,
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST": positive_int,
    "DATALOADER.NUM_WORKERS": non_negative_int,
    "DATALOADER.ASPECT_RATIO_GROUPING": boolean,
    "DATALOADER.SAMPLER_TRAIN": choice("TrainingSampler", "RepeatFactorTrainingSampler"),
    "DATALOADER.REPEAT_THRESHOLD": non_negative,
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS": boolean,
    "SOLVER.LR_SCHEDULER_NAME": choice("WarmupMultiStepLR", "WarmupCosineLR"),
    "SOLVER.MAX_ITER": positive_int,
    "SOLVER.BASE_LR": positive,
    "SOLVER.MOMENTUM": number_in(0, 1, high_open=True),
    "SOLVER.NESTEROV": boolean,
    "SOLVER.WEIGHT_DECAY": non_negative,
    "SOLVER.WEIGHT_DECAY_NORM": non_negative,
    "SOLVER.WEIGHT_DECAY_BIAS": optional(non_negative),
    "SOLVER.BIAS_LR_FACTOR": positive,
    "SOLVER.GAMMA": positive,
    "SOLVER.STEPS": ascending(positive_int),
    "SOLVER.WARMUP_FACTOR": number_in(0, 1, low_open=True),
    "SOLVER.WARMUP_ITERS": non_negative_int,
    "SOLVER.WARMUP_METHOD": choice("linear", "constant"),
    "SOLVER.CHECKPOINT_PERIOD": positive_int,
    "SOLVER.IMS_PER_BATCH": positive_int,
    "SOLVER.REFERENCE_WORLD_SIZE": non_negative_int,
    "SOLVER.CLIP_GRADIENTS.ENABLED": boolean,
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": choice("value", "norm"),
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": positive,
    "SOLVER.CLIP_GRADIENTS.NORM_TYPE": number_in(0, math.inf, low_open=True),  # inf: max norm
    "SOLVER.AMP.ENABLED": boolean,
    "TEST.EVAL_PERIOD": non_negative_int,  # 0: only at the end
    "TEST.EXPECTED_RESULTS": any_value,
    "TEST.KEYPOINT_OKS_SIGMAS": any_value,
    "TEST.DETECTIONS_PER_IMAGE": positive_int,
    "TEST.AUG.ENABLED": boolean,
    "TEST.AUG.MIN_SIZES": list_of(positive_int, min_length=1),
    "TEST.AUG.MAX_SIZE": positive_int,
    "TEST.AUG.FLIP": boolean,
    "TEST.PRECISE_BN.ENABLED": boolean,
    "TEST.PRECISE_BN.NUM_ITER": positive_int,
    # ---- detectron2's keys of architectures this project does not build: finite numbers
    "MODEL.RESNETS.": any_value,
    "MODEL.ROI_BOX_CASCADE_HEAD.": any_value,
    "MODEL.ROI_KEYPOINT_HEAD.": any_value,
    "MODEL.SEM_SEG_HEAD.": any_value,
    "MODEL.PANOPTIC_FPN.": any_value,
}

#: Keys whose value may be +inf (every other number must be finite).
MAY_BE_INFINITE = ("SOLVER.CLIP_GRADIENTS.NORM_TYPE",)


def rule_of(key):
    """The rule of `key`: its own, else the one of the nearest node above it; None if none."""
    if key in RULES:
        return RULES[key]
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        node = ".".join(parts[:end]) + "."
        if node in RULES:
            return RULES[node]
    return None


def _non_finite(value):
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return _is_number(value) and not math.isfinite(value)


def walk(cfg, prefix=""):
    """(full key, value) of every leaf of a CfgNode; an open node (ARCH_DEF) is one leaf per
    key in it."""
    for key, value in cfg.items():
        if isinstance(value, dict) and f"{prefix}{key}." not in RULES:
            yield from walk(value, f"{prefix}{key}.")
        elif isinstance(value, dict):
            for inner, inner_value in value.items():
                yield f"{prefix}{key}.{inner}", inner_value
        else:
            yield f"{prefix}{key}", value


def check_values(cfg):
    """Every key's value against its rule, and every number finite: the first bad one is a
    ConfigError naming the key, the value and what it must be. A key without a rule is the
    project's mistake (LookupError), unless it is a detectron2 key this table was not written
    against (a newer detectron2): that one gets the finiteness check only."""
    for key, value in walk(cfg):
        if _non_finite(value) and key not in MAY_BE_INFINITE:
            raise ConfigError(f"{key} = {value!r}: must be a finite number.")
        rule = rule_of(key)
        if rule is None:
            if key not in _detectron2_keys():
                raise LookupError(f"config key {key} has no rule in engine/config_rules.py")
            continue
        why = rule(value)
        if why is not None:
            raise ConfigError(f"{key} = {value!r}: {why}.")


@functools.cache
def _detectron2_keys():
    from detectron2.config import get_cfg

    return frozenset(key for key, _ in walk(get_cfg()))


# ------------------------------------------------------------------------------ task reads

#: What the classification tasks read besides their own DATA.* keys: the keys shared by all
#: tasks, SGD and detectron2's LR schedule, the classifier's arch keys.
_SHARED = (
    "TASK",
    "VERSION",
    "GLOBAL.",
    "SEED",
    "OUTPUT_DIR",
    "CUDNN_BENCHMARK",
    "MODEL.DEVICE",
    "MODEL.WEIGHTS",
    "DATALOADER.NUM_WORKERS",
    "TEST.EVAL_PERIOD",
    "SOLVER.IMS_PER_BATCH",
    "SOLVER.CHECKPOINT_PERIOD",
    "SOLVER.MAX_ITER",
    "SOLVER.BASE_LR",
    "SOLVER.MOMENTUM",
    "SOLVER.NESTEROV",
    "SOLVER.WEIGHT_DECAY",
    "SOLVER.LR_SCHEDULER_NAME",
    "SOLVER.GAMMA",
    "SOLVER.STEPS",
    "SOLVER.WARMUP_FACTOR",
    "SOLVER.WARMUP_ITERS",
    "SOLVER.WARMUP_METHOD",
    "MODEL.MOBILE_CV_NAS.ARCH",
    "MODEL.MOBILE_CV_NAS.ARCH_DEF.",
    "MODEL.MOBILE_CV_NAS.NORM",
    "MODEL.MOBILE_CV_NAS.WIDTH_DIVISOR",
)
_CLASSIFICATION = (*_SHARED, "DATA.", "SOLVER.EPOCHS", "SOLVER.EPOCH_ITERS")
#: A search's input size is its space's (resolution is one of its decisions).
_SEARCH_DATA = tuple(f"DATA.{k}" for k in ("TRAIN", "TEST", "CLASS_FRACTION", "AUGMENT"))
_SEARCH_DATA += ("DATA.MEAN", "DATA.STD", "DATA.RESIZE", "DATA.SKIP_BAD_IMAGES")
#: The keys each task reads (a trailing "." is every key under that node). An eval reads
#: what a train run does: it is run with the train config and --eval-only.
TASK_READS = {
    "search": (*_SHARED, *_SEARCH_DATA, "SOLVER.EPOCHS", "SOLVER.EPOCH_ITERS", "NAS."),
    "train": (*_CLASSIFICATION, "SOLVER.LABEL_SMOOTHING", "SOLVER.EMA."),
    "eval": (*_CLASSIFICATION, "SOLVER.LABEL_SMOOTHING", "SOLVER.EMA."),
}
#: A detection run reads detectron2's keys (its model, data and solver) and the backbone's;
#: not the project's classification and search keys.
DETECTION_IGNORES = ("DATA.", "NAS.", "SOLVER.EPOCH_ITERS", "SOLVER.LABEL_SMOOTHING", "SOLVER.EMA.")


def _under(key, prefixes):
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in prefixes)


def task_reads(task, key):
    if task == "detection":
        return not _under(key, DETECTION_IGNORES)
    return _under(key, TASK_READS[task])


def check_task_reads(cfg, defaults):
    """A key the task does not read must keep its default (`defaults`: the config before the
    user's file): otherwise the user believes it does something."""
    default_values = dict(walk(defaults))
    for key, value in walk(cfg):
        if task_reads(cfg.TASK, key) or key not in default_values:
            continue
        if _same(value, default_values[key]):
            continue
        readers = [t for t in (*TASK_READS, "detection") if task_reads(t, key)]
        raise ConfigError(
            f"{key} = {value!r} is not read by TASK {cfg.TASK} (only by "
            f"{', '.join(readers) or 'no task'}), so it would do nothing: remove it from the "
            f"config and the command line."
        )


def _same(a, b):
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _set_keys(cfg, defaults):
    """The keys `cfg` sets away from `defaults`."""
    default_values = dict(walk(defaults))
    return [
        key
        for key, value in walk(cfg)
        if key in default_values and not _same(value, default_values[key])
    ]


def infer_task(cfg, defaults):
    """TASK of a config that does not set it, from the keys it sets: detection when only
    detection reads some of them (a detectron2 config: META_ARCHITECTURE, DATASETS, ...),
    the default (search) otherwise. Keys of both kinds are ambiguous: refused, naming both."""
    detection, classification = [], []
    for key in _set_keys(cfg, defaults):
        by_classification = any(task_reads(t, key) for t in TASK_READS)
        if task_reads("detection", key) and not by_classification:
            detection.append(key)
        elif by_classification and not task_reads("detection", key):
            classification.append(key)
    if detection and classification:
        raise ConfigError(
            f"The config sets no TASK, and its keys point to two tasks: "
            f"{', '.join(detection[:3])} to detection, {', '.join(classification[:3])} to "
            f"search/train. Set TASK (detection, search, train) and drop the other task's keys."
        )
    return "detection" if detection else cfg.TASK
