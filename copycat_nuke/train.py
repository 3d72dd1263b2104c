"""The CopyCat trainer: frame pairs in, a ``.cat`` out, with checkpoints, previews and exact resume.

One readable loop (:meth:`Trainer.run`) in named phases:

1. **prepare**: validate the job, decide device and precision, read the frame pairs into the working
   space of ``transfer.py``, build (or load) the network, restore a checkpoint when resuming;
2. **train**: sample patches, a multi-scale Charbonnier loss (its levels weighted toward full resolution
   for a fine effect: :func:`fine_level_weights`), Adam with a cosine-decaying learning rate; a run whose
   loss blows up stops (:data:`DIVERGENCE_FACTOR`);
3. **report**: every step an event; every ``image_interval`` steps a contact sheet; every
   ``checkpoint_interval`` steps an atomic checkpoint ``.cat`` with everything needed to resume exactly;
4. **finish**: ``model.cat``, the loss log and its plot — also when stopped early.

The trainer never touches a UI: it publishes plain events to listeners (a tqdm bar in the CLI, a queue
polled by the Qt panel, ``nuke.executeInMainThread`` in Nuke). Stopping is a ``threading.Event``,
honoured within one step, and always leaves a valid checkpoint and model.
"""

from __future__ import annotations

import csv
import io
import math
import re
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from copycat_nuke import __version__, catfile, distributed, imageio, plots, pretrained, transfer
from copycat_nuke.config import TrainConfig, is_gradient_clip, save_yaml, to_dict, write_text_atomic
from copycat_nuke.data import (
    MAX_SCALE,
    MIN_FRAME_SIZE,
    Pair,
    PatchSampler,
    stack_frames,
    steps_for_epochs,
    temporal_offsets,
)
from copycat_nuke.device import Runtime, describe_hardware, resolve_runtime
from copycat_nuke.errors import (
    CatFileError,
    ChannelError,
    ConfigError,
    CopyCatError,
    FrameMissingError,
    ResolutionMismatchError,
    TrainingError,
)
from copycat_nuke.gradients import GradientGuard
from copycat_nuke.models import MODEL_SIZES, MSRN, build_model, msrn_arguments

#: Nuke's default length when neither steps nor epochs are given.
DEFAULT_EPOCHS = 10000
#: Checkpoints kept in ``checkpoints/`` (older ones are removed; model.cat is always kept).
KEEP_CHECKPOINTS = 3
#: The learning rate decays along a cosine to this fraction of its start.
FINAL_LR_FRACTION = 0.05
#: A run has *diverged* (and stops with a TrainingError) when its loss stays over DIVERGENCE_FACTOR × the
#: lowest median it has had over DIVERGENCE_WINDOW steps for DIVERGENCE_STEPS steps in a row. Charbonnier's loss
#: is about the mean absolute error, so 100× is a result ~40 dB worse than the network had reached: a
#: Medium paint-out that blew up went from 0.004 to 4.9e4 within 30 steps, and ended at 4 dB.
DIVERGENCE_FACTOR = 100.0
DIVERGENCE_WINDOW = 100
DIVERGENCE_STEPS = 20
#: Largest side of a contact-sheet tile, in pixels.
PREVIEW_SIZE = 256
#: Pairs shown in a contact sheet.
PREVIEW_PAIRS = 3


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


# ----------------------------------------------------------------------------------------- the pairs
@dataclass
class TrainingData:
    """The frame pairs of a job, in working space, and where they came from."""

    pairs: list[Pair]
    frames: list[int]
    channels_in: list[str]
    channels_out: list[str]
    scale: int = 1  #: Ground Truth size / Input size: 2 when the job trains an upscaler
    left_out: list[int] = field(default_factory=list)  #: temporal jobs: frames whose neighbours are missing


def load_pairs(config: TrainConfig, working: transfer.Transfer) -> TrainingData:
    """Read the Input/Ground Truth frames of a job into working-space :class:`Pair` s.

    Training frames are ``config.frames`` or, when unset, every frame where the Ground Truth exists.
    The first pair decides the scale: a Ground Truth format (display window) exactly twice its Input's
    trains a ×2 upscaler. A pair trains on every pixel both of its frames cover (display and data windows
    together, overscan included), aligned by their coordinates: see :func:`aligned_region`.
    Raises a :class:`CopyCatError` naming the file or frame at fault before any training starts.
    """
    if not config.input or not config.target:
        raise ConfigError("training needs an Input sequence (--input) and a Ground Truth sequence (--target)")
    inputs = imageio.ImageSequence.parse(config.input)
    targets = imageio.ImageSequence.parse(config.target)
    try:
        frames = targets.frames(config.frames)
    except FrameMissingError as error:
        if config.frames is None:
            raise TrainingError(f"CopyCat needs at least 1 Input/Ground Truth pair: {error}") from None
        raise
    if not frames:
        raise TrainingError(
            f"no Ground Truth frames found for {config.target}: CopyCat needs at least 1 Input/Ground Truth pair"
        )
    inputs.frames(frames)  # every training frame needs its Input too: names the missing ones
    neighbours = _NeighbourReader(inputs, config, working) if config.temporal else None
    left_out: list[int] = []
    if neighbours is not None:
        left_out = [frame for frame in frames if not neighbours.complete(frame)]
        frames = [frame for frame in frames if frame not in left_out]
        if not frames:
            raise TrainingError(
                f"temporal {config.temporal}: every training frame ({imageio.format_frame_list(left_out)}) lacks a "
                f"neighbouring Input frame within {config.temporal} frame(s) of it in {config.input}. Choose "
                "Ground Truth frames away from the ends of the Input sequence, render the missing Input "
                "frames, or train with temporal 0"
            )
        if left_out:
            warnings.warn(
                f"temporal {config.temporal}: left out the pair(s) at frame(s) "
                f"{imageio.format_frame_list(left_out)}, whose neighbouring Input frames are not all in {config.input}",
                stacklevel=2,
            )
    pairs: list[Pair] = []
    channels_in: list[str] = []
    channels_out: list[str] = []
    scale = 0
    for frame in frames:
        source = imageio.read_frame(inputs.path(frame), config.channels_in)
        truth = imageio.read_frame(targets.path(frame), config.channels_out)
        if not scale:  # from the formats: overscan may differ between the two
            shown, wanted = source.display_window, truth.display_window
            ratios = {wanted.width / shown.width, wanted.height / shown.height}
            ratio = ratios.pop() if len(ratios) == 1 else 1
            scale = int(ratio) if ratio == int(ratio) and 1 <= ratio <= MAX_SCALE else 1
        imageio.check_same_size(source, truth, frame=frame, scale=scale)
        region = aligned_region(source, truth, frame, scale)
        channels_in, channels_out = list(source.channels), list(truth.channels)
        label = f"frame {frame}"
        pixels = working.to_working(transfer.sanitize(source.pixels_in(region), f"Input {source.path}"))
        if neighbours is not None:
            pixels = stack_frames(pixels, neighbours.around(frame, source, region))
        target = truth.pixels_in(region.scaled(scale))
        pairs.append(
            Pair(
                input=pixels,
                target=working.to_working(transfer.sanitize(target, f"Ground Truth {truth.path}")),
                label=label,
                frames=1 + 2 * config.temporal,
            )
        )
    return TrainingData(
        pairs=pairs,
        frames=frames,
        channels_in=channels_in,
        channels_out=channels_out,
        scale=scale or 1,
        left_out=left_out,
    )


