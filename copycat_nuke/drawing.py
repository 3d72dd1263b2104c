"""The drawing kit behind ``loss.png`` and the contact sheets: Nuke's dark theme, a float canvas of display
values, anti-aliased text (the fonts OpenImageIO ships) and curves, and an atomic PNG writer.

numpy and OpenImageIO only, so a headless training box can draw. :mod:`copycat_nuke.plots` (loss curves)
and :mod:`copycat_nuke.contact_sheets` share the underscored helpers here; :func:`write_png_atomic` is
public (and re-exported by :mod:`copycat_nuke.plots`).
"""

from __future__ import annotations

import math
import os
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Union

import numpy as np
import numpy.typing as npt
import OpenImageIO as oiio

from copycat_nuke import atomic
from copycat_nuke.errors import CopyCatError, ImageIOError

FloatArray = npt.NDArray[np.float64]
Image8 = npt.NDArray[np.uint8]
# typing's generics in these run-time aliases: the panel runs in Nuke 13's Python 3.7 (tuple[...] needs 3.9)
Colour = typing.Tuple[float, float, float]  # noqa: UP006

__all__ = ["write_png_atomic"]


def _hex(code: str) -> Colour:
    return (int(code[1:3], 16) / 255.0, int(code[3:5], 16) / 255.0, int(code[5:7], 16) / 255.0)


# Nuke's dark theme. Colours are display (sRGB-encoded) values; blending happens in that space,
# as in every UI toolkit, so a 30 % line looks the way a UI designer expects.
_BACKGROUND = _hex("#262626")
_PLOT_BACKGROUND = _hex("#2b2b2b")
_GRID_MAJOR = _hex("#3b3b3b")
_GRID_MINOR = _hex("#303030")
_FRAME = _hex("#4a4a4a")
_TEXT = _hex("#a8a8a8")
_TEXT_BRIGHT = _hex("#d8d8d8")
_TEXT_DIM = _hex("#7a7a7a")
#: Smoothed curve colours: the first is Nuke's curve orange, the rest tell extra runs apart.
_SERIES_COLOURS = tuple(
    _hex(c) for c in ("#f0a030", "#4fb3e8", "#8cc152", "#e0607e", "#b48ee0", "#e8d44d", "#4dd0b4", "#d8d8d8")
)
_RAW_ALPHA = 0.3  # the raw curve is context, the smoothed one is the message
_SUPERSAMPLE = 4  # curve anti-aliasing: rasterise at 4× then box-filter down (16 coverage levels)

_FONT = "DroidSans"
_FONT_BOLD = "DroidSans-Bold"


# --------------------------------------------------------------------------------------------------
# Atomic PNG writing


def _write_png(path: Path, image: Image8) -> None:
    """Write ``image`` to ``path`` as PNG with OIIO (named by format: ``path`` is a temporary name)."""
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    out = oiio.ImageOutput.create("png")
    if out is None:
        raise ImageIOError(f"Cannot write {path}: OpenImageIO has no PNG writer ({oiio.geterror()}).")
    spec = oiio.ImageSpec(width, height, channels, oiio.UINT8)
    if channels == 4:  # our RGBA is straight alpha, as PNG stores it: no premultiply round trip
        spec.attribute("oiio:UnassociatedAlpha", 1)
    pixels = np.ascontiguousarray(image.reshape(height, width, channels))
    try:
        if not out.open(str(path), spec) or not out.write_image(pixels):
            raise ImageIOError(f"Cannot write {path}: {out.geterror() or 'unknown OpenImageIO error'}.")
    finally:
        out.close()


