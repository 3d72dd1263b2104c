"""A stand-in for Nuke's ``nuke`` module, so the Nuke layer can be tested without Nuke.

It follows the names and signatures of Nuke 13.2's API as typed by ``types-nuke`` (the same stubs
``mypy --strict`` checks copycat_nuke.nuke against), and behaves like Nuke where the tests depend on it:

- **Nodes and knobs**: ``nuke.nodes.X(**knobs)``, ``createNode``, ``toNode`` (dotted names), ``delete``,
  groups as context managers; ``node['missing']`` raises ``NameError`` like Nuke. Built-in classes know
  only the knobs listed in :data:`BUILTIN_KNOBS`, so a misspelled knob fails here as it would in Nuke.
- **Gizmos** found on the plugin path (``pluginAddPath``) are built from their ``.gizmo`` file with
  ``nkscript``: user knobs with their types and defaults, the nodes inside and their connections, and the
  ``onCreate`` / ``knobChanged`` / button Python, run with ``thisNode()`` / ``thisKnob()`` set.
- **Rendering**: ``nuke.execute(write, first, last)`` really renders a Write's input for the node classes
  in :func:`_pixels` (Read, Dot, Switch, Input, Output, groups): Read files are read and the Write's file
  written with copycat_nuke.imageio. A missing Read frame raises ``RuntimeError`` as Nuke does.
- **Threads**: with ``env['gui']`` true, every API call must come from the main thread (a worker's call is
  recorded in :data:`STATE` ``.violations`` and raises); ``executeInMainThread(WithResult)`` queue calls that
  the test's main thread runs with :func:`process_events`, as Nuke's event loop would; WithResult from the
  main thread raises (in Nuke it would hang). In terminal mode they just call.
- **Recording**: messages, ProgressTasks, menus, executed renders and panes are kept on :data:`STATE`.

Test helpers (not in Nuke): :func:`reset`, :func:`process_events`, :func:`user_set`, :func:`user_connect`,
:func:`open_panel`.
"""

from __future__ import annotations

import queue
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional, Union

import nkscript
import numpy as np

# ---------------------------------------------------------------------------------------------- flags
DISABLED = 0x80
INVISIBLE = 0x400
STARTLINE = 0x1000
NO_ANIMATION = 0x100
READ_ONLY = 0x10000000
TO_SCRIPT = 1
TO_VALUE = 2
WRITE_NON_DEFAULT_ONLY = 0x20
INPUTS = 2
NUKE_VERSION_MAJOR = 13
NUKE_VERSION_MINOR = 2
NUKE_VERSION_STRING = "13.2v8 (copycat_nuke test stand-in)"


class _Env(dict):  # nuke.GlobalsEnvironment
    pass


env = _Env()


class _State:
    def __init__(self, gui: bool) -> None:
        self.plugin_paths: list[str] = []
        self.root = Root()
        self.context: list[Group] = []
        self.this: list[tuple[Node, Optional[Knob]]] = []
        self.messages: list[str] = []
        self.executed: list[tuple[str, int]] = []
        self.violations: list[str] = []
        self.main_queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Any]] = queue.Queue()
        self.tasks: list[ProgressTask] = []
        self.cancel_when: Optional[Callable[[ProgressTask], bool]] = None
        self.menus: dict[str, Menu] = {}
        self.tcl_calls: list[tuple[str, ...]] = []
        self.main_thread = threading.main_thread()
        #: the frame and view being rendered (``nuke.frame()``, ``nuke.thisView()``) and the script's views
        self.frame = 1
        self.view = "main"
        self.views: list[str] = ["main"]
        #: render callbacks by kind ("beforeRender", "beforeFrameRender", ...): (call, args, kwargs, nodeClass)
        self.callbacks: dict[str, list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], str]]] = {}
        #: the namespace of Nuke's ``__main__``, where init.py runs and ``[python ...]`` expressions are evaluated
        self.main_namespace: dict[str, Any] = {"nuke": sys.modules[__name__], "__name__": "__main__"}
        env.clear()
        env.update({"gui": gui, "NukeVersionMajor": 13, "NukeVersionMinor": 2, "nukex": True})


STATE: _State


def reset(gui: bool = False) -> None:
    """Start a fresh session: an empty script, nothing recorded (test helper)."""
    global STATE
    STATE = _State(gui)


def _main(what: str) -> None:
    """In the GUI, Nuke's API belongs to the main thread: record and refuse calls from other threads."""
    if env.get("gui") and threading.current_thread() is not STATE.main_thread:
        message = f"nuke.{what} called from thread {threading.current_thread().name!r}, not the main thread"
        STATE.violations.append(message)
        raise RuntimeError(message)


# ---------------------------------------------------------------------------------------------- knobs
class Knob:
    def __init__(self, name: str, label: Optional[str] = None, value: Any = "") -> None:
        self._name = name
        self._label = label if label is not None else name
        self._value: Any = value
        self._default: Any = value
        self._expression: Optional[str] = None
        self._flags = 0
        self._enabled = True
        self._visible = True
        self._tooltip = ""
        self._node: Optional[Node] = None

    def Class(self) -> str:
        return type(self).__name__

    def name(self) -> str:
        return self._name

    def label(self) -> str:
        return self._label

    def setLabel(self, label: str) -> None:
        self._label = label

    def tooltip(self) -> str:
        return self._tooltip

    def setTooltip(self, tooltip: str) -> None:
        self._tooltip = tooltip

    def node(self) -> Node:
        assert self._node is not None
        return self._node

    def _coerce(self, value: Any) -> Any:
        return value

    def value(self, *args: Any) -> Any:
        _main(f"Knob.value({self._name})")
        if self._expression is not None:
            return self._coerce(_evaluate_expression(self.node(), self._expression))
        return self._value

    def getValue(self, *args: Any) -> Any:
        return self.value()

    def setValue(self, value: Any, *args: Any) -> bool:
        _main(f"Knob.setValue({self._name})")
        self._expression = None
        self._value = self._coerce(value)
        return True

    def setExpression(self, expression: str, *args: Any) -> bool:
        self._expression = expression
        return True

    def hasExpression(self, *args: Any) -> bool:
        return self._expression is not None

    def enabled(self) -> bool:
        return self._enabled

    def setEnabled(self, enabled: bool) -> None:
        _main(f"Knob.setEnabled({self._name})")
        self._enabled = bool(enabled)

    def visible(self) -> bool:
        return self._visible

    def setVisible(self, visible: bool) -> None:
        self._visible = bool(visible)

    def setFlag(self, flag: int) -> None:
        self._flags |= flag

    def clearFlag(self, flag: int) -> None:
        self._flags &= ~flag

    def getFlag(self, flag: int) -> bool:
        return bool(self._flags & flag)

    def toScript(self, quote: bool = False, context: Any = None) -> str:
        if self._expression is not None:
            return "{{" + self._expression + "}}"
        value = self._value
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def fromScript(self, script: str) -> None:
        self.setValue(script)

    def __repr__(self) -> str:
        return f"<{self.Class()} {self._name}={self._value!r}>"


