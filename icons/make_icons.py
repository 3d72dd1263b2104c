"""Draw the toolbar icons (24×24 RGBA PNG) with numpy and OpenImageIO: ``python icons/make_icons.py``.

Each icon is a rounded tile in the node's colour with a white glyph: CopyCat two overlapping frames (before
and after), Inference an arrow through a frame, Upscale a small frame growing into a big one, Deblur a
sharp dot with blurred echoes. Drawn at 4× and box-filtered down, so edges are antialiased.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import OpenImageIO as oiio

SIZE = 24
SCALE = 4
HERE = Path(__file__).resolve().parent

Mask = np.ndarray
Shape = Callable[[np.ndarray, np.ndarray], Mask]


def grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in icon pixels (0..SIZE) at SCALE× resolution."""
    coords = (np.arange(SIZE * SCALE) + 0.5) / SCALE
    return np.meshgrid(coords, coords)


def rounded_box(x0: float, y0: float, x1: float, y1: float, radius: float) -> Shape:
    def shape(x: np.ndarray, y: np.ndarray) -> Mask:
        dx = np.maximum(np.maximum(x0 + radius - x, x - (x1 - radius)), 0)
        dy = np.maximum(np.maximum(y0 + radius - y, y - (y1 - radius)), 0)
        return (dx**2 + dy**2 <= radius**2) & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)

    return shape


def outline(x0: float, y0: float, x1: float, y1: float, width: float = 1.5) -> Shape:
    outer = rounded_box(x0, y0, x1, y1, 1.0)
    inner = rounded_box(x0 + width, y0 + width, x1 - width, y1 - width, 0.5)
    return lambda x, y: outer(x, y) & ~inner(x, y)


def disc(cx: float, cy: float, r: float) -> Shape:
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r**2


def arrow(y: float, x0: float, x1: float) -> Shape:
    def shape(px: np.ndarray, py: np.ndarray) -> Mask:
        shaft = (px >= x0) & (px <= x1 - 3) & (np.abs(py - y) <= 1.0)
        head = (px >= x1 - 4.5) & (px <= x1) & (np.abs(py - y) <= (x1 - px) * 0.9)
        return shaft | head

    return shape


GLYPHS: dict[str, tuple[tuple[float, float, float], list[tuple[Shape, float]]]] = {
    "CopyCatML": ((0.56, 0.27, 0.68), [(outline(5, 5, 15, 15), 0.55), (outline(9, 9, 19, 19), 1.0)]),
    "CopyCat": ((0.56, 0.27, 0.68), [(outline(4, 4, 14, 14), 0.55), (outline(10, 10, 20, 20), 1.0)]),
    "Inference": ((0.56, 0.27, 0.68), [(outline(9, 5, 20, 19), 0.6), (arrow(12, 3, 15), 1.0)]),
    "Upscale": ((0.42, 0.36, 0.91), [(outline(3, 13, 10, 20, 1.2), 0.6), (outline(8, 4, 21, 17), 1.0)]),
    "Deblur": (
        (0.42, 0.36, 0.91),
        [(disc(8, 12, 4.5), 0.25), (disc(11, 12, 4.5), 0.45), (disc(15, 12, 4.5), 1.0)],
    ),
}


def draw(colour: tuple[float, float, float], glyph: list[tuple[Shape, float]]) -> np.ndarray:
    x, y = grid()
    tile = rounded_box(0.5, 0.5, SIZE - 0.5, SIZE - 0.5, 4.0)(x, y).astype(np.float32)
    rgb = np.empty((*x.shape, 3), np.float32)
    rgb[:] = colour
    for shape, strength in glyph:
        mask = shape(x, y).astype(np.float32)[..., None] * strength
        rgb = rgb * (1 - mask) + mask  # white glyph over the tile
    rgba = np.concatenate([rgb * tile[..., None], tile[..., None]], axis=2)
    small = rgba.reshape(SIZE, SCALE, SIZE, SCALE, 4).mean(axis=(1, 3))
    # premultiplied while filtering; PNG stores unassociated alpha
    alpha = small[..., 3:4]
    small[..., :3] = np.where(alpha > 0, small[..., :3] / np.maximum(alpha, 1e-6), 0)
    return np.clip(small, 0, 1)


def write_png(path: Path, pixels: np.ndarray) -> None:
    spec = oiio.ImageSpec(SIZE, SIZE, 4, "uint8")
    spec.attribute("oiio:UnassociatedAlpha", 1)
    out = oiio.ImageOutput.create(str(path))
    if out is None or not out.open(str(path), spec):
        raise OSError(f"cannot write {path}: {oiio.geterror()}")
    out.write_image(pixels)
    out.close()


def main() -> None:
    for name, (colour, glyph) in GLYPHS.items():
        write_png(HERE / f"{name}.png", draw(colour, glyph))
        print(HERE / f"{name}.png")


if __name__ == "__main__":
    main()
