"""The CopyCat training panel (Qt, through qtpy: PySide6 in Nuke 16+ and standalone, PySide2 in Nuke 13–15).

::

    from copycat_nuke.ui import TrainingPanel

    panel = TrainingPanel()                       # empty; Nuke's registerWidgetAsPanel builds it like this
    panel.attach_directory("/shots/sh010/copycat")  # a run directory, or a data directory of runs
    panel.attach_job(job)                         # follow a copycat_nuke.train_in_background(...) job

Importing this package loads Qt but not torch: torch loads when the panel starts or follows a job.
Standalone: ``copycat gui [DATA_DIR]``.
"""

from __future__ import annotations

from copycat_nuke.ui.contact_sheet import ContactSheetView
from copycat_nuke.ui.loss_curve import LossCurveWidget
from copycat_nuke.ui.panel import TrainingPanel
from copycat_nuke.ui.qt import QtMissingError
from copycat_nuke.ui.theme import apply_nuke_theme

__all__ = ["ContactSheetView", "LossCurveWidget", "QtMissingError", "TrainingPanel", "apply_nuke_theme"]