def aligned_region(source: imageio.Frame, truth: imageio.Frame, frame: int, scale: int = 1) -> imageio.Window:
    """Where a pair trains, in Input pixel coordinates: the pixels both frames cover (each its display and
    data windows together; the Ground Truth's divided by ``scale``).

    The intersection, not the union: a pixel only one frame has would teach the network to make black
    there (an Input with overscan beside a Ground Truth rendered without it trains on the format alone).
    A change of coverage is warned about; the Ground Truth region is the result's ``scaled(scale)``.

    Raises:
        ResolutionMismatchError: they share less than 16×16 pixels, naming the frame and both files.
    """
    region = source.pixel_window.intersect(truth.pixel_window.shrunk(scale))
    covers = (
        f"the Input {source.path} covers {source.pixel_window} "
        f"and the Ground Truth {truth.path} covers {truth.pixel_window}"
    )
    if min(region.width, region.height) < MIN_FRAME_SIZE:
        raise ResolutionMismatchError(
            f"frame {frame}: {covers}, which share {region.width}×{region.height} pixels (at the Input's scale); "
            f"CopyCat needs at least {MIN_FRAME_SIZE}×{MIN_FRAME_SIZE} both have. Render both with the same "
            "format and bounding box (e.g. the same Reformat and Crop) and train again."
        )
    if region != source.pixel_window or region.scaled(scale) != truth.pixel_window:
        warnings.warn(f"frame {frame}: {covers}; training on the {region} (Input pixels) they both cover", stacklevel=3)
    return region


class _NeighbourReader:
    """A temporal job's neighbouring Input frames, each read once, in working space."""

    def __init__(self, inputs: imageio.ImageSequence, config: TrainConfig, working: transfer.Transfer) -> None:
        if inputs.padding is None:
            raise ConfigError(
                f"temporal {config.temporal} needs an Input sequence with frame numbers, and {config.input} is "
                "a single file: give a pattern such as plate.####.exr, or train with temporal 0"
            )
        self.inputs, self.channels, self.working = inputs, config.channels_in, working
        self.offsets = temporal_offsets(config.temporal)
        self.existing = set(inputs.existing_frames())
        self.cache: dict[int, imageio.Frame] = {}  # linear, sanitised; placed per use (windows may move)

    def complete(self, frame: int) -> bool:
        return all(frame + offset in self.existing for offset in self.offsets)

    def around(self, frame: int, centre: imageio.Frame, region: imageio.Window) -> list[np.ndarray]:
        """The neighbours of ``frame`` over ``region`` (its pair's Input region), in working space."""
        found = []
        for number in (frame + offset for offset in self.offsets):
            if number not in self.cache:
                neighbour = imageio.read_frame(self.inputs.path(number), self.channels)
                if list(neighbour.channels) != list(centre.channels):
                    raise ChannelError(
                        f"{neighbour.path} has the channels {', '.join(neighbour.channels)}, but the Input frame "
                        f"{frame} beside it has {', '.join(centre.channels)}: a temporal job needs the same "
                        "channels in every Input frame"
                    )
                self.cache[number] = replace(
                    neighbour, pixels=transfer.sanitize(neighbour.pixels, f"Input {neighbour.path}")
                )
            cached, format_ = self.cache[number].display_window, centre.display_window
            if (cached.width, cached.height) != (format_.width, format_.height):  # checked on every use
                raise ResolutionMismatchError(
                    f"{self.inputs.path(number)} is {cached.width}×{cached.height} but the Input frame {frame} beside "
                    f"it is {format_.width}×{format_.height}: a temporal job needs every Input frame the same size"
                )
            found.append(self.working.to_working(self.cache[number].pixels_in(region)))
        return found


# -------------------------------------------------------------------------------------- the maths
#: Charbonnier's ε in working-space units (mid-grey is 0.42 there). Below ε the loss is quadratic, so
#: tiny changes to unchanged background cost almost nothing; above it, it is L1. Plain L1 pins a
#: residual network to the identity on sparse jobs (marker removal: on one fixed batch, L1 stayed at
#: 1.04× the identity's loss after 200 steps while MSE reached 0.25×); over 300 random batches ε = 0.01
#: reached 0.67× the identity's loss, ε = 0.05 0.90×, L1 ~1.0×, and MSE diverged at lr 1e-3.
CHARBONNIER_EPSILON = 1e-2


def pixel_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str = "charbonnier") -> torch.Tensor:
    """Mean per-pixel loss between N×C×H×W tensors (computed in fp32)."""
    error = prediction.float() - target
    if kind == "l1":
        return error.abs().mean()
    if kind == "mse":
        return error.square().mean()
    return torch.sqrt(error.square() + CHARBONNIER_EPSILON**2).mean() - CHARBONNIER_EPSILON


