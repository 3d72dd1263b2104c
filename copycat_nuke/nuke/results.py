"""Per-frame results of the Inference, Upscale and Deblur nodes, and whether each one is up to date.

Every frame a node computes is written to its Output File, then a record beside it,
``<output folder>/.copycat/<frame file name>.json``, says what made it (the :class:`Recipe`) and the
file's size and time. The gizmo shows a frame only when its record matches what the node would make now;
any other frame is a Nuke error (the gizmo's Assert) naming the reason and what to press. One record per
frame, written atomically after its frame, so farm chunks and several Nuke sessions never collide.

Standard library only (Python 3.7): the gizmo's check runs in any Nuke, with or without torch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from copycat_nuke import atomic

#: Folder (beside the frames) holding one record per frame; hidden, and no name in it ends in .exr, so a
#: wildcard Read of the output never picks a record up.
RECORD_DIR = ".copycat"

_PLACEHOLDER = re.compile(r"(#+)|%(0?\d*)d|(@+)")


@dataclass(frozen=True)
class Recipe:
    """What one frame of a node's result is made from; a frame is stale when any of it changes."""

    model: str  #: the .cat's path
    model_mtime_ns: int  #: ...and its time and size, so a model retrained in place is noticed
    model_size: int
    input: str  #: a hash of the node graph upstream (see inference.input_signature)
    optimize: bool  #: half precision changes the pixels slightly
    tile: int  #: tiles and their overlap change the pixels slightly too (0: automatic)
    overlap: int
    view: str

    def reasons_against(self, stored: dict[str, Any]) -> list[str]:
        """Why a frame made from ``stored`` differs from one made from this recipe (empty: it does not)."""
        reasons = []
        if any(stored.get(key) != getattr(self, key) for key in ("model", "model_mtime_ns", "model_size")):
            reasons.append("the model changed")
        if stored.get("input") != self.input:
            reasons.append("the input changed")
        if stored.get("optimize") != self.optimize:
            reasons.append("Optimize changed")
        if (stored.get("tile"), stored.get("overlap")) != (self.tile, self.overlap):
            reasons.append("the tiling changed")
        if stored.get("view", self.view) != self.view:
            reasons.append("the view changed")
        return reasons


def frame_file(pattern: str, frame: int, view: str = "main") -> Path:
    """The file of ``frame`` (and ``view``: ``%V`` its name, ``%v`` its first letter) in a sequence pattern
    written ``####``, ``%04d`` or ``@``, as Nuke and copycat_nuke.imageio name frames."""
    named = pattern.replace("%V", view).replace("%v", view[:1])
    folder, name = os.path.split(named)

    def number(match: re.Match[str]) -> str:
        hashes, printf, ats = match.groups()
        width = len(hashes or ats or "") if printf is None else int(printf or 0)
        sign = "-" if frame < 0 else ""
        return sign + str(abs(frame)).zfill(width)

    return Path(folder) / _PLACEHOLDER.sub(number, name, count=1)


def record_path(output: Path) -> Path:
    """Where the record of the frame file ``output`` lives."""
    return output.parent / RECORD_DIR / (output.name + ".json")


def write_record(output: Path, recipe: Recipe) -> None:
    """Record that ``output`` (already on disk) was made from ``recipe``."""
    stat = output.stat()
    write_json(record_path(output), {**asdict(recipe), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` as JSON, atomically."""
    write_text(path, json.dumps(record, sort_keys=True))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (never half a file, no temporary left behind), readable by all."""
    atomic.write_text(path, text)


def read_record(output: Path) -> Optional[dict[str, Any]]:
    """The record of ``output``, or None when there is none or it cannot be read."""
    try:
        record = json.loads(record_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def problem(output: Path, recipe: Recipe) -> Optional[str]:
    """Why the frame file ``output`` is not the result ``recipe`` makes, or None when it is.

    The reason starts with "no result" or "stale", for the node's message.
    """
    record = read_record(output)
    if record is None or not output.is_file():
        return "no result"
    reasons = recipe.reasons_against(record)
    stat = output.stat()
    if (record.get("size"), record.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
        reasons.append("the file was replaced")
    return f"stale: {' and '.join(reasons)} since it was rendered" if reasons else None


def format_frames(frames: Sequence[int]) -> str:
    """``1-3,7``: frames as Nuke writes a frame list (runs of consecutive frames as ranges)."""
    runs: list[list[int]] = []
    for frame in sorted(set(frames)):
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
