"""Upscale (×2, ×4) and Deblur a shot with the shipped networks or your own, and refine on the shot itself.

These are Nuke's Upscale and Deblur nodes: ready-made networks (:mod:`copycat_nuke.pretrained`) run like
any ``.cat`` (:mod:`copycat_nuke.infer`: tiles of bounded memory, pixel types, windows and metadata kept).

**×4** is the ×2 network run twice: the frame is upscaled ×2, then that result ×2 again. One network for
both factors keeps the shipped files small, and the second pass sees exactly the kind of image it was
trained on (a sharp frame at half the wanted size).

**Refining on the shot** (beyond Nuke): a shot is its own training data for an upscaler. Each shot frame,
downscaled ×0.5 (antialiased bicubic in linear light, as the shipped network's recipe makes its Inputs), is
an Input, and the frame itself its Ground Truth. A few hundred steps of fine-tuning on those pairs teach
the ×2 network the shot's grain, lenses and textures; it is then applied to the frames at full size. No
Ground Truth at the higher resolution is needed.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from copycat_nuke import catfile, imageio, transfer
from copycat_nuke.config import TrainConfig
from copycat_nuke.errors import CatFileError, ConfigError, CopyCatError, ImageIOError
from copycat_nuke.infer import (
    DEFAULT_OVERLAP,
    LoadedModel,
    ProgressCallback,
    apply_model,
    check_size,
    check_tiling,
    check_training_data,
    infer_sequence,
    load_model,
    model_input_channels,
    pass_through,
    plan_outputs,
    run_frames,
)
from copycat_nuke.pretrained import require_shipped_model
from copycat_nuke.resample import downscale
from copycat_nuke.train import Listener, Trainer, TrainResult

#: Shot frames refinement trains on when no frame list is given (evenly spaced over the shot).
REFINE_MAX_FRAMES = 8
#: Fine-tuning's starting learning rate: a fifth of training from scratch (5e-4), so the network adapts to
#: the shot without forgetting what it learnt from many photographs in a few noisy first steps.
REFINE_LEARNING_RATE = 1e-4
#: Input crop side when the network's own training crop is unknown (the shipped recipe's: 64, GT 128).
REFINE_CROP_SIZE = 64
#: Smallest training Input side (the network halves it twice, to 4×4); shot frames must be twice this.
MIN_REFINE_INPUT = 16

ModelLike = Union[str, Path, LoadedModel, None]

__all__ = [
    "REFINE_LEARNING_RATE",
    "REFINE_MAX_FRAMES",
    "check_outputs",
    "deblur_sequence",
    "load_deblur_model",
    "load_upscale_model",
    "refine_on_shot",
    "upscale_frame",
    "upscale_sequence",
]

_INSTEAD = {
    "upscale": "rebuild it (python -m copycat_nuke.pretrained.build upscale --install), "
    "or give a ×2 network of your own (--model X.cat / model=)",
    "deblur": "rebuild it (python -m copycat_nuke.pretrained.build deblur --install), "
    "or give a same-size network of your own (--model X.cat / model=)",
}


# ------------------------------------------------------------------------------------------------ models


def _model_path(kind: str, model: Union[str, Path, None]) -> Path:
    """The ``.cat`` to use: ``model``, or the shipped network ``kind`` (a clear error when not installed)."""
    if model is None:
        return require_shipped_model(kind, instead=_INSTEAD[kind])
    return Path(model)


def _check_scale(kind: str, path: Path, scale: int, temporal: int = 0) -> None:
    if temporal:
        raise CatFileError(
            f"{path} is a temporal network (it sees {temporal} neighbouring frame(s) on each side); {kind} runs "
            "one frame at a time: apply it with 'copycat infer', which reads the neighbours."
        )
    if kind == "upscale" and scale != 2:
        raise CatFileError(
            f"{path} is a ×{scale} network, but upscale needs a ×2 network (one trained on Ground Truth twice "
            "the Input's size; ×4 runs it twice). Give a ×2 .cat, or apply this one with 'copycat infer'."
        )
    if kind == "deblur" and scale != 1:
        raise CatFileError(
            f"{path} is a ×{scale} network, but deblur needs a same-size (×1) network. Give a ×1 .cat, or "
            "apply this one with 'copycat infer' or 'copycat upscale'."
        )


def _load(kind: str, model: ModelLike, device: str, half: bool) -> LoadedModel:
    if isinstance(model, LoadedModel):
        _check_scale(kind, model.path, model.scale, model.temporal)
        return model
    path = _model_path(kind, model)
    manifest = catfile.read_manifest(path)
    _check_scale(kind, path, int(manifest.scale), int(manifest.arguments.get("temporal", 0)))  # before building
    return load_model(path, device, half)


def load_upscale_model(model: Union[str, Path, None] = None, device: str = "auto", half: bool = False) -> LoadedModel:
    """Load a ×2 network (default: the shipped Upscale network) for :func:`upscale_sequence`.

    Raises:
        CopyCatError: the shipped network is not installed. CatFileError: ``model`` is not a ×2 network.
    """
    return _load("upscale", model, device, half)


def load_deblur_model(model: Union[str, Path, None] = None, device: str = "auto", half: bool = False) -> LoadedModel:
    """Load a same-size network (default: the shipped Deblur network) for :func:`deblur_sequence`.

    Raises:
        CopyCatError: the shipped network is not installed. CatFileError: ``model`` is not a ×1 network.
    """
    return _load("deblur", model, device, half)


# ------------------------------------------------------------------------------------------------ frames


def _check_passes(model: LoadedModel, scale: int) -> int:
    """How many times the ×2 network runs for ``scale`` (2 or 4)."""
    if isinstance(scale, bool) or scale not in (2, 4):
        raise ConfigError(f"upscale scale must be 2 or 4 (got {scale!r}); ×4 runs the ×2 network twice")
    passes = scale // 2
    if passes > 1 and len(model.channels_in) != len(model.channels_out):
        raise ConfigError(
            f"×4 runs {model.path.name} twice, so it must output the channels it takes, but it takes "
            f"{', '.join(model.channels_in)} and outputs {', '.join(model.channels_out)}: upscale ×2 instead"
        )
    return passes


def upscale_frame(
    model: LoadedModel,
    frame: imageio.Frame,
    *,
    scale: int = 2,
    tile: Optional[int] = None,
    overlap: int = DEFAULT_OVERLAP,
    passthrough: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """One frame upscaled ×``scale`` (2, or 4 = the ×2 ``model`` twice): linear float32 pixels and names.

    The network runs on the frame's display and data windows together (overscan included). With
    ``passthrough`` (the default) every channel the model does not produce (alpha, other layers) is resized
    ×``scale`` with OpenImageIO's triangle filter (bilinear; :func:`copycat_nuke.infer.pass_through`) and
    appended, so an RGBA plate gives an RGBA result. ``tile``/``overlap`` apply to each pass as in
    :func:`copycat_nuke.infer.apply_model`.

    Raises:
        ChannelError: the frame lacks a channel the model needs.
        ImageIOError: the frame is smaller than the network's minimum.
        ConfigError: a bad ``scale``, ``tile`` or ``overlap``.
    """
    passes = _check_passes(model, scale)
    names = model_input_channels(model, frame)
    check_size(model, frame.height, frame.width, str(frame.path) if frame.path is not None else "The frame")
    pixels = frame.select(names)
    for _ in range(passes):
        pixels = apply_model(model, pixels, tile=tile, overlap=overlap)
    out_names = list(model.channels_out)
    if not passthrough:
        return pixels, out_names
    return pass_through(frame, pixels, out_names, scale)


# --------------------------------------------------------------------------------------------- sequences


def check_outputs(input_pattern: str, output_pattern: str, frames: Union[str, Sequence[int], None] = None) -> list[int]:
    """The frames a job would process, after checking they exist and no output would overwrite an input.

    Used before long work (refinement) so that a bad output path fails at once, not after training.

    Raises:
        FrameMissingError, SequenceError: naming the frames or the pattern at fault.
    """
    return plan_outputs(input_pattern, output_pattern, frames)[2]


def upscale_sequence(
    input_pattern: str,
    output_pattern: str,
    frames: Union[str, Sequence[int], None] = None,
    *,
    scale: int = 2,
    model: ModelLike = None,
    device: str = "auto",
    half: bool = False,
    progress: Optional[ProgressCallback] = None,
    tile: Optional[int] = None,
    overlap: int = DEFAULT_OVERLAP,
    passthrough: bool = True,
) -> list[Path]:
    """Upscale every frame (or ``frames``) of a sequence or a single file ×2 or ×4; write the results.

    ``model``: a ×2 ``.cat`` (or a :class:`~copycat_nuke.infer.LoadedModel`); default the shipped Upscale
    network. ×4 runs it twice. Outputs are ``scale`` times the input in each direction, with the input's
    windows (scaled), pixel type and metadata, plus ``copycat:model`` and ``copycat:scale`` attributes.
    ``device``, ``half``, ``progress``, ``tile``, ``overlap`` are as in
    :func:`copycat_nuke.infer.infer_sequence`; ``passthrough`` as in :func:`upscale_frame`.

    Example::

        copycat_nuke.upscale_sequence("plate.####.exr", "plate_4k/plate.####.exr", scale=2)

    Everything that can be checked is checked before anything is written. Returns the paths written.

    Raises:
        CopyCatError (CatFileError, FrameMissingError, SequenceError, ChannelError, ImageIOError,
        ConfigError): naming the file, frame or setting at fault.
    """
    loaded = _load("upscale", model, device, half)
    _check_passes(loaded, scale)
    check_tiling(tile, overlap, loaded.multiple)
    source, target, numbers = plan_outputs(input_pattern, output_pattern, frames)
    check_training_data(loaded, target, numbers)  # a refined network's own shot is its training data
    return run_frames(
        loaded,
        source,
        target,
        numbers,
        lambda frame: upscale_frame(loaded, frame, scale=scale, tile=tile, overlap=overlap, passthrough=passthrough),
        scale,
        progress,
        metadata={"copycat:scale": scale},
    )


def deblur_sequence(
    input_pattern: str,
    output_pattern: str,
    frames: Union[str, Sequence[int], None] = None,
    *,
    model: ModelLike = None,
    device: str = "auto",
    half: bool = False,
    progress: Optional[ProgressCallback] = None,
    tile: Optional[int] = None,
    overlap: int = DEFAULT_OVERLAP,
    passthrough: bool = True,
) -> list[Path]:
    """Remove motion and defocus blur from every frame (or ``frames``) of a sequence or a single file.

    ``model``: a same-size ``.cat`` (or a loaded one); default the shipped Deblur network. Outputs keep the
    input's size, windows, pixel type and metadata; with ``passthrough`` the channels the model does not
    produce (alpha, other layers) are copied untouched. Otherwise exactly
    :func:`copycat_nuke.infer.infer_sequence`. Returns the paths written.

    Raises:
        CopyCatError: as :func:`upscale_sequence`; CatFileError when ``model`` changes the frame's size.
    """
    loaded = _load("deblur", model, device, half)
    return infer_sequence(
        loaded,
        input_pattern,
        output_pattern,
        frames,
        progress=progress,
        tile=tile,
        overlap=overlap,
        passthrough=passthrough,
    )


# ----------------------------------------------------------------------------------------------- refining


def _spread(numbers: list[int], count: int) -> list[int]:
    """At most ``count`` of ``numbers``, evenly spaced, first and last included."""
    if len(numbers) <= count:
        return numbers
    if count == 1:
        return [numbers[len(numbers) // 2]]
    return sorted({numbers[round(i * (len(numbers) - 1) / (count - 1))] for i in range(count)})


def refine_on_shot(
    input_pattern: str,
    run_dir: Union[str, Path],
    frames: Union[str, Sequence[int], None] = None,
    *,
    steps: int,
    model: Union[str, Path, None] = None,
    device: str = "auto",
    listeners: Iterable[Listener] = (),
    stop: Optional[threading.Event] = None,
    max_frames: int = REFINE_MAX_FRAMES,
    learning_rate: float = REFINE_LEARNING_RATE,
    seed: int = 0,
) -> TrainResult:
    """Fine-tune a ×2 network on the shot itself, with no higher-resolution Ground Truth; returns the run.

    For each shot frame (``frames``, or up to ``max_frames`` evenly spaced over the sequence) the pair is
    Input = the frame downscaled ×0.5 (antialiased bicubic, linear light), Ground Truth = the frame (cropped
    to even sides). The pairs are written as float EXRs to ``run_dir/pairs``; the ×2 ``model`` (default the
    shipped Upscale network) is trained on them for ``steps`` steps by the ordinary
    :class:`~copycat_nuke.train.Trainer` into ``run_dir`` (checkpoints, contact sheets, loss curve). The
    refined network is ``result.model_path``: pass it to :func:`upscale_sequence`.

    ``listeners`` receive the training events (:mod:`copycat_nuke.train`); setting ``stop`` ends training
    after the current step, still writing the model.

    Example::

        result = copycat_nuke.refine_on_shot("plate.####.exr", "/tmp/refine", steps=300)
        copycat_nuke.upscale_sequence("plate.####.exr", "up/plate.####.exr", model=result.model_path)

    Raises:
        ConfigError: ``steps`` below 1. CatFileError: ``model`` is not a ×2 network.
        ImageIOError: a frame smaller than 32×32 (its ×0.5 Input would be below the network's 16×16).
        FrameMissingError, SequenceError, ChannelError: naming the frame or pattern at fault.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"refining on the shot needs at least 1 training step (got {steps!r}), e.g. 200")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ConfigError(f"max_frames must be at least 1 (got {max_frames!r})")
    path = _model_path("upscale", model)
    manifest = catfile.read_manifest(path)
    _check_scale("upscale", path, int(manifest.scale), int(manifest.arguments.get("temporal", 0)))
    source = imageio.ImageSequence.parse(input_pattern)
    numbers = source.frames(frames) if frames is not None else _spread(source.frames(), max_frames)
    pairs_dir = Path(run_dir) / "pairs"
    staging = Path(run_dir) / "pairs.partial"  # becomes pairs_dir only once every frame is written
    shutil.rmtree(staging, ignore_errors=True)
    created = _first_missing(Path(run_dir))
    try:
        smallest = _write_shot_pairs(source, numbers, staging, manifest, path)
    except BaseException:  # a bad frame leaves nothing behind: not the staged pairs, not the folders made
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty_folders(Path(run_dir), created)
        raise
    earlier = Path(run_dir) / "pairs.earlier"  # an earlier refinement's pairs go only once the new ones are in
    shutil.rmtree(earlier, ignore_errors=True)
    if pairs_dir.exists():
        pairs_dir.rename(earlier)
    staging.rename(pairs_dir)
    shutil.rmtree(earlier, ignore_errors=True)
    inputs = imageio.ImageSequence(pairs_dir, "input.", 4, ".exr")
    truths = imageio.ImageSequence(pairs_dir, "truth.", 4, ".exr")
    crop = int(manifest.config.get("crop_size") or REFINE_CROP_SIZE)
    config = TrainConfig(
        input=inputs.pattern,
        target=truths.pattern,
        out=str(run_dir),
        frames=imageio.format_frame_list(numbers),  # the frames just written (the folder holds only them)
        steps=steps,
        crop_size=max(MIN_REFINE_INPUT, min(crop, smallest) // 16 * 16),
        initial_weights=str(path),
        checkpoint_interval=max(1, steps // 4),
        image_interval=max(1, steps // 10),
        channels_in=",".join(manifest.channels_in),
        channels_out=",".join(manifest.channels_out),
        seed=seed,
        device=device,
        learning_rate=learning_rate,
        multi_resolution=False,  # as the shipped network was trained (its recipe), and as refine.py measured
        level_weights="equal",  # likewise
        gradient_clip=0.0,  # likewise (no gradient guard)
    )
    return Trainer(config, listeners, stop).run()


def _first_missing(directory: Path) -> Optional[Path]:
    """The outermost of ``directory`` and its parents that does not exist yet (None: it exists)."""
    missing = None
    for folder in (directory.absolute(), *directory.absolute().parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def _remove_empty_folders(directory: Path, outermost: Optional[Path]) -> None:
    """Remove ``directory`` and its parents up to ``outermost`` while they are empty (what this call made;
    a folder another job has written into since stays)."""
    if outermost is None:
        return
    for folder in (directory.absolute(), *directory.absolute().parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == outermost:
            return


def _write_shot_pairs(
    source: imageio.ImageSequence, numbers: Sequence[int], directory: Path, manifest: catfile.Manifest, path: Path
) -> int:
    """Write each shot frame's (×0.5 Input, frame) pair as float EXRs into ``directory``; returns the
    smallest Input side. Raises, naming the frame, on a frame too small or without the model's channels."""
    inputs = imageio.ImageSequence(directory, "input.", 4, ".exr")
    truths = imageio.ImageSequence(directory, "truth.", 4, ".exr")
    smallest: Optional[int] = None
    for number in numbers:
        frame = source.read(number)
        try:
            names_in = imageio.resolve_channels(manifest.channels_in, frame.channels, path=frame.path)
            names_out = imageio.resolve_channels(manifest.channels_out, frame.channels, path=frame.path)
        except CopyCatError as error:
            raise type(error)(f"{error} (the model {path.name} needs them to refine on the shot)") from None
        height, width = frame.height // 2 * 2, frame.width // 2 * 2
        if min(height, width) < 2 * MIN_REFINE_INPUT:
            raise ImageIOError(
                f"{frame.path} is {frame.width}×{frame.height} pixels: refining on the shot needs frames of at "
                f"least {2 * MIN_REFINE_INPUT}×{2 * MIN_REFINE_INPUT}, as their ×0.5 training Inputs must be at "
                f"least {MIN_REFINE_INPUT}×{MIN_REFINE_INPUT}. Refine on larger frames, or list only those."
            )
        pixels = transfer.sanitize(frame.pixels[:height, :width], f"shot frame {number} ({frame.path})")
        index_of = {name: i for i, name in enumerate(frame.channels)}
        truth = np.ascontiguousarray(pixels[:, :, [index_of[n] for n in names_out]])
        small = downscale(np.ascontiguousarray(pixels[:, :, [index_of[n] for n in names_in]]), 2)
        imageio.write_frame(inputs.path(number), small, manifest.channels_in, pixel_type="float")
        imageio.write_frame(truths.path(number), truth, manifest.channels_out, pixel_type="float")
        smallest = min(height // 2, width // 2) if smallest is None else min(smallest, height // 2, width // 2)
    assert smallest is not None  # source.frames() never returns an empty list
    return smallest
