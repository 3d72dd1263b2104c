"""Planning a run from its pairs and machine: multi-resolution stages, batch size, level weights."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import nn

from copycat_nuke import catfile, distributed, transfer
from copycat_nuke.config import TrainConfig, is_gradient_clip
from copycat_nuke.data import (
    Pair,
    TrainingData,
    steps_for_epochs,
)
from copycat_nuke.device import Runtime
from copycat_nuke.errors import (
    CatFileError,
    TrainingError,
)
from copycat_nuke.limits import AUTO_MAX_BATCH, DEFAULT_EPOCHS
from copycat_nuke.models import MODEL_SIZES, MSRN
from copycat_nuke.train.loss import LEVEL_WEIGHTS, multiscale_loss

#: Multi-resolution training (Nuke's "Use Multi-Resolution Training"): ``(downscale factor, share of the
#: run's steps)``, coarsest first; the rest of the run is at full resolution. A stage's crops are the
#: job's crop size divided by its factor (at least 32 pixels), so its steps cost about 1/factor² as much
#: and each crop still covers the same share of the frame.
MULTI_RESOLUTION_STAGES: tuple[tuple[int, float], ...] = ((4, 0.2), (2, 0.2))
#: A stage's crops are at least this many pixels; a stage whose downscaled frames are smaller is skipped.
MULTI_RESOLUTION_MIN_SIDE = 32
#: A stage runs only where at least this share of the effect survives its downscaling (see
#: :func:`surviving_effect`): training an effect finer than a stage at its resolution teaches a different
#: one (docs/decisions.md, "Multi-resolution training").
MULTI_RESOLUTION_MIN_EFFECT = 0.9
#: A local effect (a paint-out: at least LOCAL_SHARE of the effect in the LOCAL_PIXELS share of pixels that
#: change most, see :func:`local_share`) takes its coarse stages on small full-resolution crops instead of
#: downscaled frames: difference-centred crops then fill them with what changes (docs/decisions.md,
#: "A local effect takes its stages on small full-resolution crops").
LOCAL_SHARE = 0.8
LOCAL_PIXELS = 0.05
#: :func:`local_share` looks at about this many pixels at most (every n-th row and column of bigger jobs).
LOCAL_SAMPLE_PIXELS = 4_000_000


def resolution_factor(step: int, total_steps: int, stages: Iterable[int] = (4, 2)) -> int:
    """The downscale factor training uses at ``step`` (from 0) of ``total_steps``: 4, 2, then 1.

    ``stages`` are the factors that run (see :meth:`Trainer.plan_resolutions`); a stage that does not
    run leaves its share of the steps at full resolution."""
    running = set(stages)
    edge = 0.0
    for factor, share in MULTI_RESOLUTION_STAGES:
        edge += share
        if step < edge * total_steps:
            return factor if factor in running else 1
    return 1


def effect_in_linear_light(pair: Pair, working: transfer.Transfer, block: int = 1) -> Optional[np.ndarray]:
    """Ground Truth − Input of ``pair`` in linear light (H×W×C, sides cropped to multiples of ``block`` ×
    an upscaler's scale, whose Input is repeated to the Ground Truth's size); None where their channels
    differ (a matte) or the frame is smaller than one block."""
    centre, target = pair.centre, pair.target
    if centre.shape[2] != target.shape[2]:
        return None
    scale = target.shape[0] // centre.shape[0]
    if scale > 1:
        centre = np.repeat(np.repeat(centre, scale, axis=0), scale, axis=1)
    h, w = target.shape[0] // (block * scale) * block * scale, target.shape[1] // (block * scale) * block * scale
    if h == 0 or w == 0:
        return None
    return working.from_working(target[:h, :w]) - working.from_working(centre[:h, :w])


def surviving_effect(pairs: Sequence[Pair], factor: int, working: transfer.Transfer) -> Optional[float]:
    """The share of the effect that survives downscaling ÷``factor``, 0 to 1; None where there is none to
    measure (Ground Truth and Input have different channels, e.g. a matte, or do not differ).

    The effect is the difference Ground Truth − Input in linear light (:func:`effect_in_linear_light`);
    box-averaging it over ``factor``×``factor`` blocks (an upscaler's: ``factor`` × its scale, over its
    Ground Truth), as the stage's downscaling does, keeps what is the same sign across a block and cancels
    the rest. The share is mean |averaged difference| over mean |difference|: ~1 for a grade or a
    paint-out of solid marks, low for a blur, sharpen or grain finer than the block."""
    kept = total = 0.0
    for pair in pairs:
        block = factor * (pair.target.shape[0] // pair.centre.shape[0])
        difference = effect_in_linear_light(pair, working, block)
        if difference is None:
            if pair.centre.shape[2] != pair.target.shape[2]:
                return None
            continue
        h, w = difference.shape[:2]
        averaged = difference.reshape(h // block, block, w // block, block, -1).mean(axis=(1, 3), dtype=np.float64)
        kept += float(np.abs(averaged).sum()) * block * block
        total += float(np.abs(difference).sum(dtype=np.float64))
    return kept / total if total > 0 else None


def local_share(pairs: Sequence[Pair], working: transfer.Transfer, pixels: float = LOCAL_PIXELS) -> Optional[float]:
    """The share of the effect (|Ground Truth − Input| in linear light, summed over the channels) held by
    the ``pixels`` share of pixels that change most: ~1 for a paint-out of a few marks, ~0.3 for a grade or
    a soften; None where Input and Ground Truth cannot be compared or do not differ."""
    magnitudes = []
    pixel_count = sum(pair.target.shape[0] * pair.target.shape[1] for pair in pairs)
    stride = max(1, math.isqrt(pixel_count // LOCAL_SAMPLE_PIXELS))  # a big job is judged on a regular sample
    for pair in pairs:
        difference = effect_in_linear_light(pair, working)
        if difference is None:
            return None
        magnitudes.append(np.abs(difference[::stride, ::stride]).sum(axis=2, dtype=np.float32).ravel())
    everything = np.concatenate(magnitudes)
    total = float(everything.sum(dtype=np.float64))
    if total <= 0:
        return None
    count = max(1, int(pixels * everything.size))
    return float(np.partition(everything, everything.size - count)[-count:].sum(dtype=np.float64)) / total


def downscale_pairs(pairs: Sequence[Pair], factor: int, working: transfer.Transfer) -> list[Pair]:
    """Each pair box-averaged ÷``factor`` in linear light (back in working space); sides cropped to
    multiples of ``factor`` first. An upscaler's pairs keep their size ratio."""

    def shrink(image: np.ndarray, h: int, w: int) -> np.ndarray:
        c = image.shape[2]
        linear = working.from_working(image[:h, :w])
        small = linear.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3), dtype=np.float64)
        return np.ascontiguousarray(working.to_working(small.astype(np.float32)))

    shrunk = []
    for pair in pairs:
        h, w = pair.input.shape[0] // factor * factor, pair.input.shape[1] // factor * factor
        scale = pair.target.shape[0] // pair.input.shape[0]  # trimmed alike, the Ground Truth stays scale×
        shrunk.append(
            Pair(shrink(pair.input, h, w), shrink(pair.target, h * scale, w * scale), pair.label, pair.frames)
        )
    return shrunk


