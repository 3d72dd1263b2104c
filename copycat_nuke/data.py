"""Frame pairs -> random training patches.

CopyCat over-fits one shot from a few Input/Ground Truth frame pairs. Each training step takes a batch of
square crops cut at random from those pairs, with the same random flip/rotation applied to a crop's Input
and its Ground Truth. Everything here works on float32 ``H×W×C`` numpy arrays already in the network's
working space; batches come out as float32 ``N×C×h×w`` tensors.

How crops are placed
--------------------
* A crop's pair is chosen uniformly among the pairs, so an epoch (``pairs`` crops) sees each pair once on
  average, as Nuke counts epochs.
* A share of crops (``difference_share``, default 0.5) is placed where the pair is *interesting*, so a small
  paint-out is not drowned by unchanged background; the rest are placed uniformly. What is interesting is
  decided once per pair, on a grid of ``CELL_SIZE``-pixel cells (a box blur that also keeps a one-pixel
  change visible):

  - Input and Ground Truth have the same number of channels: the cell mean of ``mean_c |input - target|``.
  - They differ (say rgb -> alpha, a roto job): the two images cannot be subtracted, so the cell mean of the
    target's gradient magnitude ``mean_c(|dx| + |dy|)`` is used instead: crops land on the matte's edges,
    where a roto network has to learn most, and they still see both sides of the edge.

  A cell is interesting when its score reaches ``max(DIFF_ABS_THRESHOLD, DIFF_REL_THRESHOLD × best cell)``.
  Interesting cells are equally likely (a paint-out matters everywhere, not only where it is brightest),
  so drawing one is O(1). The chosen point lands at a random place in the central half of the crop (never
  always dead centre) and the crop is then pushed inside the frame, which keeps the point in the crop.
  A pair with nothing interesting (identical Input and Ground Truth, a flat matte) falls back to uniform.

Determinism and resume
----------------------
All randomness comes from one ``numpy.random.Generator`` (PCG64) seeded by ``(seed, rank)``. Each batch
consumes exactly ``8 × batch_size`` doubles whatever the data, so the generator's position is a plain count
of draws. :meth:`PatchSampler.state_dict` stores that count beside numpy's own state; loading it on the
same rank restores the state exactly, and loading it on another rank (distributed training, where only
rank 0 writes checkpoints) rebuilds that rank's own stream at the same position with ``advance``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch

from copycat_nuke import imageio, transfer
from copycat_nuke.errors import (
    ChannelError,
    ConfigError,
    FrameMissingError,
    ResolutionMismatchError,
    SequenceError,
    TrainingError,
    TrainingInputError,
)

if TYPE_CHECKING:
    from copycat_nuke.config import TrainConfig

__all__ = [
    "CELL_SIZE",
    "DIFF_ABS_THRESHOLD",
    "DIFF_REL_THRESHOLD",
    "MIN_FRAME_SIZE",
    "SIZE_MULTIPLE",
    "NeighbourFrames",
    "Pair",
    "PatchSampler",
    "TrainingData",
    "aligned_region",
    "epochs_for_steps",
    "infer_scale",
    "load_pairs",
    "max_batch_size",
    "stack_frames",
    "steps_for_epochs",
    "temporal_offsets",
    "validate_pairs",
]

MIN_FRAME_SIZE = 16
"""Frames smaller than this (either side, pixels) cannot be trained on."""
SIZE_MULTIPLE = 16
"""Crop sides are multiples of this: the network downsamples twice and has three levels."""
CELL_SIZE = 8
"""Side in pixels of the grid cells on which interesting areas are found."""
DIFF_ABS_THRESHOLD = 1e-3
"""A cell whose mean difference is below this counts as unchanged (rounding noise, not a paint-out)."""
DIFF_REL_THRESHOLD = 0.1
"""A cell is interesting when its score reaches this fraction of the pair's best cell."""

_DRAWS_PER_CROP = 8  # pair, placement kind, cell, y and x in cell, y and x in crop, flip/rotation
_STATE_FORMAT = 1


