"""The loss curve of the Progress tab, drawn with QPainter: one or more runs, log scale, smoothing, raw curve.

It looks and reads like ``loss.png`` (``plots.py``): the same dark theme, the same 1-2-5 and decade
ticks, the same debiased smoothing (:func:`copycat_nuke.plots.smooth`), the raw losses as a faint line
behind the smoothed one, and a dot where training is now. Long runs stay cheap: a curve with more points
than twice the plot's width in pixels is reduced to its per-pixel-column envelope before drawing, and
smoothing is recomputed only when points arrive or the smoothness changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import numpy.typing as npt

from copycat_nuke import plots
from copycat_nuke.ui import theme
from copycat_nuke.ui.qt import QtCore, QtGui, QtWidgets, combine

FloatArray = npt.NDArray[np.float64]
Number = Union[int, float]

_ALIGN_LEFT = combine(QtCore.Qt.AlignmentFlag.AlignLeft, QtCore.Qt.AlignmentFlag.AlignVCenter)
_ALIGN_RIGHT = combine(QtCore.Qt.AlignmentFlag.AlignRight, QtCore.Qt.AlignmentFlag.AlignVCenter)

#: Nuke's CopyCat Progress tab default.
DEFAULT_SMOOTHNESS = 0.6


@dataclass
class _Series:
    """One run's points and, cached, their finite, step-sorted arrays and smoothed losses."""

    label: str
    colour: str
    steps: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    visible: bool = True
    _cache_key: Optional[tuple[int, float]] = None
    _cache: tuple[FloatArray, FloatArray, FloatArray] = field(
        default_factory=lambda: (np.empty(0), np.empty(0), np.empty(0))
    )

    def arrays(self, smoothness: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Steps, raw losses and smoothed losses; non-finite points dropped, sorted by step."""
        key = (len(self.steps), smoothness)
        if self._cache_key != key:
            x = np.asarray(self.steps, dtype=np.float64)
            y = np.asarray(self.losses, dtype=np.float64)
            finite = np.isfinite(x) & np.isfinite(y)  # plots.smooth needs NaN-free values
            x, y = x[finite], y[finite]
            if x.size > 1 and np.any(np.diff(x) < 0):
                order = np.argsort(x, kind="stable")
                x, y = x[order], y[order]
            self._cache = (x, y, plots.smooth(y, smoothness))
            self._cache_key = key
        return self._cache

    def invalidate(self) -> None:
        self._cache_key = None


@dataclass
class _Axis:
    """A data range (log10 of it on a log axis) mapped onto a pixel range."""

    lo: float
    hi: float
    px_lo: float
    px_hi: float
    log: bool = False

    def to_px(self, values: FloatArray) -> FloatArray:
        v = np.log10(values) if self.log else np.asarray(values, dtype=np.float64)
        return self.px_lo + (v - self.lo) * (self.px_hi - self.px_lo) / (self.hi - self.lo)


@dataclass
class _Layout:
    plot: QtCore.QRect
    x: _Axis
    y: _Axis
    x_ticks: plots.Ticks
    y_ticks: plots.Ticks
    empty: bool


class LossCurveWidget(QtWidgets.QWidget):
    """A loss-versus-step plot of any number of runs (series), each keyed by a string (e.g. its directory).

    The first series added is drawn in Nuke's orange; :meth:`set_highlight` picks the run whose latest
    step and loss are written in the header (the one training now). Points are added from the UI thread
    only (the panel feeds it from its event queue).
    """

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._series: dict[str, _Series] = {}
        self._smoothness = DEFAULT_SMOOTHNESS
        self._log_scale = True
        self._show_original = True
        self._highlight: Optional[str] = None
        self._hover_x: Optional[int] = None
        self.title = "Loss"
        self.setMouseTracking(True)
        self.setMinimumSize(320, 200)
        policy = QtWidgets.QSizePolicy.Policy.Expanding
        self.setSizePolicy(policy, policy)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, True)

    # ------------------------------------------------------------------------------- options
    @property
    def smoothness(self) -> float:
        """Smoothing of the bright curve, 0 (raw) to 1 (:func:`copycat_nuke.plots.smooth`)."""
        return self._smoothness

    def set_smoothness(self, value: float) -> None:
        value = min(max(float(value), 0.0), 1.0)
        if value != self._smoothness:
            self._smoothness = value
            self.update()

    @property
    def log_scale(self) -> bool:
        """Whether the loss axis is logarithmic (losses <= 0 are then left out)."""
        return self._log_scale

    def set_log_scale(self, on: bool) -> None:
        if bool(on) != self._log_scale:
            self._log_scale = bool(on)
            self.update()

    @property
    def show_original(self) -> bool:
        """Whether the raw, unsmoothed losses are drawn (faintly) behind the smoothed curve."""
        return self._show_original

    def set_show_original(self, on: bool) -> None:
        if bool(on) != self._show_original:
            self._show_original = bool(on)
            self.update()

    # -------------------------------------------------------------------------------- series
    def set_series(
        self,
        key: str,
        steps: Sequence[Number],
        losses: Sequence[Number],
        *,
        label: Optional[str] = None,
        colour: Optional[str] = None,
    ) -> None:
        """Create or replace a series' points (``label`` defaults to ``key``, ``colour`` to the next one)."""
        if len(steps) != len(losses):
            raise ValueError(f"{len(steps)} steps but {len(losses)} losses for series {key!r}")
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(label or key, colour or theme.series_colour(len(self._series)))
        else:
            series.label = label or series.label
            series.colour = colour or series.colour
        series.steps = [float(s) for s in steps]
        series.losses = [float(v) for v in losses]
        series.invalidate()
        self.update()

    def extend(self, key: str, steps: Sequence[Number], losses: Sequence[Number]) -> None:
        """Add points to the end of a series (created if new)."""
        if key not in self._series:
            self.set_series(key, steps, losses)
            return
        series = self._series[key]
        series.steps.extend(float(s) for s in steps)
        series.losses.extend(float(v) for v in losses)
        self.update()

    def append(self, key: str, step: Number, loss: Number) -> None:
        """Add one point to the end of a series (created if new)."""
        self.extend(key, [step], [loss])

    def remove_series(self, key: str) -> None:
        if self._series.pop(key, None) is not None:
            self.update()

    def clear(self) -> None:
        self._series.clear()
        self._highlight = None
        self.update()

    def series_keys(self) -> list[str]:
        return list(self._series)

    def has_series(self, key: str) -> bool:
        return key in self._series

    def set_series_visible(self, key: str, visible: bool) -> None:
        self._series[key].visible = bool(visible)
        self.update()

    def is_series_visible(self, key: str) -> bool:
        return self._series[key].visible

    def set_series_label(self, key: str, label: str) -> None:
        self._series[key].label = label
        self.update()

    def series_label(self, key: str) -> str:
        return self._series[key].label

    def series_colour(self, key: str) -> str:
        return self._series[key].colour

    def set_highlight(self, key: Optional[str]) -> None:
        """The series whose latest step and loss the header shows (default: the first visible one)."""
        self._highlight = key
        self.update()

    def points(self, key: str) -> tuple[FloatArray, FloatArray]:
        """A series' steps and raw losses as drawn (finite points, sorted by step)."""
        steps, raw, _ = self._series[key].arrays(self._smoothness)
        return steps.copy(), raw.copy()

    def smoothed(self, key: str) -> FloatArray:
        """A series' smoothed losses at the current smoothness (:func:`copycat_nuke.plots.smooth`)."""
        return self._series[key].arrays(self._smoothness)[2].copy()

    # ------------------------------------------------------------------------------- mapping
    def y_range(self) -> tuple[float, float]:
        """The loss axis' range in loss units (bottom, top) for the widget's current size and data."""
        layout = self._layout()
        if layout.y.log:
            return 10.0**layout.y.lo, 10.0**layout.y.hi
        return layout.y.lo, layout.y.hi

    def plot_rect(self) -> QtCore.QRect:
        """The plot area in widget coordinates."""
        return QtCore.QRect(self._layout().plot)

    def value_to_point(self, step: float, loss: float) -> QtCore.QPointF:
        """Where (step, loss) is drawn, in widget coordinates, for the current size, data and options."""
        layout = self._layout()
        x = float(layout.x.to_px(np.array([step], dtype=np.float64))[0])
        y = float(layout.y.to_px(np.array([loss], dtype=np.float64))[0])
        return QtCore.QPointF(x, y)

    def y_tick_labels(self) -> list[str]:
        """The loss axis' labels, bottom to top (what an artist reads off the plot)."""
        return list(self._layout().y_ticks.labels)

    def x_tick_labels(self) -> list[str]:
        return list(self._layout().x_ticks.labels)

    # -------------------------------------------------------------------------------- layout
    def _visible(self) -> list[tuple[_Series, FloatArray, FloatArray, FloatArray]]:
        shown = []
        for series in self._series.values():
            if series.visible:
                steps, raw, smoothed = series.arrays(self._smoothness)
                if steps.size:
                    shown.append((series, steps, raw, smoothed))
        return shown

    def _fonts(self) -> tuple[QtGui.QFont, QtGui.QFont, QtGui.QFont]:
        tick = QtGui.QFont(self.font())
        axis = QtGui.QFont(self.font())
        title = QtGui.QFont(self.font())
        title.setBold(True)
        if title.pointSizeF() > 0:
            title.setPointSizeF(title.pointSizeF() * 1.15)
        return tick, axis, title

    def _layout(self) -> _Layout:
        """Plot box, axes and ticks. The header and step-axis strip are as tall as their fonts; the loss
        axis' widest label then fixes the left margin, which fixes the step axis' length and ticks."""
        tick_font, axis_font, title_font = self._fonts()
        tick_metrics = QtGui.QFontMetrics(tick_font)
        axis_metrics = QtGui.QFontMetrics(axis_font)
        title_metrics = QtGui.QFontMetrics(title_font)
        pad, gap, inset = 10, 6, 6
        width, height = max(self.width(), 120), max(self.height(), 80)
        top = pad + title_metrics.height() + gap
        bottom = height - (pad + axis_metrics.height() + tick_metrics.height() + 2 * gap)
        shown = self._visible()
        values = [np.r_[raw, smoothed] if self._show_original else smoothed for _, _, raw, smoothed in shown]
        loss_values = np.concatenate(values) if values else np.empty(0)
        log = self._log_scale and bool(np.any(loss_values > 0))
        if log:
            loss_values = loss_values[loss_values > 0]
        empty = loss_values.size == 0
        if empty:
            y_lo, y_hi = (-3.0, 0.0) if self._log_scale else (0.0, 1.0)
            y_ticks = plots.Ticks([], [], [])
            log = self._log_scale
        else:
            y_lo, y_hi = plots.value_range(loss_values, log)
            length = bottom - top - 2 * inset
            min_spacing = 2.4 * tick_metrics.height()
            if log:
                y_ticks = plots.log_ticks(y_lo, y_hi, length, min_spacing)
            else:
                ticks, step = plots.linear_ticks(y_lo, y_hi, max(2, int(length / min_spacing)))
                y_ticks = plots.Ticks(ticks, plots.linear_labels(ticks, step), [])
        label_width = max((tick_metrics.horizontalAdvance(t) for t in y_ticks.labels), default=0)
        left = pad + axis_metrics.height() + label_width + 2 * gap
        right = width - pad
        plot = QtCore.QRect(left, top, max(right - left, 10), max(bottom - top, 10))
        y_axis = _Axis(y_lo, y_hi, plot.bottom() - inset, plot.top() + inset, log=log)
        x_axis = _Axis(0.0, 1.0, plot.left() + inset, plot.right() - inset)
        x_ticks = plots.Ticks([], [], [])
        if not empty:
            all_steps = np.concatenate([steps for _, steps, _, _ in shown])
            x_axis.lo, x_axis.hi = plots.step_range(all_steps)
            integral = bool(np.all(all_steps == np.round(all_steps)))
            x_ticks = self._x_ticks(x_axis, integral, tick_metrics, gap)
        return _Layout(plot, x_axis, y_axis, x_ticks, y_ticks, empty)

    @staticmethod
    def _x_ticks(axis: _Axis, integral: bool, metrics: QtGui.QFontMetrics, gap: int) -> plots.Ticks:
        """Step ticks about seven characters apart, fewer where the widest label would touch its neighbour."""
        length = axis.px_hi - axis.px_lo
        for count in range(max(2, int(length / (7 * metrics.averageCharWidth() + 1))), 0, -1):
            ticks, step = plots.linear_ticks(axis.lo, axis.hi, count, min_step=1.0 if integral else 0.0)
            labels = [plots.format_step(v) for v in ticks]
            widest = max((metrics.horizontalAdvance(t) for t in labels), default=0)
            if len(ticks) < 2 or step * length / (axis.hi - axis.lo) >= widest + 3 * gap:
                return plots.Ticks(ticks, labels, [])
        return plots.Ticks([], [], [])

    # ------------------------------------------------------------------------------- drawing
    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(640, 360)

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:
        self._hover_x = int(event.pos().x())
        self.update()

    def leaveEvent(self, event: QtCore.QEvent) -> None:
        self._hover_x = None
        self.update()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        try:
            painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
            painter.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QtGui.QPainter) -> None:
        layout = self._layout()
        plot = layout.plot
        tick_font, axis_font, title_font = self._fonts()
        painter.fillRect(self.rect(), QtGui.QColor(theme.BACKGROUND))
        painter.fillRect(plot, QtGui.QColor(theme.PLOT_BACKGROUND))
        self._paint_grid(painter, layout)
        shown = self._visible()
        painter.save()
        painter.setClipRect(plot.adjusted(1, 1, -1, -1))
        self._paint_curves(painter, layout, shown)
        painter.restore()
        painter.setPen(QtGui.QPen(QtGui.QColor(theme.FRAME), 1))
        painter.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        painter.drawRect(QtCore.QRectF(plot).adjusted(0.5, 0.5, -0.5, -0.5))
        self._paint_axis_text(painter, layout, tick_font, axis_font)
        self._paint_header(painter, layout, shown, title_font, axis_font)
        if layout.empty:
            painter.setFont(axis_font)
            painter.setPen(QtGui.QColor(theme.TEXT_DIM))
            painter.drawText(plot, int(QtCore.Qt.AlignmentFlag.AlignCenter), "no loss values yet")
            return
        if len(shown) > 1:
            self._paint_legend(painter, layout, shown, tick_font)
        if self._hover_x is not None and plot.left() < self._hover_x < plot.right():
            self._paint_hover(painter, layout, shown, tick_font)

    def _paint_grid(self, painter: QtGui.QPainter, layout: _Layout) -> None:
        plot = layout.plot
        painter.save()
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, False)  # crisp one-pixel lines
        for values, colour in ((layout.y_ticks.minor, theme.GRID_MINOR), (layout.y_ticks.major, theme.GRID_MAJOR)):
            painter.setPen(QtGui.QPen(QtGui.QColor(colour), 1))
            for py in layout.y.to_px(np.asarray(values, dtype=np.float64)):
                if plot.top() < py < plot.bottom():
                    painter.drawLine(plot.left() + 1, int(py), plot.right() - 1, int(py))
        painter.setPen(QtGui.QPen(QtGui.QColor(theme.GRID_MAJOR), 1))
        for px in layout.x.to_px(np.asarray(layout.x_ticks.major, dtype=np.float64)):
            if plot.left() < px < plot.right():
                painter.drawLine(int(px), plot.top() + 1, int(px), plot.bottom() - 1)
        painter.restore()

    def _curve_path(self, layout: _Layout, steps: FloatArray, losses: FloatArray) -> QtGui.QPainterPath:
        keep = losses > 0 if layout.y.log else np.ones(losses.shape, dtype=bool)
        px, py = _envelope(layout.x.to_px(steps[keep]), layout.y.to_px(losses[keep]))
        path = QtGui.QPainterPath()
        if px.size:
            path.moveTo(float(px[0]), float(py[0]))
            for x, y in zip(px[1:].tolist(), py[1:].tolist()):
                path.lineTo(x, y)
        return path

    def _paint_curves(
        self, painter: QtGui.QPainter, layout: _Layout, shown: list[tuple[_Series, FloatArray, FloatArray, FloatArray]]
    ) -> None:
        painter.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        if self._show_original and self._smoothness > 0:
            for series, steps, raw, _ in shown:
                colour = QtGui.QColor(series.colour)
                colour.setAlphaF(theme.RAW_ALPHA)
                painter.setPen(_pen(colour, 1.0))
                painter.drawPath(self._curve_path(layout, steps, raw))
        highlight = self._highlight_series(shown)
        ordered = sorted(shown, key=lambda item: item[0] is highlight)  # the live run on top
        for series, steps, _, smoothed in ordered:
            painter.setPen(_pen(QtGui.QColor(series.colour), 2.0 if series is highlight else 1.6))
            painter.drawPath(self._curve_path(layout, steps, smoothed))
        for series, steps, _, smoothed in ordered:  # where each run is now: a dot ringed in the background
            if layout.y.log and smoothed[-1] <= 0:
                continue
            x = float(layout.x.to_px(steps[-1:])[0])
            y = float(layout.y.to_px(smoothed[-1:])[0])
            painter.setPen(QtGui.QPen(QtGui.QColor(theme.PLOT_BACKGROUND), 2.0))
            painter.setBrush(QtGui.QColor(series.colour))
            painter.drawEllipse(QtCore.QPointF(x, y), 4.0, 4.0)

    def _highlight_series(self, shown: list[tuple[_Series, FloatArray, FloatArray, FloatArray]]) -> Optional[_Series]:
        if self._highlight is not None:
            wanted = self._series.get(self._highlight)
            if any(series is wanted for series, _, _, _ in shown):
                return wanted
        return shown[0][0] if shown else None

    def _paint_axis_text(
        self, painter: QtGui.QPainter, layout: _Layout, tick_font: QtGui.QFont, axis_font: QtGui.QFont
    ) -> None:
        plot = layout.plot
        metrics = QtGui.QFontMetrics(tick_font)
        painter.setFont(tick_font)
        painter.setPen(QtGui.QColor(theme.TEXT))
        gap = 6
        for value, text in zip(layout.y_ticks.major, layout.y_ticks.labels):
            py = float(layout.y.to_px(np.array([value]))[0])
            centre = min(max(py, plot.top() + metrics.height() / 2), plot.bottom() - metrics.height() / 2)
            box = QtCore.QRectF(0, centre - metrics.height() / 2, plot.left() - gap, metrics.height())
            painter.drawText(box, int(_ALIGN_RIGHT), text)
        for value, text in zip(layout.x_ticks.major, layout.x_ticks.labels):
            px = float(layout.x.to_px(np.array([value]))[0])
            half = metrics.horizontalAdvance(text) / 2 + 1
            px = min(max(px, plot.left() + half), self.width() - 4 - half)  # never cut off at the edges
            box = QtCore.QRectF(px - half, plot.bottom() + gap, 2 * half, metrics.height())
            painter.drawText(box, int(QtCore.Qt.AlignmentFlag.AlignCenter), text)
        axis_metrics = QtGui.QFontMetrics(axis_font)
        painter.setFont(axis_font)
        x_title = QtCore.QRectF(
            plot.left(), self.height() - 10 - axis_metrics.height(), plot.width(), axis_metrics.height()
        )
        painter.drawText(x_title, int(QtCore.Qt.AlignmentFlag.AlignCenter), "step")
        painter.save()
        painter.translate(10 + axis_metrics.ascent(), plot.center().y())
        painter.rotate(-90)
        title_width = axis_metrics.horizontalAdvance("loss")
        painter.drawText(QtCore.QPointF(-title_width / 2, 0), "loss")
        painter.restore()

    def _paint_header(
        self,
        painter: QtGui.QPainter,
        layout: _Layout,
        shown: list[tuple[_Series, FloatArray, FloatArray, FloatArray]],
        title_font: QtGui.QFont,
        axis_font: QtGui.QFont,
    ) -> None:
        plot = layout.plot
        title_metrics = QtGui.QFontMetrics(title_font)
        line = QtCore.QRectF(plot.left(), 10, plot.width(), title_metrics.height())
        painter.setFont(title_font)
        painter.setPen(QtGui.QColor(theme.TEXT_BRIGHT))
        painter.drawText(line, int(_ALIGN_LEFT), self.title)
        main = self._highlight_series(shown)
        if main is None:
            return
        steps, raw, smoothed = main.arrays(self._smoothness)
        step = float(steps[-1])
        step_text = str(int(step)) if step.is_integer() else f"{step:g}"
        loss_text = plots.format_number(float(raw[-1]), smallest_decimal=1e-3)
        candidates = [f"step {step_text}   loss {loss_text}"]
        if self._smoothness > 0 and steps.size > 1:
            smooth_text = plots.format_number(float(smoothed[-1]), smallest_decimal=1e-3)
            candidates.insert(0, f"{candidates[0]}   smoothed {smooth_text}")
        if len(shown) > 1:
            candidates = [f"{main.label}:  {text}" for text in candidates] + candidates
        metrics = QtGui.QFontMetrics(axis_font)
        room = plot.width() - title_metrics.horizontalAdvance(self.title) - 24
        painter.setFont(axis_font)
        painter.setPen(QtGui.QColor(main.colour))
        for text in candidates:
            if metrics.horizontalAdvance(text) <= room:
                painter.drawText(line, int(_ALIGN_RIGHT), text)
                return

    def _paint_legend(
        self,
        painter: QtGui.QPainter,
        layout: _Layout,
        shown: list[tuple[_Series, FloatArray, FloatArray, FloatArray]],
        font: QtGui.QFont,
    ) -> None:
        """Top right of the plot: a swatch, the run's name and its last smoothed loss, per visible run."""
        metrics = QtGui.QFontMetrics(font)
        gap, swatch = 6, 16
        lasts = [plots.format_number(float(smoothed[-1]), smallest_decimal=1e-3) for _, _, _, smoothed in shown]
        name_width = max(metrics.horizontalAdvance(series.label) for series, _, _, _ in shown)
        last_width = max(metrics.horizontalAdvance(text) for text in lasts)
        width = gap + swatch + gap + name_width + 2 * gap + last_width + gap
        row = metrics.height() + 2
        box = QtCore.QRectF(layout.plot.right() - 8 - width, layout.plot.top() + 8, width, gap + row * len(shown))
        background = QtGui.QColor(theme.BACKGROUND)
        background.setAlphaF(0.85)
        painter.setPen(QtGui.QPen(QtGui.QColor(theme.FRAME), 1))
        painter.setBrush(background)
        painter.drawRect(box)
        painter.setFont(font)
        for i, ((series, _, _, _), last) in enumerate(zip(shown, lasts)):
            top = box.top() + gap / 2 + i * row
            mid = top + row / 2
            painter.setPen(_pen(QtGui.QColor(series.colour), 2.5))
            painter.drawLine(QtCore.QPointF(box.left() + gap, mid), QtCore.QPointF(box.left() + gap + swatch, mid))
            text_box = QtCore.QRectF(box.left() + 2 * gap + swatch, top, name_width, row)
            painter.setPen(QtGui.QColor(theme.TEXT_BRIGHT))
            painter.drawText(text_box, int(_ALIGN_LEFT), series.label)
            value_box = QtCore.QRectF(box.right() - gap - last_width, top, last_width, row)
            painter.setPen(QtGui.QColor(series.colour))
            painter.drawText(value_box, int(_ALIGN_RIGHT), last)

    def _paint_hover(
        self,
        painter: QtGui.QPainter,
        layout: _Layout,
        shown: list[tuple[_Series, FloatArray, FloatArray, FloatArray]],
        font: QtGui.QFont,
    ) -> None:
        """A vertical line under the mouse and, beside it, each run's loss at the nearest logged step."""
        assert self._hover_x is not None
        plot = layout.plot
        x_axis = layout.x
        step = x_axis.lo + (self._hover_x - x_axis.px_lo) * (x_axis.hi - x_axis.lo) / (x_axis.px_hi - x_axis.px_lo)
        lines: list[tuple[str, str]] = []
        for series, steps, raw, smoothed in shown:
            i = int(np.clip(np.searchsorted(steps, step), 0, steps.size - 1))
            if i > 0 and abs(steps[i - 1] - step) <= abs(steps[i] - step):
                i -= 1
            value = plots.format_number(float(smoothed[i]), smallest_decimal=1e-3)
            raw_text = plots.format_number(float(raw[i]), smallest_decimal=1e-3)
            lines.append((series.colour, f"step {int(steps[i])}   {value}  (raw {raw_text})"))
        painter.setPen(QtGui.QPen(QtGui.QColor(theme.TEXT_DIM), 1, QtCore.Qt.PenStyle.DashLine))
        painter.drawLine(self._hover_x, plot.top() + 1, self._hover_x, plot.bottom() - 1)
        metrics = QtGui.QFontMetrics(font)
        width = max(metrics.horizontalAdvance(text) for _, text in lines) + 12
        height = metrics.height() * len(lines) + 8
        left = self._hover_x + 10 if self._hover_x + 10 + width < plot.right() else self._hover_x - 10 - width
        box = QtCore.QRectF(left, plot.bottom() - 8 - height, width, height)
        background = QtGui.QColor(theme.BACKGROUND)
        background.setAlphaF(0.9)
        painter.setPen(QtGui.QPen(QtGui.QColor(theme.FRAME), 1))
        painter.setBrush(background)
        painter.drawRect(box)
        painter.setFont(font)
        for i, (colour, text) in enumerate(lines):
            painter.setPen(QtGui.QColor(colour))
            baseline = box.top() + 4 + metrics.ascent() + i * metrics.height()
            painter.drawText(QtCore.QPointF(box.left() + 6, baseline), text)


def _pen(colour: QtGui.QColor, width: float) -> QtGui.QPen:
    pen = QtGui.QPen(colour, width)
    pen.setCapStyle(QtCore.Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(QtCore.Qt.PenJoinStyle.RoundJoin)
    return pen


def _envelope(px: FloatArray, py: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Reduce a curve with many points per pixel column to each column's extremes (same picture, few points).

    Each column keeps its lowest and highest value, in the order the curve visits them, so a 100k-step
    run costs about two points per pixel. Curves with fewer than two points per column are returned as is.
    """
    if px.size < 2 or px.size <= 2 * (math.ceil(float(px[-1] - px[0])) + 1):
        return px, py
    column = np.floor(px).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, column[1:] != column[:-1]])
    ends = np.r_[starts[1:], px.size] - 1
    low = np.minimum.reduceat(py, starts)
    high = np.maximum.reduceat(py, starts)
    rising = py[starts] <= py[ends]  # visit the first-reached extreme first
    first = np.where(rising, low, high)
    second = np.where(rising, high, low)
    x = column.astype(np.float64)[starts] + 0.5
    return np.repeat(x, 2), np.column_stack([first, second]).reshape(-1)


__all__ = ["DEFAULT_SMOOTHNESS", "LossCurveWidget"]