#: Automatic batch size on a CPU: as many patches as keep one step within this many seconds (the loss
#: curve and Stop stay responsive; on a CPU patches/s depends on the batch far less than on a GPU, so
#: smaller batches mean more updates per minute).
AUTO_CPU_STEP_SECONDS = 2.0
#: Automatic batch size on a CPU for a *fine* effect, one no coarse stage helps (:func:`plan_resolutions`):
#: more updates of fewer patches reach a given quality sooner there (docs/decisions.md, "Fine-effect batch on a CPU").
FINE_EFFECT_CPU_BATCH = 2
#: Automatic batch size on a GPU: the share of free memory the batch may fill.
AUTO_GPU_MEMORY_SHARE = 0.8


def _probe_step(
    model: nn.Module, runtime: Runtime, batch: int, channels_in: int, channels_out: int, crop: int, scale: int
) -> None:
    """One forward and backward pass on a zero batch; no weights change and no random numbers are drawn,
    so probing leaves a run exactly as reproducible as before."""
    inputs = runtime.place(torch.zeros(batch, channels_in, crop, crop))
    targets = runtime.place(torch.zeros(batch, channels_out, crop * scale, crop * scale))
    if not isinstance(model, MSRN):
        raise TypeError(f"CopyCat trains MSRN networks, not {type(model).__name__}")
    with runtime.autocast():
        outputs = model.forward_levels(inputs)
    multiscale_loss(outputs, targets).backward()
    model.zero_grad(set_to_none=True)


