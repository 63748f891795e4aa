"""Gumbel-softmax sampling of architecture decisions, and the temperature schedule.

Every decision (op choice, channel count, expansion, resolution) owns logits `alpha`; one
`GumbelSampler` per supernet draws gates `g = softmax((alpha + G) / tau)` for all of them
once per step (Eq. 4). Modes:
  * "soft":    Gumbel-softmax weights (the paper's search).
  * "hard":    one-hot forward, soft gradient (straight-through Gumbel-softmax).
  * "softmax": softmax(alpha), no noise (deterministic evaluation of the mixture).
  * "argmax":  one-hot of argmax(alpha) (evaluate the architecture that would be derived).
Noise comes from the sampler's own seeded CPU generator, so runs are reproducible whatever
the device and whatever else draws random numbers.

The sampler is a module without parameters: its temperature, mode and generator state are in
`state_dict()` (as extra state), so a checkpointed search resumes with the very gates it would
have drawn.

Seeding policy. `Supernet.sample()` starts each step with `begin_step()`, which seeds the
generator from (seed, rank, step): the noise of a step is a function of those three numbers,
so a resumed search, on any rank, draws exactly what the uninterrupted one would have, even
from a checkpoint that rank 0 alone wrote. Distributed search: every rank draws its OWN Gumbel
noise, so N ranks sample N architectures per step and the alpha gradient, averaged by DDP, is
an N-sample estimate. The alphas stay identical on all ranks because they start equal (zeros)
and DDP all-reduces their gradients before the identical optimiser steps. `rank=None` takes
the rank of the initialised default process group (0 when not distributed).
"""

import hashlib
import math
import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("soft", "hard", "softmax", "argmax")


def check_temperature(tau, what="temperature"):
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ValueError(f"The {what} must be a finite number > 0, got {tau!r}.")
    if tau <= 0:
        raise ValueError(
            f"The {what} must be > 0, got {tau!r}: softmax((alpha + G) / tau) is undefined at "
            f"0; use mode='argmax' (or 'hard') for one-hot gates."
        )
    return float(tau)


class TemperatureSchedule:
    """tau(epoch) = max(min_tau, tau0 * decay ** epoch) (paper: tau0 = 5.0, decay = exp(-0.045))."""

    def __init__(self, tau0=5.0, decay=math.exp(-0.045), min_tau=1e-3):
        check_temperature(tau0, "initial temperature tau0")
        check_temperature(min_tau, "minimum temperature min_tau")
        if not 0 < decay <= 1:
            raise ValueError(f"The temperature decay must be in (0, 1], got {decay!r}.")
        self.tau0, self.decay, self.min_tau = float(tau0), float(decay), float(min_tau)

    def __call__(self, epoch):
        return max(self.min_tau, self.tau0 * self.decay**epoch)


