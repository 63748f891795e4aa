"""DMaskingNAS: Gumbel decisions, channel masks, the resolution sampler, effective-shape
costs, search spaces, the supernet and architecture derivation."""

from .gumbel import Decision, GumbelSampler, TemperatureSchedule
from .masked_channel import ChannelChoice, MaskedChannel, channel_options
from .resolution_sampler import ResolutionSampler
from .registry import SEARCH_OP_REGISTRY
from .space import SearchSpace, SearchSpaceError, count_architectures, load_search_space, parse_search_space
from .supernet import Supernet
from .derive import derive_arch, derive_model, inherit_weights
from .cost_analysis import EffectiveFlopCountAnalysis

__all__ = [
    "Decision",
    "GumbelSampler",
    "TemperatureSchedule",
    "ChannelChoice",
    "MaskedChannel",
    "channel_options",
    "ResolutionSampler",
    "SEARCH_OP_REGISTRY",
    "SearchSpace",
    "SearchSpaceError",
    "count_architectures",
    "load_search_space",
    "parse_search_space",
    "Supernet",
    "derive_arch",
    "derive_model",
    "inherit_weights",
    "EffectiveFlopCountAnalysis",
]
