"""The Inference, Upscale and Deblur nodes: run a ``.cat`` over the input and show the result.

Render reads the knobs on the main thread, then a job renders the input at the Frame Range to EXR (beside
the output, removed afterwards), runs :func:`copycat_nuke.infer.infer_sequence` over it into Output File,
and points the gizmo's internal Read at the result. Everything the gizmo needs to show the result again
after the script is reopened lives in its own knobs (a gizmo's internal nodes are not saved with a script).

A result is stale when the model file, the input's node graph, the frame range or Optimize changed since
it was rendered: the render stores a signature of them in ``renderSignature``, and the Status line says
what changed whenever the panel opens or those knobs change.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import nuke

from copycat_nuke.errors import CopyCatError
from copycat_nuke.nuke import gather, jobs, knobs, nodes

#: Values of the hidden ``inferencePrecision`` knob (old scripts) that mean half precision / full precision.
HALF_NAMES = frozenset({"half", "fp16", "float16", "bf16", "bfloat16", "mixed", "true", "1", "on", "yes"})
FULL_NAMES = frozenset({"full", "fp32", "float", "float32", "single", "false", "0", "off", "no"})

#: Knobs that change how a node looks in the DAG, not what it renders: left out of the input signature.
COSMETIC_KNOBS = frozenset(
    {
        "xpos",
        "ypos",
        "selected",
        "name",
        "label",
        "note_font",
        "note_font_size",
        "note_font_color",
        "tile_color",
        "gl_color",
        "hide_input",
        "cached",
        "postage_stamp",
        "postage_stamp_frame",
        "help",
        "icon",
        "indicators",
        "bookmark",
        "dope_sheet",
        "lock_connections",
        "panel",
        "onCreate",
        "onDestroy",
        "knobChanged",
        "updateUI",
        "autolabel",
    }
)

_FRAME_PLACEHOLDER = re.compile(r"#+|%0?\d*d|@+")


@dataclass(frozen=True)
class RenderRequest:
    """What one Render press asks for, read from the knobs on the main thread."""

    model: Path
    output: str
    frames: list[int]
    device: str
    half: bool
    tile: Optional[int]
    overlap: int
    signature: dict[str, Any]


# ------------------------------------------------------------------------------------------ the model
def model_path(node: nuke.Node) -> Path:
    """The ``.cat`` the node runs: Model File, or for Upscale/Deblur the shipped network when it is empty."""
    value = knobs.path(node, "modelFile")
    if value:
        path = Path(value)
        if not path.is_file():
            raise CopyCatError(f"the Model File {value} does not exist: choose a .cat file")
        return path
    kind = knobs.kind_of(node)
    if kind in nodes.SHIPPED:
        return nodes.require_shipped_model(
            nodes.SHIPPED[kind], instead=f"set Model File to a .cat file, e.g. one CopyCat refined from {kind}."
        )
    raise CopyCatError("Model File is empty: choose a .cat file (CopyCat writes model.cat into its Data Directory)")


def refresh_model(node: nuke.Node) -> None:
    """Fill channelsIn/channelsOut from the model's manifest (no weights are read), then check staleness."""
    knobs.set_value(node, "channelsIn", "")
    knobs.set_value(node, "channelsOut", "")
    path = model_path(node)
    missing = nodes.missing_dependencies()
    if missing:
        raise CopyCatError(nodes.dependencies_message(missing))
    from copycat_nuke.catfile import read_manifest

    manifest = read_manifest(path)
    knobs.set_value(node, "channelsIn", ",".join(manifest.channels_in))
    knobs.set_value(node, "channelsOut", ",".join(manifest.channels_out))
    scale = f", x{manifest.scale}" if manifest.scale != 1 else ""
    if not check_stale(node):
        knobs.set_status(node, f"Model {path.name} ({manifest.kind}{scale}): press Render.")


def apply_legacy_precision(node: nuke.Node) -> None:
    """Map Nuke's older ``halfPrecision`` / ``inferencePrecision`` knobs (set by old scripts) onto Optimize."""
    half = knobs.boolean(node, "halfPrecision")
    precision = knobs.text(node, "inferencePrecision").lower()
    if half or precision in HALF_NAMES:
        knobs.set_value(node, "optimize", True)
    elif precision in FULL_NAMES:
        knobs.set_value(node, "optimize", False)
    knobs.set_value(node, "halfPrecision", False)
    knobs.set_value(node, "inferencePrecision", "")


