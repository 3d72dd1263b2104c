"""Image sequences on disk in Nuke's spellings: ``shot.####.exr``, ``shot.%04d.exr``, ``shot.@@@@.exr``, a
directory holding one sequence, or a single still.

Frame lists (``1001-1100``, ``1,5,9``) live in :mod:`copycat_nuke.framelist`; reading and writing pixels in
:mod:`copycat_nuke.imageio`, which re-exports :class:`ImageSequence`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import OpenImageIO as oiio

from copycat_nuke.channels import PathLike
from copycat_nuke.errors import FrameMissingError, SequenceError
from copycat_nuke.framelist import format_frame_list, parse_frame_list

if TYPE_CHECKING:
    from copycat_nuke.channels import ChannelSpec
    from copycat_nuke.imageio import Frame

__all__ = ["ImageSequence", "frame_number_in"]

# A frame number right before the extension; a minus is a sign only after "." or "_" ("shot.-005.exr"),
# so "plate-0001.exr" is frame 1 of "plate-".
_FRAME_IN_NAME = re.compile(r"(?P<prefix>.*?)(?P<frame>(?<=[._])-\d+|\d+)(?P<suffix>\.[^.]+)")
_PLACEHOLDER = re.compile(r"#+|@+|%0?(?P<width>\d*)d")
_PATTERN_EXAMPLE = "e.g. 'shot.####.exr', 'shot.%04d.exr', 'shot.@@@@.exr' or a directory holding one sequence"


def _image_extensions() -> frozenset[str]:
    listing = oiio.get_string_attribute("extension_list")
    return frozenset(
        "." + ext.lower() for entry in listing.split(";") for ext in entry.partition(":")[2].split(",") if ext
    )


def _format_frame(frame: int, padding: int) -> str:
    return f"{frame:0{padding}d}"


@dataclass(frozen=True)
class ImageSequence:
    """Numbered frames on disk: ``directory/prefix<frame zero-padded to padding>suffix``.

    ``padding`` is ``None`` for a single still file, which answers for every frame (as Nuke's Read does).
    Frame numbers longer than the padding are written in full, negative ones with a sign (``-005``).
    """

    directory: Path
    prefix: str
    padding: int | None
    suffix: str

    @property
    def pattern(self) -> str:
        """Nuke's spelling, one ``#`` per digit: ``/shots/a/shot.####.exr``."""
        return str(self.directory / (self.prefix + "#" * (self.padding or 0) + self.suffix))

    def __str__(self) -> str:
        return self.pattern

    @classmethod
    def parse(cls, spec: PathLike) -> ImageSequence:
        """Understand ``shot.####.exr``, ``shot.%04d.exr``, ``shot.@@@@.exr``, a directory or one file.

        ``#`` and ``@`` stand for one digit each; ``%d`` means no padding. A directory must hold exactly one
        sequence (or one still) of image files; hidden files are ignored. Any other path is a still.

        Raises:
            SequenceError: naming the text at fault with an example of the right form.
        """
        text = os.fspath(spec)
        if not text.strip():
            raise SequenceError(f"No sequence given: name one, {_PATTERN_EXAMPLE}.")
        path = Path(text)
        placeholders = list(_PLACEHOLDER.finditer(path.name))
        if not placeholders:
            if path.is_dir():
                return cls._only_sequence_in(path)
            return cls(path.parent, path.name, None, "")
        if len(placeholders) > 1:
            raise SequenceError(
                f"The sequence {text!r} has more than one frame-number placeholder "
                f"({', '.join(m.group() for m in placeholders)}): use one, {_PATTERN_EXAMPLE}."
            )
        (match,) = placeholders
        token = match.group()
        if token.startswith("%"):
            width = match.group("width")
            if width and not token.startswith("%0"):
                raise SequenceError(
                    f"The sequence {text!r} uses {token!r}, which pads with spaces: "
                    f"write %0{width}d for zero padding, {_PATTERN_EXAMPLE}."
                )
            padding = int(width) if width else 1
        else:
            padding = len(token)
        if padding < 1:
            raise SequenceError(f"The sequence {text!r} has zero padding: {_PATTERN_EXAMPLE}.")
        name = path.name
        return cls(path.parent, name[: match.start()], padding, name[match.end() :])

    @classmethod
    def _only_sequence_in(cls, directory: Path) -> ImageSequence:
        found = _sequences_in(directory)
        if len(found) == 1:
            return found[0][0]
        if not found:
            raise SequenceError(
                f"No image files in the directory {directory}: point at a directory holding one sequence, "
                f"or name the files, {_PATTERN_EXAMPLE}."
            )
        listing = "; ".join(
            f"{seq.pattern} ({format_frame_list(frames)})" if seq.padding else seq.pattern for seq, frames in found
        )
        raise SequenceError(
            f"The directory {directory} holds {len(found)} sequences: {listing}. "
            "Name the one you mean, e.g. '" + str(found[0][0].pattern) + "'."
        )

    def path(self, frame: int) -> Path:
        """The file of ``frame`` (the still itself, for a still)."""
        if self.padding is None:
            return self.directory / self.prefix
        return self.directory / f"{self.prefix}{_format_frame(frame, self.padding)}{self.suffix}"

    def existing_frames(self) -> list[int]:
        """The frames that exist on disk, sorted (a still: its frame number from the name, else 0)."""
        if self.padding is None:
            path = self.path(0)
            if not path.is_file():
                return []
            number = frame_number_in(path)
            return [number if number is not None else 0]
        return sorted(frame for frame, _ in self._matching_files())

    def _matching_files(self) -> Iterator[tuple[int, str]]:
        assert self.padding is not None
        pattern = re.compile(re.escape(self.prefix) + r"(-?\d+)" + re.escape(self.suffix))
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and _format_frame(int(match.group(1)), self.padding) == match.group(1) and entry.is_file():
                yield int(match.group(1)), entry.name

    def frames(self, frame_list: str | Sequence[int] | None = None) -> list[int]:
        """The frames to use, sorted: all that exist (``None``), or those listed, each checked on disk.

        Raises:
            FrameMissingError: listing the missing frames compactly and the frames that do exist.
            SequenceError: ``frame_list`` cannot be read.
        """
        if frame_list is None:
            existing = self.existing_frames()
            if not existing:
                raise FrameMissingError(
                    f"No frames of {self.pattern} exist. Check the path, the padding "
                    "(one # per digit) and that the frames were rendered."
                )
            return existing
        wanted = parse_frame_list(frame_list) if isinstance(frame_list, str) else sorted(set(frame_list))
        missing = [f for f in wanted if not self.path(f).is_file()]
        if missing:
            have = format_frame_list(self.existing_frames()) or "none"
            noun = f"Frame {missing[0]} is" if len(missing) == 1 else f"Frames {format_frame_list(missing)} are"
            raise FrameMissingError(
                f"{noun} missing from {self.pattern} (e.g. {self.path(missing[0])}); frames on disk: {have}. "
                "Render or copy the missing frames, or ask only for frames that exist."
            )
        return wanted

    def read(self, frame: int, channels: ChannelSpec | None = None) -> Frame:
        """:func:`read_frame` of ``frame``; a missing file raises :class:`FrameMissingError` naming it."""
        path = self.path(frame)
        if not path.exists():
            raise FrameMissingError(
                f"Frame {frame} of {self.pattern} is missing: {path} does not exist. "
                "Render or copy it, or leave it out of the frame range."
            )
        from copycat_nuke.imageio import read_frame  # imageio imports this module

        return read_frame(path, channels)


def _sequences_in(directory: Path) -> list[tuple[ImageSequence, list[int]]]:
    """Every sequence and still among the visible image files of ``directory``, sorted by pattern."""
    extensions = _image_extensions()
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    stills: list[ImageSequence] = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = entry.name
        if name.startswith(".") or Path(name).suffix.lower() not in extensions or not entry.is_file():
            continue
        match = _FRAME_IN_NAME.fullmatch(name)
        if match is None:
            stills.append(ImageSequence(directory, name, None, ""))
            continue
        key = (match.group("prefix"), match.group("suffix"))
        groups.setdefault(key, []).append((int(match.group("frame")), match.group("frame")))
    found: list[tuple[ImageSequence, list[int]]] = [(s, s.existing_frames()) for s in stills]
    for (prefix, suffix), members in groups.items():
        # The padding is the shortest spelling; a frame spelled otherwise ("01" beside "1") is ambiguous.
        padding = min(len(digits) for _, digits in members)
        if all(_format_frame(f, padding) == d for f, d in members):
            found.append((ImageSequence(directory, prefix, padding, suffix), sorted(f for f, _ in members)))
        else:
            for width in sorted({len(d) for _, d in members}):
                frames = [f for f, d in members if len(d) == width]
                found.append((ImageSequence(directory, prefix, width, suffix), sorted(frames)))
    return sorted(found, key=lambda item: item[0].pattern)


def frame_number_in(path: Path) -> int | None:
    """The frame number right before ``path``'s extension, or None."""
    match = _FRAME_IN_NAME.fullmatch(path.name)
    return int(match.group("frame")) if match else None