class Array_Knob(Knob):
    pass


class Int_Knob(Array_Knob):
    def __init__(self, name: str, label: Optional[str] = None, value: Any = 0) -> None:
        super().__init__(name, label, int(value))

    def _coerce(self, value: Any) -> Any:
        if isinstance(value, float) and not value.is_integer():
            raise TypeError(f"{self._name}: an Int_Knob holds whole numbers, not {value!r}")
        return int(value, 0) if isinstance(value, str) else int(value)


class Double_Knob(Array_Knob):
    def __init__(self, name: str, label: Optional[str] = None, value: Any = 0.0) -> None:
        super().__init__(name, label, float(value))

    def _coerce(self, value: Any) -> Any:
        return float(value)


class Boolean_Knob(Array_Knob):
    def __init__(self, name: str, label: Optional[str] = None, value: Any = False) -> None:
        super().__init__(name, label, _to_bool(value))

    def _coerce(self, value: Any) -> Any:
        return _to_bool(value)


class Unsigned_Knob(Array_Knob):
    pass


class Enumeration_Knob(Unsigned_Knob):
    def __init__(self, name: str, label: Optional[str], values: list[str], value: Optional[str] = None) -> None:
        self._values = list(values)
        super().__init__(name, label, value if value is not None else (values[0] if values else ""))

    def _coerce(self, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._values[int(value)]
        if str(value) not in self._values:
            raise ValueError(f"{self._name}: {value!r} is not one of {self._values}")
        return str(value)

    def values(self) -> list[str]:
        return list(self._values)

    def numValues(self) -> int:
        return len(self._values)

    def enumName(self, n: int) -> str:
        return self._values[n]


class String_Knob(Knob):
    def _coerce(self, value: Any) -> Any:
        return "" if value is None else str(value)

    def getText(self, *args: Any) -> str:
        return str(self.value())

    def setText(self, text: str) -> None:
        self.setValue(text)


class EvalString_Knob(String_Knob):
    pass


class File_Knob(EvalString_Knob):
    def getEvaluatedValue(self, *args: Any) -> str:
        return _tcl_subst(self.node(), str(self.value()))

    def fromUserText(self, text: str) -> None:
        """``path first-last`` sets the file and a Read's frame range, as typing it into Nuke does."""
        match = re.fullmatch(r"(?P<path>.*?)(?:\s+(?P<first>-?\d+)-(?P<last>-?\d+))?", text.strip())
        assert match is not None
        self.setValue(match.group("path"))
        node = self.node()
        if match.group("first") is not None:
            for name, group in (("first", "first"), ("last", "last"), ("origfirst", "first"), ("origlast", "last")):
                knob = node.knob(name)
                if knob is not None:
                    knob.setValue(int(match.group(group)))


class Multiline_Eval_String_Knob(EvalString_Knob):
    pass


class Text_Knob(Knob):
    pass


class Tab_Knob(Knob):
    pass


class Script_Knob(String_Knob):
    def command(self) -> str:
        return str(self._value)

    def setCommand(self, command: str) -> None:
        self._value = command

    def execute(self) -> None:
        """Run the button's Python with thisNode()/thisKnob() set, as pressing it (or Nuke's execute) does."""
        _main(f"Knob.execute({self._name})")
        _run_python(self.node(), self, str(self._value), f"{self.node().name()}.{self._name}")


class PyScript_Knob(Script_Knob):
    pass


class PythonKnob(String_Knob):
    pass


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


# ---------------------------------------------------------------------------------------------- nodes
KnobMaker = Callable[[str], Knob]

_COMMON_KNOBS: dict[str, KnobMaker] = {
    "name": String_Knob,
    "label": String_Knob,
    "help": String_Knob,
    "xpos": Int_Knob,
    "ypos": Int_Knob,
    "selected": Boolean_Knob,
    "disable": Boolean_Knob,
    "tile_color": Int_Knob,
    "note_font": String_Knob,
}


def _enumeration(values: list[str]) -> KnobMaker:
    return lambda name: Enumeration_Knob(name, None, values)


class _CreateCatFileButton(PyScript_Knob):
    """CatFileCreator's "Create .cat file and Inference" button (``createCatFile``): writes ``catFile`` from
    ``torchScriptFile`` and adds an Inference node reading it, as Nuke 14+ does. Nuke's ``.cat`` format is
    Foundry's own; the stand-in writes a zip of the TorchScript file (``model.pt``) and the knob values
    (``knobs.json``). A missing or unloadable TorchScript file raises ``RuntimeError``, as in Nuke."""

    def execute(self) -> None:
        _main(f"Knob.execute({self._name})")
        _create_cat_file(self.node())


def _create_cat_file(creator: Node) -> None:
    import json
    import zipfile

    source = Path(str(creator["torchScriptFile"].value()))
    target = str(creator["catFile"].value()).strip()
    if not str(creator["torchScriptFile"].value()).strip() or not source.is_file():
        raise RuntimeError(f"{creator.name()}: TorchScript file {str(source)!r} does not exist")
    if not target:
        raise RuntimeError(f"{creator.name()}: no .cat file given")
    try:  # Nuke loads the model with its own torch to read its attributes; a bad file fails here
        import torch

        torch.jit.load(str(source), map_location="cpu")
    except Exception as error:
        raise RuntimeError(f"{creator.name()}: cannot load TorchScript file {source}: {error}") from None
    knobs = {name: creator[name].value() for name in ("channelsIn", "channelsOut", "modelId", "outputScale")}
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        archive.write(source, "model.pt")
        archive.writestr("knobs.json", json.dumps(knobs))
    with creator.parent():
        inference = _create("Inference", {})
    inference["modelFile"].setValue(target)
    inference.setXYpos(creator.xpos(), creator.ypos() + 60)


#: The knobs of the built-in node classes the stand-in can create (beside the common ones).
BUILTIN_KNOBS: dict[str, dict[str, KnobMaker]] = {
    "Read": {
        "file": File_Knob,
        "first": Int_Knob,
        "last": Int_Knob,
        "origfirst": Int_Knob,
        "origlast": Int_Knob,
        "raw": Boolean_Knob,
        "on_error": _enumeration(["error", "black", "checkerboard", "nearest frame"]),
        "before": _enumeration(["hold", "loop", "bounce", "black"]),
        "after": _enumeration(["hold", "loop", "bounce", "black"]),
        "format": String_Knob,
        "reload": PyScript_Knob,
    },
    "Write": {
        "file": File_Knob,
        "file_type": _enumeration(["", "exr", "dpx", "tiff", "png", "jpeg"]),
        "datatype": _enumeration(["16 bit half", "32 bit float"]),
        "channels": String_Knob,
        "raw": Boolean_Knob,
        "views": String_Knob,
    },
    "Input": {"number": Int_Knob},
    "Output": {},
    "Switch": {"which": Int_Knob},
    # Assert: "If the expression resolves to false, this node raises an error" (Nuke reference guide)
    "Assert": {"expression": String_Knob, "message": String_Knob},
    "Dot": {},
    "NoOp": {},
    # Nuke 14+ (Foundry's .cat File Creation Reference; knob names as Nuke's Python spells them)
    "CatFileCreator": {
        "torchScriptFile": File_Knob,
        "catFile": File_Knob,
        "channelsIn": String_Knob,
        "channelsOut": String_Knob,
        "modelId": String_Knob,
        "outputScale": Int_Knob,
        "createCatFile": _CreateCatFileButton,
    },
    # Foundry's own Inference node (the stand-in reads no Foundry .cat: it only holds the knobs)
    "Inference": {
        "modelFile": File_Knob,
        "useGPUIfAvailable": Boolean_Knob,
        "halfPrecision": Boolean_Knob,
        "channelsIn": String_Knob,
        "channelsOut": String_Knob,
    },
}
_INPUTS = {
    "Read": 0,
    "Input": 0,
    "Write": 1,
    "Output": 1,
    "Switch": 2,
    "Dot": 1,
    "NoOp": 1,
    "CatFileCreator": 0,
    "Inference": 1,
    "Assert": 1,
}


class FrameRange:
    def __init__(self, first: int = 1, last: int = 1, increment: int = 1) -> None:
        self._first, self._last, self._increment = int(first), int(last), int(increment)

    def first(self) -> int:
        return self._first

    def last(self) -> int:
        return self._last

    def increment(self) -> int:
        return self._increment

    def frames(self) -> int:
        return (self._last - self._first) // self._increment + 1

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._first, self._last + 1, self._increment))