@dataclass(frozen=True, eq=False)
class Pair:
    """One training example: an Input frame and its Ground Truth, in the network's working space.

    ``input`` is ``H×W×Cin`` and ``target`` ``H×W×Cout`` (same ``H×W``; ``H×W`` arrays count as one
    channel). ``label`` names the pair in messages, e.g. ``"frame 1001"`` or the file names.

    A temporal pair (``frames`` > 1) holds its frame and its neighbours in ``input``, stacked along the
    channels as :func:`stack_frames` does (the frame itself first): ``Cin`` = ``frames`` × the frame's own.
    """

    input: np.ndarray
    target: np.ndarray
    label: str = ""
    frames: int = 1

    @property
    def centre(self) -> np.ndarray:
        """The Input frame itself (without a temporal pair's neighbours)."""
        if self.frames == 1:
            return self.input
        return self.input[:, :, : self.input.shape[2] // self.frames]


def temporal_offsets(temporal: int) -> list[int]:
    """Frame offsets of a temporal network's neighbours, in the order they are stacked: −N…−1, +1…+N."""
    return [*range(-temporal, 0), *range(1, temporal + 1)]


def stack_frames(frame: np.ndarray, neighbours: Sequence[np.ndarray]) -> np.ndarray:
    """One H×W×(C·(1+len(neighbours))) array: ``frame`` first, then its neighbours in
    :func:`temporal_offsets` order. What a temporal network takes, in training and in inference."""
    if not neighbours:
        return frame
    return np.ascontiguousarray(np.concatenate([frame, *neighbours], axis=2))


def _pair_name(index: int, label: str) -> str:
    return f"pair {index + 1} ({label})" if label else f"pair {index + 1}"


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}×{shape[0]}"  # width×height, as Nuke writes formats


