"""Run a ``.cat`` model over frames: linear light in, linear light out, in tiles of bounded memory.

A frame goes linear → working space (the model's own transfer from its manifest) → network → linear.
The network sees the whole frame as read: the display window and the data window together, overscan
included. Channels the model does not produce (alpha for an rgb model, other layers) pass through bit for
bit (resized with :func:`copycat_nuke.imageio.resize` by a scaling model), and outputs keep the input's
display and data windows (times the model's scale) and pixel type (EXR half in, EXR half out).

**Tiles.** A frame too large for memory is cut into overlapping tiles whose origins lie on the network's
16-pixel grid, so every tile sees the same image pyramid and the same stride-2 sampling as the whole frame
would. Where two tiles overlap, their results are cross-faded: each tile's weight falls to (almost) zero
over the outer quarter of the overlap (the pixels that saw the tile's artificial edge most) and ramps
linearly across the middle half; weights are normalised, so they sum to exactly one everywhere. Sides on the
frame's own border are not feathered: there a tile sees what the whole frame sees.

How much overlap is enough was measured as the largest error of a tile against the whole frame at each
distance from the tile's edge (``benchmarks/infer_speed.py --overlap-sweep``): :data:`DEFAULT_OVERLAP` blends
only pixels far enough from a tile's edge that tiles match the whole frame (docs/decisions.md, "Inference
tiles overlap by 64 pixels"). For models that need more context, raise ``overlap`` (96, 128).

**Memory.** ``tile=None`` (the default) picks the largest tile that fits in half of the memory that is
free when the frame starts (``/proc/meminfo``'s MemAvailable and the cgroup limit on Linux, free GPU memory
on CUDA), and the whole frame when it fits.

**Sequences.** :func:`infer_sequence` loads the model once, checks everything it can before it writes
anything (channels, frame size, output pattern, outputs that would overwrite inputs), then reads the next
frame and writes the previous one on two small worker threads while the network computes.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from copycat_nuke import catfile, imageio, transfer
from copycat_nuke.data import NeighbourFrames, stack_frames, temporal_offsets
from copycat_nuke.device import Runtime, resolve_device, resolve_runtime
from copycat_nuke.errors import (
    CatFileError,
    ChannelError,
    ConfigError,
    CopyCatError,
    ImageIOError,
    NonFiniteOutputError,
    SequenceError,
)
from copycat_nuke.limits import DEFAULT_OVERLAP  # pixels of context neighbouring tiles share (limits.py)

#: Smallest tile side the automatic choice goes down to, however little memory is free.
MIN_AUTO_TILE = 256
#: Share of the free memory the automatic tile size may use (host RAM, or GPU memory on CUDA).
MEMORY_SHARE = {"cpu": 0.5, "cuda": 0.8}
#: Peak bytes per padded tile pixel, per unit of network width, per byte of maths precision: a little above the
#: peak RSS measured (docs/decisions.md, "Inference tile memory").
ACTIVATION_BYTES_PER_PIXEL_PER_WIDTH_BYTE = 8.0
#: A floor for the fixed share of each pixel (image planes, transfer, blending), in bytes.
IO_BYTES_PER_PIXEL = 64

#: ``(done, total, frame number, seconds that frame took)`` — called once per frame written.
ProgressCallback = Callable[[int, int, int, float], None]


@dataclass
class LoadedModel:
    """A ``.cat`` ready to run: its manifest, the network on its device, and its transfer."""

    path: Path
    manifest: catfile.Manifest
    network: nn.Module
    runtime: Runtime
    working: transfer.Transfer

    @property
    def channels_in(self) -> list[str]:
        return list(self.manifest.channels_in)

    @property
    def channels_out(self) -> list[str]:
        return list(self.manifest.channels_out)

    @property
    def scale(self) -> int:
        """Output size / input size (2 for a ×2 Upscale), from the manifest."""
        return int(self.manifest.scale)

    @property
    def temporal(self) -> int:
        """Neighbouring frames the network sees on each side (0: it takes one frame), from the manifest."""
        return int(self.manifest.arguments.get("temporal", 0))

    @property
    def multiple(self) -> int:
        """Tile origins and sizes are multiples of this (16 for a 3-level MSRN)."""
        return int(getattr(self.network, "multiple", 16))

    @property
    def minimum_size(self) -> int:
        """Smallest frame side the network accepts: one :attr:`multiple` (the coarsest level is then 4×4)."""
        return self.multiple

    def bytes_per_pixel(self) -> int:
        """Estimated peak memory per padded tile pixel (activations plus image planes), in bytes."""
        width = int(self.manifest.arguments.get("width", 32))
        element = 4 if self.runtime.autocast_dtype is None else 2
        io = 4 * (len(self.channels_in) * (1 + 2 * self.temporal) + 2 * len(self.channels_out) * self.scale**2)
        return int(ACTIVATION_BYTES_PER_PIXEL_PER_WIDTH_BYTE * width * element) + max(io, IO_BYTES_PER_PIXEL)


def load_model(path: Union[str, Path], device: str = "auto", half: bool = False) -> LoadedModel:
    """Load and validate a ``.cat`` and put its network on ``device`` in eval mode.

    ``half`` is Nuke's "Optimize for Speed and Memory": fp16 on a GPU, bf16 on a CPU with native bf16
    maths (AVX-512 bf16 or AMX); on other CPUs it has no effect (fp32). Weights stay fp32 either way.

    Raises:
        CatFileError: the file is missing or damaged, or its network does not produce the manifest's scale.
        ConfigError: the device does not exist.
    """
    cat = catfile.load_cat(path)
    where = resolve_device(device)
    # fp16 keeps 3 more mantissa bits than bf16 and working-space values are of order one: the better half
    # precision for inference on GPUs. CPUs have no fast fp16, so there "auto" means bf16 where native.
    precision = ("fp16" if where.type in ("cuda", "mps") else "auto") if half else "fp32"
    runtime = resolve_runtime(device, precision)
    network = runtime.place_model(cat.build_model().eval())
    working = transfer.Transfer.from_dict(cat.manifest.transfer)
    model = LoadedModel(Path(path), cat.manifest, network, runtime, working)
    _check_scale(model)
    return model


def _check_scale(model: LoadedModel) -> None:
    """Run the network on one tiny tile and check its output is ``scale`` times its input."""
    side = model.multiple
    channels = len(model.channels_in) * (1 + 2 * model.temporal)  # a temporal network's frames, stacked
    probe = model.runtime.place(torch.zeros((1, channels, side, side)))
    with torch.inference_mode(), model.runtime.autocast():
        output = model.network(probe)
    shape = tuple(output.shape)
    if not bool(torch.isfinite(output).all()):
        # Finite weights can still overflow (all 1.0, 1e10): such a model only ever makes NaN/Inf frames.
        raise NonFiniteOutputError(
            f"{model.path}: the network turns a black {side}×{side} tile into NaN or infinite values: its weights "
            "are unusable (did training diverge?). Retrain it, or use an earlier checkpoint."
        )
    expected = (1, len(model.channels_out), side * model.scale, side * model.scale)
    if shape != expected:
        raise CatFileError(
            f"{model.path}: the manifest says the network outputs {len(model.channels_out)} channel(s) at "
            f"scale {model.scale}, but its {model.manifest.architecture} network turns a {side}×{side} tile "
            f"into {shape[3]}×{shape[2]} with {shape[1]} channel(s). The file was not made by this version's "
            "trainer; retrain it or fix its manifest."
        )


# ------------------------------------------------------------------------------------------------ tiles


@dataclass(frozen=True)
class Span:
    """One tile's extent along one axis, in input pixels: ``start`` to ``stop`` (exclusive)."""

    start: int
    stop: int
    feather_start: bool  #: the side at ``start`` borders another tile (feathered), not the frame's edge
    feather_stop: bool

    @property
    def size(self) -> int:
        return self.stop - self.start


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_spans(length: int, tile: int, overlap: int, multiple: int = 16) -> list[Span]:
    """Cut ``length`` pixels into overlapping spans of at most ``tile`` (plus < ``multiple``) pixels.

    ``tile`` 0 or ≥ ``length`` gives one span. Otherwise spans start on multiples of ``multiple``, overlap
    their neighbours by at least ``overlap`` pixels, and are made as small as that allows (so a 1080-pixel
    axis in tiles of 512 gets three spans of 416–424 pixels rather than three of 512). ``tile`` and
    ``overlap`` must already be multiples of ``multiple`` with ``tile > overlap``.
    """
    if tile <= 0 or length <= tile:
        return [Span(0, length, False, False)]
    count = -(-(length - overlap) // (tile - overlap))
    size = _round_up(-(-(length + (count - 1) * overlap) // count), multiple)
    step = size - overlap
    # The last span ends at the frame's edge and starts on the grid, so it is up to multiple - 1 pixels
    # longer than the others; regular starts it makes redundant are dropped.
    last = (length - size) // multiple * multiple
    starts = [i * step for i in range(count - 1) if i * step < last] + [last]
    final = len(starts) - 1
    return [Span(start, length if i == final else start + size, i > 0, i < final) for i, start in enumerate(starts)]


def _weights(span: Span, overlap: int, scale: int) -> np.ndarray:
    """Blend weights along one axis of a tile's output (``span.size * scale`` values, not yet normalised).

    Feathered sides discard the outer quarter of the overlap (weight 1e-4, just enough that no pixel can
    ever have a zero total) and ramp linearly to 1 across the middle half; sides on the frame's edge keep 1.
    """
    n = span.size * scale
    width = overlap * scale
    weights = np.ones(n, dtype=np.float32)
    if width == 0:
        return weights
    margin = width / 4.0
    distance = np.arange(n, dtype=np.float32) + 0.5
    ramp_in = np.clip((distance - margin) / (width - 2 * margin), 1e-4, 1.0)
    if span.feather_start:
        weights = np.minimum(weights, ramp_in)
    if span.feather_stop:
        weights = np.minimum(weights, ramp_in[::-1])
    return weights


def _normalised_weights(spans: list[Span], overlap: int, scale: int) -> list[np.ndarray]:
    """Per-span weights divided by the sum over all spans at each output pixel (so tiles sum to 1)."""
    raw = [_weights(span, overlap, scale) for span in spans]
    total = np.zeros(spans[-1].stop * scale, dtype=np.float32)
    for span, weights in zip(spans, raw):
        total[span.start * scale : span.stop * scale] += weights
    return [weights / total[span.start * scale : span.stop * scale] for span, weights in zip(spans, raw)]


def check_tiling(tile: Optional[int], overlap: int, multiple: int) -> tuple[Optional[int], int]:
    """Validate ``tile``/``overlap`` and round them up to multiples of ``multiple``."""
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0):
        raise ConfigError(f"tile must be a size in pixels, 0 for the whole frame, or None for automatic (got {tile!r})")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ConfigError(f"overlap must be a number of pixels, 0 or more (got {overlap!r})")
    overlap = _round_up(overlap, multiple)
    if tile:
        tile = _round_up(tile, multiple)
        if tile < 2 * overlap + multiple:
            raise ConfigError(
                f"tile {tile} is too small for an overlap of {overlap} pixels (both rounded up to multiples of "
                f"{multiple}): use a tile of at least {2 * overlap + multiple}, or a smaller overlap"
            )
    return tile, overlap


# ----------------------------------------------------------------------------------------------- memory


def available_memory(device: torch.device) -> int:
    """Bytes free for a new job on ``device``: free GPU memory on CUDA, else host memory (RAM).

    Host memory is Linux's MemAvailable, lowered to what the process's cgroup (a container or farm slot)
    still allows; elsewhere the free physical pages, or 4 GiB where the platform says nothing.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # Blocks torch's caching allocator holds from earlier tiles are free to this process too.
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    return _host_available_memory()


def _host_available_memory() -> int:
    available: Optional[int] = None
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        available = None
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            available = 4 << 30
    cgroup = _cgroup_headroom()
    return min(available, cgroup) if cgroup is not None else available


def _cgroup_headroom() -> Optional[int]:
    """Bytes the process's memory cgroup still allows (v2, then v1), or None where there is no limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit_text = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or not limit_text.isdigit() or int(limit_text) >= 1 << 60:
            return None
        return max(int(limit_text) - usage, 0)
    return None


def auto_tile_size(model: LoadedModel, height: int, width: int, free_bytes: Optional[int] = None) -> int:
    """The tile side for a ``height``×``width`` frame: 0 (whole frame) when it fits, else the largest that does.

    "Fits" means the estimated peak (:meth:`LoadedModel.bytes_per_pixel` times the padded pixels) stays
    within :data:`MEMORY_SHARE` of ``free_bytes`` (default: :func:`available_memory` now). Never below
    :data:`MIN_AUTO_TILE`.
    """
    device = model.runtime.device
    free = available_memory(device) if free_bytes is None else free_bytes
    budget = free * MEMORY_SHARE.get(device.type, 0.5)
    per_pixel = model.bytes_per_pixel()
    m = model.multiple
    if _round_up(height, m) * _round_up(width, m) * per_pixel <= budget:
        return 0
    # Tiling keeps the whole input and the output accumulator on the host: leave room for them (twice over,
    # for the copies made on the way in and out).
    frame_planes = 2 * 4 * height * width * (len(model.channels_in) + len(model.channels_out) * model.scale**2)
    if model.runtime.device.type == "cpu":
        budget -= frame_planes
    side = int(math.sqrt(max(budget, 0) / per_pixel)) // m * m
    return max(side, MIN_AUTO_TILE)


# ---------------------------------------------------------------------------------------------- frames


def check_size(model: LoadedModel, height: int, width: int, what: str) -> None:
    smallest = model.minimum_size
    if height < smallest or width < smallest:
        raise ImageIOError(
            f"{what} is {width}×{height} pixels; {model.path.name} needs frames of at least {smallest}×{smallest} "
            f"(its {model.manifest.architecture} network halves the frame {int(math.log2(smallest))} times). "
            "Use a larger frame, or pad it (e.g. a Reformat node) and crop the result."
        )


def apply_model(
    model: LoadedModel,
    pixels: np.ndarray,
    *,
    tile: Optional[int] = None,
    overlap: int = DEFAULT_OVERLAP,
    neighbours: Optional[Sequence[np.ndarray]] = None,
    where: str = "the image",
) -> np.ndarray:
    """Run the network on one image: float32 H×W×C_in linear → float32 (H·s)×(W·s)×C_out linear.

    ``s`` is the model's scale. ``tile``: None picks a size from free memory (:func:`auto_tile_size`),
    0 runs the whole frame at once, N runs tiles of at most N×N pixels (rounded up to a multiple of 16)
    overlapping by ``overlap`` pixels, cross-faded. NaN and ±Inf in the input are replaced (with a
    warning) before the network sees them.

    A temporal model (:attr:`LoadedModel.temporal` N > 0) also needs ``neighbours``: the 2N frames around
    this one, in the order of :func:`copycat_nuke.data.temporal_offsets` (−N…−1, +1…+N), each like
    ``pixels`` (at a sequence's ends, repeat the last frame there is, as :func:`infer_sequence` does).

    Raises:
        ImageIOError: the image is smaller than the network's minimum (:attr:`LoadedModel.minimum_size`).
        NonFiniteOutputError: the network's output holds NaN or ±Inf (``where`` names the image).
        ConfigError: bad ``tile``/``overlap``, a channel count the model was not trained for, or
            ``neighbours`` missing, unexpected or unlike the image.
    """
    array = _as_image(pixels)
    height, width, channels = array.shape
    if channels != len(model.channels_in):
        raise ConfigError(
            f"{model.path.name} takes {len(model.channels_in)} channel(s) ({', '.join(model.channels_in)}); "
            f"the image has {channels}"
        )
    check_size(model, height, width, "The image")
    tile, overlap = check_tiling(tile, overlap, model.multiple)
    if tile is None:
        tile = auto_tile_size(model, height, width)
    array = transfer.sanitize(array, "the input frame")
    others = _check_neighbours(model, array.shape, neighbours)
    result = _run_tiles(model, stack_frames(array, others), tile, overlap)
    check_finite_output(model, result, where)
    return result


def check_finite_output(model: LoadedModel, pixels: np.ndarray, where: str = "the image") -> None:
    """Refuse a network's output that holds NaN or ±Inf: written out it would be a black or corrupt frame
    that a comp only finds much later, so the job stops instead, before the frame is written.

    Raises:
        NonFiniteOutputError: naming the model and ``where`` (the frame).
    """
    bad = int(pixels.size - np.count_nonzero(np.isfinite(pixels)))
    if bad:
        raise NonFiniteOutputError(
            f"{model.path}: the network produced {bad} NaN or infinite value(s) of {pixels.size} on {where}; nothing "
            "was written for it. The model is unusable on this frame (did training diverge?): retrain it, or use "
            "an earlier checkpoint."
        )


def _as_image(pixels: np.ndarray) -> np.ndarray:
    array = np.asarray(pixels, dtype=np.float32)
    return array[:, :, None] if array.ndim == 2 else array


def _check_neighbours(
    model: LoadedModel, shape: tuple[int, ...], neighbours: Optional[Sequence[np.ndarray]]
) -> list[np.ndarray]:
    """The neighbouring frames of a temporal model's input, checked and sanitised ([] for other models)."""
    wanted = 2 * model.temporal
    given = [] if neighbours is None else [_as_image(n) for n in neighbours]
    if len(given) != wanted:
        if not wanted:
            raise ConfigError(f"{model.path.name} takes one frame at a time: pass no neighbouring frames")
        raise ConfigError(
            f"{model.path.name} is temporal: it sees {model.temporal} neighbouring frame(s) on each side, so it "
            f"needs {wanted} neighbouring frames (got {len(given)}); run it over a sequence with infer_sequence "
            "or 'copycat infer', which read them"
        )
    for offset, neighbour in zip(temporal_offsets(model.temporal), given):
        if neighbour.shape != shape:
            raise ConfigError(
                f"the neighbouring frame at offset {offset:+d} is {neighbour.shape[1]}×{neighbour.shape[0]}×"
                f"{neighbour.shape[2]} but the frame is {shape[1]}×{shape[0]}×{shape[2]} (width×height×channels): "
                "every frame a temporal model sees must match"
            )
    return [
        transfer.sanitize(n, f"the neighbouring frame at offset {o:+d}")
        for o, n in zip(temporal_offsets(model.temporal), given)
    ]


def _run_tiles(model: LoadedModel, pixels: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale, m = model.scale, model.multiple
    rows, columns = plan_spans(height, tile, overlap, m), plan_spans(width, tile, overlap, m)
    if len(rows) == 1 and len(columns) == 1:
        return _run_network(model, pixels)
    row_weights = _normalised_weights(rows, overlap, scale)
    column_weights = _normalised_weights(columns, overlap, scale)
    out = np.zeros((height * scale, width * scale, len(model.channels_out)), dtype=np.float32)
    for row, wy in zip(rows, row_weights):
        for column, wx in zip(columns, column_weights):
            result = _run_network(model, pixels[row.start : row.stop, column.start : column.stop])
            result *= wy[:, None, None] * wx[None, :, None]
            out[row.start * scale : row.stop * scale, column.start * scale : column.stop * scale] += result
    return out


def _run_network(model: LoadedModel, pixels: np.ndarray) -> np.ndarray:
    """One tile, linear H×W×C_in → linear (H·s)×(W·s)×C_out, both float32 numpy."""
    tile = np.ascontiguousarray(pixels)
    if not tile.flags.writeable:
        tile = tile.copy()
    # An H×W×C array seen as 1×C×H×W is already channels_last in memory: no copy on the way in.
    with torch.inference_mode():
        tensor = model.working.to_working(model.runtime.place(torch.from_numpy(tile).permute(2, 0, 1)[None]))
        with model.runtime.autocast():
            output = model.network(tensor)
        linear = model.working.from_working(output.float())
        return np.ascontiguousarray(linear[0].permute(1, 2, 0).cpu().numpy(), dtype=np.float32)


def infer_frame(
    model: LoadedModel,
    frame: imageio.Frame,
    *,
    tile: Optional[int] = None,
    overlap: int = DEFAULT_OVERLAP,
    passthrough: bool = True,
    neighbours: Optional[Sequence[imageio.Frame]] = None,
) -> tuple[np.ndarray, list[str]]:
    """The output pixels and channel names for one input frame, over its :attr:`~copycat_nuke.imageio.Frame.
    pixel_window` (times the model's scale): the network runs on the data window, overscan included.

    With ``passthrough`` (the default) every input channel the model does not produce (alpha for an rgb
    model, other layers) is appended in its own name, as :func:`pass_through` does. A temporal model needs
    ``neighbours`` as in :func:`apply_model`, as frames; each is taken over this frame's pixel window (their
    data windows may differ: a bbox that moves).

    Raises:
        ChannelError: the frame (or a neighbour) lacks a channel the model needs.
        ImageIOError: the frame is smaller than the network's minimum, or a neighbour differs in size.
    """
    names = model_input_channels(model, frame)
    where = str(frame.path) if frame.path is not None else "The frame"
    check_size(model, frame.height, frame.width, where)
    others = None
    if neighbours is not None:
        for neighbour in neighbours:
            imageio.check_same_size(frame, neighbour, labels=("The frame", "its neighbour"))
        others = [
            neighbour.select(model_input_channels(model, neighbour), window=frame.pixel_window)
            for neighbour in neighbours
        ]
    predicted = apply_model(
        model,
        frame.select(names),
        tile=tile,
        overlap=overlap,
        neighbours=others,
        where=f"the frame {frame.path}" if frame.path is not None else "the frame",
    )
    out_names = list(model.channels_out)
    if not passthrough:
        return predicted, out_names
    return pass_through(frame, predicted, out_names, model.scale)


def pass_through(
    frame: imageio.Frame, pixels: np.ndarray, names: Sequence[str], scale: int = 1
) -> tuple[np.ndarray, list[str]]:
    """``pixels`` (a model's output, channels ``names``) with every channel of ``frame`` the model does not
    write appended, in its own name and the frame's order, so nothing is dropped.

    At ``scale`` 1 they are copied bit for bit; a scaling model's are enlarged ×``scale`` with
    :func:`copycat_nuke.imageio.resize` (OpenImageIO's triangle filter: bilinear, the base an upscaler adds
    its detail to, so a matte stays aligned with the colour and never rings). A channel counts as written
    when one of ``names`` resolves to it (``R`` covers ``R``, ``rgba.red``, a greyscale ``Y``).
    """
    written: set[str] = set()
    for name in names:
        with contextlib.suppress(ChannelError):  # the model makes a channel the frame lacks (a roto's alpha)
            written.update(imageio.resolve_channels(name, frame.channels, path=frame.path))
    others = [index for index, name in enumerate(frame.channels) if name not in written]
    if not others:
        return pixels, list(names)
    kept = frame.pixels[:, :, others]
    if scale != 1:
        kept = imageio.resize(kept, scale)
    return np.concatenate([pixels, kept], axis=2), [*names, *(frame.channels[i] for i in others)]


def model_input_channels(model: LoadedModel, frame: imageio.Frame) -> list[str]:
    try:
        return imageio.resolve_channels(model.channels_in, frame.channels, path=frame.path)
    except ChannelError as error:
        raise ChannelError(f"{error} (the model {model.path.name} needs {', '.join(model.channels_in)})") from None


# -------------------------------------------------------------------------------------------- sequences


def _check_outputs(source: imageio.ImageSequence, target: imageio.ImageSequence, numbers: Sequence[int]) -> None:
    """Refuse, before anything is computed, outputs that cannot be told apart or would overwrite inputs."""
    if target.padding is None and len(numbers) > 1:
        raise SequenceError(
            f"The output {target.pattern} has no frame number, but {len(numbers)} frames are to be written: "
            "add one, e.g. 'out/result.####.exr' or 'out/result.%04d.exr'."
        )
    inputs = {os.path.realpath(source.path(n)): n for n in numbers}
    for number in numbers:
        output = os.path.realpath(target.path(number))
        if output in inputs:
            raise SequenceError(
                f"The output {target.path(number)} is the input frame {inputs[output]} itself: writing it would "
                "destroy the plate. Choose another output directory or name."
            )


def check_training_data(model: LoadedModel, target: imageio.ImageSequence, numbers: Sequence[int]) -> None:
    """Refuse outputs that would overwrite the frames the model was trained from (the Input and Ground Truth
    sequences its manifest records): a Ground Truth plate is often hand-painted work that exists nowhere else.

    Relative patterns in older manifests are taken from the current directory, as training ran them.

    Raises:
        SequenceError: naming the output, the training sequence and what to do.
    """
    training = model.manifest.training if isinstance(model.manifest.training, dict) else {}
    outputs = {os.path.realpath(target.path(number)): number for number in numbers}
    for key, label in (("target", "Ground Truth"), ("input", "Input")):
        pattern = training.get(key)
        if not isinstance(pattern, str) or not pattern:
            continue
        try:
            sequence = imageio.ImageSequence.parse(pattern)
            existing = (
                [sequence.path(n) for n in sequence.existing_frames()] if sequence.padding else [sequence.path(0)]
            )
        except (CopyCatError, OSError, ValueError):
            continue  # the training data is gone or unreadable: nothing of it to protect
        for path in existing:
            number = outputs.get(os.path.realpath(path))
            if number is not None:
                raise SequenceError(
                    f"The output {target.path(number)} is a frame of the {label} sequence {pattern} that "
                    f"{model.path.name} was trained from: writing it would destroy training data. Choose another "
                    "output directory or name."
                )


def plan_outputs(
    input_pattern: str, output_pattern: str, frames: Union[str, Sequence[int], None] = None
) -> tuple[imageio.ImageSequence, imageio.ImageSequence, list[int]]:
    """The input and output sequences of a job and its frames, after checking that every frame exists and
    that no output would overwrite an input (fail before long work, not after it).

    Raises:
        FrameMissingError, SequenceError: naming the frames or the pattern at fault.
    """
    source = imageio.ImageSequence.parse(input_pattern)
    target = imageio.ImageSequence.parse(output_pattern)
    numbers = source.frames(frames)
    _check_outputs(source, target, numbers)
    return source, target, numbers


def infer_sequence(
    model_path: Union[str, Path, LoadedModel],
    input_pattern: str,
    output_pattern: str,
    frames: Union[str, Sequence[int], None] = None,
    *,
    device: str = "auto",
    half: bool = False,
    progress: Optional[ProgressCallback] = None,
    tile: Optional[int] = None,
    overlap: int = DEFAULT_OVERLAP,
    passthrough: bool = True,
) -> list[Path]:
    """Run a ``.cat`` over every frame (or ``frames``, e.g. ``"1001-1100"``) of a sequence; write the results.

    ``model_path`` may also be a :class:`LoadedModel` (then ``device`` and ``half`` are its own). The model
    is loaded once; the next frame is read and the previous one written on worker threads while the
    network computes. ``progress(done, total, frame, seconds)`` is called after each frame is on disk.
    Outputs keep each input's windows (scaled with the model), pixel type and metadata and gain a
    ``copycat:model`` attribute; ``tile``, ``overlap`` and ``passthrough`` are as in :func:`apply_model`
    and :func:`infer_frame`.

    Before anything is computed or written, this checks that all frames exist, that the output pattern has
    a frame number when there are several frames, that no output would overwrite an input, and that the
    first frame has the model's channels and at least its minimum size. Returns the paths written.

    Raises:
        FrameMissingError, SequenceError, ChannelError, ImageIOError, CatFileError, ConfigError: as above,
        each naming the file or setting at fault.
    """
    source, target, numbers = plan_outputs(input_pattern, output_pattern, frames)
    model = model_path if isinstance(model_path, LoadedModel) else load_model(model_path, device, half)
    check_training_data(model, target, numbers)
    check_tiling(tile, overlap, model.multiple)
    around = NeighbourFrames(source, numbers, model.temporal) if model.temporal else None

    def compute(frame: imageio.Frame) -> tuple[np.ndarray, list[str]]:
        neighbours = around.of(frame) if around is not None else None
        return infer_frame(model, frame, tile=tile, overlap=overlap, passthrough=passthrough, neighbours=neighbours)

    return run_frames(model, source, target, numbers, compute, model.scale, progress)


FrameJob = Callable[[imageio.Frame], tuple[np.ndarray, list[str]]]


def run_frames(
    model: LoadedModel,
    source: imageio.ImageSequence,
    target: imageio.ImageSequence,
    numbers: Sequence[int],
    compute: FrameJob,
    scale: int,
    progress: Optional[ProgressCallback] = None,
    metadata: Optional[dict[str, Any]] = None,
) -> list[Path]:
    """The frame pipeline of :func:`infer_sequence`: the next frame is read and the previous one written
    on worker threads while ``compute`` (frame → linear pixels and channel names) runs on this one.

    The first frame is checked against ``model`` (channels, minimum size) before anything is written.
    Outputs are ``scale`` times the input, with its windows scaled and its pixel type and metadata, plus
    ``copycat:model`` (and ``metadata``). Returns the paths written, in order.
    """
    extra = {"copycat:model": model.path.name, **(metadata or {})}
    written: list[Path] = []
    with ThreadPoolExecutor(1, "copycat-read") as reader, ThreadPoolExecutor(1, "copycat-write") as writer:
        next_read = reader.submit(imageio.read_frame, source.path(numbers[0]))
        first = next_read.result()
        model_input_channels(model, first)
        check_size(model, first.height, first.width, str(first.path))
        pending: Optional[tuple[int, Future[Path]]] = None
        started = time.perf_counter()
        for index, number in enumerate(numbers):
            frame = next_read.result()
            if index + 1 < len(numbers):
                next_read = reader.submit(imageio.read_frame, source.path(numbers[index + 1]))
            pixels, names = compute(frame)
            if pending is not None:
                started = _finish(pending, written, len(numbers), started, progress)
            pending = (number, writer.submit(_write, target.path(number), pixels, names, frame, scale, extra))
        if pending is not None:
            _finish(pending, written, len(numbers), started, progress)
    return written


def _write(
    path: Path, pixels: np.ndarray, names: list[str], like: imageio.Frame, scale: int, metadata: dict[str, Any]
) -> Path:
    # Both windows scale with the frame, origins included, so overscan stays where it was.
    display, data = like.display_window.scaled(scale), like.data_window.scaled(scale)
    return imageio.write_frame(
        path,
        pixels,
        names,
        like=like,  # pixel type and metadata of the input
        display_window=display,
        data_window=data,
        metadata=metadata,
    )


def _finish(
    pending: tuple[int, Future[Path]],
    written: list[Path],
    total: int,
    started: float,
    progress: Optional[ProgressCallback],
) -> float:
    """Wait for one write, record it, report progress; return the time it finished."""
    number, future = pending
    written.append(future.result())
    now = time.perf_counter()
    if progress is not None:
        progress(len(written), total, number, now - started)
    return now


__all__ = [
    "DEFAULT_OVERLAP",
    "LoadedModel",
    "NeighbourFrames",
    "ProgressCallback",
    "Span",
    "apply_model",
    "auto_tile_size",
    "available_memory",
    "check_finite_output",
    "check_size",
    "check_tiling",
    "check_training_data",
    "infer_frame",
    "infer_sequence",
    "load_model",
    "model_input_channels",
    "pass_through",
    "plan_outputs",
    "plan_spans",
    "run_frames",
]
