"""The Inference, Upscale and Deblur nodes: run a ``.cat`` over the input, frame by frame, and show the result.

A node never shows its untreated input as its result. Each frame it computes is written to Output File with
a record of what made it (:mod:`copycat_nuke.nuke.results`); the gizmo reads the frames back through an
internal Read and an Assert whose expression, :func:`result_ok`, checks the record of the frame and view
being rendered against the node's model, input graph and settings. A missing or stale frame is therefore a
Nuke error, in the Viewer and in renders, with :func:`result_problem` saying why and what to press.

Frames are computed by the Render button (the Frame Range, on a worker thread in the GUI) and, for farm
renders, by :func:`copycat_nuke.nuke.farm.before_frame_render` before a Write below the node renders a
frame (synchronously). Both go through :func:`compute`: render the input at the frames to EXR in a private
folder, run :func:`copycat_nuke.infer.infer_sequence` per view, record each frame as it lands.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import nuke

from copycat_nuke.errors import CopyCatError
from copycat_nuke.nuke import external, gather, jobs, knobs, nodes, results

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
    """What to compute, read from the knobs on the main thread: ``frames`` of each of ``views``."""

    model: Path
    output: str  #: the Output File pattern (``%V`` for the view where the script has several)
    frames: list[int]
    views: list[str]
    device: str
    half: bool
    tile: Optional[int]
    overlap: int
    recipes: dict[str, results.Recipe]  #: by view: what the frames must be made from
    python: Optional[str] = None  #: the external Python the model runs in; None: Nuke's own


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
    described = describe(nodes.require_dependencies(node), path)
    knobs.set_value(node, "channelsIn", ",".join(described["channels_in"]))
    knobs.set_value(node, "channelsOut", ",".join(described["channels_out"]))
    scale = f", x{described['scale']}" if described["scale"] != 1 else ""
    if not check_stale(node):
        knobs.set_status(node, f"Model {path.name} ({described['kind']}{scale}): press Render.")


def describe(python: Optional[str], model: Path) -> dict[str, Any]:
    """The model's manifest (channels_in/out, kind, scale, arguments), read in Nuke's Python or the external
    one (which Nuke's may lack the libraries for)."""
    if python is not None:
        return external.describe_model(python, model)
    from copycat_nuke.catfile import read_manifest

    manifest = read_manifest(model)
    return {
        "channels_in": list(manifest.channels_in),
        "channels_out": list(manifest.channels_out),
        "kind": manifest.kind,
        "scale": manifest.scale,
        "arguments": dict(manifest.arguments),
    }


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
def input_signature(node: nuke.Node, index: int = 0) -> str:
    """A hash of everything upstream of input ``index``: classes, connections and (non-cosmetic) knob values.

    It does not change with the current frame, so scrubbing does not make a result stale. Files changed
    on disk behind a Read with the same name are not noticed.
    """
    digest = hashlib.sha1()
    seen: set[str] = set()
    pending: list[Optional[nuke.Node]] = [node.input(index)]
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


def recipe(node: nuke.Node, model: Path, view: str) -> results.Recipe:
    """What the node's frames in ``view`` are made from now (main thread)."""
    stat = model.stat()
    return results.Recipe(
        model=str(model),
        model_mtime_ns=stat.st_mtime_ns,
        model_size=stat.st_size,
        input=input_signature(node),
        optimize=knobs.boolean(node, "optimize"),
        tile=knobs.integer(node, "tileSize"),
        overlap=knobs.integer(node, "tileOverlap"),
        view=view,
    )


def frame_problem(node: nuke.Node, frame: int, view: str) -> Optional[str]:
    """Why the node has no up-to-date result for ``frame`` in ``view`` (a sentence for the artist), or None."""
    where = f"frame {frame}" + (f" ({view})" if len(nuke.views()) > 1 else "")
    try:
        model = model_path(node)
        output = results.frame_file(_output_value(node), frame, view)
    except CopyCatError as error:
        return f"{node.name()}: {error}"
    problem = results.problem(output, recipe(node, model, view))
    if problem is None:
        return None
    if jobs.current(node.fullName()) is not None:
        return f"{node.name()} is computing its frames: {where} is not done yet."
    if problem == "no result":
        return (
            f"{node.name()} has no result for {where}: press Render (it computes the Frame Range), or render "
            "a Write below it, which computes the frames it needs."
        )
    return f"{node.name()}: the result for {where} is {problem}: press Render."


def result_ok(node: nuke.Node) -> bool:
    """The gizmo's Assert: is the frame and view being rendered up to date? Never raises (an error in an
    expression would hide :func:`result_problem`'s message)."""
    try:
        return frame_problem(node, int(nuke.frame()), nuke.thisView()) is None
    except Exception:
        return False


def result_problem(node: nuke.Node) -> str:
    """The gizmo's Assert message: why the frame and view being rendered cannot be shown, and what to do."""
    try:
        return frame_problem(node, int(nuke.frame()), nuke.thisView()) or ""
    except Exception as error:  # a bug: still an error in the Viewer, with a clue
        return f"{node.name()}: cannot check the result ({type(error).__name__}: {error})"


def _output_value(node: nuke.Node) -> str:
    value = knobs.path(node, "outputFile")
    if not value:
        raise CopyCatError("Output File is empty: press Render to compute the frames")
    return value


def missing_frames(node: nuke.Node, frames: Sequence[int], views: Sequence[str]) -> list[int]:
    """Main thread: the ``frames`` whose result is missing or stale in any of ``views``."""
    model = model_path(node)
    output = output_pattern(node)
    now = {view: recipe(node, model, view) for view in views}
    return [
        frame
        for frame in frames
        if any(results.problem(results.frame_file(output, frame, view), now[view]) for view in views)
    ]


def check_stale(node: nuke.Node) -> bool:
    """Say on the Status line whether the Frame Range is up to date; True when it has results to report on."""
    if jobs.current(node.fullName()) is not None or not knobs.path(node, "outputFile"):
        return False
    try:
        frames = _frames(node)
        model = model_path(node)
    except CopyCatError:
        return False
    output = knobs.path(node, "outputFile")
    views = nuke.views()
    now = {view: recipe(node, model, view) for view in views}
    problems = [
        results.problem(results.frame_file(output, frame, view), now[view]) for frame in frames for view in views
    ]
    if all(problem == "no result" for problem in problems):
        return False
    update_range(node)
    if not any(problems):
        knobs.set_status(node, _up_to_date(frames, output))
        return True
    stale = [problem for problem in problems if problem and problem.startswith("stale: ")]
    missing = sum(problem == "no result" for problem in problems)
    why = stale[0][len("stale: ") :] if stale else f"{missing} frame(s) of the Frame Range have no result yet"
    knobs.set_status(node, f"Stale: {why}: press Render.", warning=True)
    return True


def restore_status(node: nuke.Node) -> None:
    """onCreate: a script does not save the Status line; say whether the Frame Range is up to date."""
    check_stale(node)


def _up_to_date(frames: Sequence[int], output: str) -> str:
    return f"Up to date: frames {results.format_frames(frames)} in {output}"


def update_range(node: nuke.Node) -> None:
    """Main thread: the internal Read covers the input's frame range (frames without a result are errors)."""
    source = node.input(0)
    if source is None:
        return
    span = source.frameRange()
    knobs.set_value(node, "resultFirst", int(span.first()))
    knobs.set_value(node, "resultLast", int(span.last()))


# ---------------------------------------------------------------------------------------------- render
def output_pattern(node: nuke.Node) -> str:
    """Output File, or ``copycat/<node>/<node>.####.exr`` beside the script (set on the knob, so it shows);
    a multi-view script needs ``%V`` (or ``%v``) in it, so each view has its own files."""
    value = knobs.path(node, "outputFile")
    several_views = len(nuke.views()) > 1
    if not value:
        script = str(nuke.root()["name"].value() or "")
        base = Path(script).parent if script else Path(tempfile.gettempdir())
        name = f"{node.name()}.%V.####.exr" if several_views else f"{node.name()}.####.exr"
        value = str(base / "copycat" / node.name() / name)
        knobs.set_value(node, "outputFile", value)
    if not _FRAME_PLACEHOLDER.search(Path(value).name):
        raise CopyCatError(f"Output File {value} needs a frame number, e.g. {Path(value).stem}.####.exr")
    if several_views and "%V" not in value and "%v" not in value:
        raise CopyCatError(
            f"Output File {value} needs %V (the view's name) in it: this script has the views "
            f"{', '.join(nuke.views())}, and each is written to its own files"
        )
    return value


def _frames(node: nuke.Node) -> list[int]:
    text = knobs.text(node, "frameRange")
    if text:
        from copycat_nuke.framelist import parse_frame_list

        return parse_frame_list(text)
    first, last = gather.frame_range(node.fullName(), 0, "Input")
    return list(range(first, last + 1))


def refuse_proxy(node: nuke.Node) -> None:
    """Results are computed at full resolution only: in proxy mode Nuke would render the input smaller."""
    proxy = nuke.root().knob("proxy")
    if proxy is not None and proxy.value():
        raise CopyCatError(
            f"proxy mode is on: {node.name()} computes its results at full resolution only. Turn proxy mode off "
            "to render them (existing results show in proxy mode, scaled by Nuke)."
        )


def read_request(node: nuke.Node, frames: Optional[Sequence[int]] = None) -> RenderRequest:
    """Main thread: what to compute for ``frames`` (default: the Frame Range) in every view, checked."""
    python = nodes.require_dependencies(node)
    refuse_proxy(node)
    model = model_path(node)
    gather.upstream(node.fullName(), 0, "Input")
    tile = knobs.integer(node, "tileSize")
    overlap = knobs.integer(node, "tileOverlap")
    if tile < 0 or overlap < 0:
        raise CopyCatError("Tile Size and Overlap cannot be negative (Tile Size 0 chooses tiles automatically)")
    views = nuke.views()
    return RenderRequest(
        model=model,
        output=output_pattern(node),
        frames=list(frames) if frames is not None else _frames(node),
        views=views,
        device="auto" if knobs.boolean(node, "useGPUIfAvailable") else "cpu",
        half=knobs.boolean(node, "optimize"),
        tile=tile or None,
        overlap=overlap,
        recipes={view: recipe(node, model, view) for view in views},
        python=python,
    )


def supported_keywords(function: Callable[..., Any], **keywords: Any) -> dict[str, Any]:
    """The keywords ``function`` accepts (``infer_sequence`` gains tiling options in newer versions)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return keywords
    return {key: value for key, value in keywords.items() if key in parameters}


def compute(context: jobs.Context, request: RenderRequest) -> None:
    """Compute ``request.frames`` in every view: render the input to EXR in a folder of this process's own
    (farm chunks never share one), run the model, record each frame once it is on disk."""
    if not request.frames:
        return
    safe_name = re.sub(r"[^\w.-]", "_", context.node_name)
    parent = Path(request.output).parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".copycat-input-{safe_name}-", dir=str(parent)))
    described = describe(request.python, request.model)
    temporal = int(described["arguments"].get("temporal", 0))  # neighbours the network sees on each side
    share = 100.0 / len(request.views)
    try:
        for number, view in enumerate(request.views):
            start = number * share
            source = str(work / view / "input.####.exr")
            frames = gather.render_frames(
                context, 0, "Input", source, request.frames, "all", view=view, progress=(start, share * 0.3)
            )
            if temporal:  # and the neighbours the network sees, where Input has them
                first, last = context.call(gather.frame_range, context.node_name, 0, "Input")
                around = {f + k for f in frames for k in range(-temporal, temporal + 1) if first <= f + k <= last}
                extra = sorted(around - set(frames))
                # a neighbour that fails to render is held from the nearest frame that did (data.NeighbourFrames)
                gather.render_frames(
                    context, 0, "Input", source, extra, "all", view=view, skip_failures=True, progress=(start, 0.0)
                )
            target = request.output.replace("%V", view).replace("%v", view[:1])
            span = (start + share * 0.35, share * 0.65)
            if request.python is None:
                _infer_here(context, request, source, target, frames, view, span)
                continue
            written = external.run_infer(
                context,
                request.python,
                request.model,
                source,
                target,
                frames,
                device=request.device,
                half=request.half,
                tile=request.tile,
                overlap=request.overlap,
                progress=span,
                log=None,  # in the temp folder: the work folder is removed when this ends
            )
            for frame in written:  # recorded once the command has finished every frame
                results.write_record(results.frame_file(target, frame, view), request.recipes[view])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _infer_here(
    context: jobs.Context,
    request: RenderRequest,
    source: str,
    target: str,
    frames: Sequence[int],
    view: str,
    span: tuple[float, float],
) -> None:
    """Run the model in Nuke's own Python, recording each frame as it lands."""
    from copycat_nuke.infer import infer_sequence

    keywords = supported_keywords(
        infer_sequence,
        device=request.device,
        half=request.half,
        progress=_recorder(context, target, request.recipes[view], span),
        tile=request.tile,
        overlap=request.overlap,
    )
    infer_sequence(request.model, source, target, frames=frames, **keywords)


def _recorder(
    context: jobs.Context, target: str, made: results.Recipe, span: tuple[float, float]
) -> Callable[[int, int, int, float], None]:
    """``infer_sequence``'s progress callback: record each frame as it lands, then honour Stop."""

    def progress(done: int, total: int, frame: int, seconds: float) -> None:
        results.write_record(results.frame_file(target, frame, made.view), made)
        context.check_stop()
        message = f"rendering: frame {frame} ({done}/{total}, {seconds:.1f} s a frame)"
        context.progress(span[0] + span[1] * done / max(total, 1), message)

    return progress


def _show_result(node_name: str, frames: Sequence[int], output: str) -> None:
    """Main thread: refresh the internal Read (frames re-rendered under the same names) and the Status."""
    node = gather.node(node_name)
    update_range(node)
    read = node.node("Result") if isinstance(node, nuke.Group) else None
    reload = read.knob("reload") if read is not None else None
    if isinstance(reload, nuke.Script_Knob):
        reload.execute()  # drop Nuke's cached frames
    knobs.set_status(node, _up_to_date(frames, output))


def ensure(node: nuke.Node, frames: Sequence[int]) -> None:
    """Compute, here and now, the ``frames`` of the node whose result is missing or stale (farm renders)."""
    todo = missing_frames(node, frames, nuke.views())
    if todo:
        request = read_request(node, todo)
        jobs.start(node, "rendering", lambda context: compute(context, request), inline=True)
        _show_result(node.fullName(), request.frames, request.output)


@jobs.button
def render(node: nuke.Node) -> None:
    """Render: compute the frames of the Frame Range whose result is missing or stale, in every view."""
    request = read_request(node)
    todo = missing_frames(node, request.frames, request.views)
    if not todo:
        update_range(node)
        knobs.set_status(node, _up_to_date(request.frames, request.output))
        return
    wanted, request = request.frames, replace(request, frames=todo)
    knobs.set_status(node, f"Rendering {len(todo)} frame(s)...")

    def work(context: jobs.Context) -> None:
        compute(context, request)
        context.post(_show_result, context.node_name, wanted, request.output)

    jobs.start(node, "rendering", work)
