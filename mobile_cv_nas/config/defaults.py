"""Default values of the keys `tools/train_net.py` reads besides detectron2's own.

detectron2's keys keep their meaning: SOLVER.* is the weight optimizer and its schedule
(IMS_PER_BATCH is the total batch over all processes; CHECKPOINT_PERIOD), MODEL.DEVICE,
MODEL.WEIGHTS, DATALOADER.NUM_WORKERS, SEED, OUTPUT_DIR, TEST.EVAL_PERIOD (the train task
also validates every that many iterations; 0: only at the end).
"""

import functools
import math

from .arch import add_arch_config

TASKS = ("search", "train", "eval", "detection")
COST_LOSSES = ("target", "multiplicative", "additive")
DERIVES = ("budget", "argmax")  # NAS.DERIVE
SAMPLINGS = ("mixture", "single_path")  # NAS.SAMPLING, see mobile_cv_nas/search/supernet.py
COST_METRICS = ("flops", "params", "latency")  # NAS.COST.METRIC


def _node(cfg, new_allowed=False):
    """A sub-node of `cfg`'s own class (a detectron2 CfgNode in a detectron2 config: merging
    refuses a node of another class)."""
    return type(cfg)(new_allowed=new_allowed)


def add_classification_config(cfg):
    """Keys of the classification tasks (search data, `train`, `eval`)."""
    CN = functools.partial(_node, cfg)
    cfg.TASK = "search"  # one of TASKS (search, train, eval, detection; --eval-only: eval)

    cfg.DATA = CN()
    # A built-in dataset name (fashion_mnist_train/_val: the full set when the Debian package
    # dataset-fashion-mnist is installed, else the embedded subset; fashion_mnist_subset_*:
    # always the subset) or an ImageNet-style folder of class folders (torchvision ImageFolder's
    # layout).
    cfg.DATA.TRAIN = "fashion_mnist_train"
    cfg.DATA.TEST = "fashion_mnist_val"
    # A random share (<= 1.0) or count (> 1) of the classes, the same for train and test
    # (the paper searches on 10% of ImageNet's classes).
    cfg.DATA.CLASS_FRACTION = 1.0
    cfg.DATA.AUGMENT = "none"  # none | flip | imagenet (RandomResizedCrop + flip)
    cfg.DATA.MEAN = []  # empty: the dataset's (Fashion-MNIST's, or ImageNet's for folders)
    cfg.DATA.STD = []
    cfg.DATA.RESIZE = 0  # evaluation: shorter side resized to this, then center crop; 0: none
    cfg.DATA.RESOLUTION = 0  # train/eval input size; 0: the arch's input_size
    # Every image of a folder dataset is decoded before the run starts; one that cannot be
    # read (truncated, not an image, empty, a dangling link) stops it with its name. True:
    # leave such images out instead, with a warning giving their count and names.
    cfg.DATA.SKIP_BAD_IMAGES = False

    # MODEL.MOBILE_CV_NAS.{ARCH, ARCH_DEF, NORM, WIDTH_DIVISOR}: the arch (train/eval), see
    # mobile_cv_nas/config/arch.py; the same node as detection's backbone.
    add_arch_config(cfg)
    # MODEL.WEIGHTS: "" (random init), a path/URL, or "zoo" (the zoo model's published weights)

    cfg.SOLVER.EPOCHS = 0  # > 0: SOLVER.MAX_ITER = EPOCHS x iterations per epoch
    # Iterations of one schedule epoch (temperature, alpha start, EPOCHS); 0: one pass over
    # the (weight) training split. A fixed count keeps a run's length independent of the
    # data size (the CPU demo).
    cfg.SOLVER.EPOCH_ITERS = 0
    cfg.SOLVER.LABEL_SMOOTHING = 0.0
    cfg.SOLVER.EMA = CN()
    cfg.SOLVER.EMA.ENABLED = False
    cfg.SOLVER.EMA.DECAY = 0.9998  # per iteration
    return cfg


