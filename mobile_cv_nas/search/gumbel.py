"""Gumbel-softmax sampling of architecture decisions, and the temperature schedule.

Every decision (op choice, channel count, expansion, resolution) owns logits `alpha`; one
`GumbelSampler` per supernet draws gates `g = softmax((alpha + G) / tau)` for all of them
once per step. Modes:
  * "soft":    Gumbel-softmax weights (the paper's search).
  * "hard":    one-hot forward, soft gradient (straight-through Gumbel-softmax).
  * "softmax": softmax(alpha), no noise (deterministic evaluation of the mixture).
  * "argmax":  one-hot of argmax(alpha) (evaluate the architecture that would be derived).
Noise comes from the sampler's own seeded CPU generator, so runs are reproducible whatever
the device and whatever else draws random numbers.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("soft", "hard", "softmax", "argmax")


class TemperatureSchedule:
    """tau(epoch) = tau0 * decay ** epoch (paper: tau0 = 5.0, decay = exp(-0.045))."""

    def __init__(self, tau0=5.0, decay=math.exp(-0.045), min_tau=0.0):
        if tau0 <= 0 or not 0 < decay <= 1:
            raise ValueError(f"Need tau0 > 0 and 0 < decay <= 1, got tau0={tau0}, decay={decay}.")
        self.tau0, self.decay, self.min_tau = tau0, decay, min_tau

    def __call__(self, epoch):
        return max(self.min_tau, self.tau0 * self.decay ** epoch)


class GumbelSampler:
    def __init__(self, tau=5.0, mode="soft", seed=0):
        self.tau = tau
        self.mode = mode
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, mode):
        if mode not in MODES:
            raise ValueError(f"Unknown sampling mode {mode!r}; expected one of {MODES}.")
        self._mode = mode

    def seed(self, seed):
        self.generator.manual_seed(seed)

    def state_dict(self):
        return {"tau": self.tau, "mode": self.mode, "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.tau, self.mode = state["tau"], state["mode"]
        self.generator.set_state(state["generator"])

    def sample(self, alpha):
        """Gates for one decision's logits `alpha` (1-D), differentiable w.r.t. alpha."""
        if self.mode == "softmax":
            return F.softmax(alpha, dim=-1)
        if self.mode == "argmax":
            return F.one_hot(alpha.detach().argmax(-1), alpha.numel()).to(alpha.dtype)
        u = torch.rand(alpha.shape, generator=self.generator, dtype=torch.float64)
        neg_log_u = (-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20)
        gumbel = -torch.log(neg_log_u)
        soft = F.softmax((alpha + gumbel.to(alpha)) / self.tau, dim=-1)
        if self.mode == "soft":
            return soft
        hard = F.one_hot(soft.detach().argmax(-1), alpha.numel()).to(soft.dtype)
        return hard - soft.detach() + soft


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

    def sample(self, sampler):
        if not self.fixed:
            self.gates = sampler.sample(self.alpha)
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
        """sum_i g_i * v_i, with v = the options by default (effective shape, Eq. 4-5)."""
        values = self.options if values is None else values
        v = torch.as_tensor(values, dtype=self.alpha.dtype, device=self.alpha.device)
        return (self.current_gates() * v).sum()

    def argmax(self):
        return self.options[int(self.alpha.detach().argmax())]

    def extra_repr(self):
        return f"name={self.name!r}, options={list(self.options)}"
