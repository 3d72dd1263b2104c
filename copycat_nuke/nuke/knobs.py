"""Knob names of the four gizmos and typed access to their values.

Every knob the Python side reads or writes is named in :data:`KNOBS` (the gizmo tests check each exists in
its ``.gizmo`` with the right type), and read through the functions here, which turn a missing knob into a
:class:`~copycat_nuke.errors.CopyCatError` that names the node instead of Nuke's bare ``NameError``.
Call these on Nuke's main thread only.
"""

from __future__ import annotations

import os

import nuke

from copycat_nuke.errors import CopyCatError

#: Hidden knob holding which of our nodes this is: callbacks dispatch on it, not on ``Class()``, so a
#: renamed gizmo file (e.g. to avoid Nuke's own CopyCat class) still works.
KIND = "copycatNode"

COPYCAT = "CopyCat"
INFERENCE = "Inference"
UPSCALE = "Upscale"
DEBLUR = "Deblur"
#: The nodes that run a .cat over their input (Upscale and Deblur are Inference with a shipped model).
INFERENCE_KINDS = (INFERENCE, UPSCALE, DEBLUR)
#: Each node's class (its gizmo file's name): names no Nuke ships, so NukeX's own CopyCat, Inference,
#: Upscale and Deblur never stand in for ours. The menu still says "CopyCat", "Inference", ...
CLASSES = {COPYCAT: "CopyCatML", INFERENCE: "InferenceML", UPSCALE: "UpscaleML", DEBLUR: "DeblurML"}

_COMMON = (KIND, "status", "useGPUIfAvailable", "pythonExecutable")
_INFERENCE = (
    *_COMMON,
    "modelFile",
    "channelsIn",
    "channelsOut",
    "optimize",
    "tileSize",
    "tileOverlap",
    "frameRange",
    "outputFile",
    "render",
    "stopRender",
    "createNativeInference",
    "halfPrecision",
    "inferencePrecision",
    "renderSignature",
    "resultReady",
    "resultFirst",
    "resultLast",
)

#: The knobs each node's Python uses, by node kind.
KNOBS: dict[str, tuple[str, ...]] = {
    COPYCAT: (
        *_COMMON,
        "dataDirectory",
        "epochs",
        "totalSteps",
        "modelSize",
        "batchSizeType",
        "batchSize",
        "cropSize",
        "frames",
        "channelsIn",
        "channelsOut",
        "initialWeights",
        "checkpointFile",
        "checkpointInterval",
        "imageInterval",
        "useMultiResolutionTraining",
        "temporalFrames",
        "startTraining",
        "resumeTraining",
        "stopTraining",
        "createInference",
        "createNativeInference",
        "showTrainingPanel",
        "exportFarmJob",
    ),
    INFERENCE: _INFERENCE,
    UPSCALE: _INFERENCE,
    DEBLUR: _INFERENCE,
}

#: Nodes inside the gizmos that the Python side uses, by node kind.
INTERNAL_NODES: dict[str, tuple[str, ...]] = {
    COPYCAT: ("Input", "GroundTruth", "Preview"),
    INFERENCE: ("Input", "Result", "CheckResult"),
    UPSCALE: ("Input", "Result", "CheckResult"),
    DEBLUR: ("Input", "Result", "CheckResult"),
}

#: Input numbers of the CopyCat node.
INPUT, GROUND_TRUTH, PREVIEW = 0, 1, 2

WARNING_MARK = "\u26a0 "


def kind_of(node: nuke.Node) -> str:
    """Which of our nodes ``node`` is (``"CopyCat"``...), or ``""`` for any other node."""
    knob = node.knob(KIND)
    return str(knob.value()) if knob is not None else ""


def knob(node: nuke.Node, name: str) -> nuke.Knob:
    """The knob ``name`` of ``node``; a clear error when the node has none (an older gizmo, another node)."""
    found = node.knob(name)
    if found is None:
        raise CopyCatError(
            f"{node.name()} has no knob {name!r}: it was made by another version of the copycat_nuke "
            f"gizmos. Create a new {kind_of(node) or 'node'} from the CopyCat ML menu and copy the settings over."
        )
    return found


def text(node: nuke.Node, name: str) -> str:
    return str(knob(node, name).value()).strip()


def path(node: nuke.Node, name: str) -> str:
    """A file knob's path with Tcl expressions (``[value root.name]``...) substituted and ``~`` expanded.

    Frame placeholders (``####``, ``%04d``) are kept: ``File_Knob.getEvaluatedValue`` would put in the
    current frame number.
    """
    value = text(node, name)
    if "[" in value:
        value = nuke.tcl("subst", value)
    return os.path.expanduser(value.strip())


def integer(node: nuke.Node, name: str) -> int:
    value = knob(node, name).value()
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CopyCatError(f"{node.name()}.{name} must be a whole number, not {value!r}") from None


def boolean(node: nuke.Node, name: str) -> bool:
    return bool(knob(node, name).value())


def set_value(node: nuke.Node, name: str, value: object) -> None:
    """Set a knob, only when the value changes (no needless knobChanged or undo entries)."""
    found = knob(node, name)
    if found.value() != value:
        found.setValue(value)


def set_enabled(node: nuke.Node, name: str, enabled: bool) -> None:
    found = knob(node, name)
    if found.enabled() != enabled:
        found.setEnabled(enabled)


def set_status(node: nuke.Node, message: str, *, warning: bool = False) -> None:
    """Show ``message`` in the node's Status line (marked ⚠ for a problem the artist must fix)."""
    set_value(node, "status", (WARNING_MARK + message) if warning else message)


def status(node: nuke.Node) -> str:
    return text(node, "status")
