"""A guard against a training run blowing up: gradient spikes clipped to a multiple of their recent size.

Adam scales every step by its running estimate of the gradients' size. After a quiet stretch that estimate
is small, and one step whose gradients are suddenly tens of times larger moves every weight by up to
~3 learning rates at once (Adam's (1 − β₁) / √(1 − β₂)); on an unlucky run the next gradients are larger
still and the network never comes back (docs/decisions.md, "Gradient guard: off by default"). A fixed
limit cannot tell a spike from a network whose gradients are simply larger (the norm differs with size,
loss and effect), so the limit here is relative: a step's gradient norm is scaled down to at most
``factor`` × the median norm of the last ``history`` steps (clipped steps counted at their limit, so a
spike does not raise the limit for the next). Sustained growth still gets through, ``factor``× per half a
history at most.

Off by default (``TrainConfig.gradient_clip`` 0), by measurement: it saves a run that would blow up, but
costs runs that would not (docs/decisions.md).

The state is a short list of floats, saved in checkpoints so that a resumed run clips as the
uninterrupted one would have.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from copycat_nuke.limits import is_gradient_clip

#: Clip to this many times the recent median gradient norm (0: off): the factor measured (docs/decisions.md).
#: Jobs run without the guard unless they ask for it (``TrainConfig.gradient_clip``), by measurement.
MEASURED_FACTOR = 4.0
#: Steps whose norms set the limit.
HISTORY = 100
#: Steps seen before anything is clipped (the first gradients of a fresh network are the largest).
WARMUP = 10


class GradientGuard:
    """Clips a step's gradients to ``factor`` × the median norm of the recent steps; counts the clipped ones."""

    def __init__(self, factor: float = MEASURED_FACTOR, history: int = HISTORY, warmup: int = WARMUP) -> None:
        if not is_gradient_clip(factor):
            raise ValueError(f"factor must be 0 (off) or at least 1 (got {factor})")
        if not 1 <= warmup <= history:
            raise ValueError(f"need 1 <= warmup <= history (got warmup {warmup}, history {history})")
        self.factor = factor
        self.history = history
        self.warmup = warmup
        self.norms: list[float] = []  #: the recent norms, clipped ones at their limit
        self.clipped = 0  #: steps clipped so far in this run (resumed runs included)

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    def limit(self) -> float:
        """The largest norm the next step may have (inf while warming up or off)."""
        if not self.enabled or len(self.norms) < self.warmup:
            return math.inf
        return self.factor * statistics.median(self.norms)

    def __call__(self, parameters: Iterable[nn.Parameter]) -> float:
        """Clip the gradients of ``parameters`` in place if they spike; return their norm before clipping
        (0.0 when the guard is off or no parameter has a gradient: nothing is measured then).

        A non-finite norm is returned as it is, without changing anything: the caller decides what to do.
        """
        grads = [p.grad for p in parameters if p.grad is not None]
        if not self.enabled or not grads:
            return 0.0
        norm = total_norm(grads)
        if not math.isfinite(norm):
            return norm
        limit = self.limit()
        if norm > limit:
            torch._foreach_mul_(grads, limit / norm)
            self.clipped += 1
        self._remember(min(norm, limit))
        return norm

    def _remember(self, norm: float) -> None:
        self.norms.append(norm)
        del self.norms[: -self.history]

    def state_dict(self) -> dict[str, object]:
        return {"norms": list(self.norms), "clipped": self.clipped}

    def load_state_dict(self, state: dict[str, object]) -> None:
        norms = state.get("norms", [])
        clipped = state.get("clipped", 0)
        if not isinstance(norms, Sequence) or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) and 0 <= n < math.inf for n in norms
        ):
            raise ValueError("gradient guard state: norms must be a list of finite numbers, 0 or more")
        if not isinstance(clipped, int) or isinstance(clipped, bool) or clipped < 0:
            raise ValueError("gradient guard state: clipped must be a whole number, 0 or more")
        self.norms = [float(n) for n in norms][-self.history :]
        self.clipped = clipped


def total_norm(grads: Sequence[torch.Tensor]) -> float:
    """The L2 norm of all the gradients together, as ``clip_grad_norm_`` measures it (without touching them)."""
    measure = getattr(nn.utils, "get_total_norm", None)  # torch 2.6+
    if measure is not None:
        return float(measure(grads))
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads])))
