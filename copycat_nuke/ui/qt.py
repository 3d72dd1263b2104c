"""The one place the panel meets Qt: qtpy picks PySide6 (Nuke 16+, our machines) or PySide2 (Nuke 13–15).

Everything else in ``copycat_nuke.ui`` imports ``QtCore``/``QtGui``/``QtWidgets`` from here, uses scoped
enums (``QtCore.Qt.AlignmentFlag.AlignLeft``: both bindings have them, and PySide6's stubs only know
those) and calls :func:`exec_` instead of ``exec()``/``exec_()``, which differ between the bindings.
"""

from __future__ import annotations

from typing import Any, TypeVar

from copycat_nuke.errors import CopyCatError


class QtMissingError(CopyCatError, ImportError):
    """No Qt for Python binding could be imported."""


try:
    import qtpy
    from qtpy import QtCore, QtGui, QtWidgets
except Exception as error:  # qtpy raises its own QtBindingsNotFoundError/PythonQtError, not ImportError
    raise QtMissingError(
        f"the CopyCat panel needs Qt for Python ({error}): install it with pip install -e '.[gui]' "
        "(qtpy and PySide6 < 6.12); inside Nuke it uses Nuke's own PySide"
    ) from None

Signal = QtCore.Signal
#: Nuke 13–15's binding, where some calls differ.
PYSIDE2 = qtpy.API_NAME == "PySide2"

_Flag = TypeVar("_Flag")


def combine(first: _Flag, *more: _Flag) -> _Flag:
    """``first | more…`` for Qt enum flags (alignments, item flags, buttons).

    PySide2 5.13's enums cannot ``|`` on Python 3.11: shiboken2 returns a value with an exception set,
    which surfaces later somewhere unrelated as a SystemError. There the flags are built from ints.
    """
    if not PYSIDE2:
        result: Any = first
        for flag in more:
            result = result | flag
        return result
    value = int(first)  # type: ignore[call-overload]  # shiboken2 enums are int-convertible
    for flag in more:
        value |= int(flag)  # type: ignore[call-overload]
    return type(first)(value)  # type: ignore[call-arg]  # and build from any int


def exec_(runnable: Any) -> int:
    """Run a QApplication's or a dialog's event loop: ``exec()`` in PySide6, ``exec_()`` in PySide2."""
    run = getattr(runnable, "exec", None) or runnable.exec_
    return int(run())


__all__ = ["PYSIDE2", "QtCore", "QtGui", "QtMissingError", "QtWidgets", "Signal", "combine", "exec_"]
