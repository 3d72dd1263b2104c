"""Show Panel: dock the training panel (``copycat_nuke.ui.TrainingPanel``) in Nuke's Properties pane.

The panel is a plain Qt widget built with no arguments; it follows a running job (``attach_job``) or a
finished run's directory (``attach_directory``). Nuke wraps widgets with
``nukescripts.panels.registerWidgetAsPanel``, which builds the widget from a Python expression when the
pane shows it, so the expression imports the class by itself.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import nuke

from copycat_nuke.errors import CopyCatError
from copycat_nuke.nuke import jobs, knobs

TITLE = "CopyCat Training"
PANEL_ID = "uk.co.copycat_nuke.TrainingPanel"
WIDGET = "__import__('copycat_nuke.ui', fromlist=['TrainingPanel']).TrainingPanel"

#: Panels shown this session: Nuke does not keep a Python reference to a PythonPanel's wrapper.
_shown: list[Any] = []


def _panel_class() -> Any:
    try:
        module = importlib.import_module("copycat_nuke.ui")
    except ImportError as error:  # Qt (PySide2/6 via qtpy) or numpy missing from Nuke's Python
        raise CopyCatError(f"the training panel cannot load: {error}. Training itself is not affected.") from None
    panel = getattr(module, "TrainingPanel", None)
    if panel is None:
        raise CopyCatError("this copycat_nuke has no training panel (copycat_nuke.ui.TrainingPanel) yet")
    return panel


def register_panel() -> None:
    """menu.py: list the panel in the Pane menu, so saved workspaces can restore it. Never raises."""
    try:
        import nukescripts.panels

        nukescripts.panels.registerWidgetAsPanel(WIDGET, TITLE, PANEL_ID)
    except Exception as error:
        print(f"copycat_nuke: the {TITLE} panel is not in the Pane menu: {error}", file=sys.stderr)


@jobs.button
def show_panel(node: nuke.Node) -> None:
    """Show Panel: dock the training panel and follow this node's training (or its last run)."""
    if not jobs.is_gui():
        raise CopyCatError("the training panel needs Nuke's interface; in a terminal session read loss.csv instead")
    _panel_class()
    job = jobs.current(node.fullName())
    training = job.training if job is not None else None
    directory = knobs.path(node, "dataDirectory")
    if training is None and not directory:
        raise CopyCatError("set Data Directory (or start training) first: the panel shows the run there")
    import nukescripts.panels

    panel = nukescripts.panels.registerWidgetAsPanel(WIDGET, TITLE, PANEL_ID, True)
    if panel is None:
        raise CopyCatError("Nuke did not create the training panel")
    panel.addToPane(nuke.getPaneFor("Properties.1"))
    widget = panel.customKnob.getObject().widgetInstance
    if training is not None:
        widget.attach_job(training)
    else:
        widget.attach_directory(directory)
    _shown.append(panel)
