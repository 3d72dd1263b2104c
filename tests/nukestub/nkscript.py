"""A reader for Nuke's script syntax (``.nk`` and ``.gizmo`` files), enough to check and build our gizmos.

Nuke scripts are Tcl: a command per line, words split on white space, ``{...}`` quoting without
substitution (nested, across lines), ``"..."`` quoting with backslash escapes and ``[...]`` command
substitution. Nodes are ``Class { knob value ... }`` commands; ``addUserKnob {id name options...}`` adds a
user knob. Connections come from a stack: a node with ``inputs N`` takes the top N entries, the top one as
input 0; ``set VAR [stack 0]`` names the top, ``push $VAR`` / ``push 0`` push a node / nothing, and a
``Group``/``Gizmo`` opens a graph that ``end_group`` closes.

This reader is strict where Nuke would misread a file: unbalanced braces, brackets or quotes, and unescaped
``[`` in double-quoted strings (Tcl would run it as a command) are errors with a line number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

#: addUserKnob type ids (Nuke's NDK "Knobs by ID") that the gizmos use.
KNOB_TYPES = {
    1: "String_Knob",
    2: "File_Knob",
    3: "Int_Knob",
    4: "Enumeration_Knob",
    6: "Boolean_Knob",
    7: "Double_Knob",
    20: "Tab_Knob",
    22: "PyScript_Knob",
    26: "Text_Knob",
}

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
#: Knobs of a node that hold Python (Nuke runs them; Tcl must not substitute in them).
PYTHON_KNOBS = frozenset({"onCreate", "onDestroy", "knobChanged", "updateUI", "autolabel"})
_TCL_RUNS_IT = "Tcl would run it as a command when reading the file; write \\["


class NkSyntaxError(ValueError):
    """The text is not a well-formed Nuke script; the message names the line."""


@dataclass
class Word:
    text: str
    kind: str  #: "bare", "braced" or "quoted"
    line: int
    substitutes: bool = False  #: has an unescaped ``[...]``: Tcl replaces it with a command's result


@dataclass
class UserKnob:
    """One ``addUserKnob {type name options}``."""

    type_id: int
    name: str
    line: int
    label: Optional[str] = None
    tooltip: Optional[str] = None
    text: Optional[str] = None  #: ``T``: a Text knob's text, a PyScript button's Python
    items: list[str] = field(default_factory=list)  #: ``M {...}``: an Enumeration's choices
    flags: list[str] = field(default_factory=list)  #: ``+DISABLED``, ``-STARTLINE``...

    @property
    def knob_class(self) -> str:
        return KNOB_TYPES.get(self.type_id, f"Knob{self.type_id}")


@dataclass
class NodeDef:
    """One node command, its knob values, user knobs, inputs and (for groups) the nodes inside."""

    cls: str
    line: int
    knobs: dict[str, str] = field(default_factory=dict)
    user_knobs: list[UserKnob] = field(default_factory=list)
    inputs: list[Optional[NodeDef]] = field(default_factory=list)
    children: list[NodeDef] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.knobs.get("name", "")

    @property
    def is_group(self) -> bool:
        return self.cls in ("Group", "Gizmo", "LiveGroup")

    def user_knob(self, name: str) -> Optional[UserKnob]:
        return next((knob for knob in self.user_knobs if knob.name == name), None)

    def child(self, name: str) -> Optional[NodeDef]:
        return next((node for node in self.children if node.name == name), None)


@dataclass
class Script:
    nodes: list[NodeDef]
    version: Optional[str] = None
    ends_groups: int = 0  #: how many end_group commands closed a group


# --------------------------------------------------------------------------------------------- words
def split_commands(text: str) -> list[list[Word]]:
    """The commands of a script as lists of words (comments and blank lines dropped)."""
    commands: list[list[Word]] = []
    current: list[Word] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            if current:
                commands.append(current)
                current = []
            line += 1
            i += 1
        elif char in " \t\r;":
            if char == ";" and current:
                commands.append(current)
                current = []
            i += 1
        elif char == "\\" and i + 1 < n and text[i + 1] == "\n":
            line += 1
            i += 2
        elif char == "#" and not current:
            while i < n and text[i] != "\n":
                i += 1
        elif char == "{":
            start_line = line
            body, i, line = _read_braced(text, i, line)
            current.append(Word(body, "braced", start_line))
        elif char == '"':
            start_line = line
            body, i, line, substitutes = _read_quoted(text, i, line)
            current.append(Word(body, "quoted", start_line, substitutes))
        elif char in "}]":
            raise NkSyntaxError(f"line {line}: unmatched {char!r}")
        else:
            start_line = line
            body, i, line = _read_bare(text, i, line)
            current.append(Word(body, "bare", start_line, "[" in body))
    if current:
        commands.append(current)
    return commands


def _read_braced(text: str, i: int, line: int) -> tuple[str, int, int]:
    start, start_line, depth = i + 1, line, 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 < len(text) and text[i + 1] == "\n":
                line += 1
            i += 2
            continue
        if char == "\n":
            line += 1
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i], i + 1, line
        i += 1
    raise NkSyntaxError(f"line {start_line}: '{{' is never closed (unbalanced braces)")


def _read_quoted(text: str, i: int, line: int) -> tuple[str, int, int, bool]:
    start_line = line
    out: list[str] = []
    brackets = 0
    substitutes = False
    i += 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            following = text[i + 1]
            if following == "\n":
                line += 1
            out.append(_ESCAPES.get(following, following))
            i += 2
            continue
        if char == '"':
            if brackets:
                raise NkSyntaxError(f"line {start_line}: a '[' in a quoted string is never closed; write \\[")
            return "".join(out), i + 1, line, substitutes
        if char == "\n":
            line += 1
        elif char == "[":
            brackets += 1
            substitutes = True
        elif char == "]" and brackets:  # a lone ']' is a plain character in Tcl
            brackets -= 1
        out.append(char)
        i += 1
    raise NkSyntaxError(f"line {start_line}: '\"' is never closed")


def _read_bare(text: str, i: int, line: int) -> tuple[str, int, int]:
    start, brackets = i, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            i += 2
            continue
        if char == "[":
            brackets += 1
        elif char == "]":
            if brackets == 0:
                raise NkSyntaxError(f"line {line}: unmatched ']'")
            brackets -= 1
        elif char == "\n":
            if brackets:
                line += 1
            else:
                break
        elif char in " \t\r;" and not brackets:
            break
        i += 1
    if brackets:
        raise NkSyntaxError(f"line {line}: '[' is never closed")
    return text[start:i], i, line


# ---------------------------------------------------------------------------------------- user knobs
def parse_user_knob(body: str, line: int) -> UserKnob:
    """``20 name l Label``, ``22 name l "Label" T "python" +STARTLINE``, ``4 name M {a b c}``..."""
    words = [word for command in split_commands(body) for word in command]
    if len(words) < 2 or not words[0].text.lstrip("-").isdigit():
        raise NkSyntaxError(f"line {line}: addUserKnob needs a type id and a name, got {{{body}}}")
    knob = UserKnob(type_id=int(words[0].text), name=words[1].text, line=line)
    rest = words[2:]
    while rest:
        word = rest.pop(0)
        option = word.text
        if word.kind == "bare" and option[:1] in "+-" and len(option) > 1 and not option[1:].isdigit():
            knob.flags.append(option)
            continue
        if word.kind != "bare" or not rest:
            raise NkSyntaxError(f"line {line}: cannot read {option!r} in addUserKnob {{{body}}}")
        value = rest.pop(0)
        if option == "l":
            knob.label = value.text
        elif option == "t":
            knob.tooltip = value.text
        elif option == "T":
            if knob.type_id == 22 and value.substitutes:
                raise NkSyntaxError(f"line {line}: unescaped '[' in the Python of button {knob.name!r}: {_TCL_RUNS_IT}")
            knob.text = value.text
        elif option == "M":
            knob.items = [w.text for command in split_commands(value.text) for w in command]
        elif option == "R" and rest:
            rest.pop(0)  # a slider's range: min max
        # other one-argument options (n for tab groups...) are accepted and ignored
    return knob


# ---------------------------------------------------------------------------------------------- nodes
def _input_count(node: NodeDef, available: int) -> int:
    text = node.knobs.get("inputs")
    if text is None:
        return min(1, available)
    try:
        return sum(int(part) for part in text.split("+"))
    except ValueError:
        raise NkSyntaxError(f"line {node.line}: inputs {text!r} is not a number") from None


def _node_from(command: list[Word]) -> NodeDef:
    node = NodeDef(cls=command[0].text, line=command[0].line)
    for knob_command in split_commands(command[1].text):
        name = knob_command[0].text
        values = knob_command[1:]
        line = command[1].line + knob_command[0].line - 1
        if name == "addUserKnob":
            if len(values) != 1 or values[0].kind != "braced":
                raise NkSyntaxError(f"line {line}: addUserKnob takes one {{...}} argument")
            knob = parse_user_knob(values[0].text, line)
            if knob.name and any(k.name == knob.name for k in node.user_knobs):
                raise NkSyntaxError(f"line {line}: the knob {knob.name!r} is added twice")
            node.user_knobs.append(knob)
        elif not values:
            raise NkSyntaxError(f"line {line}: knob {name!r} has no value")
        elif name in PYTHON_KNOBS and any(word.substitutes for word in values):
            raise NkSyntaxError(f"line {line}: unescaped '[' in the Python of {name}: {_TCL_RUNS_IT}")
        else:
            node.knobs[name] = " ".join(word.text for word in values)
    return node


def parse_script(text: str) -> Script:
    """Read a ``.nk``/``.gizmo`` text into nodes with their inputs (raises :class:`NkSyntaxError`)."""
    script = Script(nodes=[])
    variables: dict[str, Optional[NodeDef]] = {}
    scopes: list[tuple[list[NodeDef], list[Optional[NodeDef]], Optional[NodeDef]]] = []
    nodes: list[NodeDef] = script.nodes
    stack: list[Optional[NodeDef]] = []
    for command in split_commands(text):
        head = command[0]
        words = [word.text for word in command]
        if head.text == "version":
            script.version = " ".join(words[1:])
        elif head.text == "set" and len(command) == 3 and words[2] == "[stack 0]":
            variables[words[1]] = stack[-1] if stack else None
        elif head.text == "push" and len(command) == 2:
            if words[1] == "0":
                stack.append(None)
            elif words[1].startswith("$") and words[1][1:] in variables:
                stack.append(variables[words[1][1:]])
            else:
                raise NkSyntaxError(f"line {head.line}: push of unknown variable {words[1]!r}")
        elif head.text == "end_group":
            if not scopes:
                raise NkSyntaxError(f"line {head.line}: end_group without a Group")
            nodes, stack, group = scopes.pop()
            if group is not None:
                stack.append(group)
            script.ends_groups += 1
        elif len(command) == 2 and command[1].kind == "braced" and head.text[:1].isupper():
            node = _node_from(command)
            count = _input_count(node, len(stack))
            if not scopes:  # a top-level node (a gizmo's Gizmo) is connected by whoever uses it
                count = min(count, len(stack))
            if count > len(stack):
                raise NkSyntaxError(f"line {node.line}: {node.cls} takes {count} inputs but the stack has {len(stack)}")
            taken = stack[len(stack) - count :] if count else []
            del stack[len(stack) - count :]
            node.inputs = list(reversed(taken))  # the top of the stack is input 0
            nodes.append(node)
            if node.is_group:
                scopes.append((nodes, stack, node))
                nodes, stack = node.children, []
            else:
                stack.append(node)
        else:
            raise NkSyntaxError(f"line {head.line}: cannot read the command {' '.join(words)[:60]!r}")
    if scopes:
        raise NkSyntaxError(f"{len(scopes)} Group(s) are never closed with end_group")
    return script


def parse_file(path: Union[str, Path]) -> Script:
    try:
        return parse_script(Path(path).read_text(encoding="utf-8"))
    except NkSyntaxError as error:
        raise NkSyntaxError(f"{path}: {error}") from None


def gizmo(path: Union[str, Path]) -> NodeDef:
    """The one Gizmo (or Group) node of a gizmo file."""
    script = parse_file(path)
    groups = [node for node in script.nodes if node.is_group]
    if len(groups) != 1 or len(script.nodes) != 1:
        raise NkSyntaxError(f"{path}: a gizmo file holds exactly one Gizmo/Group node")
    return groups[0]
