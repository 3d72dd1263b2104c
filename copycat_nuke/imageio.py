"""Frames on disk <-> float32 ``H×W×C`` numpy arrays with named channels, through OpenImageIO only.

What this module promises:

* **Arrays cover the display window and the data window.** :func:`read_frame` returns ``float32`` pixels
  over the smallest rectangle holding both the file's display window (Nuke's *format*) and its data window
  (Nuke's *bbox*): :attr:`Frame.pixel_window`. Overscan (data beyond the format, origins below zero) is
  kept; pixels outside the data window are 0. Where the data window lies inside the display window (every
  PNG/JPEG/DPX/TIFF, most EXRs) that is the display window, as before. :func:`write_frame` takes the same
  layout and stores both windows back. Values are the file's code values as stored (no colour conversion;
  8/16-bit integers map to 0..1); alpha is never premultiplied or divided on the way.
* **Channels are found by name, never by position.** OpenImageIO reorders EXR channels on read (RGBA first,
  then the rest sorted), so ``channels="rgba"``, ``"mask.a"``, ``"rgba.red"`` or ``["R", "G", "B"]`` are
  resolved against the file's names (see :func:`resolve_channels`, in :mod:`copycat_nuke.channels`).
* **Writes are atomic.** :func:`write_frame` writes a hidden temporary file next to the target and renames
  it over the target, so a crash or Ctrl-C never leaves a half-written frame where a frame should be.
* **Sequences** use Nuke's spellings: ``shot.####.exr``, ``shot.%04d.exr``, ``shot.@@@@.exr`` or a
  directory holding one sequence (:class:`ImageSequence`, in :mod:`copycat_nuke.sequences`); frame lists
  read ``1001-1100``, ``1,5,9``, ``1-100x4`` or combinations (:func:`parse_frame_list`, in
  :mod:`copycat_nuke.framelist`). Both are re-exported here.

Every failure on bad input is a :class:`~copycat_nuke.errors.CopyCatError` that names the file, frame or
text at fault.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from copycat_nuke import atomic
from copycat_nuke.channels import (
    ChannelSpec,
    PathLike,
    canonical_order,
    missing_channel,
    names_for_writing,
    resolve_channels,
    resolve_token,
    split_spec,
)
from copycat_nuke.errors import (
    ChannelError,
    FrameMissingError,
    ImageIOError,
    ResolutionMismatchError,
)
from copycat_nuke.framelist import format_frame_list, parse_frame_list  # stdlib: Nuke imports them alone
from copycat_nuke.sequences import ImageSequence, frame_number_in

__all__ = [
    "Frame",
    "ImageSequence",
    "Window",
    "check_same_size",
    "format_frame_list",
    "parse_frame_list",
    "place",
    "read_frame",
    "read_image",
    "resize",
    "resolve_channels",
    "write_frame",
]


#: Pixel types each writer accepts; the first is the default for that format.
FORMAT_PIXEL_TYPES: dict[str, tuple[str, ...]] = {
    "openexr": ("half", "float"),
    "dpx": ("uint10", "uint8", "uint12", "uint16"),
    "tiff": ("uint16", "uint8", "float"),
    "png": ("uint8", "uint16"),
    "jpeg": ("uint8",),
}

# Metadata that describes how the *source* file was laid out rather than the picture. Copying it onto a new
# file would be wrong (a DPX packing, a TIFF strip size, OIIO's own read hints) or dangerous (OIIO 3.2's DPX
# writer strides the pixel buffer by a copied dpx:EndOfLinePadding).
_LAYOUT_METADATA = frozenset(
    {
        "DateTime",
        "dpx:DittoKey",
        "dpx:EndOfImagePadding",
        "dpx:EndOfLinePadding",
        "dpx:ImageDescriptor",
        "dpx:Packing",
        "planarconfig",
        "tiff:Compression",
        "tiff:PhotometricInterpretation",
        "tiff:PlanarConfiguration",
        "tiff:RowsPerStrip",
    }
)


# ----------------------------------------------------------------------------------------------------------
# Windows and frames


@dataclass(frozen=True)
class Window:
    """A pixel rectangle in image coordinates (y down, as OpenImageIO and EXR count): origin and size."""

    x: int
    y: int
    width: int
    height: int

    @property
    def x_end(self) -> int:
        """One past the last column."""
        return self.x + self.width

    @property
    def y_end(self) -> int:
        """One past the last row."""
        return self.y + self.height

    @property
    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: Window) -> Window:
        """The overlap of two windows (``width``/``height`` 0 when they do not overlap)."""
        x, y = max(self.x, other.x), max(self.y, other.y)
        return Window(x, y, max(0, min(self.x_end, other.x_end) - x), max(0, min(self.y_end, other.y_end) - y))

    def union(self, other: Window) -> Window:
        """The smallest window holding both (an empty one counts for nothing)."""
        if other.is_empty:
            return self
        if self.is_empty:
            return other
        x, y = min(self.x, other.x), min(self.y, other.y)
        return Window(x, y, max(self.x_end, other.x_end) - x, max(self.y_end, other.y_end) - y)

    def scaled(self, factor: int) -> Window:
        """The same window in an image ``factor`` times larger: origin and size times ``factor``."""
        return Window(self.x * factor, self.y * factor, self.width * factor, self.height * factor)

    def shrunk(self, factor: int) -> Window:
        """The largest window whose :meth:`scaled` by ``factor`` lies inside this one (origin rounded up)."""
        x, y = -(-self.x // factor), -(-self.y // factor)
        return Window(x, y, max(0, self.x_end // factor - x), max(0, self.y_end // factor - y))

    def __str__(self) -> str:
        return f"{self.width}×{self.height} at ({self.x}, {self.y})"


@dataclass
class Frame:
    """One image read from disk.

    Attributes:
        pixels: ``float32`` ``H×W×C`` over :attr:`pixel_window` (the display window and the data window
            together), channels in ``channels`` order; 0 outside the data window.
        channels: channel names as the file spells them, e.g. ``("R", "G", "B", "A", "mask.A")``.
        display_window: the file's display window (Nuke's format).
        data_window: the file's data window (Nuke's bbox) as stored, which may have a negative origin or
            reach beyond the display window (overscan); ``pixels`` hold all of it.
        pixel_type: the file's pixel type: ``"half"``, ``"float"``, ``"uint8"``, ``"uint10"``, ``"uint16"`` …
        metadata: the file's attributes (``compression``, ``PixelAspectRatio``, ``copycat:…`` …) as
            ``str``/``int``/``float``, or tuples for vector types.
        metadata_types: OpenImageIO type names of the tuple-valued metadata (``"matrix"``, ``"timecode"`` …),
            so that ``write_frame(..., like=frame)`` writes them back with the same types.
        path: the file it came from, or ``None``.
    """

    pixels: np.ndarray
    channels: tuple[str, ...]
    display_window: Window
    data_window: Window
    pixel_type: str
    metadata: dict[str, object] = field(default_factory=dict)
    metadata_types: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        window = self.pixel_window
        if tuple(self.pixels.shape[:2]) != (window.height, window.width):
            raise ValueError(
                f"pixels of {self.pixels.shape[1]}×{self.pixels.shape[0]} do not cover the display window "
                f"{self.display_window} and the data window {self.data_window} ({window} together)"
            )

    @property
    def pixel_window(self) -> Window:
        """The rectangle ``pixels`` cover: the display window and the data window together."""
        return self.display_window.union(self.data_window)

    @property
    def height(self) -> int:
        """Rows of ``pixels`` (the display window's height, or more with overscan)."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Columns of ``pixels`` (the display window's width, or more with overscan)."""
        return int(self.pixels.shape[1])

    def select(self, spec: ChannelSpec, *, window: Window | None = None) -> np.ndarray:
        """The channels named by ``spec`` (see :func:`resolve_channels`): a new float32 ``H×W×len`` array,
        over ``window`` when given (as :meth:`pixels_in`), else over :attr:`pixel_window`."""
        names = resolve_channels(spec, self.channels, path=self.path)
        pixels = self.pixels[..., [self.channels.index(n) for n in names]]
        return pixels if window is None else place(pixels, self.pixel_window, window)

    def pixels_in(self, window: Window) -> np.ndarray:
        """All channels over ``window``: cropped where it is smaller, 0 where it reaches past the pixels.
        ``frame.pixels_in(frame.display_window)`` is the format alone, as Nuke's Crop to format gives."""
        if window == self.pixel_window:
            return self.pixels
        return place(self.pixels, self.pixel_window, window)


