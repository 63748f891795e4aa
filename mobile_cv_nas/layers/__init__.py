"""Plain building layers. They know nothing of search, the zoo or detectron2."""

from .activations import HSigmoid, HSwish, build_activation
from .conv_bn_act import ConvBNAct
from .norm import build_norm, freeze_norms, norm_name, resolve_norm
from .rounding import make_divisible
from .shuffle import ChannelShuffle
from .squeeze_excite import SqueezeExcite

__all__ = [
    "HSigmoid",
    "HSwish",
    "build_activation",
    "ConvBNAct",
    "build_norm",
    "norm_name",
    "resolve_norm",
    "freeze_norms",
    "SqueezeExcite",
    "ChannelShuffle",
    "make_divisible",
]
