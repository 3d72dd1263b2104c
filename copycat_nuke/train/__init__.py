"""The CopyCat trainer: frame pairs in, a ``.cat`` out, with checkpoints, previews and exact resume.

One module per job:

- :mod:`.events`: what listeners hear (the CLI's bar, the Qt panel, Nuke);
- :mod:`.loss`: the multi-scale loss and the learning-rate schedule;
- :mod:`.plan`: a :class:`~.plan.TrainingPlan` (batch, stages, level weights, gradient guard) per run;
- :mod:`.loop`: :class:`Trainer`, prepare -> plan -> loop -> finish;
- :mod:`.checkpoints`: writing checkpoints and model.cat, and resuming from them;
- :mod:`.previews`: contact sheets;
- :mod:`.job`: the public API and background jobs.

Reading the pairs is :mod:`copycat_nuke.data`'s job; a run directory's layout is :mod:`copycat_nuke.rundir`'s.
"""

from __future__ import annotations

from copycat_nuke.data import TrainingData, aligned_region, load_pairs
from copycat_nuke.errors import CopyCatError
from copycat_nuke.rundir import KEEP_CHECKPOINTS, LossLog, latest_checkpoint
from copycat_nuke.train.events import (
    CheckpointWritten,
    ContactSheetWritten,
    Event,
    Finished,
    Listener,
    Started,
    StepDone,
    TrainResult,
)
from copycat_nuke.train.job import TrainingJob, train_in_background, train_model
from copycat_nuke.train.loop import Trainer
from copycat_nuke.train.loss import LEVEL_WEIGHTS, learning_rate, multiscale_loss, pixel_loss
from copycat_nuke.train.plan import (
    AUTO_CPU_STEP_SECONDS,
    AUTO_MAX_BATCH,
    DEFAULT_EPOCHS,
    FINE_EFFECT_CPU_BATCH,
    LOCAL_PIXELS,
    LOCAL_SHARE,
    MULTI_RESOLUTION_MIN_EFFECT,
    MULTI_RESOLUTION_MIN_SIDE,
    MULTI_RESOLUTION_STAGES,
    TrainingPlan,
    auto_batch_size,
    downscale_pairs,
    fine_level_weights,
    local_share,
    resolution_factor,
    surviving_effect,
)
from copycat_nuke.train.previews import preview_pairs

__all__ = [
    "AUTO_CPU_STEP_SECONDS",
    "AUTO_MAX_BATCH",
    "DEFAULT_EPOCHS",
    "FINE_EFFECT_CPU_BATCH",
    "KEEP_CHECKPOINTS",
    "LEVEL_WEIGHTS",
    "LOCAL_PIXELS",
    "LOCAL_SHARE",
    "MULTI_RESOLUTION_MIN_EFFECT",
    "MULTI_RESOLUTION_MIN_SIDE",
    "MULTI_RESOLUTION_STAGES",
    "CheckpointWritten",
    "ContactSheetWritten",
    "CopyCatError",
    "Event",
    "Finished",
    "Listener",
    "LossLog",
    "Started",
    "StepDone",
    "TrainResult",
    "Trainer",
    "TrainingData",
    "TrainingJob",
    "TrainingPlan",
    "aligned_region",
    "auto_batch_size",
    "downscale_pairs",
    "fine_level_weights",
    "latest_checkpoint",
    "learning_rate",
    "load_pairs",
    "local_share",
    "multiscale_loss",
    "pixel_loss",
    "preview_pairs",
    "resolution_factor",
    "surviving_effect",
    "train_in_background",
    "train_model",
]
