"""The latest contact sheet (input | prediction | ground truth | difference), scaled to fit its pane."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from copycat_nuke.ui import theme
from copycat_nuke.ui.qt import QtCore, QtGui, QtWidgets


class ContactSheetView(QtWidgets.QWidget):
    """Shows one image file, scaled down (never up past 2×) to fit, centred on a dark background."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._pixmap: Optional[QtGui.QPixmap] = None
        self._path: Optional[Path] = None
        self._mtime_ns = 0
        self.setMinimumSize(160, 120)
        policy = QtWidgets.QSizePolicy.Policy.Expanding
        self.setSizePolicy(policy, policy)

    @property
    def path(self) -> Optional[Path]:
        """The file shown, or None."""
        return self._path

    def set_image(self, path: Optional[Union[str, Path]]) -> bool:
        """Show ``path`` (None clears). Reloads only if the file is new or changed; False if unreadable."""
        if path is None:
            changed = self._path is not None
            self._path, self._pixmap, self._mtime_ns = None, None, 0
            if changed:
                self.update()
            return True
        path = Path(path)
        try:
            mtime_ns = path.stat().st_mtime_ns
        except OSError:
            return False
        if path == self._path and mtime_ns == self._mtime_ns and self._pixmap is not None:
            return True
        pixmap = QtGui.QPixmap(str(path))
        if pixmap.isNull():  # e.g. caught between the writer's temp file and its rename: keep the old one
            return False
        self._path, self._pixmap, self._mtime_ns = path, pixmap, mtime_ns
        self.setToolTip(str(path))
        self.update()
        return True

    def image_size(self) -> QtCore.QSize:
        return self._pixmap.size() if self._pixmap is not None else QtCore.QSize()

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(420, 320)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        try:
            painter.fillRect(self.rect(), QtGui.QColor(theme.BACKGROUND))
            if self._pixmap is None:
                painter.setPen(QtGui.QColor(theme.TEXT_DIM))
                painter.drawText(self.rect(), int(QtCore.Qt.AlignmentFlag.AlignCenter), "no contact sheet yet")
                return
            size = self._pixmap.size()
            scale = min(self.width() / size.width(), self.height() / size.height(), 2.0)
            width, height = int(size.width() * scale), int(size.height() * scale)
            target = QtCore.QRect((self.width() - width) // 2, (self.height() - height) // 2, width, height)
            painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawPixmap(target, self._pixmap)
        finally:
            painter.end()


__all__ = ["ContactSheetView"]
