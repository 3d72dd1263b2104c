"""The training panel's run table: one row per run (Show box with the run's colour, name, step, loss,
status, directory). The panel decides what the rows say; this module draws them and tells edits made by
the user from its own updates (:attr:`RunTable.updating`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from copycat_nuke.ui import runs, theme
from copycat_nuke.ui.qt import PYSIDE2, QtCore, QtGui, QtWidgets, combine

# columns
SHOW, NAME, STEP, LOSS, STATUS, DIRECTORY = range(6)
HEADERS = ("Show", "Name", "Step", "Loss", "Status", "Directory")
_ITEM = QtCore.Qt.ItemFlag
_ALIGN_RIGHT = combine(QtCore.Qt.AlignmentFlag.AlignRight, QtCore.Qt.AlignmentFlag.AlignVCenter)


@dataclass
class Run:
    """A row of the run table: a run directory, its curve and what was last read from its files."""

    path: Path
    colour: str
    name: str
    visible: bool = True
    summary: Optional[runs.RunSummary] = None
    history: runs.LossHistory = field(default_factory=runs.LossHistory)
    signature: tuple[Any, ...] = ()

    @property
    def key(self) -> str:
        return str(self.path)


class RunTable(QtWidgets.QTableWidget):
    """The runs, one per row, in the order given to :meth:`rebuild`."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(0, len(HEADERS), parent)
        #: True while the table changes its own cells: item signals then are not the user's edits
        self.updating = False
        self.setHorizontalHeaderLabels(list(HEADERS))
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        trigger = QtWidgets.QAbstractItemView.EditTrigger
        self.setEditTriggers(combine(trigger.DoubleClicked, trigger.EditKeyPressed, trigger.SelectedClicked))
        self.verticalHeader().setVisible(False)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        header_view = self.horizontalHeader()
        resize = QtWidgets.QHeaderView.ResizeMode
        for column in (SHOW, STEP, LOSS, STATUS):
            header_view.setSectionResizeMode(column, resize.ResizeToContents)
        header_view.setSectionResizeMode(NAME, resize.Interactive)
        header_view.setSectionResizeMode(DIRECTORY, resize.Stretch)
        self.setColumnWidth(NAME, 150)
        self.setWordWrap(False)
        self.setTextElideMode(QtCore.Qt.TextElideMode.ElideMiddle)  # long paths keep both ends
        muted = self.palette()  # Nuke's orange selection would hide the runs' colour swatches
        muted.setColor(QtGui.QPalette.ColorRole.Highlight, QtGui.QColor(theme.SELECTION))
        muted.setColor(QtGui.QPalette.ColorRole.HighlightedText, QtGui.QColor(theme.TEXT_BRIGHT))
        self.setPalette(muted)

    @contextmanager
    def quietly(self) -> Iterator[None]:
        """Changes made inside are the table's own (see :attr:`updating`)."""
        before, self.updating = self.updating, True
        try:
            yield
        finally:
            self.updating = before

    def rebuild(self, rows: Sequence[Run]) -> None:
        """One row per run, every cell made; the caller fills the numbers with :meth:`fill_row`."""
        with self.quietly():
            self.setRowCount(len(rows))
            for row, run in enumerate(rows):
                show = QtWidgets.QTableWidgetItem()
                show.setFlags(combine(_ITEM.ItemIsEnabled, _ITEM.ItemIsSelectable, _ITEM.ItemIsUserCheckable))
                show.setCheckState(QtCore.Qt.CheckState.Checked if run.visible else QtCore.Qt.CheckState.Unchecked)
                show.setIcon(_swatch(run.colour))
                show.setData(QtCore.Qt.ItemDataRole.UserRole, run.key)
                show.setToolTip("Show this run's curve")
                self.setItem(row, SHOW, show)
                name = QtWidgets.QTableWidgetItem(run.name)
                name.setFlags(combine(_ITEM.ItemIsEnabled, _ITEM.ItemIsSelectable, _ITEM.ItemIsEditable))
                name.setToolTip("Double-click to rename (the directory keeps its name)")
                self.setItem(row, NAME, name)
                for column in (STEP, LOSS, STATUS, DIRECTORY):
                    item = QtWidgets.QTableWidgetItem("")
                    item.setFlags(combine(_ITEM.ItemIsEnabled, _ITEM.ItemIsSelectable))
                    if column in (STEP, LOSS):
                        _align(item, _ALIGN_RIGHT)
                    self.setItem(row, column, item)

    def fill_row(self, row: int, run: Run, step: str, loss: Optional[float], status: str) -> None:
        """Write a row's name, step, loss, status and directory (a row not yet built is left alone)."""
        if self.item(row, STATUS) is None:
            return
        with self.quietly():
            name_item = self.cell(row, NAME)
            if name_item.text() != run.name:
                name_item.setText(run.name)
            self.cell(row, STEP).setText(step)
            self.cell(row, LOSS).setText(format_loss(loss))
            self.cell(row, STATUS).setText(status)
            directory = self.cell(row, DIRECTORY)
            directory.setText(str(run.path))
            directory.setToolTip(str(run.path))

    def set_checked(self, row: int, visible: bool) -> None:
        """Tick or clear a row's Show box (as if the user had)."""
        with self.quietly():
            self.cell(row, SHOW).setCheckState(
                QtCore.Qt.CheckState.Checked if visible else QtCore.Qt.CheckState.Unchecked
            )

    def select_quietly(self, row: int) -> None:
        with self.quietly():
            self.selectRow(row)

    def cell(self, row: int, column: int) -> QtWidgets.QTableWidgetItem:
        item = self.item(row, column)
        if item is None:  # every cell is made by rebuild
            raise LookupError(f"run table has no cell at row {row}, column {column}")
        return item


def format_loss(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.4g}"


def run_signature(path: Path) -> tuple[Any, ...]:
    """Changes whenever a run's files that the panel shows change (cheap: a few stat calls)."""
    stamps: list[Any] = []
    for name in ("loss.csv", "model.cat", "config.yaml", runs.DISPLAY_FILE, "contact_sheets/latest.txt", "checkpoints"):
        try:
            stat = (path / name).stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def _align(item: QtWidgets.QTableWidgetItem, alignment: Any) -> None:
    """PySide6 takes the flags (and deprecates ints); PySide2 takes only an int."""
    item.setTextAlignment(int(alignment) if PYSIDE2 else alignment)


def _swatch(colour: str) -> QtGui.QIcon:
    pixmap = QtGui.QPixmap(12, 12)
    pixmap.fill(QtGui.QColor(colour))
    icon = QtGui.QIcon(pixmap)
    icon.addPixmap(pixmap, QtGui.QIcon.Mode.Selected)  # not tinted by the selection: it is the run's colour
    return icon


__all__ = ["HEADERS", "Run", "RunTable", "format_loss", "run_signature"]