#: How :func:`multiscale_loss` weighs the pyramid's levels, coarsest first (``TrainConfig.level_weights``).
#: "equal" is SRN's plain mean; "doubling" counts each level twice the one below it (1:2:4, full resolution
#: carrying 4/7 of a three-level loss); "pixels" counts each level by its pixels, four times the one below
#: (1:4:16: every pixel of the pyramid counts the same, full resolution 16/21). Measured with
#: benchmarks/fewshot.py (same seeds, held-out PSNR; the README's Performance section): weighting toward full
#: resolution teaches an effect finer than the coarse levels in fewer steps. With 2 patches per step the
#: soften came within 0.5 dB of the full-resolution run's best at step 500 on Small with doubling or pixels
#: (700 with equal weights; 45.13 dB at the end with pixels, 44.69 with doubling, 43.07 with equal) and at
#: step 400 on Medium with pixels (600 with equal weights or doubling; 45.61 dB at the end, 44.36 equal).
#: Elsewhere it is no default: doubling cost the grade 0.07 dB (Small) and 0.34 dB (Medium) at the end, and
#: Medium trained unstably with doubling at 3 patches per step (its paint-out diverged at step 400, its
#: soften ended at 34.20 dB against 39.22). So "auto" weighs only a *fine* effect (Trainer.plan_resolutions)
#: of a network trained from scratch: see :func:`fine_level_weights`.
LEVEL_WEIGHTS: dict[str, Callable[[int], list[float]]] = {
    "doubling": lambda levels: [2.0**i for i in range(levels)],
    "equal": lambda levels: [1.0] * levels,
    "pixels": lambda levels: [4.0**i for i in range(levels)],
}


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


#: Multi-resolution training (Nuke's "Use Multi-Resolution Training"): ``(downscale factor, share of the
#: run's steps)``, coarsest first; the rest of the run is at full resolution. A stage's crops are the
#: job's crop size divided by its factor (at least 32 pixels), so its steps cost about 1/factor² as much
#: and each crop still covers the same share of the frame.
MULTI_RESOLUTION_STAGES: tuple[tuple[int, float], ...] = ((4, 0.2), (2, 0.2))
#: A stage's crops are at least this many pixels; a stage whose downscaled frames are smaller is skipped.
MULTI_RESOLUTION_MIN_SIDE = 32
#: A stage runs only where at least this share of the effect survives its downscaling (see
#: :func:`surviving_effect`): a grade and the benchmark's paint-out keep 99% of it at ¼, where a
#: 2.5-pixel soften keeps 58% at ¼ and 83% at ½, and training such an effect at low resolution teaches a
#: different one (benchmarks/fewshot.py: the soften ended 1.6 dB lower with its coarse stages than without).
MULTI_RESOLUTION_MIN_EFFECT = 0.9
#: A local effect (a paint-out: at least LOCAL_SHARE of the effect in the LOCAL_PIXELS share of pixels that
#: change most, see :func:`local_share`) takes its coarse stages on small full-resolution crops instead of
#: downscaled frames: the crops' difference-centred sampling then fills them with what changes
#: (benchmarks/fewshot.py markers: 43.52 dB against 41.43 with downscaled stages, 38.44 without stages;
#: a grade, not local, keeps downscaled stages: 48.90 against 48.10 with small crops).
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
#: Automatic batch size on a CPU for a *fine* effect, one no coarse stage helps (Trainer.plan_resolutions,
#: multi-resolution on: no stage runs and at least one was left out because too little of the effect survives it).
#: benchmarks/fewshot.py soften (2.5-px blur), same seed (its held-out PSNR at each step repeated exactly between
#: runs here): batches of 2 and 3 come within 0.5 dB of batch 3's best (Small 39.6 dB, Medium 39.8) at the same step
#: (700, 600), batch 1 only at step 1000 (both sizes); a step of 2 costs less than one of 3 (real trainer steps, 128²
#: crops, interleaved runs on a 2-core Xeon: Small 0.115–0.14 s against 0.155–0.24, Medium 0.29–0.40 against
#: 0.42–0.50), so 2 gets there first: 1.35–1.69× sooner than 3 on Small (batch 1: 1.18–1.37×), 1.23–1.46× on Medium
#: (1.23–1.32×), and ends higher (Small 43.07 dB after 1800 steps against 38.96 after 1200 of 3; Medium 44.36 against
#: 39.22). Effects that take coarse stages keep the probe's batch (batch 1 was slower there: grade 1.2× against 1.55×
#: to the same level, markers 1.9× against 8.7×; batch 2 was not tried there).
FINE_EFFECT_CPU_BATCH = 2
#: Automatic batch size on a GPU: the share of free memory the batch may fill.
AUTO_GPU_MEMORY_SHARE = 0.8
#: The automatic batch size never exceeds this (nor the number of pairs).
AUTO_MAX_BATCH = 16


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