# ---------------------------------------------------------------------------------------- staleness
def input_signature(node: nuke.Node) -> str:
    """A hash of everything upstream of the node: classes, connections and (non-cosmetic) knob values.

    It does not change with the current frame, so scrubbing does not make a result stale. Files changed
    on disk behind a Read with the same name are not noticed.
    """
    digest = hashlib.sha1()
    seen: set[str] = set()
    pending: list[Optional[nuke.Node]] = [node.input(0)]
    while pending:
        current = pending.pop()
        if current is None:
            digest.update(b"<none>")
            continue
        name = current.fullName()
        digest.update(name.encode())
        if name in seen:
            continue
        seen.add(name)
        digest.update(current.Class().encode())
        for knob_name, knob in sorted(current.knobs().items()):
            if knob_name in COSMETIC_KNOBS or isinstance(knob, (nuke.Text_Knob, nuke.Script_Knob, nuke.Tab_Knob)):
                continue
            digest.update(f"{knob_name}={knob.toScript()}".encode())
        pending.extend(current.input(index) for index in reversed(range(current.inputs())))
    return digest.hexdigest()[:20]


def signature(node: nuke.Node, model: Optional[Path]) -> dict[str, Any]:
    """What a result depends on: the model file (path, time, size), the input graph, frames, Optimize."""
    stat = model.stat() if model is not None and model.is_file() else None
    return {
        "model": str(model) if model is not None else "",
        "model_mtime_ns": stat.st_mtime_ns if stat else 0,
        "model_size": stat.st_size if stat else 0,
        "input": input_signature(node),
        "frames": knobs.text(node, "frameRange"),
        "optimize": knobs.boolean(node, "optimize"),
    }


