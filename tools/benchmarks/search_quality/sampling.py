"""Random architectures of a search space at about the FLOPs of the searched one.

Each decision of the space's supernet (resolution, every op, expansion and width decision)
takes one of its options uniformly at random (`random.Random(seed)`, so a seed gives the same
architectures on every machine); the architecture is what `derive_arch` gives with those
choices as one-hot alphas. Candidates are screened by the supernet's effective FLOPs of the
one-hot gates (exactly the plain model's count, and ~100x cheaper than tracing it), and the
kept ones are counted again with `count_flops` on the built model at its input size (the
published convention); only those within the tolerance of the target are kept.

Uniform over decisions is not uniform over distinct architectures: an expansion decision of
a block whose op is `skip` changes nothing, for example. Kept architectures are distinct from
each other and from `exclude` (compared without their names).
"""

import dataclasses
import logging
import random

import torch
import yaml

from mobile_cv_nas.arch import build_model, parse_arch_def
from mobile_cv_nas.flops import CostReport, count_flops
from mobile_cv_nas.search import Supernet, derive_arch
from mobile_cv_nas.search.space import as_search_space

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.10
DEFAULT_MAX_TRIES = 5000


class SamplingError(RuntimeError):
    """Not enough distinct random architectures within the FLOP window."""


@dataclasses.dataclass
class CostedArch(CostReport):
    """An architecture and its published-convention cost at its input size: count_flops's
    report (`flops`, `params`, `mflops`, `mparams`, ...) with the arch it counted."""

    arch: object = None  # ArchDef
    choices: dict | None = None  # decision name -> option, for sampled archs


def space_for_arch(space, arch):
    """The search space (name, YAML path, mapping or SearchSpace) with the image channels and
    classes of `arch` (a search replaces the space's by the data's, and so does its arch)."""
    return dataclasses.replace(
        as_search_space(space), num_classes=arch.num_classes, in_channels=arch.in_channels
    )


def arch_key(arch):
    """A canonical text of an arch def without its name: equal keys, equal networks."""
    d = parse_arch_def(arch).to_dict()
    d.pop("name", None)
    return yaml.safe_dump(d, sort_keys=True)


def cost_of(arch):
    """`CostedArch` of an arch def: count_flops of the built model at its input size."""
    arch = parse_arch_def(arch)
    report = count_flops(build_model(arch), arch.input_size)
    return CostedArch(**vars(report), arch=arch)


def within(flops, target, tolerance):
    return abs(flops - target) <= tolerance * target


class ArchSampler:
    """Draws architectures of `space` with one uniformly random option per decision."""

    def __init__(self, space, seed=0):
        self.space = as_search_space(space)
        self.supernet = Supernet(self.space)
        self.rng = random.Random(seed)

    @torch.no_grad()
    def _choose(self, decision, index):
        gates = torch.zeros(len(decision.options), dtype=decision.alpha.dtype)
        gates[index] = 1.0
        decision.alpha.copy_(gates)  # derive_arch takes the argmax of the alphas
        decision.set_gates(gates)  # effective_cost reads the gates

    @torch.no_grad()
    def sample(self, name=None):
        """(ArchDef, effective FLOPs, {decision: option}) of one random architecture."""
        choices = {}
        for decision in self.supernet.decisions.values():
            index = self.rng.randrange(len(decision.options))
            self._choose(decision, index)
            choices[decision.name] = decision.options[index]
        flops = int(round(float(self.supernet.effective_cost().flops)))
        return derive_arch(self.supernet, name=name), flops, choices


def sample_random_archs(
    space,
    target_flops,
    num,
    seed=0,
    tolerance=DEFAULT_TOLERANCE,
    max_tries=DEFAULT_MAX_TRIES,
    exclude=(),
    name_prefix=None,
):
    """`num` distinct random architectures of `space` with FLOPs within `tolerance` (a
    fraction) of `target_flops`, as `CostedArch`es, in the order drawn; distinct from the
    arch defs in `exclude` too. Raises SamplingError after `max_tries` draws."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}.")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}.")
    sampler = ArchSampler(space, seed)
    prefix = name_prefix or f"{sampler.space.name or 'space'}_random"
    seen = {arch_key(a) for a in exclude}
    kept, in_window, tries = [], 0, 0
    while len(kept) < num and tries < max_tries:
        tries += 1
        arch, flops, choices = sampler.sample(name=f"{prefix}{len(kept) + 1}")
        if not within(flops, target_flops, tolerance):
            continue
        in_window += 1
        key = arch_key(arch)
        if key in seen:
            continue
        costed = cost_of(arch)
        if not within(costed.flops, target_flops, tolerance):
            logger.warning(
                "Random arch with effective FLOPs %d counts %d FLOPs with count_flops: "
                "outside the window, skipped.",
                flops,
                costed.flops,
            )
            continue
        seen.add(key)
        costed.choices = choices
        kept.append(costed)
        logger.info(
            "Random arch %d/%d: %.4f MFLOPs, %.4f M params, input %d (draw %d).",
            len(kept),
            num,
            costed.mflops,
            costed.mparams,
            arch.input_size,
            tries,
        )
    if len(kept) < num:
        raise SamplingError(
            f"Found {len(kept)} of {num} distinct random architectures of space "
            f"{sampler.space.name!r} within +-{tolerance:.0%} of {target_flops / 1e6:.4g} "
            f"MFLOPs in {tries} draws ({in_window} fell in the window). Raise --max-tries or "
            f"--tolerance, or ask for fewer random architectures."
        )
    logger.info(
        "Sampled %d random archs in %d draws (%.1f%% of draws within +-%.0f%% of %.4g MFLOPs).",
        num,
        tries,
        100.0 * in_window / tries,
        100 * tolerance,
        target_flops / 1e6,
    )
    return kept