def check_same_size(
    a: Frame,
    b: Frame,
    *,
    labels: tuple[str, str] = ("Input", "Ground Truth"),
    frame: int | None = None,
    scale: int = 1,
) -> None:
    """Raise :class:`ResolutionMismatchError` unless ``b``'s display window is ``scale`` times ``a``'s
    (the same size at the default 1; 2 for an upscaler's Ground Truth). Data windows (overscan, bboxes) may
    differ: they are aligned by their coordinates, not compared here.

    ``labels`` name the two roles in the message (e.g. ``("Input", "Ground Truth")``).
    """
    da, db = a.display_window, b.display_window
    if (da.width * scale, da.height * scale) == (db.width, db.height):
        return
    at = f" at frame {frame}" if frame is not None else ""
    if scale == 1:
        what, fix = "differ in size", "Each pair must be the same size"
    else:
        what, fix = (
            f"are not {scale}× apart",
            f"Every {labels[1]} must be {scale}× its {labels[0]}, as in the first pair",
        )
    raise ResolutionMismatchError(
        f"{labels[0]} and {labels[1]} {what}{at}: {labels[0]} {a.path or '(in memory)'} is "
        f"{da.width}×{da.height} but {labels[1]} {b.path or '(in memory)'} is {db.width}×{db.height}. "
        f"{fix}: reformat or crop one of them to match the other "
        "(e.g. a Reformat node) and render it again."
    )