def stale_reasons(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    reasons = []
    if any(stored.get(key) != now[key] for key in ("model", "model_mtime_ns", "model_size")):
        reasons.append("the model changed")
    if stored.get("input") != now["input"]:
        reasons.append("the input changed")
    if stored.get("frames") != now["frames"]:
        reasons.append("the Frame Range changed")
    if stored.get("optimize") != now["optimize"]:
        reasons.append("Optimize changed")
    return reasons


def check_stale(node: nuke.Node) -> bool:
    """Flag a stale result on the Status line; True when there is a result to report on."""
    if not knobs.boolean(node, "resultReady") or jobs.current(node.fullName()) is not None:
        return False
    stored = _stored(node)
    try:
        model: Optional[Path] = model_path(node)
    except CopyCatError:
        model = None
    reasons = stale_reasons(stored, signature(node, model))
    if reasons:
        knobs.set_status(node, f"Stale: {' and '.join(reasons)} since the last render: press Render.", warning=True)
    else:
        knobs.set_status(node, _up_to_date(stored))
    return True


def _stored(node: nuke.Node) -> dict[str, Any]:
    try:
        stored = json.loads(knobs.text(node, "renderSignature") or "{}")
    except ValueError:
        return {}
    return stored if isinstance(stored, dict) else {}


def restore_status(node: nuke.Node) -> None:
    """onCreate: a script does not save the Status line; say what the last render made, if anything."""
    if knobs.boolean(node, "resultReady"):
        stored = _stored(node)
        knobs.set_status(node, f"Rendered frames {stored.get('rendered', '?')} in {stored.get('output', '?')}")


def _up_to_date(stored: dict[str, Any]) -> str:
    return f"Up to date: frames {stored.get('rendered', '?')} in {stored.get('output', '?')}"


# ---------------------------------------------------------------------------------------------- render
def output_pattern(node: nuke.Node) -> str:
    """Output File, or ``copycat/<node>/<node>.####.exr`` beside the script (set on the knob, so it shows)."""
    value = knobs.path(node, "outputFile")
    if not value:
        script = str(nuke.root()["name"].value() or "")
        base = Path(script).parent if script else Path(tempfile.gettempdir())
        value = str(base / "copycat" / node.name() / f"{node.name()}.####.exr")
        knobs.set_value(node, "outputFile", value)
    if not _FRAME_PLACEHOLDER.search(Path(value).name):
        raise CopyCatError(f"Output File {value} needs a frame number, e.g. {Path(value).stem}.####.exr")
    return value


def _frames(node: nuke.Node) -> list[int]:
    text = knobs.text(node, "frameRange")
    if text:
        from copycat_nuke.imageio import parse_frame_list

        return parse_frame_list(text)
    first, last = gather.frame_range(node.fullName(), 0, "Input")
    return list(range(first, last + 1))


def read_request(node: nuke.Node) -> RenderRequest:
    """Main thread: the node's knobs as a :class:`RenderRequest`, checked."""
    model = model_path(node)
    gather.upstream(node.fullName(), 0, "Input")
    tile = knobs.integer(node, "tileSize")
    overlap = knobs.integer(node, "tileOverlap")
    if tile < 0 or overlap < 0:
        raise CopyCatError("Tile Size and Overlap cannot be negative (Tile Size 0 chooses tiles automatically)")
    return RenderRequest(
        model=model,
        output=output_pattern(node),
        frames=_frames(node),
        device="auto" if knobs.boolean(node, "useGPUIfAvailable") else "cpu",
        half=knobs.boolean(node, "optimize"),
        tile=tile or None,
        overlap=overlap,
        signature=signature(node, model),
    )


def supported_keywords(function: Callable[..., Any], **keywords: Any) -> dict[str, Any]:
    """The keywords ``function`` accepts (``infer_sequence`` gains tiling options in newer versions)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return keywords
    return {key: value for key, value in keywords.items() if key in parameters}


def _run(context: jobs.Context, request: RenderRequest) -> None:
    from copycat_nuke.imageio import format_frame_list
    from copycat_nuke.infer import infer_sequence

    safe_name = re.sub(r"[^\w.-]", "_", context.node_name)
    work = Path(request.output).parent / f".copycat-input-{safe_name}"
    source = str(work / "input.####.exr")
    try:
        gather.clear_sequence(source)
        frames = gather.render_frames(context, 0, "Input", source, request.frames, "all", progress=(0.0, 30.0))
        temporal = _temporal(request.model)
        if temporal:  # and the neighbours the network sees, where Input has them
            first, last = context.call(gather.frame_range, context.node_name, 0, "Input")
            around = {f + k for f in frames for k in range(-temporal, temporal + 1) if first <= f + k <= last}
            extra = sorted(around - set(frames))
            # a neighbour that fails to render is held from the nearest frame that did (infer.NeighbourFrames)
            gather.render_frames(context, 0, "Input", source, extra, "all", skip_failures=True, progress=(30.0, 5.0))

        def progress(done: int, total: int, frame: int, seconds: float) -> None:
            context.check_stop()
            message = f"rendering: frame {frame} ({done}/{total}, {seconds:.1f} s a frame)"
            context.progress(35 + 65 * done / max(total, 1), message)

        keywords = supported_keywords(
            infer_sequence,
            device=request.device,
            half=request.half,
            progress=progress,
            tile=request.tile,
            overlap=request.overlap,
        )
        infer_sequence(request.model, source, request.output, frames=frames, **keywords)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rendered = {**request.signature, "output": request.output, "rendered": format_frame_list(frames)}
    context.post(_show_result, context.node_name, frames, rendered)


def _temporal(model: Path) -> int:
    """Neighbouring frames on each side the model sees (0 for most models), from its manifest."""
    from copycat_nuke import catfile

    return int(catfile.read_manifest(model).arguments.get("temporal", 0))


def _show_result(node_name: str, frames: Sequence[int], rendered: dict[str, Any]) -> None:
    """Main thread: point the internal Read at the new frames and remember what they were made from."""
    node = gather.node(node_name)
    knobs.set_value(node, "resultFirst", min(frames))
    knobs.set_value(node, "resultLast", max(frames))
    knobs.set_value(node, "renderSignature", json.dumps(rendered, sort_keys=True))
    knobs.set_value(node, "resultReady", True)
    read = node.node("Result") if isinstance(node, nuke.Group) else None
    reload = read.knob("reload") if read is not None else None
    if isinstance(reload, nuke.Script_Knob):
        reload.execute()  # frames re-rendered under the same names: drop Nuke's cached ones
    knobs.set_status(node, _up_to_date(rendered))


@jobs.button
def render(node: nuke.Node) -> None:
    """Render: run the node's model over its input at the Frame Range and show the result."""
    nodes.require_dependencies()
    request = read_request(node)
    knobs.set_value(node, "resultReady", False)
    knobs.set_status(node, f"Rendering {len(request.frames)} frame(s)...")
    jobs.start(node, "rendering", lambda context: _run(context, request))
