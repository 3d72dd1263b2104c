"""What a training run tells its listeners (the CLI's bar, the Qt panel, Nuke): plain, frozen events."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from copycat_nuke.train.plan import TrainingPlan


# --------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Started:
    """Training is about to take its first step (``start_step`` > 0 when resuming)."""

    total_steps: int
    start_step: int
    pairs: int
    batch_size: int
    crop_size: int
    device: str
    precision: str
    out_dir: Path
    batch_choice: str = ""  #: how the batch size was decided ("set", "resumed", or the automatic probe)
    resolutions: str = "off"  #: the multi-resolution plan in words: the stages run, and those left out and why
    level_weights: str = ""  #: the loss's level weights (LEVEL_WEIGHTS) and how they were chosen
    plan: Optional[TrainingPlan] = None  #: all of the run's choices, as fields


@dataclass(frozen=True)
class StepDone:
    """One optimisation step finished. ``loss`` is the multi-scale loss of its batch (levels weighted as chosen)."""

    step: int
    total_steps: int
    loss: float
    learning_rate: float
    patches_per_second: float
    elapsed_seconds: float
    eta_seconds: float


@dataclass(frozen=True)
class CheckpointWritten:
    step: int
    path: Path


@dataclass(frozen=True)
class ContactSheetWritten:
    step: int
    path: Path


@dataclass(frozen=True)
class Finished:
    """Training ended: completed, or ``stopped`` early; ``model_path`` is usable either way."""

    step: int
    total_steps: int
    stopped: bool
    model_path: Path
    final_loss: float
    seconds: float


Event = Union[Started, StepDone, CheckpointWritten, ContactSheetWritten, Finished]
Listener = Callable[[Event], None]


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    model_path: Path
    out_dir: Path
    steps: int
    total_steps: int
    stopped: bool
    final_loss: float
    seconds: float
    losses: list[float] = field(default_factory=list)  #: loss of every step taken in this process