def add_search_config(cfg):
    """Keys of the DMaskingNAS search (TASK: search)."""
    CN = functools.partial(_node, cfg)
    cfg.NAS = CN()
    cfg.NAS.SPACE = "tiny"  # a shipped space name (configs/search_spaces) or a YAML path
    cfg.NAS.WEIGHT_FRACTION = 0.8  # share of the training split for weights; the rest: alphas
    cfg.NAS.ALPHA_START_EPOCH = 0  # alphas train from this (schedule) epoch on
    cfg.NAS.ALPHA_OPTIMIZER = CN()
    cfg.NAS.ALPHA_OPTIMIZER.BASE_LR = 0.01
    cfg.NAS.ALPHA_OPTIMIZER.BETAS = (0.9, 0.999)
    cfg.NAS.ALPHA_OPTIMIZER.WEIGHT_DECAY = 0.0
    cfg.NAS.TAU = CN()
    cfg.NAS.TAU.START = 5.0
    cfg.NAS.TAU.DECAY = math.exp(-0.045)  # per epoch
    cfg.NAS.TAU.MIN = 1e-3
    cfg.NAS.COST = CN()
    # target: CE + BETA * |log(expected cost / target)| (two-sided: lands on the target);
    # multiplicative: CE * A * (log cost / log target)^B (FBNet's form, normalised by the
    # target); additive: CE + LAMBDA * cost / target (FBNetV2's CE + cost, cost in units of
    # the target). See mobile_cv_nas/search/cost_loss.py.
    cfg.NAS.COST.LOSS = "target"
    # flops | params | latency (needs LUT); empty: the space's `cost`
    cfg.NAS.COST.METRIC = ""
    # target in MFLOPs or M params; 0: the geometric middle of the space's range
    cfg.NAS.COST.TARGET_M = 0.0
    # METRIC latency: the target in ms (TARGET_M stays 0); 0: the geometric middle
    cfg.NAS.COST.TARGET_MS = 0.0
    # A latency table (tools/build_latency_lut.py) of the space: the expected latency under the
    # gates is the cost with METRIC latency; with another metric the searched architecture's
    # predicted latency is reported. Refused when it was built for another space or is
    # incomplete; see mobile_cv_nas/search/latency/table.py. Empty: none.
    cfg.NAS.COST.LUT = ""
    cfg.NAS.COST.A = 0.2
    cfg.NAS.COST.B = 0.6
    cfg.NAS.COST.LAMBDA = 0.1
    cfg.NAS.COST.BETA = 1.0  # the target form's weight: 0.01 of loss per 1% off the target
    # the end-of-search check: a searched cost further than this (relative) from the target,
    # or an expected cost this far from the argmax's, is reported as a warning
    cfg.NAS.COST.TOLERANCE = 0.05
    # budget: the derived architecture is the most probable one within TOLERANCE of the
    # target (the plain argmax when it lands; see mobile_cv_nas/search/budget.py);
    # argmax: the argmax of every decision, as in the paper
    cfg.NAS.DERIVE = "budget"
    # mixture: every candidate op and input resolution runs, Gumbel-softmax weighted (the
    # paper); single_path: one hard Gumbel sample per decision, straight-through gradient
    # (GDAS), only the sampled op of each block and the sampled resolution run
    cfg.NAS.SAMPLING = "mixture"
    cfg.NAS.LOG_PERIOD = 20  # iterations between alpha-probability records (curves)
    return cfg


#: The arch keys' earlier namespaces (MODEL.FBNET for classification, MODEL.FBNET_V2 for
#: detection), both now MODEL.MOBILE_CV_NAS. d2go uses both names with other meanings
#: (MODEL.FBNET is FBNet-v1 there), so we keep neither; an old config gets a one-line error
#: naming the new key instead of "non-existent key".
ARCH_NAMESPACE = "MODEL.MOBILE_CV_NAS"
OLD_ARCH_NAMESPACES = ("MODEL.FBNET", "MODEL.FBNET_V2")
ARCH_KEYS = (
    "ARCH",
    "ARCH_DEF",
    "NORM",
    "WIDTH_DIVISOR",
    "OUT_FEATURES",
    "HEAD_NORM",
    "BOX_HEAD_BLOCKS",
)


def register_renamed_arch_keys(cfg):
    """Old arch keys (whole node or one key, in YAML or on the command line) raise yacs'
    rename error naming MODEL.MOBILE_CV_NAS.* (see README, "Config keys: migration")."""
    for old in OLD_ARCH_NAMESPACES:
        pairs = [(old, ARCH_NAMESPACE)]
        pairs += [(f"{old}.{key}", f"{ARCH_NAMESPACE}.{key}") for key in ARCH_KEYS]
        for old_key, new_key in pairs:
            if not cfg.key_is_renamed(old_key):
                cfg.register_renamed_key(
                    old_key, new_key, message="See the README's config-key migration table"
                )
    return cfg


def add_mobile_cv_nas_config(cfg):
    """All of the project's keys (what tools/train_net.py uses)."""
    add_classification_config(cfg)
    add_search_config(cfg)
    register_renamed_arch_keys(cfg)
    return cfg
