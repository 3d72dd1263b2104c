"""Nuke's dark look: the colours the loss curve draws with, and a palette for the standalone panel.

Inside Nuke the panel inherits Nuke's own palette; :func:`apply_nuke_theme` is for ``copycat gui`` and
offscreen renders, so they look the way the panel looks docked in Nuke. The curve colours are those of
``plots.py`` (``loss.png``), so the panel and the PNG next to the checkpoints read the same.
"""

from __future__ import annotations

from copycat_nuke.ui.qt import QtGui, QtWidgets

# The plot (same values as plots.py)
BACKGROUND = "#262626"
PLOT_BACKGROUND = "#2b2b2b"
GRID_MAJOR = "#3b3b3b"
GRID_MINOR = "#303030"
FRAME = "#4a4a4a"
TEXT = "#a8a8a8"
TEXT_BRIGHT = "#d8d8d8"
TEXT_DIM = "#7a7a7a"
#: One colour per run: the first is Nuke's curve orange, the others tell runs apart.
SERIES_COLOURS = ("#f0a030", "#4fb3e8", "#8cc152", "#e0607e", "#b48ee0", "#e8d44d", "#4dd0b4")
#: Opacity of the raw (unsmoothed) curve: context, not the message.
RAW_ALPHA = 0.3
ERROR = "#e05a4f"
#: Selected rows in the run table: a muted orange, so each run's colour swatch stays visible.
SELECTION = "#5a4526"

# Nuke's widgets
_WINDOW = "#323232"
_BASE = "#282828"
_ALTERNATE = "#2e2e2e"
_BUTTON = "#3c3c3c"
_WIDGET_TEXT = "#c8c8c8"
_DISABLED_TEXT = "#6e6e6e"
_HIGHLIGHT = "#f7931e"  # Nuke's selection orange


def series_colour(index: int) -> str:
    """The colour of the ``index``-th run (cycles through :data:`SERIES_COLOURS`)."""
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]


def nuke_palette() -> QtGui.QPalette:
    """A QPalette close to Nuke's dark interface."""
    role = QtGui.QPalette.ColorRole
    group = QtGui.QPalette.ColorGroup
    palette = QtGui.QPalette()
    colours = {
        role.Window: _WINDOW,
        role.WindowText: _WIDGET_TEXT,
        role.Base: _BASE,
        role.AlternateBase: _ALTERNATE,
        role.ToolTipBase: _BASE,
        role.ToolTipText: _WIDGET_TEXT,
        role.Text: _WIDGET_TEXT,
        role.Button: _BUTTON,
        role.ButtonText: _WIDGET_TEXT,
        role.BrightText: "#ffffff",
        role.Highlight: _HIGHLIGHT,
        role.HighlightedText: "#1a1a1a",
        role.Link: SERIES_COLOURS[1],
        role.Light: "#4a4a4a",
        role.Midlight: "#404040",
        role.Mid: "#2a2a2a",
        role.Dark: "#1e1e1e",
        role.Shadow: "#141414",
    }
    for colour_role, code in colours.items():
        palette.setColor(colour_role, QtGui.QColor(code))
    for colour_role in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(group.Disabled, colour_role, QtGui.QColor(_DISABLED_TEXT))
    return palette


def apply_nuke_theme(app: QtWidgets.QApplication) -> None:
    """Give a standalone QApplication Nuke's dark look (Fusion style, Nuke's palette). Not for use inside Nuke."""
    style = QtWidgets.QStyleFactory.create("Fusion")
    if style is not None:
        app.setStyle(style)
    app.setPalette(nuke_palette())