# --------------------------------------------------------------------------------------- the trainer
class Trainer:
    """Trains one CopyCat job. Build it with a :class:`TrainConfig`, then call :meth:`run`.

    Args:
        config: the job.
        listeners: called with every event, on the training thread (keep them quick; hand work to a
            queue for UI threads).
        stop: set it from any thread to stop within one step; the run then writes a checkpoint and
            ``model.cat`` and returns.
        context: the distributed run this process belongs to; by default read from the environment
            (torchrun's variables or Nuke's ``COPYCAT_*``), a single process otherwise.
    """

    def __init__(
        self,
        config: TrainConfig,
        listeners: Iterable[Listener] = (),
        stop: Optional[threading.Event] = None,
        context: Optional[distributed.DistributedContext] = None,
    ) -> None:
        self.config = replace(config).validate()
        self.listeners = list(listeners)
        self.stop_event = stop or threading.Event()
        self.out_dir = Path(config.out) if config.out else Path()
        #: this process's place in a torchrun / COPYCAT_* distributed run (rank 0 of 1 when alone)
        self.dist = context or distributed.context_from_environment()
        #: the network being trained (set by :meth:`run`)
        self.model: Optional[nn.Module] = None

    def stop(self) -> None:
        """Ask the run to stop after the current step."""
        self.stop_event.set()

    def _emit(self, event: Event) -> None:
        if not self.dist.is_main:
            return
        for listener in self.listeners:
            listener(event)

    # ---------------------------------------------------------------------------- prepare
    def _prepare_out_dir(self) -> None:
        if not self.config.out:
            raise ConfigError("training needs an output directory (--out DIR / dataDirectory)")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "checkpoints").mkdir(exist_ok=True)
            (self.out_dir / "contact_sheets").mkdir(exist_ok=True)
            probe = self.out_dir / ".copycat-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise TrainingError(
                f"cannot write to the output directory {self.out_dir}: {error.strerror or error}; "
                "choose a directory you can write to"
            ) from None

    def _build_network(self, data: TrainingData) -> tuple[nn.Module, dict[str, Any], Optional[catfile.CatFile]]:
        """The network to train: fresh, or from initial weights (a .cat model or checkpoint)."""
        cfg = self.config
        arguments = msrn_arguments(
            cfg.model_size,
            len(data.channels_in),
            len(data.channels_out),
            lstm=cfg.lstm,
            scale=data.scale,
            temporal=cfg.temporal,
        )
        initial: Optional[catfile.CatFile] = None
        source = pretrained.resolve_initial_weights(cfg.initial_weights)
        if source is not None:
            initial = catfile.load_cat(source)
            arguments = self._check_compatible(initial, arguments, source)
        torch.manual_seed(cfg.seed)
        model = build_model("msrn", arguments)
        if initial is not None:
            model.load_state_dict(initial.weights)
        return model, arguments, initial

    @staticmethod
    def _check_compatible(cat: catfile.CatFile, wanted: dict[str, Any], source: Union[str, Path]) -> dict[str, Any]:
        """Initial weights decide the network's size; its channel counts must fit the job's."""
        manifest = cat.manifest
        if manifest.architecture != "msrn":
            raise CatFileError(
                f"{source} holds a {manifest.architecture!r} network; CopyCat trains 'msrn' networks: "
                "choose another file or set initial weights to None"
            )
        have = manifest.arguments
        for key, what in (("in_channels", "Input"), ("out_channels", "Ground Truth")):
            if have.get(key) != wanted[key]:
                raise CatFileError(
                    f"{source} was trained for {have.get(key)} {what} channel(s) but this job has "
                    f"{wanted[key]}: match channels_in/channels_out to the file, or start without initial weights"
                )
        have_scale, want_scale = have.get("scale", 1), wanted.get("scale", 1)
        if have_scale != want_scale:
            job = "the same size" if want_scale == 1 else f"{want_scale}× its Input"
            raise CatFileError(
                f"{source} is a ×{have_scale} network but this job's Ground Truth is {job}: "
                f"for a ×{have_scale} network give Ground Truth frames {have_scale}× the Input's size, "
                "or start without initial weights"
            )
        have_temporal, want_temporal = have.get("temporal", 0), wanted.get("temporal", 0)
        if have_temporal != want_temporal:
            raise CatFileError(
                f"{source} sees {have_temporal} neighbouring frame(s) on each side but this job asks for "
                f"temporal {want_temporal}: set temporal to {have_temporal}, or start without initial weights"
            )
        return dict(have)

    # ------------------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        """Train to the end (or until stopped) and return what was written. Blocks."""
        cfg = self.config
        clock = time.perf_counter()
        main = self.dist.is_main
        if main:
            self._prepare_out_dir()
        working = transfer.Transfer()
        data = load_pairs(cfg, working)
        pair_count = len(data.pairs)
        if cfg.batch_size is not None and cfg.batch_size > pair_count:
            raise TrainingError(
                f"batch size {cfg.batch_size} is larger than the {pair_count} training pair(s): "
                f"lower the batch size to {pair_count} or less (or auto), or add more Input/Ground Truth frames"
            )
        runtime = resolve_runtime(cfg.device, cfg.precision)
        runtime = replace(runtime, device=distributed.local_device(self.dist, runtime.device))
        model, arguments, initial = self._build_network(data)
        from_initial_weights = initial is not None
        del initial  # not held for the whole run
        runtime.place_model(model)
        self.model = model
        checkpoint = self._checkpoint_to_resume() if cfg.resume else None
        distributed.start(self.dist, runtime.device)
        context: Optional[_RunContext] = None
        try:
            batch_size, batch_choice = self._batch_size(model, runtime, data, checkpoint)
            total_steps = self._total_steps(pair_count, batch_size)
            sampler = PatchSampler(
                data.pairs,
                crop_size=cfg.crop_size,
                batch_size=batch_size,
                difference_share=cfg.difference_share,
                seed=cfg.seed,
                rank=self.dist.rank,
                scale=data.scale,
            )
            stages, stage_crops, resolutions, fine = self.plan_resolutions(
                data, working, sampler.crop_size, total_steps, runtime.device
            )
            cpu_auto = batch_choice.startswith("auto: ") and runtime.device.type == "cpu"
            if fine and cpu_auto and batch_size > FINE_EFFECT_CPU_BATCH:
                # No coarse stage can speed this effect up; on a CPU more, smaller updates do (FINE_EFFECT_CPU_BATCH)
                batch_choice = (
                    f"auto: {FINE_EFFECT_CPU_BATCH} per step: the effect is finer than the coarse stages, and on a "
                    f"CPU such an effect learns faster from more updates of fewer patches (the probe alone "
                    f"would take {batch_size}: {batch_choice[len('auto: ') :]})"
                )
                batch_size = sampler.batch_size = FINE_EFFECT_CPU_BATCH
                total_steps = self._total_steps(pair_count, batch_size)
            level_weights, weights_choice = self._level_weights(  # patches per step: every rank's
                fine, int(arguments["width"]), batch_size * self.dist.world_size, from_initial_weights, checkpoint
            )
            # config.yaml repeats the job as asked: auto stays auto (a --model-size large repeat must not
            # inherit Medium's weights), unless a resumed run kept its checkpoint's weights
            repeat_weights = level_weights if weights_choice.startswith("kept") else cfg.level_weights
            optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
            guard = GradientGuard(self._gradient_clip(checkpoint))
            log = LossLog(self.out_dir / "loss.csv")
            start_step = 0
            if checkpoint is not None:
                start_step = self._resume(checkpoint.path, model, optimizer, sampler, arguments, guard)
            distributed.broadcast_parameters(self.dist, model)
            if main:
                if cfg.resume:
                    log.truncate(start_step)
                else:
                    log.reset()
                # batch as chosen; a resumed run's guard as its checkpoint had it
                repeat = replace(cfg, batch_size=batch_size, level_weights=repeat_weights, gradient_clip=guard.factor)
                save_yaml(repeat, self.out_dir / "config.yaml")
            context = _RunContext(
                model=model,
                forward=distributed.wrap(self.dist, _Levels(model), runtime.device),
                arguments=arguments,
                optimizer=optimizer,
                sampler=sampler,
                runtime=runtime,
                data=data,
                working=working,
                total_steps=total_steps,
                batch_size=batch_size,
                log=log,
                batch_choice=batch_choice,
                level_weights=level_weights,
                weights_choice=weights_choice,
                guard=guard,
                stages=stages,
                stage_crops=stage_crops,
                resolutions=resolutions,
            )
            self._emit(
                Started(
                    total_steps=total_steps,
                    start_step=start_step,
                    pairs=pair_count,
                    batch_size=batch_size,
                    crop_size=sampler.crop_size,
                    device=runtime.describe(),
                    precision=runtime.precision,
                    out_dir=self.out_dir,
                    batch_choice=batch_choice,
                    resolutions=resolutions,
                    level_weights=f"{level_weights} ({weights_choice})",
                )
            )
            return self._train(context, start_step, clock)
        finally:
            # Free DDP's reducer while the process group still exists: freed after the group is destroyed,
            # its destructor joins gloo's worker thread while holding the GIL the worker needs (a deadlock
            # seen at exit of a finished rank with torch 2.13).
            context = None
            distributed.stop(self.dist)

    def _batch_size(
        self, model: nn.Module, runtime: Runtime, data: TrainingData, checkpoint: Optional[_Resuming]
    ) -> tuple[int, str]:
        """The batch size and how it was decided: as set; as the resumed run had it; or automatic
        (:func:`auto_batch_size`, the smallest choice of all ranks)."""
        cfg = self.config
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
        agreed = distributed.min_over_ranks(self.dist, batch, runtime.device)
        if agreed < 1:
            reason = f"{type(failure).__name__}: {failure}" if failure else "it failed on another rank"
            raise TrainingError(
                f"choosing the batch size automatically failed ({reason}); set a batch size instead (--batch-size N)"
            ) from failure
        return agreed, f"auto: {how}" + (f"; {agreed} agreed over the ranks" if agreed != batch else "")

    def _total_steps(self, pairs: int, batch_size: int) -> int:
        cfg = self.config
        if cfg.steps is not None:
            return cfg.steps
        return steps_for_epochs(cfg.epochs or DEFAULT_EPOCHS, pairs, batch_size)

    def _train(self, run: _RunContext, start_step: int, clock: float) -> TrainResult:
        cfg = self.config
        runtime = run.runtime
        run.model.train()
        losses: list[float] = []
        step = start_step
        loop_start = time.perf_counter()
        stopped = False
        while step < run.total_steps:
            if distributed.any_rank_stopping(self.dist, self.stop_event.is_set(), runtime.device):
                stopped = True
                break
            lr = learning_rate(step, run.total_steps, cfg.learning_rate)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            factor = resolution_factor(step, run.total_steps, run.stages)
            if factor != run.factor:
                self._change_resolution(run, factor)
            inputs, targets = run.sampler.next_batch()
            inputs = runtime.place(inputs)
            targets = runtime.place(targets)
            with runtime.autocast():
                outputs = run.forward(inputs)
            loss = multiscale_loss(outputs, targets, cfg.loss, run.level_weights)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at step {step + 1}: check the frames for extreme values, "
                    "or lower the learning rate"
                )
            run.optimizer.zero_grad(set_to_none=True)
            with distributed.collective(self.dist):  # DDP all-reduces the gradients inside backward()
                loss.backward()
            norm = run.guard(run.model.parameters())  # a spike clipped to a multiple of the recent norms
            if not math.isfinite(norm):
                raise TrainingError(
                    f"the gradients became {norm} at step {step + 1}: check the frames for extreme values, or "
                    "lower the learning rate (or train with precision fp32)"
                )
            run.optimizer.step()
            step += 1
            if self.dist.sync_interval > 1 and step % self.dist.sync_interval == 0:
                distributed.average_parameters(self.dist, run.model)
            value = distributed.mean_over_ranks(self.dist, float(loss.item()), runtime.device)
            losses.append(value)
            if self.dist.is_main:
                run.log.append(step, value, lr, time.perf_counter() - clock)
            self._check_divergence(run, losses, step)  # every rank sees the same mean loss, so all stop together
            if not self.dist.is_main:
                continue
            elapsed = time.perf_counter() - loop_start
            rate = (step - start_step) / elapsed if elapsed > 0 else 0.0
            self._emit(
                StepDone(
                    step=step,
                    total_steps=run.total_steps,
                    loss=value,
                    learning_rate=lr,
                    patches_per_second=rate * run.batch_size * self.dist.world_size,
                    elapsed_seconds=elapsed,
                    eta_seconds=(run.total_steps - step) / rate if rate > 0 else math.inf,
                )
            )
            if step % cfg.image_interval == 0:
                self._write_contact_sheet(run, step)
            if step % cfg.checkpoint_interval == 0 and step < run.total_steps:
                self._write_checkpoint(run, step, value, clock)
        if self.dist.sync_interval > 1:
            distributed.average_parameters(self.dist, run.model)  # every rank ends with the same weights
        final_loss = losses[-1] if losses else run.log.last_loss()
        model_path = self.out_dir / "model.cat"
        if self.dist.is_main:
            self._write_checkpoint(run, step, final_loss, clock)
            if step % cfg.image_interval != 0:
                self._write_contact_sheet(run, step)
            model_path = self._write_model(run, step, final_loss, clock)
            run.log.flush()
            self._write_loss_plot(run.log)
        distributed.finish_together(self.dist)
        seconds = time.perf_counter() - clock
        self._emit(
            Finished(
                step=step,
                total_steps=run.total_steps,
                stopped=stopped,
                model_path=model_path,
                final_loss=final_loss,
                seconds=seconds,
            )
        )
        return TrainResult(
            model_path=model_path,
            out_dir=self.out_dir,
            steps=step,
            total_steps=run.total_steps,
            stopped=stopped,
            final_loss=final_loss,
            seconds=seconds,
            losses=losses,
        )

    def _check_divergence(self, run: _RunContext, losses: Sequence[float], step: int) -> None:
        """Stop a run whose loss has blown up (:data:`DIVERGENCE_FACTOR`): it will not come back, and
        finishing it would only spend the machine's time on a useless network. The loss is compared with
        the lowest median the run has had over :data:`DIVERGENCE_WINDOW` steps (a reference that does not
        rise with the blow-up); a resumed run starts measuring again."""
        streak, window = DIVERGENCE_STEPS, DIVERGENCE_WINDOW
        if len(losses) < window + streak:
            return
        run.lowest_loss_median = min(run.lowest_loss_median, float(np.median(losses[-window - streak : -streak])))
        if min(losses[-streak:]) <= DIVERGENCE_FACTOR * run.lowest_loss_median:
            return
        guard = (
            f"a stronger gradient guard (gradient_clip {run.guard.factor:g} now)"
            if run.guard.factor
            else "the gradient guard on (--gradient-clip 10, or gradient_clip: 10 in the job's YAML)"
        )
        if self.dist.is_main:
            run.log.flush()  # the blow-up stays in loss.csv to look at
        raise TrainingError(
            f"training diverged at step {step}: for {streak} steps the loss has stayed over "
            f"{DIVERGENCE_FACTOR:g}× the lowest median it had over {window} steps ({run.lowest_loss_median:.3g}; "
            f"now {losses[-1]:.3g}), so the network has lost what it learnt. Start the job again with {guard}, "
            f"or with a lower learning rate (not --resume: the latest checkpoint may hold the blown-up network); "
            f"checkpoints written before step {step - streak} in {self.out_dir / 'checkpoints'} hold it from before"
        )

    def plan_resolutions(
        self, data: TrainingData, working: transfer.Transfer, crop_size: int, total_steps: int, device: torch.device
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
        if not self.config.multi_resolution:
            return (), False, "off", False
        local = local_share(data.pairs, working)
        crops = distributed.min_over_ranks(self.dist, int(local is not None and local >= LOCAL_SHARE), device) == 1
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
            if distributed.min_over_ranks(self.dist, int(runs), device) < 1 and runs:
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
        fine = distributed.min_over_ranks(self.dist, int(not running and too_fine > 0 and not unchecked), device) == 1
        return tuple(running), crops, "; ".join(said) + ending, fine

    def _change_resolution(self, run: _RunContext, factor: int) -> None:
        """Sample from the pairs downscaled ÷``factor`` (a local effect: crops ÷``factor`` the size from the
        full-resolution pairs) from now on, continuing the same random stream (so a resumed run takes
        exactly the batches the uninterrupted one did)."""
        sampler = run.stage_samplers.get(factor)
        if sampler is None:
            pairs = list(run.data.pairs) if run.stage_crops else downscale_pairs(run.data.pairs, factor, run.working)
            crop = max(MULTI_RESOLUTION_MIN_SIDE, run.stage_samplers[1].crop_size // factor // 16 * 16)
            sampler = PatchSampler(  # the plan checked that the crop fits; it is a multiple of 16
                pairs,
                crop_size=crop,
                batch_size=run.batch_size,
                difference_share=self.config.difference_share,
                seed=self.config.seed,
                rank=self.dist.rank,
                scale=run.data.scale,
            )
            run.stage_samplers[factor] = sampler
        if sampler is not run.sampler:
            sampler.load_state_dict(run.sampler.state_dict())
        run.sampler = sampler
        run.factor = factor
        if factor == 1:  # the coarse stages are over: free their downscaled pairs
            run.stage_samplers = {1: sampler}

    # ------------------------------------------------------------------------- writing
    def _manifest(self, run: _RunContext, step: int, final_loss: float, clock: float, kind: str) -> catfile.Manifest:
        cfg = self.config
        return catfile.Manifest(
            architecture="msrn",
            arguments=run.arguments,
            channels_in=run.data.channels_in,
            channels_out=run.data.channels_out,
            transfer=run.working.to_dict(),
            scale=int(run.arguments.get("scale", 1)),
            kind=kind,
            training={
                "steps": step,
                "total_steps": run.total_steps,
                "final_loss": final_loss,
                "seconds": round(time.perf_counter() - clock, 3),
                "device": run.runtime.describe(),
                "precision": run.runtime.precision,
                "batch_size": run.batch_size,
                "batch_size_choice": run.batch_choice,
                "level_weights_choice": run.weights_choice,
                "gradient_clipped_steps": run.guard.clipped,
                "multi_resolution": run.resolutions,
                "crop_size": run.stage_samplers[1].crop_size,
                "source_frames": imageio.format_frame_list(run.data.frames),
                "input": cfg.input,
                "target": cfg.target,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "copycat_version": __version__,
                "torch_version": str(torch.__version__),
                "hardware": describe_hardware(run.runtime.device),
            },
            config=to_dict(  # as chosen
                replace(cfg, batch_size=run.batch_size, level_weights=run.level_weights, gradient_clip=run.guard.factor)
            ),
        )

    def _weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        # contiguous fp32 CPU copies: channels_last tensors are strided views safetensors cannot store
        return {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}

    def _write_checkpoint(self, run: _RunContext, step: int, loss: float, clock: float) -> Path:
        path = self.out_dir / "checkpoints" / f"checkpoint.{step:07d}.cat"
        resume = catfile.ResumeState(
            step=step,
            optimizer=run.optimizer.state_dict(),
            scheduler={"kind": "cosine", "base_lr": self.config.learning_rate, "step": step},
            rng={"sampler": run.sampler.state_dict(), "torch": torch.get_rng_state()},
            extra={"loss": loss, "gradient_guard": run.guard.state_dict()},
        )
        catfile.save_cat(path, self._manifest(run, step, loss, clock, "checkpoint"), self._weights(run.model), resume)
        for old in sorted(self.out_dir.glob("checkpoints/checkpoint.*.cat"))[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)
        self._emit(CheckpointWritten(step=step, path=path))
        return path

    def _write_model(self, run: _RunContext, step: int, loss: float, clock: float) -> Path:
        path = self.out_dir / "model.cat"
        catfile.save_cat(path, self._manifest(run, step, loss, clock, "model"), self._weights(run.model))
        return path

    def _write_contact_sheet(self, run: _RunContext, step: int) -> Path:
        rows = []
        titles = []
        model = run.model
        model.eval()
        with torch.no_grad():
            for pair in preview_pairs(run.data.pairs, run.data.scale):
                inputs = run.runtime.place(torch.from_numpy(pair.input.transpose(2, 0, 1)[None].copy()))
                with run.runtime.autocast():
                    prediction = model(inputs)
                predicted = prediction.float()[0].permute(1, 2, 0).cpu().numpy()
                shown_input = pair.centre.repeat(run.data.scale, axis=0).repeat(run.data.scale, axis=1)
                rows.append(
                    [
                        transfer.to_display(run.working.from_working(shown_input)),
                        transfer.to_display(run.working.from_working(predicted)),
                        transfer.to_display(run.working.from_working(pair.target)),
                        plots.difference_image(predicted, pair.target),
                    ]
                )
                titles.append(pair.label)
        model.train()
        path = self.out_dir / "contact_sheets" / f"contact_sheet.{step:07d}.png"
        plots.save_contact_sheet(path, rows, row_titles=titles)
        write_text_atomic(self.out_dir / "contact_sheets" / "latest.txt", path.name + "\n")
        self._emit(ContactSheetWritten(step=step, path=path))
        return path

    def _write_loss_plot(self, log: LossLog) -> Optional[Path]:
        steps, losses = log.read()
        if not steps:
            return None
        return plots.save_loss_curve(self.out_dir / "loss.png", steps, losses)

    # --------------------------------------------------------------------------- resume
    def _checkpoint_to_resume(self) -> _Resuming:
        checkpoint_path = latest_checkpoint(self.out_dir)
        if checkpoint_path is None:
            raise TrainingError(
                f"nothing to resume in {self.out_dir}: no checkpoints/checkpoint.*.cat; start a new run instead"
            )
        return _Resuming(checkpoint_path, catfile.read_manifest(checkpoint_path))

    def _level_weights(
        self, fine: bool, width: int, batch_size: int, initial_weights: bool, checkpoint: Optional[_Resuming]
    ) -> tuple[str, str]:
        """The loss's level weights (:data:`LEVEL_WEIGHTS`) and why: as set; for auto, a fine effect trained
        from scratch takes :func:`fine_level_weights` (initial weights, such as the shipped networks, were
        trained with equal ones: unmeasured), any other job equal; and a resumed run goes on with the loss it
        started with, the checkpoint's (one written before the setting existed trained with equal weights),
        with a warning where the job now says otherwise (Nuke's CopyCat node has no knob for them, an old
        config.yaml no key)."""
        cfg = self.config
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
        if self.dist.is_main:  # once, not once per rank
            warnings.warn(
                f"resuming with level_weights {saved}, as {checkpoint.path.name} was trained, not {chosen} "
                f"({why}): a run keeps its loss (start a new run to change it)",
                stacklevel=3,
            )
        return saved, f"kept from {checkpoint.path.name}"

    def _gradient_clip(self, checkpoint: Optional[_Resuming]) -> float:
        """The gradient guard's factor: as set, or for a resumed run its checkpoint's (0, off, for one written
        before the guard existed), with a warning where the job now says otherwise, as for the level weights."""
        wanted = self.config.gradient_clip
        if checkpoint is None:
            return wanted
        saved = checkpoint.manifest.config.get("gradient_clip", 0.0)
        if not is_gradient_clip(saved):
            raise CatFileError(
                f"{checkpoint.path} was trained with gradient_clip {saved!r}, which is not 0 or a factor of at "
                "least 1: resume it with the copycat_nuke that wrote it, or start a new run"
            )
        saved = float(saved)
        if saved != wanted and self.dist.is_main:  # once, not once per rank
            warnings.warn(
                f"resuming with gradient_clip {saved:g}, as {checkpoint.path.name} was trained, not {wanted:g}: a run "
                "keeps its gradient guard (start a new run to change it)",
                stacklevel=3,
            )
        return saved

    def _resume(
        self,
        checkpoint_path: Path,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        sampler: PatchSampler,
        arguments: dict[str, Any],
        guard: GradientGuard,
    ) -> int:
        cat = catfile.load_cat(checkpoint_path)
        if cat.resume is None:
            raise CatFileError(f"{checkpoint_path} has no resume state (it is a model, not a checkpoint)")
        saved = (
            catfile.complete_arguments("msrn", cat.manifest.arguments) if cat.manifest.architecture == "msrn" else {}
        )
        if cat.manifest.architecture != "msrn" or saved != catfile.complete_arguments("msrn", arguments):
            raise CatFileError(
                f"{checkpoint_path} is a different network ({cat.manifest.arguments}) from this job's "
                f"({arguments}): resume with the settings it was trained with, or start a new run"
            )
        model.load_state_dict(cat.weights)
        optimizer.load_state_dict(cat.resume.optimizer)
        sampler.load_state_dict(cat.resume.rng["sampler"])
        if isinstance(cat.resume.rng.get("torch"), torch.Tensor):
            torch.set_rng_state(cat.resume.rng["torch"])
        guard_state = cat.resume.extra.get("gradient_guard")  # absent from checkpoints before the guard
        if guard_state is not None:
            try:
                if not isinstance(guard_state, dict):
                    raise ValueError(f"gradient guard state: expected a mapping, found {type(guard_state).__name__}")
                guard.load_state_dict(guard_state)
            except ValueError as error:
                raise CatFileError(f"{checkpoint_path}: {error}; start a new run") from error
        return cat.resume.step


class _Resuming(NamedTuple):
    """The checkpoint a resumed run goes on from, and its manifest (read once, for the choices it keeps)."""

    path: Path
    manifest: catfile.Manifest


@dataclass
class _RunContext:
    """Everything the loop and the writers share during one run."""

    model: nn.Module
    forward: nn.Module  #: model → its pyramid of predictions, wrapped in DistributedDataParallel when distributed
    arguments: dict[str, Any]
    optimizer: torch.optim.Optimizer
    sampler: PatchSampler
    runtime: Runtime
    data: TrainingData
    working: transfer.Transfer
    total_steps: int
    batch_size: int
    log: LossLog
    batch_choice: str = "set"
    level_weights: str = "equal"  #: the loss's level weights (LEVEL_WEIGHTS), the config's as chosen
    weights_choice: str = "set"  #: how they were chosen
    guard: GradientGuard = field(default_factory=lambda: GradientGuard(0.0))  #: gradient spikes clipped (config)
    stages: tuple[int, ...] = ()  #: the multi-resolution stages this run takes (factors), from the plan
    stage_crops: bool = False  #: the stages take small full-resolution crops (a local effect), not downscaled frames
    resolutions: str = "off"  #: the plan in words
    factor: int = 1  #: the resolution the sampler draws from: 1 full, 2 half, 4 quarter
    stage_samplers: dict[int, PatchSampler] = field(default_factory=dict)  #: by factor; 1 is the full one
    lowest_loss_median: float = math.inf  #: the divergence check's reference (Trainer._check_divergence)

    def __post_init__(self) -> None:
        self.stage_samplers.setdefault(1, self.sampler)


class _Levels(nn.Module):
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


def preview_pairs(pairs: Sequence[Pair], scale: int = 1) -> list[Pair]:
    """Up to ``PREVIEW_PAIRS`` pairs, each cropped to at most ``PREVIEW_SIZE`` Input pixels around where
    Input and Ground Truth differ most (the centre where they do not differ, or for an upscaler with
    Ground Truth ``scale`` × the Input, where the Input has most detail), at multiples of 16."""
    chosen = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, min(PREVIEW_PAIRS, len(pairs)))]
    previews = []
    for pair in chosen:
        height, width = pair.input.shape[:2]
        size_y = max(16, min(PREVIEW_SIZE, height) // 16 * 16) if height >= 16 else height
        size_x = max(16, min(PREVIEW_SIZE, width) // 16 * 16) if width >= 16 else width
        if scale > 1:
            difference = np.abs(np.diff(pair.centre, axis=0, prepend=pair.centre[:1])).mean(axis=2)
        elif pair.centre.shape[2] == pair.target.shape[2]:
            difference = np.abs(pair.centre - pair.target).mean(axis=2)
        else:
            difference = np.zeros((height, width), np.float32)
        if difference.max() > 0:
            cy, cx = np.unravel_index(int(np.argmax(_box_blur(difference, 15))), difference.shape)
        else:
            cy, cx = height // 2, width // 2
        top = int(np.clip(cy - size_y // 2, 0, height - size_y))
        left = int(np.clip(cx - size_x // 2, 0, width - size_x))
        window = (slice(top, top + size_y), slice(left, left + size_x))
        target_window = (slice(top * scale, (top + size_y) * scale), slice(left * scale, (left + size_x) * scale))
        previews.append(
            Pair(
                input=np.ascontiguousarray(pair.input[window]),
                target=np.ascontiguousarray(pair.target[target_window]),
                label=pair.label,
                frames=pair.frames,
            )
        )
    return previews


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """A separable box blur by cumulative sums: finds the densest area of change, not a lone pixel."""
    out = image.astype(np.float64)
    for axis in (0, 1):
        padded = np.concatenate([np.zeros_like(out.take([0], axis=axis)), out], axis=axis).cumsum(axis=axis)
        n = out.shape[axis]
        hi = np.minimum(np.arange(n) + radius + 1, n)
        lo = np.maximum(np.arange(n) - radius, 0)
        out = padded.take(hi, axis=axis) - padded.take(lo, axis=axis)
    return out


def latest_checkpoint(out_dir: Union[str, Path]) -> Optional[Path]:
    """The checkpoint with the highest step in ``out_dir/checkpoints``, or None."""
    found = []
    for path in Path(out_dir).glob("checkpoints/checkpoint.*.cat"):
        match = re.fullmatch(r"checkpoint\.(\d+)\.cat", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


class LossLog:
    """``loss.csv``: one row per step (step, loss, learning_rate, seconds), buffered, flushed at checkpoints.

    Rows past a resumed checkpoint's step are dropped, so a resumed run's log reads as one run.
    """

    HEADER = ("step", "loss", "learning_rate", "seconds")

    def __init__(self, path: Path, flush_every: int = 50) -> None:
        self.path = path
        self.flush_every = flush_every
        self._pending: list[tuple[int, float, float, float]] = []

    def reset(self) -> None:
        write_text_atomic(self.path, ",".join(self.HEADER) + "\n")

    def truncate(self, step: int) -> None:
        rows = [row for row in self._rows() if int(row[0]) <= step]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.HEADER)
        writer.writerows(rows)
        write_text_atomic(self.path, buffer.getvalue())

    def append(self, step: int, loss: float, lr: float, seconds: float) -> None:
        self._pending.append((step, loss, lr, seconds))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        with self.path.open("a", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerows((s, f"{loss:.8g}", f"{lr:.6g}", f"{sec:.3f}") for s, loss, lr, sec in self._pending)
        self._pending.clear()

    def _rows(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream))
        return [row for row in rows[1:] if len(row) == len(self.HEADER)]

    def read(self) -> tuple[list[int], list[float]]:
        """Steps and losses logged so far (including unflushed rows)."""
        self.flush()
        rows = self._rows()
        return [int(row[0]) for row in rows], [float(row[1]) for row in rows]

    def last_loss(self) -> float:
        _, losses = self.read()
        return losses[-1] if losses else math.nan


# ------------------------------------------------------------------------------------- public API
def train_model(
    config: Optional[TrainConfig] = None, *, listeners: Iterable[Listener] = (), **settings: Any
) -> TrainResult:
    """Train a CopyCat job and block until it ends.

    Give a :class:`TrainConfig`, or its fields as keywords (``input=``, ``target=``, ``out=``,
    ``steps=``…), or both (keywords override). Returns a :class:`TrainResult` with ``model_path``.

    Example (Nuke Script Editor or a shell)::

        import copycat_nuke
        result = copycat_nuke.train_model(input="plate.####.exr", target="clean.####.exr", out="/tmp/run", steps=2000)
    """
    return Trainer(_config(config, settings), listeners).run()


def _config(config: Optional[TrainConfig], settings: dict[str, Any]) -> TrainConfig:
    try:
        merged = replace(config or TrainConfig(), **settings)
    except TypeError as error:
        raise ConfigError(f"unknown training setting: {error}") from None
    return merged.validate()


class TrainingJob:
    """A training run on a background thread: :meth:`stop` it, :meth:`wait` for it, read its events.

    Events are also kept in :attr:`events` (a thread-safe queue) for UIs that poll.
    """

    def __init__(self, config: TrainConfig, listeners: Iterable[Listener] = ()) -> None:
        import queue

        self.events: queue.Queue[Event] = queue.Queue()
        self._listeners = [*listeners, self.events.put]
        self._trainer = Trainer(config, self._listeners)
        self.result: Optional[TrainResult] = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="copycat-train", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._trainer.run()
        except BaseException as error:  # handed to the caller by wait()
            self.error = error

    def stop(self) -> None:
        """Stop after the current step; a checkpoint and model.cat are still written."""
        self._trainer.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> Optional[TrainResult]:
        """Block until the run ends (or ``timeout`` seconds); re-raise its error if it failed."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result


def train_in_background(
    config: Optional[TrainConfig] = None, *, listeners: Iterable[Listener] = (), **settings: Any
) -> TrainingJob:
    """Start training on a background thread and return its :class:`TrainingJob` handle at once."""
    return TrainingJob(_config(config, settings), listeners)


__all__ = [
    "CheckpointWritten",
    "ContactSheetWritten",
    "CopyCatError",
    "Event",
    "Finished",
    "Listener",
    "Started",
    "StepDone",
    "TrainResult",
    "Trainer",
    "TrainingJob",
    "aligned_region",
    "latest_checkpoint",
    "load_pairs",
    "train_in_background",
    "train_model",
]