class FrameRanges:
    def __init__(self, ranges: Union[str, list[int], None] = None) -> None:
        if isinstance(ranges, str):
            from copycat_nuke.imageio import parse_frame_list

            self._frames = parse_frame_list(ranges)
        else:
            self._frames = sorted(ranges or [])

    def toFrameList(self) -> list[int]:
        return list(self._frames)

    def __iter__(self) -> Iterator[int]:
        return iter(self._frames)


class Node:
    def __init__(self, cls: str, parent: Optional[Group], max_inputs: int = 1) -> None:
        self._class = cls
        self._knobs: dict[str, Knob] = {}
        self._inputs: list[Optional[Node]] = []
        self._max_inputs = max_inputs
        self._parent = parent
        self._pseudo: dict[str, Knob] = {}
        for name, maker in _COMMON_KNOBS.items():
            self.addKnob(maker(name))

    # identity
    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        return str(self._knobs["name"]._value)

    def setName(self, name: str, *args: Any, **kwargs: Any) -> None:
        self._knobs["name"].setValue(name)

    def fullName(self) -> str:
        names = []
        node: Optional[Node] = self
        while node is not None and not isinstance(node, Root):
            names.append(node.name())
            node = node._parent
        return ".".join(reversed(names))

    def parent(self) -> Group:
        assert self._parent is not None
        return self._parent

    def __repr__(self) -> str:
        return f"<{self._class} {self.fullName()}>"

    # knobs
    def addKnob(self, knob: Knob) -> None:
        knob._node = self
        self._knobs[knob.name()] = knob

    def removeKnob(self, knob: Knob) -> None:
        self._knobs.pop(knob.name(), None)

    def knob(self, name: Union[str, int], follow_link: bool = False) -> Optional[Knob]:
        _main(f"Node.knob({name})")
        if isinstance(name, int):
            return list(self._knobs.values())[name]
        return self._knobs.get(name)

    def knobs(self) -> dict[str, Knob]:
        _main("Node.knobs")
        return dict(self._knobs)

    def __getitem__(self, name: str) -> Knob:
        found = self.knob(name)
        if found is None:
            raise NameError(f"knob {name} does not exist")
        return found

    def _pseudo_knob(self, name: str) -> Knob:
        knob = self._pseudo.get(name)
        if knob is None:
            knob = self._pseudo[name] = Knob(name)
            knob._node = self
        return knob

    # inputs
    def input(self, index: int) -> Optional[Node]:
        _main("Node.input")
        return self._inputs[index] if 0 <= index < len(self._inputs) else None

    def inputs(self) -> int:
        connected = [i for i, node in enumerate(self._inputs) if node is not None]
        return connected[-1] + 1 if connected else 0

    def maxInputs(self) -> int:
        return self._max_inputs

    def setInput(self, index: int, node: Optional[Node]) -> bool:
        _main("Node.setInput")
        if index >= self._max_inputs:
            return False
        while len(self._inputs) <= index:
            self._inputs.append(None)
        self._inputs[index] = node
        return True

    def connectInput(self, index: int, node: Optional[Node]) -> bool:
        return self.setInput(index, node)

    def dependent(self, *args: Any, **kwargs: Any) -> list[Node]:
        siblings = self._parent.nodes() if self._parent is not None else []
        return [node for node in siblings if self in node._inputs]

    # placement and selection
    def xpos(self) -> int:
        return int(self._knobs["xpos"]._value)

    def ypos(self) -> int:
        return int(self._knobs["ypos"]._value)

    def setXYpos(self, x: int, y: int) -> None:
        self._knobs["xpos"].setValue(x)
        self._knobs["ypos"].setValue(y)

    def setXpos(self, x: int) -> None:
        self._knobs["xpos"].setValue(x)

    def setYpos(self, y: int) -> None:
        self._knobs["ypos"].setValue(y)

    def isSelected(self) -> bool:
        return bool(self._knobs["selected"]._value)

    def setSelected(self, selected: bool) -> None:
        self._knobs["selected"].setValue(selected)

    def showControlPanel(self, forceFloat: bool = False) -> None:
        self._panel_open = True

    # time
    def frameRange(self) -> FrameRange:
        _main("Node.frameRange")
        return _frame_range(self)

    def firstFrame(self) -> int:
        return self.frameRange().first()

    def lastFrame(self) -> int:
        return self.frameRange().last()

    def error(self) -> bool:
        """Whether the node or anything it reads has an error at the current frame and view (as Nuke draws
        it red and the Viewer shows ERROR)."""
        return _error_of(self) is not None

    def hasError(self) -> bool:
        return self.error()


