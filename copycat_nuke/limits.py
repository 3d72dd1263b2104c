"""Limits the engine's lower layers (models, the gradient guard) and the job settings share: defined here
once, standard library only, so ``config`` re-exports them without the models importing ``config``."""

from __future__ import annotations

import math

#: The most neighbouring frames on each side a temporal network may see (``temporal``).
MAX_TEMPORAL = 3


def is_gradient_clip(value: object) -> bool:
    """Whether ``value`` is a gradient guard factor: 0 (off) or a finite number of at least 1."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (value == 0 or 1 <= value < math.inf)