def _as_hwc(array: Any, name: str, role: str) -> np.ndarray:
    """``array`` as a float32 C-contiguous ``H×W×C`` array (no copy when it already is one)."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    if arr.ndim != 3 or arr.shape[2] == 0:
        raise TrainingError(
            f"{name}: the {role} has shape {arr.shape}; expected an H×W×C image (height, width, channels)."
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def _count_non_finite(arr: np.ndarray) -> int:
    # A float64 sum of float32 values cannot overflow, so it is finite exactly when every value is:
    # a cheap test first, the full count only for the error message.
    if np.isfinite(arr.sum(dtype=np.float64)):
        return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def _check_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{what} must be a whole number of at least {minimum}, not {value!r}.")
    return int(value)


MAX_SCALE = 2
"""The largest Ground Truth / Input size ratio a job may have (an upscaler's factor; ×4 is ×2 twice)."""


def infer_scale(pairs: Sequence[Pair]) -> int:
    """The job's scale from its first pair: 1 when Input and Ground Truth are the same size, ``k`` when
    the Ground Truth is exactly twice the Input in both directions (an Upscale job).

    Raises:
        ResolutionMismatchError: any other sizes (naming the pair and both sizes).
    """
    if len(pairs) == 0:
        return 1
    pair = pairs[0]
    inp, tgt = np.shape(pair.input)[:2], np.shape(pair.target)[:2]
    for k in range(1, MAX_SCALE + 1):
        if tgt == (inp[0] * k, inp[1] * k):
            return k
    raise ResolutionMismatchError(
        f"{_pair_name(0, pair.label)}: the Input is {_size(inp)} but the Ground Truth is {_size(tgt)} pixels "
        "(width×height). Each Input and its Ground Truth must be the same size (or, to train an upscaler, "
        f"the Ground Truth exactly {MAX_SCALE} times the Input); reformat one of them."
    )


def validate_pairs(pairs: Sequence[Pair], *, crop_size: int = 256, batch_size: int = 4, scale: int = 1) -> list[Pair]:
    """Check the pairs and settings before any training starts; return the pairs ready for sampling.

    The returned pairs hold float32 C-contiguous ``H×W×C`` arrays (the originals when they already are).
    Pairs may differ in size from each other, but every pair needs the same Input and Ground Truth
    channel counts, and its Ground Truth must be ``scale`` times its Input (1: the same size).

    Raises:
        ConfigError: ``crop_size`` below 16 or ``batch_size`` below 1.
        TrainingError: no pairs, arrays that are not images, frames under 16 pixels, NaN/Inf values,
            channel counts that change between pairs.
        ResolutionMismatchError: an Input and its Ground Truth differ in size.
    """
    _check_int(crop_size, "The crop size", MIN_FRAME_SIZE)
    _check_int(batch_size, "The batch size", 1)
    _check_int(scale, "The scale", 1)
    if len(pairs) == 0:
        raise TrainingError(
            "CopyCat needs at least 1 Input/Ground Truth pair to train on, and got none. "
            "Add frames where you have both the Input and its Ground Truth."
        )
    checked: list[Pair] = []
    for index, pair in enumerate(pairs):
        name = _pair_name(index, pair.label)
        inp = _as_hwc(pair.input, name, "Input")
        tgt = _as_hwc(pair.target, name, "Ground Truth")
        if tgt.shape[:2] != (inp.shape[0] * scale, inp.shape[1] * scale):
            want = "the same size" if scale == 1 else f"exactly {scale} times the Input's size (an upscaler)"
            raise ResolutionMismatchError(
                f"{name}: the Input is {_size(inp.shape)} but the Ground Truth is {_size(tgt.shape)} pixels "
                f"(width×height). The Ground Truth must be {want}, as in the first pair; reformat one of them."
            )
        if min(inp.shape[:2]) < MIN_FRAME_SIZE:
            raise TrainingError(
                f"{name}: the frame is {_size(inp.shape)} pixels (width×height); CopyCat needs frames of "
                f"at least {MIN_FRAME_SIZE}×{MIN_FRAME_SIZE}. (Arrays must be H×W×C, height first.)"
            )
        for arr, role in ((inp, "Input"), (tgt, "Ground Truth")):
            bad = _count_non_finite(arr)
            if bad:
                raise TrainingError(
                    f"{name}: the {role} has {bad} NaN or infinite values; CopyCat cannot learn from them. "
                    "Clamp or fix those pixels upstream (e.g. an Expression or Clamp node)."
                )
        if checked:
            first = checked[0]
            for role, have, want in (
                ("Input", inp.shape[2], first.input.shape[2]),
                ("Ground Truth", tgt.shape[2], first.target.shape[2]),
            ):
                if have != want:
                    raise TrainingError(
                        f"{name}: the {role} has {have} channels but {_pair_name(0, first.label)} has "
                        f"{want}. Every pair must have the same channels."
                    )
        checked.append(Pair(inp, tgt, pair.label, pair.frames))
    return checked


def _fit_crop_size(requested: int, smallest_side: int) -> int:
    """The crop side used: ``requested`` clipped to ``smallest_side`` and rounded down to a multiple of 16."""
    side = min(requested, smallest_side)
    return max(SIZE_MULTIPLE, side - side % SIZE_MULTIPLE)


def max_batch_size(pairs: Sequence[Pair], crop_size: int = 256) -> int:
    """An advisory cap on the batch size: how many non-overlapping crops the pairs hold in all.

    A batch larger than the number of pairs is normal for patch training (several crops per frame), but
    beyond this cap crops of one batch must overlap heavily and add memory more than information. The
    sampler itself never enforces it; the trainer decides. ``crop_size`` is clipped like the sampler's.
    For two 1920×1080 pairs and 256-pixel crops it is 2 × 7 × 4 = 56.
    """
    if len(pairs) == 0:
        raise TrainingError("CopyCat needs at least 1 Input/Ground Truth pair to train on, and got none.")
    _check_int(crop_size, "The crop size", MIN_FRAME_SIZE)
    shapes = [np.shape(pair.input)[:2] for pair in pairs]
    side = _fit_crop_size(crop_size, max(MIN_FRAME_SIZE, min(min(s) for s in shapes)))
    return max(1, sum((h // side) * (w // side) for h, w in shapes))


def _cell_means(score: np.ndarray) -> np.ndarray:
    """Mean of an ``H×W`` map over 8×8 cells -> ``ceil(H/8)×ceil(W/8)`` (partial edge cells too)."""
    h, w = score.shape
    gh, gw = -(-h // CELL_SIZE), -(-w // CELL_SIZE)
    padded = np.zeros((gh * CELL_SIZE, gw * CELL_SIZE), np.float64)
    padded[:h, :w] = score
    sums = padded.reshape(gh, CELL_SIZE, gw, CELL_SIZE).sum(axis=(1, 3))
    rows = np.minimum(CELL_SIZE, h - CELL_SIZE * np.arange(gh))
    cols = np.minimum(CELL_SIZE, w - CELL_SIZE * np.arange(gw))
    return sums / np.outer(rows, cols)


def _channel_mean_abs(values: np.ndarray) -> np.ndarray:
    """``mean_c |values|`` of an ``H×W×C`` array -> ``H×W`` (overwrites ``values``; a matmul is ~10× faster
    than ``.mean(axis=2)`` over so short an axis)."""
    np.abs(values, out=values)
    return values @ np.full(values.shape[2], 1.0 / values.shape[2], np.float32)


def _gradient_score(image: np.ndarray) -> np.ndarray:
    """``mean_c(|dx| + |dy|)`` of an ``H×W×C`` image -> ``H×W``."""
    score = np.zeros(image.shape[:2], np.float32)
    score[1:, :] += _channel_mean_abs(np.diff(image, axis=0))
    score[:, 1:] += _channel_mean_abs(np.diff(image, axis=1))
    return score


def _interesting_cells(pair: Pair) -> Optional[np.ndarray]:
    """Flat indices (row-major on the Input's cell grid) of the pair's interesting cells; None if none.

    An upscaling pair (Ground Truth larger than the Input) scores the Input's own edges and texture:
    that is where an upscaler has detail to restore.
    """
    if pair.input.shape[:2] != pair.target.shape[:2]:
        score = _gradient_score(pair.centre)
    elif pair.centre.shape[2] == pair.target.shape[2]:
        score = _channel_mean_abs(pair.centre - pair.target)
    else:
        score = _gradient_score(pair.target)
    cells = _cell_means(score)
    threshold = max(DIFF_ABS_THRESHOLD, DIFF_REL_THRESHOLD * float(cells.max()))
    hot = np.flatnonzero(cells >= threshold)
    return hot if hot.size else None


def _pick(u: float, n: int) -> int:
    """A uniform integer in ``[0, n)`` from a uniform double ``u`` in ``[0, 1)``."""
    return min(int(u * n), n - 1)


def _dihedral(view: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/90° rotations of an ``h×w×C`` view (k in 0..7), still a view."""
    view = np.rot90(view, k % 4, axes=(0, 1))
    return view[:, ::-1] if k >= 4 else view


def _plain(value: Any) -> Any:
    """A copy of numpy's bit-generator state made of plain dicts, ints and strings (YAML-safe)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    raise TypeError(f"unexpected value in random state: {value!r}")


class PatchSampler:
    """Endless batches of random square crops from Input/Ground Truth pairs.

    Args:
        pairs: the training pairs (see :func:`validate_pairs`, which runs here).
        crop_size: side of the square crops in pixels (Nuke's ``cropSize``). Clipped to the smallest
            frame and rounded down to a multiple of 16, with a warning; the value used is ``crop_size``.
        batch_size: crops per batch (Nuke's ``batchSize``). May exceed the number of pairs.
        difference_share: share of crops, 0..1, placed where Input and Ground Truth differ (see the module
            docstring); the rest are uniform.
        augment: apply a random one of the 8 flips/90° rotations, the same to Input and Ground Truth.
        seed: the run's random seed. rank: this process's rank in distributed training (each rank draws
            its own crops).
        scale: Ground Truth size / Input size (2 for an upscaler). Crops are ``crop_size`` on the Input
            and ``scale × crop_size`` on the Ground Truth, over the same area.

    Attributes:
        crop_size: the Input crop side actually used. in_channels, out_channels: channel counts of a batch.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        crop_size: int = 256,
        batch_size: int = 4,
        difference_share: float = 0.5,
        augment: bool = True,
        seed: int = 0,
        rank: int = 0,
        scale: int = 1,
    ) -> None:
        if not (isinstance(difference_share, (int, float)) and 0.0 <= difference_share <= 1.0):
            raise ConfigError(f"The difference share must be between 0 and 1, not {difference_share!r}.")
        self.seed = _check_int(seed, "The random seed", 0)
        self.rank = _check_int(rank, "The rank", 0)
        self.scale = _check_int(scale, "The scale", 1)
        self.pairs: tuple[Pair, ...] = tuple(
            validate_pairs(pairs, crop_size=crop_size, batch_size=batch_size, scale=self.scale)
        )
        self.batch_size = int(batch_size)
        self.difference_share = float(difference_share)
        self.augment = bool(augment)
        self.in_channels = self.pairs[0].input.shape[2]
        self.out_channels = self.pairs[0].target.shape[2]

        smallest_index = min(range(len(self.pairs)), key=lambda i: min(self.pairs[i].input.shape[:2]))
        smallest = self.pairs[smallest_index]
        self.crop_size = _fit_crop_size(int(crop_size), min(smallest.input.shape[:2]))
        if self.crop_size != crop_size:
            reason = (
                f"is larger than the smallest frame, {_pair_name(smallest_index, smallest.label)} at "
                f"{_size(smallest.input.shape)} pixels (width×height)"
                if crop_size > min(smallest.input.shape[:2])
                else f"is not a multiple of {SIZE_MULTIPLE}"
            )
            warnings.warn(
                f"Crop size {crop_size} {reason}; training on {self.crop_size}×{self.crop_size} crops "
                f"instead (the largest multiple of {SIZE_MULTIPLE} that fits).",
                stacklevel=2,
            )

        self._hot_cells = tuple(_interesting_cells(pair) for pair in self.pairs)
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.rank])))
        self._draws = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch ``(input, target)``: float32 contiguous ``N×Cin×h×w`` and ``N×Cout×sh×sw`` tensors
        (``s`` the scale)."""
        n, c, s = self.batch_size, self.crop_size, self.scale
        draws = self._rng.random((n, _DRAWS_PER_CROP))  # a fixed number of draws per batch: see state_dict
        self._draws += draws.size
        inputs = np.empty((n, self.in_channels, c, c), np.float32)
        targets = np.empty((n, self.out_channels, c * s, c * s), np.float32)
        for i, (u_pair, u_kind, u_cell, u_cy, u_cx, u_y, u_x, u_flip) in enumerate(draws.tolist()):
            index = _pick(u_pair, len(self.pairs))
            pair, hot = self.pairs[index], self._hot_cells[index]
            h, w = pair.input.shape[:2]
            if hot is not None and u_kind < self.difference_share:
                # A point in a random interesting cell, at a random place in the crop's central half.
                gy, gx = divmod(int(hot[_pick(u_cell, hot.size)]), -(-w // CELL_SIZE))
                y = gy * CELL_SIZE + _pick(u_cy, min(CELL_SIZE, h - gy * CELL_SIZE))
                x = gx * CELL_SIZE + _pick(u_cx, min(CELL_SIZE, w - gx * CELL_SIZE))
                top = min(max(y - c // 4 - _pick(u_y, c // 2), 0), h - c)
                left = min(max(x - c // 4 - _pick(u_x, c // 2), 0), w - c)
            else:
                top, left = _pick(u_y, h - c + 1), _pick(u_x, w - c + 1)
            k = _pick(u_flip, 8) if self.augment else 0
            inputs[i] = _dihedral(pair.input[top : top + c, left : left + c], k).transpose(2, 0, 1)
            target = pair.target[top * s : (top + c) * s, left * s : (left + c) * s]
            targets[i] = _dihedral(target, k).transpose(2, 0, 1)
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def state_dict(self) -> dict[str, Any]:
        """Where the random stream stands, as plain ints/strings/dicts (YAML-safe), for exact resume.

        ``{"format": 1, "seed", "rank", "draws": doubles drawn so far, "bit_generator": numpy's state}``.
        """
        return {
            "format": _STATE_FORMAT,
            "seed": self.seed,
            "rank": self.rank,
            "draws": self._draws,
            "bit_generator": _plain(self._rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`): the next batches are the saved run's next ones.

        The saved seed replaces this sampler's. A state saved by another rank (only rank 0 writes
        checkpoints) moves this rank's own stream to the same position.
        """
        try:
            version, seed, rank, draws = state["format"], state["seed"], state["rank"], state["draws"]
        except (KeyError, TypeError) as error:
            raise TrainingError(f"The saved patch-sampler state cannot be read (missing {error}).") from error
        if version != _STATE_FORMAT:
            raise TrainingError(
                f"The saved patch-sampler state has format {version!r}; this version of copycat_nuke "
                f"reads format {_STATE_FORMAT}. Resume with the version that wrote it, or train afresh."
            )
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (seed, rank, draws)):
            raise TrainingError(
                f"The saved patch-sampler state cannot be read: seed {seed!r}, rank {rank!r} and draws "
                f"{draws!r} must be whole numbers of at least 0."
            )
        bit_generator = np.random.PCG64(np.random.SeedSequence([seed, self.rank]))
        if rank == self.rank:
            try:
                bit_generator.state = state["bit_generator"]
            except (KeyError, TypeError, ValueError) as error:
                raise TrainingError(f"The saved patch-sampler state cannot be read ({error}).") from error
        else:
            bit_generator.advance(draws)  # only rank 0 writes checkpoints: rebuild this rank's stream
        self._rng, self.seed, self._draws = np.random.Generator(bit_generator), seed, draws


def _check_steps_args(pairs: int, batch_size: int) -> None:
    _check_int(pairs, "The number of pairs", 1)
    _check_int(batch_size, "The batch size", 1)


def steps_for_epochs(epochs: Union[int, float], pairs: int, batch_size: int) -> int:
    """Training steps for ``epochs`` epochs as Nuke counts them: ``ceil(epochs × pairs / batch_size)``.

    One epoch is as many crops as there are pairs. Whole-number epochs are computed exactly; a float
    within 1e-9 (relative) of a whole number of steps counts as that number, so
    ``steps_for_epochs(epochs_for_steps(s, p, b), p, b) == s``.
    """
    _check_steps_args(pairs, batch_size)
    if isinstance(epochs, (int, np.integer)) and not isinstance(epochs, bool):
        if epochs < 0:
            raise ConfigError(f"The number of epochs must not be negative, not {epochs}.")
        return -(-int(epochs) * pairs // batch_size)
    if not (isinstance(epochs, (float, np.floating)) and math.isfinite(epochs) and epochs >= 0):
        raise ConfigError(f"The number of epochs must be a number of at least 0, not {epochs!r}.")
    steps = float(epochs) * pairs / batch_size
    nearest = round(steps)
    if abs(steps - nearest) <= 1e-9 * max(1.0, steps):
        return int(nearest)
    return math.ceil(steps)


def epochs_for_steps(steps: int, pairs: int, batch_size: int) -> float:
    """Epochs covered by ``steps`` training steps: ``steps × batch_size / pairs`` (for progress display)."""
    _check_steps_args(pairs, batch_size)
    _check_int(steps, "The number of steps", 0)
    return int(steps) * batch_size / pairs


# ------------------------------------------------------------------------------ loading a job's pairs
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
            raise TrainingInputError(f"CopyCat needs at least 1 Input/Ground Truth pair: {error}") from None
        raise
    if not frames:
        raise TrainingInputError(
            f"no Ground Truth frames found for {config.target}: CopyCat needs at least 1 Input/Ground Truth pair"
        )
    inputs.frames(frames)  # every training frame needs its Input too: names the missing ones
    if config.temporal and inputs.padding is None:
        raise ConfigError(
            f"temporal {config.temporal} needs an Input sequence with frame numbers, and {config.input} is "
            "a single file: give a pattern such as plate.####.exr, or train with temporal 0"
        )
    neighbours = NeighbourFrames(inputs, [], config.temporal, config.channels_in) if config.temporal else None
    left_out: list[int] = []
    if neighbours is not None:
        left_out = [frame for frame in frames if not neighbours.complete(frame)]
        frames = [frame for frame in frames if frame not in left_out]
        if not frames:
            raise TrainingInputError(
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
            pixels = stack_frames(pixels, neighbours.around(frame, source, region, working))
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


class NeighbourFrames:
    """The neighbouring frames of a sequence's frames, each read from disk once: the one reader of neighbours,
    for training and for inference (temporal models).

    Frame ``f``'s neighbour at offset ``k`` is ``f + k`` where that file exists. Training leaves out a pair
    whose neighbours are not all there (:meth:`complete`); inference holds the nearest frame towards ``f``
    that exists instead (:meth:`number`), past the ends of the sequence or across a gap, as a Nuke Read holds
    its first and last frames. ``source`` must have frame numbers (its callers say so in their own words).
    """

    def __init__(
        self,
        source: imageio.ImageSequence,
        numbers: Sequence[int],
        temporal: int,
        channels: Optional[str] = None,
    ) -> None:
        if source.padding is None:
            raise SequenceError(
                f"a temporal model sees {temporal} neighbouring frame(s) on each side, and {source.pattern} is a "
                "single file: give an image sequence with frame numbers"
            )
        self.source, self.temporal, self.channels = source, temporal, channels
        self.offsets = temporal_offsets(temporal)
        self.existing = set(source.existing_frames())
        self.by_path = {source.path(number): number for number in numbers}
        self.cache: dict[int, imageio.Frame] = {}  # as read (linear); placed per use, as windows may move
        self.clean: dict[int, imageio.Frame] = {}  # training's: NaN/Inf made safe once per frame

    def complete(self, frame: int) -> bool:
        """Whether every neighbour of ``frame`` exists (training leaves the pair out otherwise)."""
        return all(frame + offset in self.existing for offset in self.offsets)

    def number(self, offset: int, frame: int) -> int:
        """The frame that stands in for ``frame + offset``: itself, or the nearest towards ``frame`` that exists."""
        step = 1 if offset < 0 else -1
        wanted = frame + offset
        while wanted != frame and wanted not in self.existing:
            wanted += step
        return wanted

    def read(self, number: int) -> imageio.Frame:
        """Frame ``number`` of the sequence, read once."""
        if number not in self.cache:
            self.cache[number] = imageio.read_frame(self.source.path(number), self.channels)
        return self.cache[number]

    def of(self, frame: imageio.Frame) -> list[imageio.Frame]:
        """Inference: the neighbours of ``frame`` (one of ``numbers``), in temporal order, ends held. Frames
        are kept only while a later frame still needs them."""
        assert frame.path is not None
        centre = self.by_path[Path(frame.path)]
        self.cache[centre] = frame
        found = [self.read(self.number(offset, centre)) for offset in self.offsets]
        for number in [n for n in self.cache if n < centre - self.temporal]:
            del self.cache[number]
        return found

    def around(
        self, frame: int, centre: imageio.Frame, region: imageio.Window, working: transfer.Transfer
    ) -> list[np.ndarray]:
        """Training: the neighbours of ``frame`` over ``region`` (its pair's Input region), in working space;
        each must have the centre's channels and format."""
        found = []
        for number in (frame + offset for offset in self.offsets):
            neighbour = self.read(number)
            if list(neighbour.channels) != list(centre.channels):
                raise ChannelError(
                    f"{neighbour.path} has the channels {', '.join(neighbour.channels)}, but the Input frame "
                    f"{frame} beside it has {', '.join(centre.channels)}: a temporal job needs the same "
                    "channels in every Input frame"
                )
            cached, format_ = neighbour.display_window, centre.display_window
            if (cached.width, cached.height) != (format_.width, format_.height):
                raise ResolutionMismatchError(
                    f"{self.source.path(number)} is {cached.width}×{cached.height} but the Input frame {frame} "
                    f"beside it is {format_.width}×{format_.height}: a temporal job needs every Input frame the "
                    "same size"
                )
            if number not in self.clean:
                self.clean[number] = replace(
                    neighbour, pixels=transfer.sanitize(neighbour.pixels, f"Input {neighbour.path}")
                )
            found.append(working.to_working(self.clean[number].pixels_in(region)))
        return found