class Group(Node):
    def __init__(self, cls: str = "Group", parent: Optional[Group] = None, max_inputs: int = 0) -> None:
        super().__init__(cls, parent, max_inputs)
        self._children: list[Node] = []

    def nodes(self) -> list[Node]:
        return list(self._children)

    def numNodes(self) -> int:
        return len(self._children)

    def node(self, name: str) -> Optional[Node]:
        return next((child for child in self._children if child.name() == name), None)

    def begin(self) -> Group:
        STATE.context.append(self)
        return self

    def end(self) -> None:
        assert STATE.context and STATE.context[-1] is self, "end() of a group that is not current"
        STATE.context.pop()

    def __enter__(self) -> Group:
        return self.begin()

    def __exit__(self, *exc: Any) -> None:
        self.end()

    def output(self) -> Optional[Node]:
        return next((child for child in self._children if child.Class() == "Output"), None)

    def selectedNode(self) -> Optional[Node]:
        return next((child for child in self._children if child.isSelected()), None)

    def selectedNodes(self) -> list[Node]:
        return [child for child in self._children if child.isSelected()]


class Gizmo(Group):
    def __init__(self, cls: str, parent: Group, path: Path, max_inputs: int) -> None:
        super().__init__(cls, parent, max_inputs)
        self._path = path

    def filename(self) -> str:
        return str(self._path)

    def command(self) -> str:
        return self._class


class Root(Group):
    def __init__(self) -> None:
        super().__init__("Root", None, 0)
        self._knobs["name"].setValue("Root")
        for name, maker, value in (
            ("first_frame", Int_Knob, 1),
            ("last_frame", Int_Knob, 100),
            ("proxy", Boolean_Knob, False),
            ("format", String_Knob, "HD_1080"),
        ):
            self.addKnob(maker(name))
            self._knobs[name]._value = value
        self._script = String_Knob("name")
        self._script._node = self

    def fullName(self) -> str:
        return "root"

    def name(self) -> str:
        return "Root"

    def knob(self, name: Union[str, int], follow_link: bool = False) -> Optional[Knob]:
        if name == "name":
            return self._script  # root['name'] is the script's path
        return super().knob(name)


# -------------------------------------------------------------------------------------------- creating
def _current_group() -> Group:
    return STATE.context[-1] if STATE.context else STATE.root


def _unique_name(group: Group, base: str) -> str:
    base = re.sub(r"\d+$", "", base) or "Node"
    taken = {child.name() for child in group._children}
    number = 1
    while f"{base}{number}" in taken:
        number += 1
    return f"{base}{number}"


def _gizmo_path(cls: str) -> Optional[Path]:
    for directory in STATE.plugin_paths:
        path = Path(directory) / f"{cls}.gizmo"
        if path.is_file():
            return path
    return None


def _set_knob_from_script(node: Node, name: str, text: str) -> None:
    knob = node.knob(name)
    if knob is None:
        raise RuntimeError(f"{node.name()}: no knob named {name!r} (for {node.Class()})")
    if text.startswith("{") and text.endswith("}"):
        knob.setExpression(text[1:-1].strip())
    else:
        knob.setValue(text)


def _builtin(cls: str, group: Group) -> Node:
    if cls not in BUILTIN_KNOBS:
        raise RuntimeError(f"unknown command {cls!r}: the stand-in nuke does not know this node class")
    node = Node(cls, group, _INPUTS[cls])
    for name, maker in BUILTIN_KNOBS[cls].items():
        node.addKnob(maker(name))
    if cls == "Write":
        node._knobs["channels"]._value = "rgb"
        node._knobs["datatype"]._value = "16 bit half"
    return node


_USER_KNOB_CLASSES: dict[int, Callable[[nkscript.UserKnob], Knob]] = {
    1: lambda k: String_Knob(k.name, k.label),
    2: lambda k: File_Knob(k.name, k.label),
    3: lambda k: Int_Knob(k.name, k.label),
    4: lambda k: Enumeration_Knob(k.name, k.label, k.items),
    6: lambda k: Boolean_Knob(k.name, k.label),
    7: lambda k: Double_Knob(k.name, k.label),
    20: lambda k: Tab_Knob(k.name, k.label),
    22: lambda k: PyScript_Knob(k.name, k.label, k.text or ""),
    26: lambda k: Text_Knob(k.name, k.label, k.text or ""),
}


