"""The search loss: cross-entropy combined with the supernet's effective cost.

Two forms, both against a target cost T (FLOPs or params):
  * additive (FBNetV2, Sec. 3.3: "cross-entropy loss and total cost"):
        CE + lambda * cost / T
    The cost is measured in units of the target, so lambda is unitless.
  * multiplicative (the original FBNet, Wu et al. 2019, Eq. 2: CE * a * log(LAT)^b):
        CE * a * (log(cost) / log(T)) ** b
    log(T) normalises the log cost to 1 at the target, so a and b keep their meaning
    whatever the space's scale.

The multiplicative form is the default: its pull on the cost is proportional to the
cross-entropy, so the balance between accuracy and cost does not drift as the CE falls during
the search, and its strength depends only on log ratios, not on the space's scale; FBNet's
(a, b) = (0.2, 0.6) are the defaults. The additive form's lambda trades CE for a share of the
target, which has to be tuned per space and target.

The search uses this loss for the alpha step only: the cost does not depend on the weights,
so for the weight step the additive term adds nothing and the multiplicative factor would
only rescale the weights' learning rate; the weight step minimises the CE.
"""

import math

import torch

FORMS = ("multiplicative", "additive")


class CostLoss:
    """loss(ce, cost) -> (total loss, cost term), for one of FORMS."""

    def __init__(self, form, target, a=0.2, b=0.6, lam=0.1):
        if form not in FORMS:
            raise ValueError(f"Unknown cost loss {form!r}: use one of {', '.join(FORMS)}.")
        if not target > 1:
            raise ValueError(f"The cost target must be > 1 (FLOPs or params), got {target!r}.")
        self.form, self.target = form, float(target)
        self.a, self.b, self.lam = float(a), float(b), float(lam)

    def __call__(self, ce, cost):
        cost = cost.to(ce.dtype)
        if self.form == "additive":
            term = self.lam * cost / self.target
            return ce + term, term
        factor = self.a * (torch.log(cost) / math.log(self.target)) ** self.b
        return ce * factor, factor

    def __repr__(self):
        if self.form == "additive":
            return f"CE + {self.lam:g} * cost / {self.target:.4g}"
        return f"CE * {self.a:g} * (log cost / log {self.target:.4g}) ^ {self.b:g}"
