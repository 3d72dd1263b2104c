"""Render a node's inputs to EXR files with a temporary Write node, so anything upstream works.

The Write is created beside the node, connected to what feeds the node's input, executed one frame at a
time (so Stop is honoured between frames and a missing frame is known by number) and deleted afterwards,
also when rendering fails. Frames are written as 32-bit float EXR with ``raw`` on: scene-linear values
exactly as Nuke has them, which is what the trainer and ``infer`` read.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import nuke

from copycat_nuke.errors import CopyCatError
from copycat_nuke.framelist import numbered_files
from copycat_nuke.nuke import jobs

#: Knob values of the temporary Write (set only where the knob exists in this Nuke version).
WRITE_SETTINGS = (
    ("file_type", "exr"),
    ("datatype", "32 bit float"),
    ("raw", True),
    ("label", "copycat_nuke: temporary, deleted after rendering"),
)

_RGBA_TOKENS = {"r", "g", "b", "a", "rgb", "rgba", "alpha", "red", "green", "blue"}


def write_channels(*specs: str) -> str:
    """The Write's ``channels``: ``rgba`` when the channel specs only name rgba channels, else ``all``."""
    tokens = {token.lower() for spec in specs for token in re.split(r"[,\s]+", spec) if token}
    return "rgba" if tokens <= _RGBA_TOKENS else "all"


def node(name: str) -> nuke.Node:
    """Main thread: the node called ``name``, or a clear error when it was deleted meanwhile."""
    found = nuke.toNode(name)
    if found is None:
        raise CopyCatError(f"{name} no longer exists (it was deleted or renamed while working)")
    return found


def upstream(node_name: str, index: int, label: str) -> nuke.Node:
    """Main thread: what feeds input ``index`` of the node, or an error naming the input to connect."""
    source = node(node_name).input(index)
    if source is None:
        raise CopyCatError(f"nothing is connected to the {label} input of {node_name}: connect it and try again")
    return source


def frame_range(node_name: str, index: int, label: str) -> tuple[int, int]:
    """Main thread: first and last frame of what feeds input ``index``."""
    span = upstream(node_name, index, label).frameRange()
    return int(span.first()), int(span.last())


def _create_write(node_name: str, index: int, label: str, pattern: str, channels: str) -> str:
    source = upstream(node_name, index, label)
    with node(node_name).parent():
        write = nuke.nodes.Write()
    write.setInput(0, source)
    for knob_name, value in (("file", pattern), ("channels", channels), *WRITE_SETTINGS):
        knob = write.knob(knob_name)
        if knob is not None:
            knob.setValue(value)
    return write.fullName()


def _execute(write_name: str, frame: int, view: str) -> None:
    nuke.execute(node(write_name), frame, frame, 1, views=[view])


def _delete(write_name: str) -> None:
    write = nuke.toNode(write_name)
    if write is not None:
        nuke.delete(write)


def clear_sequence(pattern: str) -> None:
    """Delete the frames of a sequence we render into (left over from an earlier run)."""
    # stdlib only (no OpenImageIO): a locked-down Nuke renders here and trains in an external Python
    for path in numbered_files(pattern).values():
        with contextlib.suppress(FileNotFoundError):  # not unlink(missing_ok=True): Python 3.8+
            path.unlink()


def render_frames(
    context: jobs.Context,
    index: int,
    label: str,
    pattern: str,
    frames: Sequence[int],
    channels: str,
    *,
    skip_failures: bool = False,
    view: Optional[str] = None,
    progress: tuple[float, float] = (0.0, 100.0),
) -> list[int]:
    """Render input ``index`` (called ``label``) of the job's node at ``frames`` to the EXR ``pattern``.

    Returns the frames written. With ``skip_failures`` a frame that fails to render (a Read's missing
    frame) is left out; otherwise it raises a :class:`CopyCatError` naming the frame and Nuke's error.
    ``view`` is the view rendered (default: the script's first). ``progress`` is the span of the job's
    progress (percent) these frames cover.
    """
    Path(pattern).parent.mkdir(parents=True, exist_ok=True)
    if view is None:
        view = context.call(nuke.views)[0]
    write = context.call(_create_write, context.node_name, index, label, pattern, channels)
    written: list[int] = []
    first_failure: Optional[str] = None
    try:
        for done, frame in enumerate(frames):
            context.check_stop()
            try:
                context.call(_execute, write, frame, view)
            except RuntimeError as error:
                if "cancel" in str(error).lower():
                    raise jobs.Stopped(f"{context.node_name}: rendering was cancelled") from None
                if not skip_failures:
                    raise CopyCatError(
                        f"cannot render the {label} input at frame {frame}: {error}. Fix what feeds {label} "
                        "there, or leave the frame out."
                    ) from None
                first_failure = first_failure or f"frame {frame}: {error}"
                continue
            written.append(frame)
            start, span = progress
            context.progress(start + span * (done + 1) / len(frames), f"rendering {label}: frame {frame}")
    finally:
        context.call(_delete, write)
    if skip_failures and not written and first_failure:
        raise CopyCatError(f"the {label} input rendered no frames (first failure at {first_failure})")
    return written
