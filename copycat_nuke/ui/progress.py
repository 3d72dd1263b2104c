"""The panel's progress strip: the live job's numbers and the caption-over-value widgets that show them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from copycat_nuke.ui import theme
from copycat_nuke.ui.qt import QtGui, QtWidgets

__all__ = ["Progress", "Stat", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` → ``01:15``, ``3725`` → ``1:02:05``; ``—`` when unknown (inf or nan)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@dataclass
class Progress:
    """The live job's numbers, from its latest events."""

    step: int = 0
    total: Optional[int] = None
    loss: Optional[float] = None
    learning_rate: Optional[float] = None
    patches_per_second: float = math.nan
    elapsed: float = math.nan
    eta: float = math.nan
    device: str = ""
    state: str = ""


class Stat(QtWidgets.QWidget):
    """A small caption over a value, as in Nuke's progress displays."""

    def __init__(self, caption: str, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        self.caption = QtWidgets.QLabel(caption.upper())
        self.value = QtWidgets.QLabel("—")
        caption_font = QtGui.QFont(self.caption.font())
        if caption_font.pointSizeF() > 0:
            caption_font.setPointSizeF(caption_font.pointSizeF() * 0.8)
        self.caption.setFont(caption_font)
        self.caption.setStyleSheet(f"color: {theme.TEXT_DIM};")
        value_font = QtGui.QFont(self.value.font())
        if value_font.pointSizeF() > 0:
            value_font.setPointSizeF(value_font.pointSizeF() * 1.15)
        self.value.setFont(value_font)
        self.value.setStyleSheet(f"color: {theme.TEXT_BRIGHT};")
        layout.addWidget(self.caption)
        layout.addWidget(self.value)

    def set(self, text: str) -> None:
        self.value.setText(text)