# ----------------------------------------------------------------------------------------------------------
# Reading


def _damaged(path: Path, detail: str) -> ImageIOError:
    detail = " ".join(detail.split())
    return ImageIOError(
        f"Could not read {path}: the file may be damaged, partly written or not an image"
        + (f" ({detail})" if detail else "")
        + ". Render or copy it again."
    )


def _open_input(path: Path) -> oiio.ImageInput:
    if not path.exists():
        number = frame_number_in(path)
        frame = f"Frame {number} is missing: " if number is not None else ""
        raise FrameMissingError(f"{frame}{path} does not exist. Check the path and that the frame was rendered.")
    if path.is_dir():
        raise ImageIOError(f"{path} is a directory, not an image file.")
    config = oiio.ImageSpec()
    # Return alpha and colour exactly as stored: no premultiplying of PNG/TIFF unassociated alpha.
    config.attribute("oiio:UnassociatedAlpha", 1)
    inp = oiio.ImageInput.open(str(path), config)
    if inp is None:
        raise _damaged(path, oiio.geterror())
    return inp


def _window_of(spec: oiio.ImageSpec) -> tuple[Window, Window]:
    display = Window(spec.full_x, spec.full_y, spec.full_width, spec.full_height)
    return display, Window(spec.x, spec.y, spec.width, spec.height)


def _pixel_type_of(spec: oiio.ImageSpec) -> str:
    name = str(spec.format)
    bits = spec.get_int_attribute("oiio:BitsPerSample", 0)
    if name in ("uint8", "uint16") and bits and bits not in (8, 16):
        return f"uint{bits}"
    return name


def _metadata_of(spec: oiio.ImageSpec) -> tuple[dict[str, object], dict[str, str]]:
    values: dict[str, object] = {}
    types: dict[str, str] = {}
    for param in spec.extra_attribs:
        value = param.value
        if isinstance(value, (list, np.ndarray)):
            value = tuple(np.asarray(value).ravel().tolist())
        values[param.name] = value
        if isinstance(value, tuple):
            types[param.name] = str(param.type)
    return values, types


@dataclass(frozen=True, eq=False)
class _Part:
    index: int
    name: str
    spec: oiio.ImageSpec

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.spec.channelnames)


def _parts_of(inp: oiio.ImageInput, path: Path) -> list[_Part]:
    parts: list[_Part] = []
    while inp.seek_subimage(len(parts), 0):
        spec = inp.spec().copy()
        if spec.deep:
            raise ImageIOError(f"{path} holds deep data, which is not supported: flatten it first (DeepToImage).")
        parts.append(_Part(len(parts), spec.get_string_attribute("name", ""), spec))
    if not parts:
        raise _damaged(path, _oiio_error(inp))
    inp.geterror()  # seeking one past the last part is how the loop ends; it leaves an error to clear
    return parts