def _step_seed(seed, rank, step):
    digest = hashlib.sha256(f"{int(seed)}:{int(rank)}:{int(step)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _current_rank():
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class GumbelSampler(nn.Module):
    """Draws the gates of every decision; see the module doc for modes and seeding."""

    def __init__(self, tau=5.0, mode="soft", seed=0, rank=None):
        super().__init__()
        self.tau = tau
        self.mode = mode
        self.generator = torch.Generator()
        self.seed(seed, rank)

    @property
    def tau(self):
        return self._tau

    @tau.setter
    def tau(self, tau):
        self._tau = check_temperature(tau)

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, mode):
        if mode not in MODES:
            raise ValueError(f"Unknown sampling mode {mode!r}; expected one of {MODES}.")
        self._mode = mode

    def seed(self, seed, rank=None):
        """Restart the noise from `seed`, step 0; rank None = this process's distributed rank."""
        self.base_seed = int(seed)
        self.rank = _current_rank() if rank is None else int(rank)
        self.step = 0
        self.generator.manual_seed(_step_seed(self.base_seed, self.rank, self.step))

    def begin_step(self):
        """Seed this step's noise from (seed, rank, step), then count the step."""
        self.generator.manual_seed(_step_seed(self.base_seed, self.rank, self.step))
        self.step += 1

    def get_extra_state(self):
        return {
            "tau": self.tau,
            "mode": self.mode,
            "seed": self.base_seed,
            "step": self.step,
            "rank": self.rank,
            "generator": self.generator.get_state(),
        }

    def set_extra_state(self, state):
        """Restore; the rank stays this process's. The generator state itself is restored only
        on the rank that saved it (the next `begin_step` reseeds on every rank anyway)."""
        self.tau, self.mode = state["tau"], state["mode"]
        self.base_seed, self.step = int(state["seed"]), int(state["step"])
        if int(state["rank"]) == self.rank:
            self.generator.set_state(state["generator"])
        else:
            self.generator.manual_seed(_step_seed(self.base_seed, self.rank, self.step))

    def sample(self, alpha, mode=None):
        """Gates for one decision's logits `alpha` (1-D), differentiable w.r.t. alpha; `mode`
        overrides the sampler's for this draw."""
        mode = self.mode if mode is None else mode
        if mode == "softmax":
            return F.softmax(alpha, dim=-1)
        if mode == "argmax":
            return F.one_hot(alpha.detach().argmax(-1), alpha.numel()).to(alpha.dtype)
        u = torch.rand(alpha.shape, generator=self.generator, dtype=torch.float64)
        neg_log_u = (-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20)
        gumbel = -torch.log(neg_log_u)
        soft = F.softmax((alpha + gumbel.to(alpha)) / self.tau, dim=-1)
        if mode == "soft":
            return soft
        hard = F.one_hot(soft.detach().argmax(-1), alpha.numel()).to(soft.dtype)
        return hard - soft.detach() + soft

    def extra_repr(self):
        return f"tau={self.tau:.4g}, mode={self.mode!r}, seed={self.base_seed}, rank={self.rank}"


class Decision(nn.Module):
    """One architecture decision: logits `alpha` over `options`, and the gates last sampled.

    Modules that use the decision hold a plain (unregistered) reference; the supernet
    registers each decision once, so `alpha` is one parameter however often it is used.
    A decision with a single option is fixed: its alpha is a buffer and its gate is 1.
    """

    def __init__(self, options, name=""):
        super().__init__()
        if len(options) == 0:
            raise ValueError(f"Decision {name!r} needs at least one option.")
        self.options = tuple(options)
        self.name = name
        if self.fixed:
            self.register_buffer("alpha", torch.zeros(1))
        else:
            self.alpha = nn.Parameter(torch.zeros(len(self.options)))
        self.gates = None

    @property
    def fixed(self):
        return len(self.options) == 1

    def sample(self, sampler, mode=None):
        if not self.fixed:
            self.gates = sampler.sample(self.alpha, mode)
        return self.current_gates()

    def set_gates(self, gates):
        """Fix the gates by hand (tests, analysis): a sequence or tensor over options."""
        self.gates = torch.as_tensor(gates, dtype=self.alpha.dtype, device=self.alpha.device)

    def current_gates(self):
        if self.fixed:
            return torch.ones_like(self.alpha)
        if self.gates is None:
            raise RuntimeError(
                f"Decision {self.name!r} has no gates yet: run the supernet forward "
                f"(or call supernet.sample()) first."
            )
        return self.gates

    def expected(self, values=None):
        """sum_i g_i * v_i, with v = the options by default (effective shape, Eq. 5-6).

        In float64, so that with one-hot gates a cost is the exact integer count.
        """
        values = self.options if values is None else values
        gates = self.current_gates().double()
        return (gates * torch.as_tensor(values, dtype=gates.dtype, device=gates.device)).sum()

    def argmax(self):
        return self.options[int(self.alpha.detach().argmax())]

    def set_argmax(self, index):
        """Make option `index` the argmax: the logits become one-hot at `index` (in place, no
        gradient). So a chosen architecture can be derived (`derive_arch`) or evaluated (mode
        "argmax") without a search, e.g. the max-width network the search-cost benchmark
        compares against, without code outside the package writing to `alpha` itself."""
        index = operator.index(index)
        if not 0 <= index < len(self.options):
            raise IndexError(
                f"Decision {self.name!r} has {len(self.options)} options, no index {index}."
            )
        with torch.no_grad():
            self.alpha.zero_()
            self.alpha[index] = 1.0
        return self

    def extra_repr(self):
        return f"name={self.name!r}, options={list(self.options)}"
