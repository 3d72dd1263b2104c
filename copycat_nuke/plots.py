"""Loss curves and contact sheets as PNG images: what a compositor looks at while CopyCat trains.

Everything here draws with numpy and OpenImageIO only (text comes from the fonts OIIO ships), so a
headless training box can write ``loss.png`` and ``contact_sheet.png`` next to its checkpoints. The
look follows Nuke's dark UI: a #262626 background, subtle grid, light grey text and the orange of
Nuke's curves for the smoothed loss.

Public API:

- :func:`smooth`: TensorBoard's debiased exponential moving average (the Progress tab uses it too).
- :func:`render_loss_curve` / :func:`save_loss_curve`: an anti-aliased loss plot, uint8 H×W×3.
- :func:`contact_sheet` / :func:`save_contact_sheet`: labelled tiles (input, prediction, ...), and
  :func:`difference_image`: a heat-coloured ``|a - b|`` for the difference column; both in
  :mod:`copycat_nuke.contact_sheets`, re-exported here.
- :func:`write_png_atomic`: the PNG writer the others share; readers never see half a file (in
  :mod:`copycat_nuke.drawing`, with the theme, canvas, text and curve rasteriser).
"""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from copycat_nuke.contact_sheets import contact_sheet, difference_image, save_contact_sheet
from copycat_nuke.drawing import (
    _BACKGROUND,
    _FONT,
    _FONT_BOLD,
    _FRAME,
    _GRID_MAJOR,
    _GRID_MINOR,
    _PLOT_BACKGROUND,
    _RAW_ALPHA,
    _SERIES_COLOURS,
    _TEXT,
    _TEXT_BRIGHT,
    _TEXT_DIM,
    Colour,
    FloatArray,
    Image8,
    _blend,
    _cap_height,
    _curve_segments,
    _descent,
    _draw_text,
    _draw_text_vertical,
    _fill_rect,
    _new_canvas,
    _rasterise,
    _text_width,
    _to_uint8,
    write_png_atomic,
)
from copycat_nuke.errors import CopyCatError

#: A 1-D series of numbers: a list, or a numpy array straight from the training log.
Values = Union[typing.Sequence[float], npt.NDArray[Any]]

__all__ = [
    "contact_sheet",
    "difference_image",
    "render_loss_curve",
    "save_contact_sheet",
    "save_loss_curve",
    "smooth",
    "write_png_atomic",
]


# --------------------------------------------------------------------------------------------------
# Smoothing


def smooth(values: Values, smoothness: float = 0.6) -> FloatArray:
    """Smooth a loss curve with the debiased exponential moving average TensorBoard uses.

    ``s[t] = (w·m[t-1] + (1-w)·v[t]) / (1 - w**(t+1))`` with ``w = smoothness`` and the running mean
    ``m`` starting at 0. The division (debiasing) stops the first points being dragged towards 0, so
    ``smooth(v)[0] == v[0]`` for any smoothness.

    Args:
        values: the raw losses, in step order. Assumed NaN-free: one NaN makes every later value NaN
            (training stops on a NaN loss anyway; filter before calling if a log may hold one).
        smoothness: 0 returns the values unchanged; towards 1 is smoother (0.6 is TensorBoard's
            default, 0.99 suits thousands of noisy steps). Exactly 1 is the limit of the formula:
            the running mean of everything so far.

    Returns:
        float64 array the length of ``values`` (empty for empty input).
    """
    if not 0.0 <= smoothness <= 1.0:
        raise CopyCatError(f"smoothness must be between 0 and 1, got {smoothness}.")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0 or smoothness == 0.0:
        return v.copy()
    if smoothness == 1.0:
        return np.cumsum(v) / np.arange(1, v.size + 1)
    w = float(smoothness)
    out = np.empty_like(v)
    mean = 0.0
    weight = 0.0  # = 1 - w**t, built the same way as the mean so the two stay consistent
    for i, x in enumerate(v.tolist()):
        mean = w * mean + (1.0 - w) * x
        weight = w * weight + (1.0 - w)
        out[i] = mean / weight
    return out


# --------------------------------------------------------------------------------------------------
# Ticks and number formatting