def _build_gizmo(cls: str, path: Path, group: Group) -> Gizmo:
    definition = nkscript.gizmo(path)
    inputs = [child for child in definition.children if child.cls == "Input"]
    gizmo = Gizmo(cls, group, path, len(inputs))
    for name in ("onCreate", "knobChanged", "onDestroy", "updateUI"):
        gizmo.addKnob(PythonKnob(name))
    for user in definition.user_knobs:
        if not user.name:
            continue
        if user.type_id not in _USER_KNOB_CLASSES:
            raise RuntimeError(f"{path}: the stand-in has no knob class for addUserKnob type {user.type_id}")
        knob = _USER_KNOB_CLASSES[user.type_id](user)
        knob._enabled = "+DISABLED" not in user.flags
        knob._visible = "+INVISIBLE" not in user.flags
        knob._tooltip = user.tooltip or ""
        gizmo.addKnob(knob)
    for name, text in definition.knobs.items():
        if name != "inputs":
            _set_knob_from_script(gizmo, name, text)
    for knob in gizmo._knobs.values():
        knob._default = knob._value
    made: dict[int, Node] = {}
    for child_def in definition.children:
        child = _builtin(child_def.cls, gizmo)
        for name, text in child_def.knobs.items():
            if name != "inputs":
                _set_knob_from_script(child, name, text)
        gizmo._children.append(child)
        made[id(child_def)] = child
    for child_def in definition.children:
        for index, source in enumerate(child_def.inputs):
            made[id(child_def)].setInput(index, made[id(source)] if source is not None else None)
    return gizmo


def _create(cls: str, knobs: dict[str, Any]) -> Node:
    _main(f"nodes.{cls}")
    group = _current_group()
    path = _gizmo_path(cls)
    # Nuke's own node classes win over gizmos of the same name on the plugin path
    node = _build_gizmo(cls, path, group) if path is not None and cls not in BUILTIN_KNOBS else _builtin(cls, group)
    node._knobs["name"]._value = _unique_name(group, cls)
    group._children.append(node)
    for name, value in knobs.items():
        if name == "inputs":
            continue
        target = node.knob(name)
        if target is None:
            raise RuntimeError(f"{node.name()}: no knob named {name!r}")
        target.setValue(value)
    on_create = node.knob("onCreate")
    if on_create is not None and on_create.value():
        _run_python(node, None, str(on_create.value()), f"{node.name()}.onCreate")
    return node


class _Constructor:
    def __init__(self, cls: str) -> None:
        self._cls = cls

    def __call__(self, *args: Any, **knobs: Any) -> Node:
        return _create(self._cls, knobs)


class Nodes:
    def __getattr__(self, cls: str) -> _Constructor:
        if cls.startswith("_"):
            raise AttributeError(cls)
        return _Constructor(cls)


nodes = Nodes()


def createNode(typ: str, knobs: str = "", inpanel: bool = True) -> Node:
    """Create a node after the selected one (connected to it) and select it, as the toolbar does."""
    group = _current_group()
    selected = group.selectedNode()
    values: dict[str, Any] = {}
    words = [word.text for command in nkscript.split_commands(knobs) for word in command]
    for name, value in zip(words[::2], words[1::2]):
        values[name] = value
    node = _create(typ, values)
    if selected is not None and node.maxInputs() > 0:
        node.setInput(0, selected)
    for other in group._children:
        other.setSelected(other is node)
    if inpanel:
        node.showControlPanel()
    return node


def scriptReadFile(s: str) -> None:
    """Read the nodes of a ``.nk`` file into the current group, as Nuke does when a script is opened.

    ``Root`` sets the script's frame range, views and proxy; other nodes are made with their knob values
    (``{expressions}`` included) and inputs. A knob the node does not have fails the load, as in Nuke.
    """
    _main("scriptReadFile")
    script = nkscript.parse_file(s)
    made: dict[int, Optional[Node]] = {}
    for definition in script.nodes:
        if definition.cls == "Root":
            made[id(definition)] = None
            for name, text in definition.knobs.items():
                if name == "views":  # Root's views knob lists "name colour" pairs
                    words = text.replace("{", " ").replace("}", " ").split()
                    STATE.views = [word for word in words if not word.startswith("#")]
                elif name in ("first_frame", "last_frame", "proxy"):
                    _set_knob_from_script(STATE.root, name, text)
            continue
        if definition.children:
            raise NotImplementedError(f"the stand-in cannot read Group {definition.name!r} from a script")
        values = {k: v for k, v in definition.knobs.items() if k not in ("inputs", "name")}
        node = _create(definition.cls, {})
        if definition.name:
            node.setName(definition.name)
        for name, text in values.items():
            _set_knob_from_script(node, name, text)
        made[id(definition)] = node
    for definition in script.nodes:
        node = made[id(definition)]
        for index, source in enumerate(definition.inputs):
            if node is not None and source is not None:
                node.setInput(index, made.get(id(source)))
    for call, args, kwargs, _ in list(STATE.callbacks.get("onScriptLoad", [])):
        call(*args, **kwargs)


def scriptOpen(filename: Optional[str] = None) -> None:
    """Open a script: read its nodes and remember its path in ``root()['name']``."""
    assert filename is not None
    scriptReadFile(filename)
    STATE.root["name"].setValue(str(filename))


def toNode(s: str) -> Optional[Node]:
    """A node by (dotted) name, relative to the current group, then to root; ``root.`` names are absolute."""
    _main("toNode")
    parts = s.split(".")
    starts: list[Group] = [STATE.root] if parts[0] == "root" else [_current_group(), STATE.root]
    if parts[0] == "root":
        parts = parts[1:]
    for start in starts:
        node: Optional[Node] = start
        for part in parts:
            node = node.node(part) if isinstance(node, Group) else None
        if node is not None:
            return node
    return None


