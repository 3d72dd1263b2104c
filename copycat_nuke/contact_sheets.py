"""Contact sheets: labelled grids of display-ready tiles (input | prediction | ground truth | difference) and a
heat-coloured difference image, written as PNGs next to a run's checkpoints.

:mod:`copycat_nuke.plots` re-exports :func:`contact_sheet`, :func:`save_contact_sheet` and
:func:`difference_image`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from copycat_nuke.drawing import (
    _BACKGROUND,
    _FONT,
    _TEXT,
    _TEXT_BRIGHT,
    Image8,
    _cap_height,
    _descent,
    _draw_text,
    _new_canvas,
    _text_width,
    _to_uint8,
    write_png_atomic,
)
from copycat_nuke.errors import CopyCatError

__all__ = ["contact_sheet", "difference_image", "save_contact_sheet"]


# --------------------------------------------------------------------------------------------------
# Contact sheets


# A black → red → orange → yellow → white ramp: small errors stay visible, large ones glow.
_HEAT_STOPS = np.array([0.0, 0.15, 0.4, 0.7, 1.0])
_HEAT_COLOURS = np.array(
    [[0.0, 0.0, 0.0], [0.45, 0.04, 0.12], [0.85, 0.27, 0.05], [0.98, 0.70, 0.15], [1.0, 1.0, 0.92]]
)


def difference_image(a: npt.ArrayLike, b: npt.ArrayLike, gain: float = 4.0, *, heat: bool = True) -> Image8:
    """A viewable picture of where two images differ: uint8 H×W×3.

    Takes two float H×W×C (or H×W) working-space arrays of the same shape, e.g. a prediction and its
    ground truth in linear light. Per pixel the absolute difference is averaged over the colour
    channels (alpha, a 4th channel, is ignored), multiplied by ``gain`` and clipped to 0..1; so with
    the default gain 4 a difference of 0.25 or more is full scale.

    ``heat=True`` (default) maps that through a black → red → orange → yellow → white ramp, which
    shows small errors better than grey; ``heat=False`` gives grey (the same value in R, G and B).
    """
    fa, fb = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if fa.shape != fb.shape:
        raise CopyCatError(f"difference_image needs two images of the same shape, got {fa.shape} and {fb.shape}.")
    if fa.ndim not in (2, 3):
        raise CopyCatError(f"difference_image needs H×W or H×W×C images, got shape {fa.shape}.")
    diff = np.abs(fa - fb)
    if diff.ndim == 3:
        diff = diff[..., : min(diff.shape[2], 3)].mean(axis=2)
    level = np.clip(np.nan_to_num(diff * np.float32(gain), nan=1.0), 0.0, 1.0)
    if heat:
        rgb = np.stack([np.interp(level, _HEAT_STOPS, _HEAT_COLOURS[:, c]) for c in range(3)], axis=-1)
    else:
        rgb = np.repeat(level[..., None], 3, axis=2)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def _as_rgb_tile(tile: npt.ArrayLike, row: int, column: int) -> Image8:
    t = np.asarray(tile)
    if t.dtype != np.uint8:
        raise CopyCatError(
            f"Contact sheet tile (row {row + 1}, column {column + 1}) is {t.dtype}; tiles must be uint8 "
            "images already in display space (apply the viewer transform first)."
        )
    if t.ndim == 2:
        t = t[..., None]
    if t.ndim != 3 or t.shape[2] not in (1, 3, 4) or t.shape[0] == 0 or t.shape[1] == 0:
        raise CopyCatError(f"Contact sheet tile (row {row + 1}, column {column + 1}) has shape {t.shape}.")
    if t.shape[2] == 1:
        return np.repeat(t, 3, axis=2)
    return t[..., :3]


def _fit_text(text: str, size: int, max_width: int) -> str:
    """``text``, shortened with "..." until it fits ``max_width`` pixels (DroidSans has no "…" glyph)."""
    if _text_width(text, size) <= max_width:
        return text
    while text and _text_width(text + "...", size) > max_width:
        text = text[:-1]
    return text.rstrip() + "..." if text else ""


def contact_sheet(
    rows: Sequence[Sequence[npt.ArrayLike]],
    column_titles: Sequence[str] = ("input", "prediction", "ground truth", "difference"),
    row_titles: Optional[Sequence[str]] = None,
    *,
    gap: int = 4,
) -> Image8:
    """Lay out display-ready tiles in a labelled grid on a dark background: uint8 H×W×3.

    Args:
        rows: one sequence of tiles per row (e.g. one row per frame: input, prediction, ground truth,
            difference). Tiles are uint8 H×W×3 images already display-transformed (H×W, H×W×1 and
            H×W×4 are accepted; alpha is dropped). Tiles in a row share a height; rows may differ in
            height, in width and in how many tiles they hold: each column is as wide as its widest
            tile and narrower tiles are left-aligned in their cell.
        column_titles: header text over each column (extra titles are ignored, missing ones left
            blank); empty for no header strip. Titles too long for their column end in "...".
        row_titles: text left of each row, e.g. ``"frame 1001"``; None for no row labels.
        gap: pixels between tiles; the outer margin is at least 8 pixels.
    """
    if not rows or not any(len(r) for r in rows):
        raise CopyCatError("A contact sheet needs at least one tile.")
    if gap < 0:
        raise CopyCatError(f"Contact sheet gap must be 0 or more pixels, got {gap}.")
    if row_titles is not None and len(row_titles) != len(rows):
        raise CopyCatError(f"Contact sheet has {len(rows)} rows but {len(row_titles)} row titles.")
    tiles = [[_as_rgb_tile(t, i, j) for j, t in enumerate(row)] for i, row in enumerate(rows)]
    for i, row in enumerate(tiles):
        if len({t.shape[0] for t in row}) > 1:
            heights = ", ".join(str(t.shape[0]) for t in row)
            raise CopyCatError(f"Contact sheet row {i + 1}: tiles must share a height, got {heights}.")
    n_columns = max(len(r) for r in tiles)
    col_w = [max((r[j].shape[1] for r in tiles if j < len(r)), default=0) for j in range(n_columns)]
    row_h = [r[0].shape[0] if r else 0 for r in tiles]

    # Text scales gently with the tiles: readable on 128-pixel crops, not shouting on 1k frames.
    size = int(np.clip(round(min(w for w in col_w if w > 0) / 16), 11, 18))
    cap, descent = _cap_height(size, _FONT), _descent(size, _FONT)
    margin = max(gap, 8)
    titles = [column_titles[j] if j < len(column_titles) else "" for j in range(n_columns)]
    header = cap + descent + 2 * margin if any(titles) else 0
    row_label_w = 0
    if row_titles is not None and any(row_titles):
        row_label_w = max(_text_width(t, size) for t in row_titles) + margin

    width = 2 * margin + row_label_w + sum(col_w) + gap * (n_columns - 1)
    height = (header or margin) + sum(row_h) + gap * (len(tiles) - 1) + margin
    canvas = _new_canvas(height, width, _BACKGROUND)
    col_x = [margin + row_label_w + sum(col_w[:j]) + gap * j for j in range(n_columns)]

    for j, text in enumerate(titles):
        if text:
            fitted = _fit_text(text, size, col_w[j])
            _draw_text(canvas, fitted, col_x[j] + col_w[j] / 2, margin + cap, size, _TEXT_BRIGHT, align="centre")
    row_y = [(header or margin) + sum(row_h[:i]) + gap * i for i in range(len(tiles))]
    for y, h, text in zip(row_y, row_h, row_titles or ()):
        _draw_text(canvas, text, margin, y + h / 2 + cap / 2, size, _TEXT)  # centred on the row
    out = _to_uint8(canvas)
    for y, row in zip(row_y, tiles):
        for x, tile in zip(col_x, row):
            out[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return out


def save_contact_sheet(path: Union[str, os.PathLike[str]], rows: Sequence[Sequence[npt.ArrayLike]], **kw: Any) -> Path:
    """:func:`contact_sheet` written to ``path`` as a PNG, atomically. Returns ``path`` as a Path."""
    return write_png_atomic(path, contact_sheet(rows, **kw))
