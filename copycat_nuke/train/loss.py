"""The multi-scale loss and the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from copycat_nuke.models import MSRN

#: The learning rate decays along a cosine to this fraction of its start.
FINAL_LR_FRACTION = 0.05


# -------------------------------------------------------------------------------------- the maths
#: Charbonnier's ε in working-space units (mid-grey is 0.42 there): below ε the loss is quadratic, so tiny
#: changes to unchanged background cost almost nothing; above it, L1. Plain L1 pins a residual network to the
#: identity on sparse jobs (docs/decisions.md, "Loss: Charbonnier, ε = 0.01").
CHARBONNIER_EPSILON = 1e-2


def pixel_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str = "charbonnier") -> torch.Tensor:
    """Mean per-pixel loss between N×C×H×W tensors (computed in fp32)."""
    error = prediction.float() - target
    if kind == "l1":
        return error.abs().mean()
    if kind == "mse":
        return error.square().mean()
    return torch.sqrt(error.square() + CHARBONNIER_EPSILON**2).mean() - CHARBONNIER_EPSILON


#: How :func:`multiscale_loss` weighs the pyramid's levels, coarsest first (``TrainConfig.level_weights``):
#: "equal" is SRN's plain mean; "doubling" counts each level twice the one below (1:2:4); "pixels" by its pixels
#: (1:4:16). Weighting toward full resolution teaches an effect finer than the coarse levels in fewer steps, but
#: is no default elsewhere, so "auto" weighs only a *fine* effect: plan.fine_level_weights and
#: docs/decisions.md, "Level weights".
LEVEL_WEIGHTS: dict[str, Callable[[int], list[float]]] = {
    "doubling": lambda levels: [2.0**i for i in range(levels)],
    "equal": lambda levels: [1.0] * levels,
    "pixels": lambda levels: [4.0**i for i in range(levels)],
}


def multiscale_loss(
    outputs: Sequence[torch.Tensor], target: torch.Tensor, kind: str = "charbonnier", level_weights: str = "equal"
) -> torch.Tensor:
    """Weighted mean loss over the pyramid levels (coarse to fine, weights from :data:`LEVEL_WEIGHTS`), each
    against the target box-downscaled to its size."""
    weights = LEVEL_WEIGHTS[level_weights](len(outputs))
    total = target.new_zeros(())
    for weight, output in zip(weights, outputs):
        factor = target.shape[-1] // output.shape[-1]
        level_target = F.avg_pool2d(target, factor) if factor > 1 else target
        total = total + weight * pixel_loss(output, level_target, kind)
    return total / sum(weights)


def learning_rate(step: int, total_steps: int, base: float) -> float:
    """Cosine decay from ``base`` to ``base × FINAL_LR_FRACTION`` over the run (``step`` from 0)."""
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return base * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


class Levels(nn.Module):
    """An MSRN whose ``forward`` returns every pyramid level, for the multi-scale loss.

    DistributedDataParallel only sees calls through ``forward``, so the training pass goes through this.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, MSRN):
            raise TypeError(f"CopyCat trains MSRN networks, not {type(model).__name__}")
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_levels(x)
