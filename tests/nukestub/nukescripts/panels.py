"""Stand-in ``nukescripts.panels``: registerWidgetAsPanel as Nuke implements it, recording what happens.

Nuke wraps a widget in a PythonPanel whose PyCustom_Knob evaluates
``__import__('nukescripts').panels.WidgetKnob(<widget expression>)``; when the pane shows the panel, the
WidgetKnob's ``makeUI`` builds the widget (``widgetInstance``). The same happens here, at ``addToPane``.
"""

from __future__ import annotations

from typing import Any, Optional

registered: list[tuple[str, str, str]] = []
shown: list[PythonPanel] = []


class WidgetKnob:
    def __init__(self, widget: Any) -> None:
        self.widget = widget
        self.widgetInstance: Any = None

    def makeUI(self) -> Any:
        self.widgetInstance = self.widget()
        return self.widgetInstance


class _PyCustomKnob:
    def __init__(self, name: str, script: str) -> None:
        self.name = name
        self.script = script
        self._object: Any = None

    def getObject(self) -> Any:
        if self._object is None:
            self._object = eval(self.script, {"__builtins__": __builtins__})
        return self._object


class PythonPanel:
    def __init__(self, title: str = "", id: str = "", scrollable: bool = True) -> None:
        self.title = title
        self.id = id
        self.customKnob: Any = None
        self.pane: Any = None

    def addToPane(self, pane: Optional[Any] = None) -> None:
        self.pane = pane
        self.customKnob.getObject().makeUI()
        shown.append(self)


def registerWidgetAsPanel(widget: str, name: str, id: str, create: bool = False) -> Optional[PythonPanel]:
    registered.append((widget, name, id))
    if not create:
        return None
    panel = PythonPanel(name, id)
    panel.customKnob = _PyCustomKnob(name, "__import__('nukescripts').panels.WidgetKnob(" + widget + ")")
    return panel