def allNodes(filter: Optional[str] = None, group: Optional[Group] = None, recurseGroups: bool = False) -> list[Node]:
    found: list[Node] = []
    pending = list((group or _current_group())._children)
    while pending:
        node = pending.pop(0)
        if filter is None or node.Class() == filter:
            found.append(node)
        if recurseGroups and isinstance(node, Group):
            pending.extend(node._children)
    return found


def delete(n: Optional[Node]) -> None:
    _main("delete")
    if n is None or n._parent is None:
        return
    n._parent._children.remove(n)
    for other in n._parent._children:
        other._inputs = [None if source is n else source for source in other._inputs]
    n._parent = None


def root() -> Root:
    return STATE.root


def thisNode() -> Node:
    if STATE.this:
        return STATE.this[-1][0]
    return STATE.root


def thisKnob() -> Optional[Knob]:
    return STATE.this[-1][1] if STATE.this else None


def thisGroup() -> Group:
    return _current_group()


def thisParent() -> Optional[Group]:
    return thisNode()._parent


def views() -> list[str]:
    return list(STATE.views)


def thisView() -> str:
    return STATE.view


def frame(f: Optional[int] = None) -> int:
    """The current frame (during a render: the frame being rendered); ``frame(f)`` sets it."""
    if f is not None:
        STATE.frame = int(f)
    return STATE.frame


# ------------------------------------------------------------------------------------ callbacks
def _add_callback(kind: str, call: Callable[..., Any], args: Any, kwargs: Any, nodeClass: str) -> None:
    entry = (call, tuple(args), dict(kwargs or {}), nodeClass)
    if entry not in STATE.callbacks.setdefault(kind, []):
        STATE.callbacks[kind].append(entry)


def _remove_callback(kind: str, call: Callable[..., Any], args: Any, kwargs: Any, nodeClass: str) -> None:
    entry = (call, tuple(args), dict(kwargs or {}), nodeClass)
    if entry in STATE.callbacks.get(kind, []):
        STATE.callbacks[kind].remove(entry)


def addBeforeRender(call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "Write") -> None:
    _add_callback("beforeRender", call, args, kwargs, nodeClass)


def removeBeforeRender(call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "Write") -> None:
    _remove_callback("beforeRender", call, args, kwargs, nodeClass)


def addBeforeFrameRender(
    call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "Write"
) -> None:
    _add_callback("beforeFrameRender", call, args, kwargs, nodeClass)


def removeBeforeFrameRender(
    call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "Write"
) -> None:
    _remove_callback("beforeFrameRender", call, args, kwargs, nodeClass)


def addOnScriptLoad(call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "Root") -> None:
    _add_callback("onScriptLoad", call, args, kwargs, nodeClass)


def _run_callbacks(kind: str, node: Node) -> None:
    """Run the ``kind`` callbacks registered for ``node``'s class with ``thisNode()`` set to it. As Nuke's
    Write documents for beforeRender/beforeFrameRender: "If they throw an exception, the render aborts"."""
    for call, args, kwargs, node_class in list(STATE.callbacks.get(kind, [])):
        if node_class not in ("*", node.Class()):
            continue
        STATE.this.append((node, None))
        try:
            call(*args, **kwargs)
        except Exception as error:
            raise RuntimeError(f"{kind} callback failed on {node.fullName()}: {error}") from error
        finally:
            STATE.this.pop()


def _run_python(node: Node, knob: Optional[Knob], script: str, where: str) -> None:
    namespace = {"nuke": sys.modules[__name__], "__name__": "__main__"}
    STATE.this.append((node, knob))
    try:
        exec(compile(script, f"<{where}>", "exec"), namespace)
    finally:
        STATE.this.pop()


# ------------------------------------------------------------------------------------- user actions
def user_set(knob: Knob, value: Any) -> None:
    """Test helper: the artist edits a knob (setValue, then the node's knobChanged runs)."""
    knob.setValue(value)
    _knob_changed(knob.node(), knob)


def user_connect(node: Node, index: int, source: Optional[Node]) -> None:
    """Test helper: the artist connects an input (then knobChanged runs with the 'inputChange' knob)."""
    node.setInput(index, source)
    _knob_changed(node, node._pseudo_knob("inputChange"))


def open_panel(node: Node) -> None:
    """Test helper: the artist opens the node's properties (knobChanged runs with 'showPanel')."""
    node.showControlPanel()
    _knob_changed(node, node._pseudo_knob("showPanel"))


def _knob_changed(node: Node, knob: Knob) -> None:
    script = node.knob("knobChanged")
    if script is not None and script.value():
        _run_python(node, knob, str(script.value()), f"{node.name()}.knobChanged")


# ------------------------------------------------------------------------------------ expressions
_PARENT_REF = re.compile(r"(?:(?P<node>parent|\w+)\.)?(?P<knob>\w+)")


def _lookup(context: Node, reference: str) -> Any:
    match = _PARENT_REF.fullmatch(reference.strip())
    if match is None:
        raise NotImplementedError(f"the stand-in cannot evaluate {reference!r}")
    owner_name, knob_name = match.group("node"), match.group("knob")
    if owner_name == "parent":
        owner: Optional[Node] = context._parent
    elif owner_name in (None, "this"):
        owner = context
    elif owner_name == "root":
        owner = STATE.root
    else:
        owner = context._parent.node(owner_name) if context._parent is not None else None
    knob = owner.knob(knob_name) if owner is not None else None
    if knob is None:
        raise RuntimeError(f"{context.name()}: {reference!r} refers to a knob that does not exist")
    return knob.value()


def _evaluate_expression(context: Node, expression: str) -> Any:
    text = expression.strip()
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return _lookup(context, text)