def write_png_atomic(path: Union[str, os.PathLike[str]], image_uint8: Image8) -> Path:
    """Write a uint8 H×W, H×W×1, H×W×3 or H×W×4 image as a PNG, atomically.

    The pixels go to a hidden temporary file in the same directory (:mod:`copycat_nuke.atomic`), which
    then replaces ``path`` in one ``os.replace``: a Nuke Read node or an image viewer polling the file
    during training sees the old plot or the new one, never half of one. Missing parent directories
    are created. On any failure the temporary file is removed and ``path`` is left as it was.

    Returns:
        ``path`` as a :class:`pathlib.Path`.
    """
    target = Path(path)
    image = np.asarray(image_uint8)
    if image.dtype != np.uint8:
        raise CopyCatError(f"write_png_atomic needs a uint8 image, got {image.dtype} for {target}.")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        raise CopyCatError(f"write_png_atomic needs an H×W, H×W×3 or H×W×4 image, got {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise CopyCatError(f"Cannot write an empty {image.shape} image to {target}.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageIOError(f"Cannot create the folder for {target}: {exc}.") from exc
    try:
        with atomic.atomic_path(target) as temp:
            _write_png(temp, image)
    except OSError as exc:
        raise ImageIOError(f"Cannot write {target}: {exc}.") from exc
    return target


# --------------------------------------------------------------------------------------------------
# Drawing primitives: a float32 H×W×3 canvas of display values in 0..1


def _new_canvas(height: int, width: int, colour: Colour) -> npt.NDArray[np.float32]:
    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[:] = colour
    return canvas


def _to_uint8(canvas: npt.NDArray[np.float32]) -> Image8:
    return np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _blend(
    canvas: npt.NDArray[np.float32],
    top: int,
    left: int,
    coverage: npt.NDArray[np.float32],
    colour: Colour,
    alpha: float = 1.0,
) -> None:
    """Composite ``colour`` over ``canvas`` through ``coverage`` (h×w, 0..1) placed at (top, left)."""
    h, w = coverage.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    a = coverage[y0 - top : y1 - top, x0 - left : x1 - left, None] * np.float32(alpha)
    region = canvas[y0:y1, x0:x1]
    region += (np.asarray(colour, dtype=np.float32) - region) * a


def _fill_rect(canvas: npt.NDArray[np.float32], top: int, left: int, h: int, w: int, colour: Colour) -> None:
    canvas[max(top, 0) : max(top + h, 0), max(left, 0) : max(left + w, 0)] = colour


@dataclass(frozen=True)
class _Text:
    """One rendered string: coverage mask plus where it sits relative to the pen (left, baseline)."""

    mask: npt.NDArray[np.float32]
    dx: int  # mask column 0 is at pen x + dx
    dy: int  # mask row 0 is at baseline + dy
    width: int  # advance-ish width used for alignment


@lru_cache(maxsize=1024)
def _render_text(text: str, size: int, font: str) -> _Text:
    roi = oiio.ImageBufAlgo.text_size(text, size, font)
    if not roi.defined or roi.width <= 0:
        return _Text(np.zeros((1, 1), np.float32), 0, 0, 0)
    pad = 1
    w, h = roi.xend - roi.xbegin + 2 * pad, roi.yend - roi.ybegin + 2 * pad
    buf = oiio.ImageBuf(oiio.ImageSpec(w, h, 1, oiio.FLOAT))
    oiio.ImageBufAlgo.render_text(buf, pad - roi.xbegin, pad - roi.ybegin, text, size, font, (1.0,))
    mask = np.asarray(buf.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(h, w)
    return _Text(np.clip(mask, 0, 1), roi.xbegin - pad, roi.ybegin - pad, roi.xend)


@lru_cache(maxsize=64)
def _cap_height(size: int, font: str) -> int:
    """Height of a digit above the baseline: used to centre numbers on tick positions."""
    return -oiio.ImageBufAlgo.text_size("0123456789", size, font).ybegin


@lru_cache(maxsize=64)
def _descent(size: int, font: str) -> int:
    return max(oiio.ImageBufAlgo.text_size("gjpqy", size, font).yend, 0)


def _text_width(text: str, size: int, font: str = _FONT) -> int:
    return _render_text(text, size, font).width


def _draw_text(
    canvas: npt.NDArray[np.float32],
    text: str,
    x: float,
    baseline: float,
    size: int,
    colour: Colour,
    *,
    font: str = _FONT,
    align: str = "left",
) -> None:
    """Draw ``text`` with its pen at (x, baseline); ``align`` is left, centre or right of ``x``."""
    t = _render_text(text, size, font)
    if align == "right":
        x -= t.width
    elif align == "centre":
        x -= t.width / 2
    _blend(canvas, round(baseline) + t.dy, round(x) + t.dx, t.mask, colour)


def _draw_text_vertical(
    canvas: npt.NDArray[np.float32], text: str, cx: float, cy: float, size: int, colour: Colour
) -> None:
    """Draw ``text`` reading bottom to top, its ink centred on (cx, cy): the y-axis title."""
    t = _render_text(text, size, _FONT)
    mask = np.ascontiguousarray(np.rot90(t.mask))
    _blend(canvas, round(cy - mask.shape[0] / 2), round(cx - mask.shape[1] / 2), mask, colour)


def _rasterise(
    segments: FloatArray, height: int, width: int, line_width: float
) -> tuple[npt.NDArray[np.float32], int, int]:
    """Anti-aliased coverage of line segments ``K×4`` (x0, y0, x1, y1) on a height×width pixel grid.

    Pixel (row i, column j) spans [j, j+1) × [i, i+1). Segments are sampled densely on a grid
    ``_SUPERSAMPLE`` times finer, thickened by a disc of the line width, and box-filtered back down.
    Coverage is a union, so overlapping strokes of one curve never add up to more than one stroke.

    Returns:
        (coverage 0..1, top, left): coverage of the curve's bounding box and where it sits in the grid.
    """
    ss = _SUPERSAMPLE
    empty = (np.zeros((0, 0), np.float32), 0, 0)
    if not len(segments):
        return empty
    radius = max(line_width * ss / 2.0, 0.5)
    r = math.ceil(radius)
    p0, p1 = segments[:, :2] * ss, segments[:, 2:] * ss
    counts = np.ceil(np.hypot(*(p1 - p0).T) / 0.7).astype(np.int64) + 1  # < 1 fine pixel apart
    which = np.repeat(np.arange(len(segments)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    t = (np.arange(which.size) - starts) / np.repeat(np.maximum(counts - 1, 1), counts)
    points = p0[which] + t[:, None] * (p1 - p0)[which]
    fx, fy = np.floor(points[:, 0]).astype(np.int64), np.floor(points[:, 1]).astype(np.int64)
    keep = (fx >= -r) & (fx < width * ss + r) & (fy >= -r) & (fy < height * ss + r)
    fx, fy = fx[keep], fy[keep]
    if not fx.size:
        return empty
    # Only the curve's bounding box (in whole output pixels) is rasterised: a marker dot costs nothing.
    left, top = max(0, int(fx.min() - r) // ss), max(0, int(fy.min() - r) // ss)
    right, bottom = min(width, int(fx.max() + r) // ss + 1), min(height, int(fy.max() + r) // ss + 1)
    if right <= left or bottom <= top:
        return empty
    hs, ws = (bottom - top) * ss, (right - left) * ss
    padded_w = ws + 2 * r  # a margin of r fine pixels all round, so the disc never wraps onto a row
    padded = np.zeros((hs + 2 * r) * padded_w, dtype=bool)
    centres = np.unique((fy - top * ss + r) * padded_w + (fx - left * ss + r))
    # Stamp the disc at every centre: a few index writes per point, far cheaper than dilating the
    # whole image, since a curve covers a small part of its bounding box.
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= radius * radius:
                offset = centres + (dy * padded_w + dx)
                padded[offset[(offset >= 0) & (offset < padded.size)]] = True
    mask = padded.reshape(hs + 2 * r, padded_w)[r : r + hs, r : r + ws]
    fine = np.ascontiguousarray(mask).view(np.uint8).reshape(bottom - top, ss, right - left, ss)
    coverage = fine.sum(axis=3, dtype=np.uint8).sum(axis=1, dtype=np.uint8) * np.float32(1.0 / (ss * ss))
    return coverage, top, left


def _curve_segments(x: FloatArray, y: FloatArray) -> FloatArray:
    """Segments that draw the polyline through (x, y) pixel positions, ``K×4``.

    When there are more points than pixel columns (100k steps on a 900-pixel plot) each column is
    drawn as a vertical stroke from its lowest to its highest value, joined to the next column: the
    min/max envelope looks exactly like the full polyline at this resolution at a fraction of the cost.
    """
    if x.size == 1:
        return np.array([[x[0], y[0], x[0], y[0]]])
    columns = np.floor(x).astype(np.int64)
    if x.size <= 2 * (columns[-1] - columns[0] + 1):
        return np.column_stack([x[:-1], y[:-1], x[1:], y[1:]])
    starts = np.flatnonzero(np.r_[True, np.diff(columns) != 0])
    ends = np.r_[starts[1:], x.size]
    lo, hi = np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)
    centre = columns[starts] + 0.5
    spans = np.column_stack([centre, lo, centre, hi])
    joins = np.column_stack([centre[:-1], y[ends[:-1] - 1], centre[1:], y[starts[1:]]])
    return np.concatenate([spans, joins])