def _pick_part(parts: list[_Part], subimage: int | str, path: Path) -> _Part:
    listing = ", ".join(f"{p.index}" + (f" ({p.name})" if p.name else "") for p in parts)
    if isinstance(subimage, int):
        if 0 <= subimage < len(parts):
            return parts[subimage]
        raise ImageIOError(f"{path} has no part {subimage}; it has parts {listing}.")
    for exact in (True, False):
        for part in parts:
            if part.name == subimage or (not exact and part.name.lower() == subimage.lower()):
                return part
    raise ImageIOError(f"{path} has no part named {subimage!r}; it has parts {listing}.")


def _resolve_across_parts(tokens: list[str], parts: list[_Part], path: Path) -> list[tuple[_Part, str, str]]:
    """(part, channel, name to report) for each channel asked for.

    Each token is looked up in the first part, else in the others; ``part.channel`` names a part explicitly
    (and is reported with that prefix).
    """
    found: list[tuple[_Part, str, str]] = []
    for token in tokens:
        hits: list[tuple[_Part, str, str]] = []
        first_error: ChannelError | None = None
        for part in parts:
            try:
                hits = [(part, n, n) for n in resolve_token(token, part.channels, path)]
                break
            except ChannelError as error:
                first_error = first_error or error
            prefix = part.name + "."
            if part.name and token.lower().startswith(prefix.lower()):
                try:
                    names = resolve_token(token[len(prefix) :], part.channels, path)
                    hits = [(part, n, f"{part.name}.{n}") for n in names]
                    break
                except ChannelError:
                    pass
        if not hits and len(parts) == 1 and first_error is not None:
            raise first_error
        if not hits:
            everything = [(f"{p.name}.{c}" if p.name and p.index else c) for p in parts for c in p.channels]
            raise missing_channel(token, everything, path)
        found.extend(hits)
    return found


def _read_part(inp: oiio.ImageInput, part: _Part, names: list[str], path: Path) -> np.ndarray:
    """The named channels of one part, as float32 ``h×w×len(names)`` over its data window."""
    indices = [part.channels.index(n) for n in names]
    first, last = min(indices), max(indices) + 1  # read one contiguous channel range, then pick
    spec = part.spec
    pixels = inp.read_image(part.index, 0, first, last, "float")
    if pixels is None or inp.has_error:
        raise _damaged(path, _oiio_error(inp))
    pixels = np.asarray(pixels, dtype=np.float32).reshape(spec.height, spec.width, last - first)
    if inp.format_name() == "dpx":
        _repair_dpx10_row_ends(path, spec, pixels, first)
    bits = _odd_bits(_pixel_type_of(spec))
    if bits:  # OIIO widens 10/12-bit codes to 16 bits by bit replication: return exactly code / (2**bits - 1)
        levels = float(2**bits - 1)
        pixels = np.round(pixels * levels) / levels
    return pixels[..., [i - first for i in indices]]


def place(pixels: np.ndarray, window: Window, target: Window) -> np.ndarray:
    """``H×W×C`` pixels covering ``window`` moved into a new zeroed array covering ``target`` (same image
    coordinates): what lies outside ``target`` is cropped, what ``window`` does not reach is 0."""
    out = np.zeros((target.height, target.width, pixels.shape[2]), dtype=np.float32)
    overlap = window.intersect(target)
    if not overlap.is_empty:
        out[
            overlap.y - target.y : overlap.y_end - target.y,
            overlap.x - target.x : overlap.x_end - target.x,
        ] = pixels[overlap.y - window.y : overlap.y_end - window.y, overlap.x - window.x : overlap.x_end - window.x]
    return out


