"""Defaults and limits the engine and the job settings share, each defined once here (standard library
only): ``config`` re-exports them for the CLI, the Nuke gizmos' test and the panel, and the lower layers
(models, the gradient guard, inference, planning) import them without importing ``config``. The numbers
behind them are in docs/decisions.md."""

from __future__ import annotations

import math

#: The most neighbouring frames on each side a temporal network may see (``temporal``).
MAX_TEMPORAL = 3
#: Side of the square crops training takes, in pixels (Nuke's cropSize).
DEFAULT_CROP_SIZE = 256
#: Nuke's default length when neither steps nor epochs are given.
DEFAULT_EPOCHS = 10000
#: The automatic batch size never exceeds this (nor the number of pairs).
AUTO_MAX_BATCH = 16
#: Pixels neighbouring inference tiles share, blended (docs/decisions.md, "Inference tiles overlap").
DEFAULT_OVERLAP = 64


def is_gradient_clip(value: object) -> bool:
    """Whether ``value`` is a gradient guard factor: 0 (off) or a finite number of at least 1."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (value == 0 or 1 <= value < math.inf)