def _nice_step(raw: float, mantissas: Sequence[float] = (1.0, 2.0, 5.0)) -> float:
    """The smallest 1-2-5 × 10^k step that is at least ``raw``."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (*mantissas, 10.0):
        if m * magnitude >= raw * (1 - 1e-9):
            return m * magnitude
    return 10.0 * magnitude


def linear_ticks(lo: float, hi: float, count: int, min_step: float = 0.0) -> tuple[list[float], float]:
    """About ``count`` tick values at 1-2-5 multiples inside [lo, hi], and their spacing."""
    step = max(_nice_step((hi - lo) / max(count, 1)), min_step)
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)], step


def format_number(v: float, significant: int = 3, smallest_decimal: float = 0.01) -> str:
    """Compact: 0.01, 0.25, 20, 1500; scientific below ``smallest_decimal`` or from 100000 up (1e-3, 2.5e-5).

    ``significant`` digits are kept and trailing zeros dropped.
    """
    if v == 0:
        return "0"
    mantissa_text, exponent_text = f"{v:.{max(significant, 1) - 1}e}".split("e")  # rounds first: 0.0099999 → 1e-2
    exponent = int(exponent_text)
    if math.floor(math.log10(smallest_decimal) + 1e-9) <= exponent < 5:
        text = f"{float(mantissa_text) * 10.0**exponent:.{max(significant - 1 - exponent, 0)}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa = mantissa_text.rstrip("0").rstrip(".") if "." in mantissa_text else mantissa_text
    return f"{mantissa}e{exponent}"


def linear_labels(values: Sequence[float], step: float) -> list[str]:
    """Labels for evenly spaced ticks: fixed decimals, just enough to tell neighbours apart (0.05, 0.10).

    Very fine steps or huge values switch to 2.5e-5 style, with digits down to the step's.
    """
    magnitude = max((abs(v) for v in values), default=0.0)
    step_exponent = math.floor(math.log10(step) + 1e-9)
    if step >= 1e-4 and magnitude < 1e5:
        return [f"{v:.{max(0, -step_exponent)}f}" if v else "0" for v in values]
    return [
        format_number(v, significant=max(1, math.floor(math.log10(abs(v))) - step_exponent + 1)) if v else "0"
        for v in values
    ]


def format_step(v: float) -> str:
    """Step counts the way artists say them: 500, 1k, 2.5k, 10k, 1.2M."""
    v = round(v, 6)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.4g}{suffix}"
    return f"{v:.4g}"


@dataclass
class _Axis:
    """A data range mapped onto a pixel range; ``log`` ranges are held as log10 of the values."""

    lo: float
    hi: float
    px_lo: float  # pixel coordinate of ``lo``
    px_hi: float  # pixel coordinate of ``hi`` (smaller than px_lo on the vertical axis)
    log: bool = False

    def to_px(self, values: FloatArray) -> FloatArray:
        v = np.log10(values) if self.log else np.asarray(values, dtype=np.float64)
        return self.px_lo + (v - self.lo) * (self.px_hi - self.px_lo) / (self.hi - self.lo)


@dataclass
class Ticks:
    major: list[float]
    labels: list[str]
    minor: list[float]


def log_ticks(lo: float, hi: float, length_px: float, min_spacing_px: float) -> Ticks:
    """Ticks for a log axis spanning 10**lo .. 10**hi over ``length_px`` pixels.

    Several decades: label the decades (every 2nd or 3rd when crowded) with 2..9 as unlabelled minor
    grid lines. Within about a decade: label 1-2-5 values. Narrower still: fall back to linear ticks.
    """
    px_per_decade = length_px / (hi - lo)
    decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
    if len(decades) >= 2:
        every = next(k for k in (1, 2, 3, 5, 10, 20, 50, 100) if k * px_per_decade >= min_spacing_px)
        major = [10.0**k for k in decades if k % every == 0]
        minor: list[float] = [10.0**k for k in decades if k % every != 0]
        if every == 1 and px_per_decade >= 3.3 * min_spacing_px:  # room to label 2 and 5 as well
            between = [m * 10.0**k for k in range(decades[0] - 1, decades[-1] + 1) for m in (2, 5)]
            labelled = sorted(major + [v for v in between if lo <= math.log10(v) <= hi])
            others = [m * 10.0**k for k in range(decades[0] - 1, decades[-1] + 1) for m in (3, 4, 6, 7, 8, 9)]
            minor = [v for v in others if lo <= math.log10(v) <= hi]
            return Ticks(labelled, [format_number(v) for v in labelled], minor)
        if every == 1 and px_per_decade >= 40:
            minor += [m * 10.0**k for k in range(decades[0] - 1, decades[-1] + 1) for m in range(2, 10)]
        elif every == 1 and px_per_decade >= 16:
            minor += [5 * 10.0**k for k in range(decades[0] - 1, decades[-1] + 1)]
        minor = [v for v in minor if lo <= math.log10(v) <= hi]
        return Ticks(major, [format_number(v) for v in major], minor)
    candidates = [m * 10.0**k for k in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
    major = [v for v in candidates if lo - 1e-9 <= math.log10(v) <= hi + 1e-9]
    if len(major) >= 3 and all(
        (math.log10(b) - math.log10(a)) * px_per_decade >= min_spacing_px for a, b in zip(major, major[1:])
    ):
        everything = [m * 10.0**k for k in range(math.floor(lo), math.ceil(hi) + 1) for m in range(1, 10)]
        minor = [v for v in everything if lo <= math.log10(v) <= hi and v not in major]
        return Ticks(major, [format_number(v) for v in major], minor)
    count = max(2, int(length_px / min_spacing_px))
    values, step = linear_ticks(10.0**lo, 10.0**hi, count)
    values = [v for v in values if v > 0]
    return Ticks(values, linear_labels(values, step), [])


# --------------------------------------------------------------------------------------------------
# Loss curve


@dataclass
class _Run:
    name: str
    steps: FloatArray
    raw: FloatArray
    smoothed: FloatArray
    colour: Colour


def _prepare_run(
    name: str, steps: Values, losses: Values, smoothness: float, colour: Colour = _SERIES_COLOURS[0]
) -> _Run:
    x = np.asarray(steps, dtype=np.float64).reshape(-1)
    y = np.asarray(losses, dtype=np.float64).reshape(-1)
    if x.size != y.size:
        raise CopyCatError(f"Loss curve {name!r}: {x.size} steps but {y.size} loss values; they must pair up.")
    finite = np.isfinite(x) & np.isfinite(y)  # a NaN step is dropped rather than poisoning the curve
    x, y = x[finite], y[finite]
    if x.size > 1 and np.any(np.diff(x) < 0):  # resumed logs can arrive out of order
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    return _Run(name, x, y, smooth(y, smoothness), colour)


def value_range(values: FloatArray, log: bool) -> tuple[float, float]:
    """Axis range around ``values`` with 5 % headroom; a flat curve gets a sensible band around it."""
    v = np.log10(values) if log else values
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo
    if span <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        half = 0.3 if log else max(abs(lo) * 0.1, 1e-3)
        return lo - half, hi + half
    return lo - 0.05 * span, hi + 0.05 * span


def step_range(steps: FloatArray) -> tuple[float, float]:
    lo, hi = float(steps.min()), float(steps.max())
    if hi - lo <= 0:
        return (0.0, 1.0) if lo == 0 else (lo - max(1.0, abs(lo) * 0.05), hi + max(1.0, abs(lo) * 0.05))
    if 0 <= lo <= 0.05 * (hi - lo):  # start the axis at step 0 rather than at step 1
        lo = 0.0
    return lo, hi


@dataclass(frozen=True)
class _Style:
    """Font sizes and spacings for one image size: a 1920×1080 plot reads like 960×540 at twice the size."""

    tick: int  # tick label font size
    axis: int  # axis title and annotation font size
    title: int
    pad: int  # outer margin
    gap: int  # between a label and what it labels
    inset: int  # keeps thick curves and end markers off the plot frame
    raw_width: float  # line widths in pixels
    smooth_width: float

    @classmethod
    def for_size(cls, width: int, height: int) -> _Style:
        s = max(0.75, min(width / 960, height / 540))
        return cls(
            tick=round(12 * s),
            axis=round(13 * s),
            title=round(16 * s),
            pad=round(14 * s),
            gap=round(7 * s),
            inset=max(4, round(6 * s)),
            raw_width=max(1.0, 1.0 * s),
            smooth_width=max(1.5, 2.0 * s),
        )

    def line_height(self, size: int, font: str = _FONT) -> int:
        return _cap_height(size, font) + _descent(size, font)


@dataclass(frozen=True)
class _Box:
    """The plot area in image pixels: rows top..bottom-1, columns left..right-1."""

    top: int
    left: int
    bottom: int
    right: int


def _y_ticks(values: FloatArray, log: bool, length_px: float, style: _Style) -> tuple[float, float, Ticks]:
    """The loss axis range (log10 when ``log``) and its ticks."""
    if not values.size:
        return (-3.0, 0.0, Ticks([], [], [])) if log else (0.0, 1.0, Ticks([], [], []))
    lo, hi = value_range(values, log)
    min_spacing = 3.2 * style.tick
    if log:
        return lo, hi, log_ticks(lo, hi, length_px, min_spacing)
    ticks, step = linear_ticks(lo, hi, max(2, int(length_px / min_spacing)))
    return lo, hi, Ticks(ticks, linear_labels(ticks, step), [])


def _x_ticks(lo: float, hi: float, integral: bool, length_px: float, style: _Style) -> Ticks:
    """Step ticks about seven label sizes apart, fewer if the widest label would touch its neighbour."""
    for count in range(max(2, int(length_px / (7 * style.tick))), 0, -1):
        ticks, step = linear_ticks(lo, hi, count, min_step=1.0 if integral else 0.0)
        labels = [format_step(v) for v in ticks]
        widest = max((_text_width(t, style.tick) for t in labels), default=0)
        if len(ticks) < 2 or step * length_px / (hi - lo) >= widest + 3 * style.gap:
            return Ticks(ticks, labels, [])
    return Ticks([], [], [])


def _draw_grid(
    canvas: npt.NDArray[np.float32], box: _Box, x_axis: _Axis, x_ticks: Ticks, y_axis: _Axis, y_ticks: Ticks
) -> None:
    """Plot background, crisp one-pixel grid lines (minor under major) and the frame."""
    top, left, bottom, right = box.top, box.left, box.bottom, box.right
    _fill_rect(canvas, top, left, bottom - top, right - left, _PLOT_BACKGROUND)
    for values, colour in ((y_ticks.minor, _GRID_MINOR), (y_ticks.major, _GRID_MAJOR)):
        for py in y_axis.to_px(np.asarray(values, dtype=np.float64)):
            if top < py < bottom:
                _fill_rect(canvas, math.floor(py), left + 1, 1, right - left - 2, colour)
    for px in x_axis.to_px(np.asarray(x_ticks.major, dtype=np.float64)):
        if left < px < right:
            _fill_rect(canvas, top + 1, math.floor(px), bottom - top - 2, 1, _GRID_MAJOR)
    for edge in ((top, left, 1, right - left), (bottom - 1, left, 1, right - left)):
        _fill_rect(canvas, *edge, _FRAME)
    for edge in ((top, left, bottom - top, 1), (top, right - 1, bottom - top, 1)):
        _fill_rect(canvas, *edge, _FRAME)


def _draw_curves(
    canvas: npt.NDArray[np.float32],
    box: _Box,
    runs: Sequence[_Run],
    x_axis: _Axis,
    y_axis: _Axis,
    style: _Style,
    show_raw: bool,
) -> None:
    """Raw curves (faint), then smoothed curves, then a dot on each run's latest value, clipped to the box."""
    plot = canvas[box.top : box.bottom, box.left : box.right]
    h, w = plot.shape[:2]

    def local(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        keep = y > 0 if y_axis.log else np.ones(y.shape, dtype=bool)  # a loss <= 0 has no place on a log axis
        return x_axis.to_px(x[keep]) - box.left, y_axis.to_px(y[keep]) - box.top

    def draw(segments: FloatArray, line_width: float, colour: Colour, alpha: float = 1.0) -> None:
        coverage, top, left = _rasterise(segments, h, w, line_width)
        _blend(plot, top, left, coverage, colour, alpha)

    if show_raw:
        for run in runs:
            if run.steps.size > 1:
                draw(_curve_segments(*local(run.steps, run.raw)), style.raw_width, run.colour, _RAW_ALPHA)
    for run in runs:
        if run.steps.size:
            draw(_curve_segments(*local(run.steps, run.smoothed)), style.smooth_width, run.colour)
    for run in runs:  # where training is now: a dot ringed in the background colour
        xs, ys = local(run.steps[-1:], run.smoothed[-1:])
        if xs.size:
            dot = np.array([[xs[0], ys[0], xs[0], ys[0]]])
            draw(dot, style.smooth_width * 3.6, _PLOT_BACKGROUND)
            draw(dot, style.smooth_width * 2.4, run.colour)


def _draw_axis_text(
    canvas: npt.NDArray[np.float32],
    box: _Box,
    x_axis: _Axis,
    x_ticks: Ticks,
    y_axis: _Axis,
    y_ticks: Ticks,
    style: _Style,
    x_label: str,
    y_label: str,
) -> None:
    """Tick labels and axis titles. Labels are clamped inside the image, so none is ever cut off."""
    height, width = canvas.shape[:2]
    cap = _cap_height(style.tick, _FONT)
    for value, text in zip(y_ticks.major, y_ticks.labels):
        py = float(y_axis.to_px(np.array([value]))[0])
        baseline = min(max(py + cap / 2, box.top + cap), box.bottom)
        _draw_text(canvas, text, box.left - style.gap, baseline, style.tick, _TEXT, align="right")
    for value, text in zip(x_ticks.major, x_ticks.labels):
        px = float(x_axis.to_px(np.array([value]))[0])
        half = _text_width(text, style.tick) / 2
        px = min(max(px, box.left + half), width - style.pad / 2 - half)
        _draw_text(canvas, text, px, box.bottom + style.gap + cap, style.tick, _TEXT, align="centre")
    x_label_baseline = height - style.pad - _descent(style.axis, _FONT)
    centre_x, centre_y = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    _draw_text(canvas, x_label, centre_x, x_label_baseline, style.axis, _TEXT, align="centre")
    y_label_x = style.pad + style.line_height(style.axis) / 2
    _draw_text_vertical(canvas, y_label, y_label_x, centre_y, style.axis, _TEXT)


def _draw_header(
    canvas: npt.NDArray[np.float32], box: _Box, style: _Style, title: str, main: _Run, smoothness: float
) -> None:
    """Title top left; top right, the latest step and loss (shortened, then dropped, if it won't fit)."""
    baseline = style.pad + _cap_height(style.title, _FONT_BOLD)
    _draw_text(canvas, title, box.left, baseline, style.title, _TEXT_BRIGHT, font=_FONT_BOLD)
    if not main.steps.size:
        centre = ((box.left + box.right) / 2, (box.top + box.bottom) / 2)
        _draw_text(canvas, "no loss values yet", *centre, style.axis, _TEXT_DIM, align="centre")
        return
    last_step = float(main.steps[-1])
    step_text = str(int(last_step)) if last_step.is_integer() else f"{last_step:g}"
    candidates = [f"step {step_text}   loss {format_number(float(main.raw[-1]), smallest_decimal=1e-3)}"]
    if smoothness > 0 and main.steps.size > 1:
        smoothed = format_number(float(main.smoothed[-1]), smallest_decimal=1e-3)
        candidates.insert(0, f"{candidates[0]}   smoothed {smoothed}")
    room = box.right - box.left - _text_width(title, style.title, _FONT_BOLD) - 3 * style.gap
    for text in candidates:
        if _text_width(text, style.axis) <= room:
            _draw_text(canvas, text, box.right, baseline, style.axis, main.colour, align="right")
            return


def render_loss_curve(
    steps: Values,
    losses: Values,
    *,
    smoothness: float = 0.6,
    log_scale: bool = True,
    show_original: bool = True,
    width: int = 960,
    height: int = 540,
    title: str = "CopyCat loss",
    series: Optional[Mapping[str, tuple[Values, Values]]] = None,
    label: str = "training",
    x_label: str = "step",
    y_label: str = "loss (L1)",
) -> Image8:
    """Draw a loss curve the way CopyCat's Progress tab shows it: uint8 ``height``×``width``×3.

    The raw losses are a thin, faint line; the :func:`smooth`-ed losses a bright orange one, with the
    last step and loss written top right. Any number of points works: one, two, or 100k (each pixel
    column is reduced to its min/max envelope, so drawing cost follows the image width).

    Args:
        steps: training step of each loss value (need not start at 0; unsorted input is sorted).
        losses: loss per step, same length. Non-finite pairs are skipped.
        smoothness: :func:`smooth` factor, 0 (raw) to 1.
        log_scale: log10 loss axis (the useful view of a loss falling over decades). Values <= 0
            cannot sit on it and are skipped; when no value is positive the axis falls back to linear.
        show_original: also draw the raw, unsmoothed curve (faint) behind the smoothed one.
        width, height: image size in pixels, at least 240×160. Text and lines scale with the size.
        title: heading top left.
        series: extra runs to compare, ``{name: (steps, losses)}``, each in its own colour; adds a
            legend naming ``label`` (the main run) and every series with its last smoothed loss.
        label: legend name of the main run.
        x_label, y_label: axis titles.
    """
    if width < 240 or height < 160:
        raise CopyCatError(f"A loss curve needs at least 240×160 pixels to be readable, got {width}×{height}.")
    runs = [_prepare_run(label, steps, losses, smoothness)]
    for i, (name, (s, v)) in enumerate((series or {}).items(), start=1):
        runs.append(_prepare_run(name, s, v, smoothness, _SERIES_COLOURS[i % len(_SERIES_COLOURS)]))
    shown = np.concatenate([np.r_[r.raw, r.smoothed] if show_original else r.smoothed for r in runs])
    log = log_scale and bool(np.any(shown > 0))
    if log:
        shown = shown[shown > 0]
    style = _Style.for_size(width, height)

    # Layout. The header and the x-axis strip are as tall as their fonts; the loss axis then has a
    # known height, which fixes its ticks, whose widest label fixes the left margin, which fixes the
    # width of the step axis and so its ticks.
    top = style.pad + style.line_height(style.title, _FONT_BOLD) + style.gap
    bottom = height - (style.pad + style.line_height(style.axis) + style.line_height(style.tick) + 2 * style.gap)
    y_lo, y_hi, y_ticks = _y_ticks(shown, log, bottom - top, style)
    label_w = max((_text_width(t, style.tick) for t in y_ticks.labels), default=0)
    left = style.pad + style.line_height(style.axis) + label_w + 2 * style.gap
    box = _Box(top, left, bottom, width - style.pad)
    y_axis = _Axis(y_lo, y_hi, bottom - style.inset, top + style.inset, log=log)
    x_axis = _Axis(0.0, 1.0, box.left + style.inset, box.right - style.inset)
    x_ticks = Ticks([], [], [])
    all_steps = np.concatenate([r.steps for r in runs])
    if all_steps.size:
        x_axis.lo, x_axis.hi = step_range(all_steps)
        integral = bool(np.all(all_steps == np.round(all_steps)))
        x_ticks = _x_ticks(x_axis.lo, x_axis.hi, integral, x_axis.px_hi - x_axis.px_lo, style)

    canvas = _new_canvas(height, width, _BACKGROUND)
    _draw_grid(canvas, box, x_axis, x_ticks, y_axis, y_ticks)
    _draw_curves(canvas, box, runs, x_axis, y_axis, style, show_raw=show_original and smoothness > 0)
    _draw_axis_text(canvas, box, x_axis, x_ticks, y_axis, y_ticks, style, x_label, y_label)
    _draw_header(canvas, box, style, title, runs[0], smoothness)
    if len(runs) > 1:
        _draw_legend(canvas, runs, box.right - style.inset - style.gap, box.top + style.inset + style.gap, style)
    return _to_uint8(canvas)


def _draw_legend(canvas: npt.NDArray[np.float32], runs: Sequence[_Run], right: int, top: int, style: _Style) -> None:
    """Legend box in the plot's top-right corner: a colour swatch, the run name, its last smoothed loss."""
    size, gap = style.tick, style.gap
    cap, descent = _cap_height(size, _FONT), _descent(size, _FONT)
    row = cap + descent + gap
    swatch = 3 * size // 2
    names = [r.name for r in runs]
    lasts = [format_number(float(r.smoothed[-1]), smallest_decimal=1e-3) if r.smoothed.size else "-" for r in runs]
    name_w = max(_text_width(n, size) for n in names)
    last_w = max(_text_width(v, size) for v in lasts)
    box_w = gap + swatch + gap + name_w + 2 * gap + last_w + gap
    box_h = gap + row * len(runs)
    left = right - box_w
    box = np.ones((box_h, box_w), np.float32)
    _blend(canvas, top, left, box, _BACKGROUND, 0.85)
    for edge in ((top, left, 1, box_w), (top + box_h - 1, left, 1, box_w)):
        _fill_rect(canvas, *edge, _FRAME)
    for edge in ((top, left, box_h, 1), (top, left + box_w - 1, box_h, 1)):
        _fill_rect(canvas, *edge, _FRAME)
    for i, (run, name, last) in enumerate(zip(runs, names, lasts)):
        baseline = top + gap + i * row + cap
        mid = baseline - cap // 2
        _fill_rect(canvas, mid - 1, left + gap, 2 if size < 16 else 3, swatch, run.colour)
        _draw_text(canvas, name, left + 2 * gap + swatch, baseline, size, _TEXT_BRIGHT)
        _draw_text(canvas, last, left + box_w - gap, baseline, size, run.colour, align="right")


def save_loss_curve(path: Union[str, os.PathLike[str]], steps: Values, losses: Values, **kw: Any) -> Path:
    """:func:`render_loss_curve` written to ``path`` as a PNG, atomically (see :func:`write_png_atomic`).

    Keyword arguments are those of :func:`render_loss_curve`. Returns ``path`` as a Path.
    """
    return write_png_atomic(path, render_loss_curve(steps, losses, **kw))