def read_frame(path: PathLike, channels: ChannelSpec | None = None, *, subimage: int | str | None = None) -> Frame:
    """Read one image file into a :class:`Frame` (float32 ``H×W×C`` over the display and data windows).

    Args:
        path: any format OpenImageIO reads (EXR, DPX, TIFF, PNG, JPEG …).
        channels: which channels, by name (see :func:`resolve_channels`), in the order wanted; ``None``
            reads every channel of the part, in the file's order.
        subimage: the part of a multi-part EXR (index or part name). ``None`` reads part 0, and looks up a
            requested channel in the other parts when part 0 lacks it (``part.channel`` names one explicitly).

    Raises:
        FrameMissingError: the file does not exist.
        ImageIOError: the file is unreadable, truncated or damaged, or has no such part.
        ChannelError: a channel asked for is not in the file.
    """
    path = Path(path)
    inp = _open_input(path)
    try:
        parts = _parts_of(inp, path)
        if subimage is not None:
            parts = [_pick_part(parts, subimage, path)]
        if channels is None:
            wanted = [(parts[0], n, n) for n in parts[0].channels]
        else:
            wanted = _resolve_across_parts(split_spec(channels), parts, path)
        main = wanted[0][0]
        used = list(dict.fromkeys(p for p, _, _ in wanted))
        display, data = _window_of(main.spec)
        for part in used[1:]:  # parts may have data windows of their own: keep every pixel of each
            data = data.union(_window_of(part.spec)[1])
        covered = display.union(data)
        layers: list[np.ndarray] = []
        names: list[str] = []
        for part in used:
            pixels = _read_part(inp, part, [n for p, n, _ in wanted if p is part], path)
            layers.append(place(pixels, _window_of(part.spec)[1], covered))
            # A name another part already gave (two parts each with "R") is qualified by its part.
            taken = set(names)
            reported = [r for p, _, r in wanted if p is part]
            names.extend(r if r not in taken else f"{part.name or part.index}.{r}" for r in reported)
        order = _interleave_order(wanted)
        stacked = np.concatenate(layers, axis=2)[..., order] if len(layers) > 1 else layers[0]
        metadata, metadata_types = _metadata_of(main.spec)
        return Frame(
            pixels=np.ascontiguousarray(stacked),
            channels=tuple(names[i] for i in order),
            display_window=display,
            data_window=data,
            pixel_type=_pixel_type_of(main.spec),
            metadata=metadata,
            metadata_types=metadata_types,
            path=path,
        )
    finally:
        inp.geterror()  # clear, so OIIO does not print stale errors at exit
        inp.close()


def _interleave_order(wanted: list[tuple[_Part, str, str]]) -> list[int]:
    """Index into the part-by-part concatenation that restores the order the channels were asked in."""
    parts = list(dict.fromkeys(p for p, _, _ in wanted))
    grouped = [i for part in parts for i, (p, _, _) in enumerate(wanted) if p is part]
    return [grouped.index(i) for i in range(len(wanted))]


def read_image(path: PathLike, channels: ChannelSpec | None = None) -> np.ndarray:
    """Just the pixels of :func:`read_frame`: float32 ``H×W×C`` (display and data windows), channels in
    the order asked."""
    return read_frame(path, channels).pixels


