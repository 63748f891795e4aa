"""DMaskingNAS: Gumbel decisions, channel masks, the resolution sampler, effective-shape
costs, search spaces, search adapters, the supernet and architecture derivation.

`mobile_cv_nas.search.testing` (imported on its own) holds the checks for search-adapter
authors: the derived model computes the argmax supernet at exactly its effective cost."""

from .adapters import BlockAdapter, BlockContext, SearchAdapterError, adapter_for
from .channels import ChannelChoice, ChannelSource, ExpandedChannels, same_width_probability
from .cost_analysis import EffectiveFlopCountAnalysis
from .derive import derive_arch, derive_model, inherit_weights
from .effective_shape import Cost, EffectiveShape, global_pool_cost, layer_cost
from .gumbel import Decision, GumbelSampler, TemperatureSchedule
from .masked_channel import MaskedChannel
from .registry import SEARCH_OP_REGISTRY
from .resolution_sampler import ResolutionSampler
from .space import (
    SearchSpace,
    SearchSpaceError,
    count_architectures,
    load_search_space,
    parse_search_space,
    range_options,
)
from .supernet import Supernet

__all__ = [
    "BlockAdapter",
    "BlockContext",
    "ChannelChoice",
    "ChannelSource",
    "Cost",
    "Decision",
    "EffectiveFlopCountAnalysis",
    "EffectiveShape",
    "ExpandedChannels",
    "GumbelSampler",
    "MaskedChannel",
    "ResolutionSampler",
    "SEARCH_OP_REGISTRY",
    "SearchAdapterError",
    "SearchSpace",
    "SearchSpaceError",
    "Supernet",
    "TemperatureSchedule",
    "adapter_for",
    "count_architectures",
    "derive_arch",
    "derive_model",
    "global_pool_cost",
    "inherit_weights",
    "layer_cost",
    "load_search_space",
    "parse_search_space",
    "range_options",
    "same_width_probability",
]