def auto_batch_size(
    model: nn.Module,
    runtime: Runtime,
    channels_in: int,
    channels_out: int,
    crop: int,
    scale: int,
    pairs: int,
) -> tuple[int, str]:
    """The batch size for ``--batch-size auto`` and a sentence saying how it was chosen.

    GPU: the largest batch whose measured memory (probe steps at batch 1 and 3, after a warm-up) fits
    :data:`AUTO_GPU_MEMORY_SHARE` of the free memory. CPU (and MPS): as many patches as keep a step within
    :data:`AUTO_CPU_STEP_SECONDS`, from the timed second of two probe steps at batch 1 (the trainer takes at
    most :data:`FINE_EFFECT_CPU_BATCH` on a CPU where its plan finds the effect too fine for every coarse
    stage). Never more than ``pairs`` (CopyCat's rule) nor :data:`AUTO_MAX_BATCH`; at least 1.
    """
    cap = max(1, min(pairs, AUTO_MAX_BATCH))
    device = runtime.device
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        peaks = []
        try:
            _probe_step(model, runtime, 1, channels_in, channels_out, crop, scale)  # one-time allocations
            for batch in (1, 3):
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
                _probe_step(model, runtime, batch, channels_in, channels_out, crop, scale)
                torch.cuda.synchronize(device)
                peaks.append(torch.cuda.max_memory_allocated(device) - base)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return 1, f"a {crop}² probe step ran out of GPU memory: batch 1"
        per_patch = max((peaks[1] - peaks[0]) // 2, peaks[0] // 2, 1)  # never below half the batch-1 peak
        fixed = max(peaks[0] - per_patch, 0)
        fits = int((free * AUTO_GPU_MEMORY_SHARE - fixed) // per_patch)
        batch = max(1, min(fits, cap))
        return batch, (
            f"{per_patch / 2**20:.0f} MB per {crop}² patch, {free / 2**30:.1f} GB free on {device}: "
            f"{fits} would fit, {batch} used ({pairs} pair(s), at most {AUTO_MAX_BATCH})"
        )
    seconds = 0.0
    for _ in range(2):  # the first pass warms up kernels and allocators
        began = time.perf_counter()
        _probe_step(model, runtime, 1, channels_in, channels_out, crop, scale)
        seconds = time.perf_counter() - began
    fits = int(AUTO_CPU_STEP_SECONDS // max(seconds, 1e-6))
    batch = max(1, min(fits, cap))
    return batch, (
        f"{seconds:.2f} s per {crop}² patch on {device}: {batch} per step keeps a step near "
        f"{AUTO_CPU_STEP_SECONDS:g} s or less ({pairs} pair(s), at most {AUTO_MAX_BATCH})"
    )


#: The most patches per step "pixels" level weights were measured with (2: what a CPU takes for a fine effect).
PIXELS_WEIGHTS_MAX_BATCH = 2


def fine_level_weights(width: int, batch_size: int) -> tuple[str, str]:
    """The level weights "auto" gives a fine effect trained from scratch, and why, where they were measured:
    pixels with up to :data:`PIXELS_WEIGHTS_MAX_BATCH` patches per step on Small and Medium; doubling with
    more on Small; equal otherwise (more patches on Medium, where doubling was unstable, and Large:
    unmeasured)."""
    fine = "the effect being finer than every coarse stage"
    most = PIXELS_WEIGHTS_MAX_BATCH
    if width <= MODEL_SIZES["medium"] and batch_size <= most:
        return "pixels", f"auto: pixels, {fine}"
    if width <= MODEL_SIZES["small"]:
        return "doubling", f"auto: doubling, {fine}, with more than {most} patches per step"
    return "equal", f"auto: equal, {fine}, but fine weights are unmeasured on this network with this batch"


@dataclass(frozen=True)
class TrainingPlan:
    """How a run trains, decided once from its pairs, network and machine before the first step (and
    recorded in the log, config.yaml and the manifest). A resumed run plans again from the same pairs and
    keeps what its checkpoint says it trained with (batch, level weights, gradient guard)."""

    batch_size: int  #: patches per step and rank: as set, kept on resume, else probed to fit the machine
    batch_choice: str  #: how, in words
    total_steps: int  #: steps, or epochs x pairs / batch
    stages: tuple[int, ...]  #: coarse stages that run: only where the effect survives their downscaling
    stage_crops: bool  #: a local effect takes its stages on small full-resolution crops, not downscaled frames
    resolutions: str  #: the multi-resolution plan in words
    fine: bool  #: finer than every coarse stage: more, smaller updates and full-resolution weights train it faster
    level_weights: str  #: the loss's level weights (loss.LEVEL_WEIGHTS): a fine effect leans toward full resolution
    weights_choice: str  #: how, in words
    repeat_weights: str  #: what config.yaml repeats: auto stays auto (another size must not inherit the choice)
    gradient_clip: float  #: the gradient guard's factor (0: off): a resumed run keeps its checkpoint's


class Resuming(NamedTuple):
    """The checkpoint a resumed run goes on from, and its manifest (read once, for the choices it keeps)."""

    path: Path
    manifest: catfile.Manifest
    cat: Optional[catfile.CatFile] = None  #: the loaded file, when it was loaded to check it


def make_plan(
    config: TrainConfig,
    dist: distributed.DistributedContext,
    data: TrainingData,
    working: transfer.Transfer,
    device: torch.device,
    width: int,
    crop_size: int,
    batch: tuple[int, str],
    from_initial_weights: bool,
    checkpoint: Optional[Resuming],
) -> TrainingPlan:
    """The run's :class:`TrainingPlan`, given the batch :func:`choose_batch_size` chose and the crop side the
    sampler fits to the frames. Every rank makes the same plan (the cautious choice where pairs differ)."""
    batch_size, batch_choice = batch
    pair_count = len(data.pairs)
    steps = total_steps(config, pair_count, batch_size)
    stages, stage_crops, resolutions, fine = plan_resolutions(config, dist, data, working, crop_size, steps, device)
    if fine and batch_choice.startswith("auto: ") and device.type == "cpu" and batch_size > FINE_EFFECT_CPU_BATCH:
        # no coarse stage can speed such an effect up; on a CPU more, smaller updates do
        batch_choice = (
            f"auto: {FINE_EFFECT_CPU_BATCH} per step: the effect is finer than the coarse stages, and on a "
            f"CPU such an effect learns faster from more updates of fewer patches (the probe alone "
            f"would take {batch_size}: {batch_choice[len('auto: ') :]})"
        )
        batch_size = FINE_EFFECT_CPU_BATCH
        steps = total_steps(config, pair_count, batch_size)
    level_weights, weights_choice = choose_level_weights(  # patches per step: every rank's
        config, dist, fine, width, batch_size * dist.world_size, from_initial_weights, checkpoint
    )
    return TrainingPlan(
        batch_size=batch_size,
        batch_choice=batch_choice,
        total_steps=steps,
        stages=stages,
        stage_crops=stage_crops,
        resolutions=resolutions,
        fine=fine,
        level_weights=level_weights,
        weights_choice=weights_choice,
        repeat_weights=level_weights if weights_choice.startswith("kept") else config.level_weights,
        gradient_clip=choose_gradient_clip(config, dist, checkpoint),
    )


def choose_batch_size(
    config: TrainConfig,
    dist: distributed.DistributedContext,
    model: nn.Module,
    runtime: Runtime,
    data: TrainingData,
    checkpoint: Optional[Resuming],
) -> tuple[int, str]:
    """The batch size and how it was decided: as set; as the resumed run had it; or automatic
    (:func:`auto_batch_size`, the smallest choice of all ranks)."""
    cfg = config
    if cfg.batch_size is not None:
        return cfg.batch_size, "set"
    if checkpoint is not None:
        saved = checkpoint.manifest.training.get("batch_size")
        if isinstance(saved, int) and 1 <= saved <= len(data.pairs):
            return saved, f"auto, kept from {checkpoint.path.name}"
    crop = min(cfg.crop_size, *(min(pair.input.shape[:2]) for pair in data.pairs)) // 16 * 16
    failure: Optional[BaseException] = None
    try:
        batch, how = auto_batch_size(
            model,
            runtime,
            data.pairs[0].input.shape[2],  # a temporal job's frames, stacked
            len(data.channels_out),
            max(16, crop),
            data.scale,
            len(data.pairs),
        )
    except Exception as error:  # every rank must reach the collective below, or the others hang in it
        failure, batch, how = error, 0, ""
    agreed = distributed.min_over_ranks(dist, batch, runtime.device)
    if agreed < 1:
        reason = f"{type(failure).__name__}: {failure}" if failure else "it failed on another rank"
        raise TrainingError(
            f"choosing the batch size automatically failed ({reason}); set a batch size instead (--batch-size N)"
        ) from failure
    return agreed, f"auto: {how}" + (f"; {agreed} agreed over the ranks" if agreed != batch else "")


def total_steps(config: TrainConfig, pairs: int, batch_size: int) -> int:
    """Steps of the run: as set, else ``epochs`` (Nuke's default 10000) × pairs ÷ batch."""
    cfg = config
    if cfg.steps is not None:
        return cfg.steps
    return steps_for_epochs(cfg.epochs or DEFAULT_EPOCHS, pairs, batch_size)


def plan_resolutions(
    config: TrainConfig,
    dist: distributed.DistributedContext,
    data: TrainingData,
    working: transfer.Transfer,
    crop_size: int,
    total_steps: int,
    device: torch.device,
) -> tuple[tuple[int, ...], bool, str, bool]:
    """Which multi-resolution stages this job runs, whether on small full-resolution crops rather than
    downscaled frames, why, in words (for the log and the manifest), and whether the effect is *fine*:
    every stage was checked (none had no steps), none runs, and at least one was left out because too
    little of the effect survives it.

    A local effect (:func:`local_share`) takes its stages on small crops of the full-resolution pairs.
    Otherwise a stage is left out (its steps stay at full resolution) where the downscaled frames are
    smaller than its crops, or where less than :data:`MULTI_RESOLUTION_MIN_EFFECT` of the effect
    survives the downscaling (:func:`surviving_effect`). The plan depends only on the pairs, so a
    resumed run makes the same one; in distributed training every rank takes the most cautious one."""
    if not config.multi_resolution:
        return (), False, "off", False
    local = local_share(data.pairs, working)
    crops = distributed.min_over_ranks(dist, int(local is not None and local >= LOCAL_SHARE), device) == 1
    running: list[int] = []
    said: list[str] = []
    too_fine = unchecked = 0  # stages left out as finer than the effect; stages with no steps to check
    if crops:
        said.append(
            f"a local effect ({math.floor(100 * (local or 0.0))}% of it in the {LOCAL_PIXELS:.0%} of pixels "
            "that change most)"
        )
    edge = 0.0
    for factor, share in MULTI_RESOLUTION_STAGES:
        first, edge = math.ceil(edge * total_steps), edge + share
        last = math.ceil(edge * total_steps) - 1
        name = f"1/{factor}"
        crop = max(MULTI_RESOLUTION_MIN_SIDE, crop_size // factor // 16 * 16)
        if last < first:
            said.append(f"{name}: no steps")
            unchecked += 1
            continue
        if crops:  # the full-resolution frames hold the job's crops, so they hold these smaller ones
            running.append(factor)
            said.append(f"{name} for steps {first + 1}-{last + 1} ({crop}-pixel crops at full resolution)")
            continue
        smallest = min(min(pair.input.shape[:2]) // factor for pair in data.pairs)
        kept = surviving_effect(data.pairs, factor, working) if smallest >= crop else None
        runs = smallest >= crop and (kept is None or kept >= MULTI_RESOLUTION_MIN_EFFECT)
        if distributed.min_over_ranks(dist, int(runs), device) < 1 and runs:
            said.append(f"{name} skipped (another training process's pairs do not allow it)")
        elif smallest < crop:
            said.append(f"{name} skipped (downscaled frames smaller than its {crop}-pixel crops)")
        elif not runs:
            too_fine += 1
            said.append(
                f"{name} skipped (only {math.floor(100 * (kept or 0.0))}% of the effect survives it, under "
                f"{MULTI_RESOLUTION_MIN_EFFECT:.0%}: the effect is finer than that resolution)"
            )
        else:
            running.append(factor)
            survives = f", {math.floor(100 * kept)}% of the effect survives" if kept is not None else ""
            said.append(f"{name} for steps {first + 1}-{last + 1} ({crop}-pixel crops{survives})")
    ending = "; then full resolution" if running else ": full resolution throughout"
    # Only a plan that checked every stage calls an effect fine: a plan with a "no steps" stage depends on
    # the run's length, which the batch that a fine effect takes changes.
    fine = distributed.min_over_ranks(dist, int(not running and too_fine > 0 and not unchecked), device) == 1
    return tuple(running), crops, "; ".join(said) + ending, fine


def choose_level_weights(
    config: TrainConfig,
    dist: distributed.DistributedContext,
    fine: bool,
    width: int,
    batch_size: int,
    initial_weights: bool,
    checkpoint: Optional[Resuming],
) -> tuple[str, str]:
    """The loss's level weights (:data:`LEVEL_WEIGHTS`) and why: as set; for auto, a fine effect trained
    from scratch takes :func:`fine_level_weights` (initial weights, such as the shipped networks, were
    trained with equal ones: unmeasured), any other job equal; and a resumed run goes on with the loss it
    started with, the checkpoint's (one written before the setting existed trained with equal weights),
    with a warning where the job now says otherwise (Nuke's CopyCat node has no knob for them, an old
    config.yaml no key)."""
    cfg = config
    if cfg.level_weights != "auto":
        chosen, why = cfg.level_weights, "set"
    elif fine and not initial_weights:
        chosen, why = fine_level_weights(width, batch_size)
    elif fine:
        chosen, why = "equal", "auto: equal, as the initial weights were trained"
    else:
        chosen, why = "equal", "auto: equal"
    if checkpoint is None:
        return chosen, why
    saved = checkpoint.manifest.config.get("level_weights", "equal")
    if saved not in LEVEL_WEIGHTS:
        raise CatFileError(
            f"{checkpoint.path} was trained with level weights {saved!r}, which this version does not know "
            f"({', '.join(LEVEL_WEIGHTS)}): resume it with the copycat_nuke that wrote it, or start a new run"
        )
    if saved == chosen:
        return chosen, why
    if dist.is_main:  # once, not once per rank
        warnings.warn(
            f"resuming with level_weights {saved}, as {checkpoint.path.name} was trained, not {chosen} "
            f"({why}): a run keeps its loss (start a new run to change it)",
            stacklevel=3,
        )
    return saved, f"kept from {checkpoint.path.name}"


def choose_gradient_clip(
    config: TrainConfig, dist: distributed.DistributedContext, checkpoint: Optional[Resuming]
) -> float:
    """The gradient guard's factor: as set, or for a resumed run its checkpoint's (0, off, for one written
    before the guard existed), with a warning where the job now says otherwise, as for the level weights."""
    wanted = config.gradient_clip
    if checkpoint is None:
        return wanted
    saved = checkpoint.manifest.config.get("gradient_clip", 0.0)
    if not is_gradient_clip(saved):
        raise CatFileError(
            f"{checkpoint.path} was trained with gradient_clip {saved!r}, which is not 0 or a factor of at "
            "least 1: resume it with the copycat_nuke that wrote it, or start a new run"
        )
    saved = float(saved)
    if saved != wanted and dist.is_main:  # once, not once per rank
        warnings.warn(
            f"resuming with gradient_clip {saved:g}, as {checkpoint.path.name} was trained, not {wanted:g}: a run "
            "keeps its gradient guard (start a new run to change it)",
            stacklevel=3,
        )
    return saved