def _repair_dpx10_row_ends(path: Path, spec: oiio.ImageSpec, pixels: np.ndarray, first_channel: int) -> None:
    """Re-decode the last 32-bit word of each row of a 10-bit filled DPX, in place.

    OpenImageIO 3.2.2 (and versions back to at least 2017, GafferHQ/gaffer#2125) misreads the lone last
    sample of each row when a row holds 3k+1 samples, e.g. the last column's alpha of a 10-bit RGBA DPX
    4096 or 7 pixels wide. The file is right; only the reader is wrong. This decodes those few samples from
    the file itself, and only if the previous word decodes to what OIIO returned (the layout is as assumed).
    """
    nch, width, height = spec.nchannels, spec.width, spec.height
    row_samples = width * nch
    tail = row_samples % 3
    if (
        tail == 0
        or row_samples < 4
        or spec.get_int_attribute("oiio:BitsPerSample", 0) != 10
        or spec.get_string_attribute("dpx:Packing", "") != "Filled, method A"
        or spec.get_int_attribute("oiio:subimages", 1) != 1
        or spec.get_int_attribute("Orientation", 1) != 1
    ):
        return
    try:
        with open(path, "rb") as f:
            header = f.read(2048)
            endian = {b"SDPX": ">", b"XPDS": "<"}.get(header[:4])
            if endian is None or len(header) < 816:
                return
            (offset,) = struct.unpack(endian + "I", header[808:812])  # image element 0: offset to data
            (eol_padding,) = struct.unpack(endian + "I", header[812:816])
            if eol_padding == 0xFFFFFFFF:
                eol_padding = 0
            row_words = -(-row_samples // 3)
            row_bytes = row_words * 4 + eol_padding
            words = np.empty((height, 2), dtype=np.uint32)
            for y in range(height):
                f.seek(offset + y * row_bytes + (row_words - 2) * 4)
                raw = f.read(8)
                if len(raw) != 8:
                    return
                words[y] = struct.unpack(endian + "2I", raw)
    except OSError:
        return
    samples = np.stack([(words >> s) & 0x3FF for s in (22, 12, 2)], axis=-1).reshape(height, 6)
    values = samples.astype(np.float32) / 1023.0
    start = (row_words - 2) * 3  # sample index of the first sample in the second-to-last word
    positions = [(s // nch, s % nch - first_channel) for s in range(start, start + 3 + tail)]
    # Check the layout against a full word OIIO decodes correctly before trusting it for the tail.
    for k, (x, c) in enumerate(positions[:3]):
        if 0 <= c < pixels.shape[2] and not np.allclose(pixels[:, x, c], values[:, k], atol=0.5 / 1023):
            return
    for k, (x, c) in enumerate(positions[3:], start=3):
        if 0 <= c < pixels.shape[2]:
            pixels[:, x, c] = values[:, k]


# ----------------------------------------------------------------------------------------------------------
# Writing


def _odd_bits(pixel_type: str) -> int:
    """Bits per sample of an integer type OIIO keeps in uint16 (``uint10`` -> 10), else 0."""
    match = re.fullmatch(r"uint(\d+)", pixel_type)
    bits = int(match.group(1)) if match else 0
    return bits if 8 < bits < 16 else 0


def _to_odd_bits(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Round to the nearest ``bits``-bit code and spell it as the uint16 OIIO truncates back to that code.

    OIIO converts float to uint16 and then drops the low bits, which truncates instead of rounding (up to a
    whole step low); handing it bit-replicated codes makes the stored code the nearest one.
    """
    codes = np.round(np.clip(np.nan_to_num(pixels), 0.0, 1.0) * (2**bits - 1)).astype(np.uint16)
    return (codes << (16 - bits)) | (codes >> (2 * bits - 16))


def _choose_pixel_type(fmt: str, pixel_type: str | None, like: Frame | None, target: Path) -> str:
    allowed = FORMAT_PIXEL_TYPES.get(fmt)
    if pixel_type is None:
        if like is not None and (allowed is None or like.pixel_type in allowed):
            return like.pixel_type
        return allowed[0] if allowed else "float"
    if allowed is not None and pixel_type not in allowed:
        raise ImageIOError(
            f"Cannot write {target} as {pixel_type}: {fmt} files hold {', '.join(allowed)}. "
            f"Pick one of those, or another file type (.exr holds half or float)."
        )
    return pixel_type


def _set_attribute(spec: oiio.ImageSpec, name: str, value: object, type_name: str | None) -> None:
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        spec.attribute(name, int(value))
    elif isinstance(value, (float, np.floating)):
        spec.attribute(name, float(value))
    elif isinstance(value, str):
        spec.attribute(name, value)
    elif isinstance(value, (tuple, list, np.ndarray)):
        items = tuple(np.asarray(value).ravel().tolist())
        if not type_name:
            base = "int" if all(isinstance(v, int) for v in items) else "float"
            base = "string" if all(isinstance(v, str) for v in items) else base
            type_name = f"{base}[{len(items)}]"
        type_desc = oiio.TypeDesc(type_name)
        if type_desc != oiio.TypeUnknown:
            spec.attribute(name, type_desc, items)
    else:
        raise TypeError(f"metadata {name!r}: cannot store a {type(value).__name__}; use str, int or float")


def _write_pixels(out: oiio.ImageOutput, pixels: np.ndarray) -> bool:
    """Hand the pixels to the writer (a seam for tests that simulate a failure part-way through)."""
    return bool(out.write_image(pixels))


def write_frame(
    path: PathLike,
    pixels: np.ndarray,
    channels: ChannelSpec | None = None,
    *,
    pixel_type: str | None = None,
    display_window: Window | None = None,
    data_window: Window | None = None,
    metadata: Mapping[str, object] | None = None,
    like: Frame | None = None,
) -> Path:
    """Write an ``H×W×C`` (or ``H×W``) array as one image file, atomically; return the path written.

    Args:
        path: the file to write; its extension picks the format (``.exr .dpx .tif .png .jpg`` …). Missing
            directories are created.
        pixels: pixels over the display window and the data window together (as :attr:`Frame.pixels`;
            just the display window when the data window lies inside it), any float or int dtype
            (converted to float32; integer formats clamp to 0..1).
        channels: a name per channel, e.g. ``"rgba"`` or ``["R", "G", "B", "A", "mask.A"]``; ``rgba``-style
            shorthands become ``R, G, B, A``, layered names are kept as given. ``None``: ``like``'s names
            if the count fits, else Y / Y,A / R,G,B / R,G,B,A by count. Only EXR stores names; other formats
            store R,G,B(,A) or Y(,A) in their own order, which this puts the channels in by name.
        pixel_type: ``"half"`` (EXR default) or ``"float"`` for EXR; ``"uint8"`` (PNG/JPEG default) or
            ``"uint16"`` for PNG; ``"uint16"`` (default), ``"uint8"``, ``"float"`` for TIFF; ``"uint10"``
            (default), ``"uint8"``, ``"uint12"``, ``"uint16"`` for DPX. ``None`` keeps ``like``'s if valid.
        display_window: defaults to ``like``'s when ``like``'s pixels are the size of ``pixels``, else
            ``W×H`` at (0, 0). Only EXR stores windows; other formats get the display window's pixels.
        data_window: the region stored (EXR), which may reach beyond the display window (overscan).
            Defaults to ``like``'s when ``like``'s display window is used, else the display window.
            ``pixels`` must cover exactly the two windows together.
        metadata: extra attributes (``str``/``int``/``float``, tuples for vectors); ``copycat:…`` keys are
            kept in EXR (strings also in PNG). Layout keys of a source file (packing, strips, OIIO's hints)
            are never copied.
        like: a source :class:`Frame` whose display/data window, channel names, pixel type and metadata
            are the defaults for this one (explicit arguments win).

    Raises:
        ImageIOError: unknown extension, a pixel type or channel count the format cannot hold, or the
            directory or file cannot be written (the message names the path).
        ChannelError: the channel names do not fit the pixels.
    """
    target = Path(path)
    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"pixels must be H×W or H×W×C, got shape {array.shape}")
    height, width, count = array.shape

    if channels is None and like is not None and len(like.channels) == count:
        channels = like.channels
    names = names_for_writing(channels, count, target)

    same_layout_as_like = like is not None and (like.width, like.height) == (width, height)
    if display_window is None:
        display_window = like.display_window if like is not None and same_layout_as_like else None
        display_window = display_window or Window(0, 0, width, height)
        if data_window is None and like is not None and same_layout_as_like:
            data_window = like.data_window
    data_window = data_window or display_window
    covered = display_window.union(data_window)
    if (covered.width, covered.height) != (width, height):
        raise ValueError(
            f"pixels of {width}×{height} do not cover the display window {display_window} and the data window "
            f"{data_window} ({covered} together)"
        )

    out = oiio.ImageOutput.create(str(target))
    if out is None:
        raise ImageIOError(
            f"Cannot write {target}: no image format for the extension {target.suffix!r} "
            f"({_oiio_error()}). Use .exr, .dpx, .tif, .png or .jpg."
        )
    fmt = out.format_name()
    chosen = _choose_pixel_type(fmt, pixel_type, like, target)
    bits = _odd_bits(chosen)
    base = "uint16" if bits else chosen

    if fmt == "jpeg" and count not in (1, 3):
        raise ImageIOError(
            f"Cannot write {target}: JPEG holds 1 or 3 channels, not {count} ({', '.join(names)}). "
            "Write .png or .exr to keep alpha, or select 'rgb'."
        )
    if fmt != "openexr":
        order = canonical_order(names)
        if order is not None:
            names = [names[i] for i in order]
            array = array[..., order]

    keeps_windows = all(out.supports(k) for k in ("displaywindow", "origin", "negativeorigin"))
    if keeps_windows:
        region = data_window if not data_window.is_empty else display_window
    else:  # a format without windows holds the display window alone, as Nuke's Write stores it there
        array = place(array, covered, display_window)
        covered = display_window = region = Window(0, 0, display_window.width, display_window.height)

    spec = oiio.ImageSpec(region.width, region.height, count, base)
    spec.x, spec.y = region.x, region.y
    spec.full_x, spec.full_y = display_window.x, display_window.y
    spec.full_width, spec.full_height = display_window.width, display_window.height
    spec.channelnames = tuple(names)
    spec.alpha_channel = names.index("A") if "A" in names else -1
    spec.z_channel = names.index("Z") if "Z" in names else -1
    carried: dict[str, object] = dict(like.metadata) if like is not None else {}
    carried.update(metadata or {})
    types = like.metadata_types if like is not None else {}
    for name, value in carried.items():
        if not name.startswith("oiio:") and name not in _LAYOUT_METADATA:
            _set_attribute(spec, name, value, types.get(name))
    if bits:
        spec.attribute("oiio:BitsPerSample", bits)
    spec.attribute("oiio:UnassociatedAlpha", 1)  # store alpha and colour as given: no (un)premultiplying

    region_pixels: np.ndarray = np.ascontiguousarray(
        array[region.y - covered.y : region.y_end - covered.y, region.x - covered.x : region.x_end - covered.x]
    )
    if bits:
        region_pixels = _to_odd_bits(region_pixels, bits)
    _write_atomically(out, target, spec, region_pixels)
    return target


#: The filter of :func:`resize`: OpenImageIO's ``"triangle"`` (width 2). Enlarging, it is 2 source pixels
#: wide, i.e. bilinear interpolation holding the edge pixels (torch's bilinear, ``align_corners=False``,
#: within 1e-5): no ringing or overshoot, so a matte stays within 0..1 and lines up with an upscaler's base.
RESIZE_FILTER = "triangle"


def resize(pixels: np.ndarray, factor: int, *, filter_name: str = RESIZE_FILTER) -> np.ndarray:
    """``H×W×C`` (or ``H×W``) float pixels enlarged to ``(H·factor)×(W·factor)×C`` with OpenImageIO's
    ``ImageBufAlgo.resize`` and the named filter (default :data:`RESIZE_FILTER`).

    Pixel centres map as image coordinates do (``x → factor·x``), so a window's pixels resized land on
    :meth:`Window.scaled`, overscan included.
    """
    array = np.asarray(pixels, dtype=np.float32)
    array = np.ascontiguousarray(array[..., None] if array.ndim == 2 else array)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"resize factor must be a whole number of at least 1, got {factor!r}")
    height, width, count = array.shape
    if factor == 1:
        return array.copy()
    source = oiio.ImageBuf(oiio.ImageSpec(width, height, count, "float"))
    source.set_pixels(oiio.ROI(), array)
    target = oiio.ImageBuf(oiio.ImageSpec(width * factor, height * factor, count, "float"))
    if not oiio.ImageBufAlgo.resize(target, source, filtername=filter_name):
        raise ImageIOError(f"Cannot resize ×{factor} with the filter {filter_name!r}: {target.geterror()}.")
    resized = np.asarray(target.get_pixels(oiio.TypeFloat), dtype=np.float32)
    return resized.reshape(height * factor, width * factor, count)


def _write_atomically(out: oiio.ImageOutput, target: Path, spec: oiio.ImageSpec, pixels: np.ndarray) -> None:
    directory = target.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImageIOError(
            f"Cannot write {target}: cannot create the directory {directory} ({error.strerror or error}). "
            "Check the path and that you may write there."
        ) from error
    # atomic: the temporary's name starts with a dot and ends in no image extension, so a killed write's
    # leftover is never picked up by a wildcard Read; ``out`` was made for the target's format already
    atomic.remove_stale_temps(target)
    try:
        with atomic.atomic_path(target) as temp:
            if not out.open(str(temp), spec):
                raise ImageIOError(
                    f"Cannot write {target}: {_oiio_error(out) or 'the writer refused it'}. "
                    f"Check that {directory} is writable and that the format can hold this image."
                )
            try:
                written = _write_pixels(out, pixels)
            finally:
                closed = bool(out.close())
            if not (written and closed):
                raise ImageIOError(f"Cannot write {target}: {_oiio_error(out) or 'the writer failed'}.")
    except OSError as error:
        raise ImageIOError(f"Cannot write {target}: {error.strerror or error}.") from error
    finally:
        out.geterror()  # OIIO's TIFF writer reports a harmless Exif message even on success: clear it


def _oiio_error(obj: oiio.ImageInput | oiio.ImageOutput | None = None) -> str:
    """OIIO's pending error message of ``obj`` (and the global one) on one line; reading clears them."""
    own = obj.geterror() if obj is not None else ""
    return " ".join(f"{own} {oiio.geterror()}".split())
