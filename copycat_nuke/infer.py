"""Run a ``.cat`` model over frames: linear light in, linear light out.

A frame goes linear → working space (the model's own transfer from its manifest) → network → linear.
Channels the model does not produce (alpha for an rgb model, other layers) pass through untouched, and
outputs keep the input's resolution, windows and pixel type (EXR half in, EXR half out).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from copycat_nuke import catfile, imageio, transfer
from copycat_nuke.device import Runtime, resolve_runtime
from copycat_nuke.errors import ChannelError


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


def load_model(path: Union[str, Path], device: str = "auto", half: bool = False) -> LoadedModel:
    """Load and validate a ``.cat`` and put its network on ``device`` in eval mode.

    ``half``: bf16/fp16 autocast where the device has it (Nuke's "Optimize for Speed and Memory").
    """
    cat = catfile.load_cat(path)
    runtime = resolve_runtime(device, "auto" if half else "fp32")
    network = runtime.place_model(cat.build_model().eval())
    working = transfer.Transfer.from_dict(cat.manifest.transfer)
    return LoadedModel(Path(path), cat.manifest, network, runtime, working)


def apply_model(model: LoadedModel, pixels: np.ndarray) -> np.ndarray:
    """Run the network on one image: float32 H×W×C_in linear → float32 H'×W'×C_out linear."""
    working = model.working.to_working(transfer.sanitize(pixels, "the input frame"))
    tensor = model.runtime.place(torch.from_numpy(np.ascontiguousarray(working.transpose(2, 0, 1))[None]))
    with torch.inference_mode(), model.runtime.autocast():
        output = model.network(tensor)
    result = output.float()[0].permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(model.working.from_working(result), dtype=np.float32)


def infer_frame(model: LoadedModel, frame: imageio.Frame) -> tuple[np.ndarray, list[str]]:
    """The output pixels and channel names for one input frame, unused channels passed through."""
    try:
        names = imageio.resolve_channels(model.channels_in, frame.channels, path=frame.path)
    except ChannelError as error:
        raise ChannelError(f"{error} (the model {model.path.name} needs {', '.join(model.channels_in)})") from None
    source = frame.select(names)
    predicted = apply_model(model, source)
    out_names = list(model.channels_out)
    if predicted.shape[:2] != frame.pixels.shape[:2]:
        return predicted, out_names  # a scaling model: untouched channels cannot pass through
    planes = [predicted]
    for index, name in enumerate(frame.channels):
        if name not in out_names:
            planes.append(frame.pixels[:, :, index : index + 1])
            out_names.append(name)
    return np.concatenate(planes, axis=2), out_names


ProgressCallback = Callable[[int, int, int, float], None]  # (done, total, frame, seconds for it)


def infer_sequence(
    model_path: Union[str, Path],
    input_pattern: str,
    output_pattern: str,
    frames: Union[str, Sequence[int], None] = None,
    *,
    device: str = "auto",
    half: bool = False,
    progress: Optional[ProgressCallback] = None,
) -> list[Path]:
    """Run a ``.cat`` over every frame (or ``frames``) of a sequence and write the results.

    Returns the paths written. The model is loaded once.
    """
    model = load_model(model_path, device, half)
    source = imageio.ImageSequence.parse(input_pattern)
    target = imageio.ImageSequence.parse(output_pattern)
    frame_numbers = source.frames(frames)
    written = []
    for done, number in enumerate(frame_numbers, start=1):
        start = time.perf_counter()
        frame = imageio.read_frame(source.path(number))
        pixels, names = infer_frame(model, frame)
        written.append(
            imageio.write_frame(
                target.path(number),
                pixels,
                names,
                like=frame,  # windows (when the size matches), pixel type and metadata of the input
                metadata={"copycat:model": model.path.name},
            )
        )
        if progress is not None:
            progress(done, len(frame_numbers), number, time.perf_counter() - start)
    return written