def _tcl_subst(context: Node, text: str) -> str:
    def value(match: re.Match[str]) -> str:
        result = _lookup(context, match.group(1))
        return str(result)

    def python(match: re.Match[str]) -> str:
        # Tcl's ``python`` command: evaluate a Python expression in Nuke's __main__, with thisNode() the
        # node whose knob is being evaluated; a Python exception is an expression error of that knob
        code = match.group(1) if match.group(1) is not None else match.group(2)
        STATE.this.append((context, None))
        try:
            return str(eval(compile(code.strip(), f"<{context.fullName()} expression>", "eval"), STATE.main_namespace))
        except Exception as error:
            raise RuntimeError(f"{context.fullName()}: expression error: {type(error).__name__}: {error}") from None
        finally:
            STATE.this.pop()

    text = re.sub(r"\[python\s+(?:\{(.*?)\}|([^\]{}]*))\]", python, text)
    return re.sub(r"\[value\s+([\w.]+)\]", value, text)


def _tcl_true(text: str) -> bool:
    """A Tcl boolean: a non-zero number, or true/yes/on (any case)."""
    word = text.strip().lower()
    try:
        return float(word) != 0
    except ValueError:
        if word in ("true", "yes", "on"):
            return True
        if word in ("false", "no", "off"):
            return False
        raise RuntimeError(f"expected a boolean expression, got {text!r}") from None


def tcl(cmd: str, *args: str) -> str:
    STATE.tcl_calls.append((cmd, *args))
    if cmd == "subst" and len(args) == 1:
        return _tcl_subst(STATE.root, args[0])
    raise NotImplementedError(f"the stand-in nuke.tcl knows only 'subst', not {cmd!r}")


# -------------------------------------------------------------------------------------------- render
def _input_of_group(node: Node) -> Optional[Node]:
    """An Input node inside a group stands for the group's input of its number."""
    group = node._parent
    if group is None:
        return None
    number = int(node["number"].value())
    others = [child for child in group._children if child.Class() == "Input" and child is not node]
    assert all(int(other["number"].value()) != number for other in others), f"two Input nodes are number {number}"
    return group.input(number)


def _upstream(node: Node) -> Optional[Node]:
    """The node whose image this one passes on (None for a source)."""
    cls = node.Class()
    if cls == "Input":
        return _input_of_group(node)
    if isinstance(node, Group):
        return node.output()
    if cls == "Switch":
        count = max(node.inputs(), 1)
        which = int(min(max(int(node["which"].value()), 0), count - 1))
        return node.input(which)
    if cls in ("Dot", "NoOp", "Output", "Write", "Assert"):
        return node.input(0)
    raise NotImplementedError(f"the stand-in nuke cannot render {cls} nodes")


def _frame_range(node: Node) -> FrameRange:
    seen = 0
    current: Optional[Node] = node
    while current is not None and current.Class() != "Read":
        current = _upstream(current)
        seen += 1
        assert seen < 1000, "a cycle in the node graph"
    if current is None:
        return FrameRange(STATE.root["first_frame"].value(), STATE.root["last_frame"].value())
    return FrameRange(current["first"].value(), current["last"].value())


def _frame_path(pattern: str, frame: int) -> Path:
    from copycat_nuke.imageio import ImageSequence

    # %V / %v: the view being rendered (its name / its first letter), as in Read and Write file names
    pattern = pattern.replace("%V", STATE.view).replace("%v", STATE.view[:1])
    return ImageSequence.parse(pattern).path(frame)


def _check(node: Node) -> None:
    """Raise Nuke's error for an Assert whose expression is false at the current frame and view."""
    if node.Class() == "Assert" and not node["disable"].value():  # noqa: SIM102 (evaluate only Asserts)
        if not _tcl_true(_tcl_subst(node, str(node["expression"].value()))):
            message = _tcl_subst(node, str(node["message"].value())) or "assertion failed"
            raise RuntimeError(f"{node.fullName()}: {message}")


def _error_of(node: Node) -> Optional[str]:
    """The error Nuke would show for ``node`` at the current frame and view, or None."""
    current: Optional[Node] = node
    try:
        while current is not None and current.Class() != "Read":
            _check(current)
            current = _upstream(current)
        if current is not None and current["on_error"].value() == "error":
            path = _frame_path(_tcl_subst(current, str(current["file"].value())), STATE.frame)
            if not path.is_file():
                return f"{current.name()}: Read error: {path}: No such file or directory"
    except RuntimeError as error:
        return str(error)
    return None


