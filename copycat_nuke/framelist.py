"""Frame lists (``1001-1100``, ``1,5,9``, ``1-100x4``) and numbered files on disk, with the standard library only.

Nuke's Python imports this on a button press, also in a locked-down Nuke without numpy or OpenImageIO
(training and rendering then run in an external Python): keep it stdlib-only and Python 3.7 compatible.
:mod:`copycat_nuke.imageio` re-exports the frame-list functions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from copycat_nuke.errors import SequenceError

__all__ = ["MAX_FRAMES", "format_frame_list", "numbered_files", "parse_frame_list"]

#: The most frames one frame list may name (a typo like 1-100000000 fails at once instead of filling memory).
MAX_FRAMES = 1_000_000

_RANGE = re.compile(r"(?P<start>-?\d+)(?:-(?P<end>-?\d+)(?:x(?P<step>\d+))?)?")
_FRAME_LIST_EXAMPLE = "e.g. '1001-1100', '1,5,9', '1-100x4' or '1-10,20,30-40x5'"
# as imageio.ImageSequence: one '#'/'@' per digit, %0Nd zero-padded to N, %d unpadded
_PLACEHOLDER = re.compile(r"#+|@+|%0?(?P<width>\d*)d")


def parse_frame_list(text: str) -> list[int]:
    """Frames named by a Nuke-style frame list, sorted and unique.

    Items are separated by commas and/or spaces: ``N``, ``A-B`` (inclusive) or ``A-BxS`` (every S-th frame
    from A up to B). Negative frames are written with a minus: ``-5--1``.

    Raises:
        SequenceError: naming the text at fault and showing the right form.
    """
    items = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    if not items:
        raise SequenceError(f"The frame list {text!r} is empty: name some frames, {_FRAME_LIST_EXAMPLE}.")
    frames: set[int] = set()
    for item in items:
        match = _RANGE.fullmatch(item)
        if match is None:
            raise SequenceError(f"Cannot read {item!r} in the frame list {text!r}: write {_FRAME_LIST_EXAMPLE}.")
        start = int(match.group("start"))
        end = int(match.group("end")) if match.group("end") is not None else start
        step = int(match.group("step") or 1)
        if end < start or step < 1:
            raise SequenceError(
                f"Cannot read {item!r} in the frame list {text!r}: a range goes from the first frame up to "
                f"the last with a step of 1 or more, {_FRAME_LIST_EXAMPLE}."
            )
        if len(frames) + (end - start) // step + 1 > MAX_FRAMES:
            raise SequenceError(f"The frame list {text!r} names more than {MAX_FRAMES} frames.")
        frames.update(range(start, end + 1, step))
    return sorted(frames)


def format_frame_list(frames: Sequence[int]) -> str:
    """The shortest-reading frame list for ``frames`` (inverse of :func:`parse_frame_list`): ``"1-10,20"``.

    Consecutive frames become ``A-B``; three or more frames with an equal step become ``A-BxS``.
    """
    values = sorted(set(frames))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i + 1
        if j < len(values):
            step = values[j] - values[i]
            while j + 1 < len(values) and values[j + 1] - values[j] == step:
                j += 1
            run = j - i + 1
            if step == 1 or run >= 3:
                suffix = f"x{step}" if step > 1 else ""
                parts.append(f"{values[i]}-{values[j]}{suffix}")
                i = j + 1
                continue
        parts.append(str(values[i]))
        i += 1
    return ",".join(parts)


def numbered_files(pattern: str) -> dict[int, Path]:
    """The files of the sequence ``pattern`` (``dir/name.####.exr``, ``%04d``, ``@@@@``) that exist, by frame.

    A frame counts when its number is written with the pattern's padding (as Nuke writes it), so
    ``name.0001.exr`` is frame 1 of ``name.####.exr`` but ``name.001.exr`` is not. A pattern without a
    placeholder has no numbered files.
    """
    path = Path(pattern)
    match = _PLACEHOLDER.search(path.name)
    if match is None:
        return {}
    token = match.group()
    padding = int(match.group("width") or 1) if token.startswith("%") else len(token)
    prefix, suffix = path.name[: match.start()], path.name[match.end() :]
    number = re.compile(re.escape(prefix) + r"(-?\d+)" + re.escape(suffix))
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return found
    for entry in entries:
        hit = number.fullmatch(entry.name)
        if hit is None:
            continue
        frame = int(hit.group(1))
        if f"{frame:0{padding}d}" == hit.group(1) and entry.is_file():
            found[frame] = path.parent / entry.name
    return found