def _pixels(node: Node, frame: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Render ``node`` at ``frame``: float32 H×W×C pixels and channel names."""
    from copycat_nuke import imageio

    current: Optional[Node] = node
    while current is not None and current.Class() != "Read":
        _check(current)
        current = _upstream(current)
    if current is None:
        raise RuntimeError(f"{node.name()}: nothing is connected upstream")
    path = _frame_path(_tcl_subst(current, str(current["file"].value())), frame)
    if not path.is_file():
        if current["on_error"].value() == "black":  # what Nuke's Read gives for a missing frame
            return np.zeros((8, 8, 4), np.float32), ("R", "G", "B", "A")
        raise RuntimeError(f"{current.name()}: Read error: {path}: No such file or directory")
    image = imageio.read_frame(path)
    return image.pixels, image.channels


def _render(write: Node, frame: int) -> None:
    from copycat_nuke import imageio

    source = write.input(0)
    if source is None:
        raise RuntimeError(f"{write.name()}: no input connected")
    pixels, channels = _pixels(source, frame)
    wanted = str(write["channels"].value())
    if wanted != "all":
        names = {"rgb": ("R", "G", "B"), "rgba": ("R", "G", "B", "A"), "alpha": ("A",)}[wanted]
        keep = [i for i, name in enumerate(channels) if name in names]
        pixels, channels = pixels[..., keep], tuple(channels[i] for i in keep)
    pixel_type = "float" if write["datatype"].value() == "32 bit float" else "half"
    target = _frame_path(_tcl_subst(write, str(write["file"].value())), frame)
    imageio.write_frame(target, pixels, list(channels), pixel_type=pixel_type)


def execute(
    nameOrNode: Union[Node, str],
    start: Union[int, FrameRanges],
    end: Optional[int] = None,
    incr: int = 1,
    views: Optional[list[str]] = None,
    continueOnError: bool = False,
) -> None:
    """Render a Write node's frames (``start``..``end`` by ``incr``, or a FrameRanges) in ``views`` (all the
    script's views when None), running the beforeRender / beforeFrameRender callbacks as Nuke does."""
    _main("execute")
    node = toNode(nameOrNode) if isinstance(nameOrNode, str) else nameOrNode
    if node is None or node.Class() != "Write":
        raise RuntimeError(f"{nameOrNode}: only Write nodes can be executed in the stand-in")
    if views is not None and any(view not in STATE.views for view in views):
        raise RuntimeError(f"unknown views {views}")
    frames = list(start) if isinstance(start, FrameRanges) else list(range(start, (end or start) + 1, incr))
    outer = (STATE.frame, STATE.view)
    try:
        _run_callbacks("beforeRender", node)
        for frame in frames:
            STATE.frame = frame
            _run_callbacks("beforeFrameRender", node)
            for view in views if views is not None else STATE.views:
                STATE.frame, STATE.view = frame, view
                try:
                    _render(node, frame)
                    STATE.executed.append((node.name(), frame))
                except RuntimeError:
                    if not continueOnError:
                        raise
    finally:
        STATE.frame, STATE.view = outer


render = execute


# ------------------------------------------------------------------------------------------- threads
def executeInMainThread(call: Callable[..., Any], args: Any = (), kwargs: Optional[dict[str, Any]] = None) -> None:
    if not isinstance(args, tuple):
        args = (args,)
    if not env.get("gui"):
        call(*args, **(kwargs or {}))
        return
    STATE.main_queue.put((call, args, kwargs or {}, None))


def executeInMainThreadWithResult(
    call: Callable[..., Any], args: Any = (), kwargs: Optional[dict[str, Any]] = None
) -> Any:
    if not isinstance(args, tuple):
        args = (args,)
    if not env.get("gui"):
        return call(*args, **(kwargs or {}))
    if threading.current_thread() is STATE.main_thread:
        raise RuntimeError("executeInMainThreadWithResult called on the main thread: in Nuke this never returns")
    box: dict[str, Any] = {"done": threading.Event()}
    STATE.main_queue.put((call, args, kwargs or {}, box))
    if not box["done"].wait(60):
        raise RuntimeError("the main thread did not run the call within 60 s (is the test pumping events?)")
    return box.get("result")


def process_events(until: Callable[[], bool] = lambda: True, timeout: float = 60.0) -> None:
    """Test helper: be Nuke's event loop: run queued main-thread calls until ``until()`` and the queue is empty."""
    assert threading.current_thread() is STATE.main_thread
    deadline = time.monotonic() + timeout
    while True:
        try:
            call, args, kwargs, box = STATE.main_queue.get(timeout=0.01)
        except queue.Empty:
            if until():
                if STATE.main_queue.empty():
                    return
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {timeout} s of events") from None
            continue
        try:
            result = call(*args, **kwargs)
        except Exception:  # Nuke prints the traceback and returns None
            traceback.print_exc()
            result = None
        if box is not None:
            box["result"] = result
            box["done"].set()


# ---------------------------------------------------------------------------------------- interface
class ProgressTask:
    def __init__(self, title: str = "") -> None:
        self.title = title
        self.progress = 0
        self.messages: list[str] = []
        self.cancelled = False
        STATE.tasks.append(self)

    def setProgress(self, progress: int) -> None:
        assert isinstance(progress, int) and 0 <= progress <= 100, progress
        self.progress = progress

    def setMessage(self, message: str) -> None:
        self.messages.append(str(message))
        if STATE.cancel_when is not None and STATE.cancel_when(self):
            self.cancelled = True

    def isCancelled(self) -> bool:
        return self.cancelled


def message(prompt: str) -> None:
    _main("message")
    STATE.messages.append(prompt)


def critical(message: str) -> None:
    STATE.messages.append(message)


def warning(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


def tprint(*args: Any, **kwargs: Any) -> None:
    print(*args, **kwargs)


class MenuItem:
    def __init__(self, name: str, script: Any = None, icon: str = "") -> None:
        self._name, self._script, self._icon = name, script, icon

    def name(self) -> str:
        return self._name

    def script(self) -> Any:
        return self._script

    def icon(self) -> str:
        return self._icon

    def invoke(self) -> None:
        if callable(self._script):
            self._script()
        else:
            exec(compile(str(self._script), f"<menu {self._name}>", "exec"), {"nuke": sys.modules[__name__]})


class Menu(MenuItem):
    def __init__(self, name: str, icon: str = "") -> None:
        super().__init__(name, None, icon)
        self.items_: list[MenuItem] = []

    def addMenu(self, name: str, icon: str = "", **kwargs: Any) -> Menu:
        found = self.findItem(name)
        if isinstance(found, Menu):
            return found
        menu = Menu(name, icon)
        self.items_.append(menu)
        return menu

    def addCommand(self, name: str, command: Any = None, shortcut: str = "", icon: str = "", **kwargs: Any) -> MenuItem:
        item = MenuItem(name, command, icon)
        self.items_ = [existing for existing in self.items_ if existing.name() != name] + [item]
        return item

    def addSeparator(self, **kwargs: Any) -> None:
        pass

    def findItem(self, name: str) -> Optional[MenuItem]:
        return next((item for item in self.items_ if item.name() == name), None)

    def items(self) -> list[MenuItem]:
        return list(self.items_)


def menu(name: str) -> Menu:
    return STATE.menus.setdefault(name, Menu(name))


def toolbar(name: str, create: bool = True) -> Optional[Menu]:
    if name not in STATE.menus and not create:
        return None
    return menu(name)


def pluginAddPath(args: str, addToSysPath: bool = True) -> None:
    if args not in STATE.plugin_paths:
        STATE.plugin_paths.insert(0, args)
    if addToSysPath and args not in sys.path:
        sys.path.append(args)


def pluginPath() -> list[str]:
    return list(STATE.plugin_paths)


class _Pane:
    def __init__(self, name: str) -> None:
        self.name = name
        self.panels: list[Any] = []


def getPaneFor(panelName: str) -> _Pane:
    return _Pane(panelName)


def scriptName() -> str:
    name = str(STATE.root["name"].value())
    if not name:
        raise RuntimeError("no script name: the script is untitled")
    return name


reset()
