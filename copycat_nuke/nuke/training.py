"""The CopyCat node: its knobs as a training job, and its buttons.

Start Training reads the knobs on the main thread, then a job renders GroundTruth and Input at the training
frames into ``<Data Directory>/frames/`` and trains there (checkpoints, contact sheets, loss log,
``model.cat``) with :mod:`copycat_nuke.train`, or, with an external Python set (``pythonExecutable`` /
``COPYCAT_PYTHON``), with ``copycat train`` in that Python (:mod:`copycat_nuke.nuke.external`). Export Farm
Job renders the same frames and writes ``farm_job.yaml`` for ``copycat train --config``.

Until training starts in Nuke's own Python, everything here uses the standard library only (no torch, numpy,
OpenImageIO or pyyaml), so a locked-down Nuke with an external Python works.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import nuke

from copycat_nuke import rundir
from copycat_nuke.errors import CopyCatError
from copycat_nuke.framelist import format_frame_list, parse_frame_list
from copycat_nuke.limits import AUTO_MAX_BATCH, MAX_TEMPORAL
from copycat_nuke.nuke import external, gather, jobs, knobs, nodes, results

if TYPE_CHECKING:
    from copycat_nuke.config import TrainConfig
    from copycat_nuke.train import Event

FRAMES_DIR = "frames"
INPUT_PATTERN = "input.####.exr"
TRUTH_PATTERN = "groundtruth.####.exr"
FARM_JOB = "farm_job.yaml"
#: Written by rank 0 once the training frames are rendered: the other ranks of a distributed run wait for it.
FRAMES_READY = ".rendered.json"
#: How long a rank > 0 waits for rank 0's frames before giving up, in seconds.
RANK_WAIT_SECONDS = 3600.0
#: GroundTruth ranges longer than this must be listed in Training Frames instead of searched.
MAX_SEARCHED_FRAMES = 10000


@dataclass(frozen=True)
class TrainingRequest:
    """What the CopyCat node asks for, read from its knobs on the main thread."""

    config: TrainConfig  #: input/target are filled in once the frames are rendered
    frames: Optional[str]  #: the Training Frames knob, or None for "wherever GroundTruth renders"
    python: Optional[str] = None  #: the external Python that trains, or None for Nuke's own
    root: Optional[Path] = None  #: the Data Directory knob's folder (the run may be a run_NNN inside it)

    @property
    def data_directory(self) -> Path:
        return Path(self.config.out)


# ------------------------------------------------------------------------------------------ the knobs
def _positive(node: nuke.Node, name: str, label: str, minimum: int = 1) -> int:
    value = knobs.integer(node, name)
    if value < minimum:
        raise CopyCatError(f"{label} must be at least {minimum} (it is {value}): set {node.name()}.{name}")
    return value


def initial_weights(node: nuke.Node) -> str:
    """The Initial Weights knob as a path for TrainConfig (``"none"`` to start from scratch)."""
    choice = knobs.text(node, "initialWeights")
    if choice in ("", "None"):
        return "none"
    if choice == "Checkpoint":
        path = knobs.path(node, "checkpointFile")
        if not path:
            raise CopyCatError("Initial Weights is Checkpoint but Checkpoint File is empty: choose a .cat file")
        if not Path(path).is_file():
            raise CopyCatError(f"the Checkpoint File {path} does not exist: choose an existing .cat file")
        return path
    if choice in nodes.SHIPPED:
        name = nodes.SHIPPED[choice]
        instead = "set Initial Weights to None, or to Checkpoint with a .cat of your own."
        return str(nodes.require_shipped_model(name, instead=instead))
    raise CopyCatError(f"unknown Initial Weights {choice!r}: choose None, Checkpoint, Deblur or Upscale")


def read_request(node: nuke.Node, *, resume: bool = False, python: Optional[str] = None) -> TrainingRequest:
    """Main thread: the CopyCat node's knobs as a :class:`TrainingRequest`, checked; errors name the knob.
    ``python``: the external Python that will train (None: Nuke's own)."""
    from copycat_nuke.config import TrainConfig  # stdlib only (pyyaml when it reads YAML)

    directory = knobs.path(node, "dataDirectory")
    if not directory:
        raise CopyCatError(
            "Data Directory is empty: choose a folder for the training frames, checkpoints and model.cat"
        )
    manual_batch = knobs.text(node, "batchSizeType") == "Manual"
    config = TrainConfig(
        # a new run never replaces one: it goes beside it in run_NNN (resume: the newest run there)
        out=str((rundir.latest_run_dir if resume else rundir.new_run_dir)(Path(directory).resolve())),
        epochs=_positive(node, "epochs", "Epochs"),
        model_size=knobs.text(node, "modelSize").lower() or "medium",
        batch_size=_positive(node, "batchSize", "Batch Size") if manual_batch else None,
        crop_size=_positive(node, "cropSize", "Crop Size", 16),
        initial_weights=initial_weights(node),
        checkpoint_interval=_positive(node, "checkpointInterval", "Checkpoint Interval"),
        image_interval=_positive(node, "imageInterval", "Contact Sheet Interval"),
        channels_in=knobs.text(node, "channelsIn") or "rgb",
        channels_out=knobs.text(node, "channelsOut") or "rgb",
        device="auto" if knobs.boolean(node, "useGPUIfAvailable") else "cpu",
        multi_resolution=knobs.boolean(node, "useMultiResolutionTraining"),
        temporal=knobs.integer(node, "temporalFrames"),
        resume=resume,
    )
    if not 0 <= config.temporal <= MAX_TEMPORAL:
        raise CopyCatError(f"Temporal Frames is {config.temporal}: set it to 0 (one frame) up to {MAX_TEMPORAL}")
    config.validate()
    if resume and rundir.latest_checkpoint(config.out) is None:
        raise CopyCatError(f"nothing to resume in {config.out}: it has no checkpoints yet. Press Start Training.")
    return TrainingRequest(
        config=config, frames=knobs.text(node, "frames") or None, python=python, root=Path(directory).resolve()
    )


def total_steps(epochs: int, pairs: int, batch_size: int) -> int:
    """Steps as Nuke counts them: ``ceil(epochs × pairs / batch)``."""
    return -(-epochs * pairs // max(batch_size, 1))


def describe_total_steps(epochs: int, pairs: int, batch_size: Optional[int], about: str = "") -> str:
    """The Total Steps line: exact for a Manual batch; for Auto the range its batch (1 to the pairs, at most
    :data:`AUTO_MAX_BATCH`, decided when training starts) allows."""
    if batch_size is not None:
        return f"{about}{total_steps(epochs, pairs, batch_size):,} steps ({pairs} pairs, batch {batch_size})"
    largest = max(1, min(pairs, AUTO_MAX_BATCH))
    if largest == 1:
        return f"{about}{total_steps(epochs, pairs, 1):,} steps ({pairs} pairs, batch 1)"
    fewest, most = total_steps(epochs, pairs, largest), total_steps(epochs, pairs, 1)
    return f"{about}{fewest:,}–{most:,} steps ({pairs} pairs, batch auto: 1–{largest}, chosen at the start)"


def update_total_steps(node: nuke.Node) -> None:
    """Show how many steps the Epochs knob means, from the Training Frames or GroundTruth's range."""
    epochs = max(knobs.integer(node, "epochs"), 1)
    manual = knobs.text(node, "batchSizeType") == "Manual"
    batch_size = max(knobs.integer(node, "batchSize"), 1) if manual else None
    frames = knobs.text(node, "frames")
    truth = node.input(knobs.GROUND_TRUTH)
    if frames:
        try:
            pairs, about = len(parse_frame_list(frames)), ""
        except CopyCatError as error:
            knobs.set_value(node, "totalSteps", f"total steps: {error}")
            return
    elif truth is not None:
        span = truth.frameRange()
        pairs, about = max(int(span.last()) - int(span.first()) + 1, 1), "up to "
    else:
        knobs.set_value(node, "totalSteps", "total steps: connect GroundTruth")
        return
    knobs.set_value(node, "totalSteps", describe_total_steps(epochs, pairs, batch_size, about))


def update_enabled(node: nuke.Node) -> None:
    knobs.set_enabled(node, "batchSize", knobs.text(node, "batchSizeType") == "Manual")
    knobs.set_enabled(node, "checkpointFile", knobs.text(node, "initialWeights") == "Checkpoint")


# ------------------------------------------------------------------------------------------- the work
def _candidate_frames(node_name: str) -> list[int]:
    """Main thread: the frames of GroundTruth's range that Input's range also covers."""
    first, last = gather.frame_range(node_name, knobs.GROUND_TRUTH, "GroundTruth")
    input_first, input_last = gather.frame_range(node_name, knobs.INPUT, "Input")
    first, last = max(first, input_first), min(last, input_last)
    if last < first:
        raise CopyCatError(
            f"GroundTruth's frames and Input's frames do not overlap: list the training frames in {node_name}.frames"
        )
    if last - first + 1 > MAX_SEARCHED_FRAMES:
        raise CopyCatError(
            f"GroundTruth spans {last - first + 1} frames: list the training frames in {node_name}.frames"
        )
    return list(range(first, last + 1))


def distributed_rank() -> int:
    """This process's rank in a distributed run (``RANK`` or ``COPYCAT_RANK``, as the trainer reads them)."""
    for name in ("RANK", "COPYCAT_RANK"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                raise CopyCatError(f"{name}={value!r} is not a whole number: set it to this machine's rank") from None
    return 0


def _pairs_signature(node_name: str, request: TrainingRequest) -> str:
    """Main thread: what the rendered pairs depend on (both inputs' graphs, frames, channels, temporal)."""
    from copycat_nuke.nuke.inference import input_signature

    node = gather.node(node_name)
    config = request.config
    parts = [input_signature(node, knobs.INPUT), input_signature(node, knobs.GROUND_TRUTH), str(request.frames)]
    parts += [config.channels_in, config.channels_out, str(config.temporal)]
    return hashlib.sha1("\n".join(parts).encode("utf-8")).hexdigest()[:20]


def _wait_for_rank_zero(context: jobs.Context, marker: Path, signature: str, rank: int) -> dict[str, str]:
    """Rank > 0: wait until rank 0 has rendered these very pairs (its marker carries the same signature)."""
    deadline = time.monotonic() + RANK_WAIT_SECONDS
    context.progress(0, f"rank {rank}: waiting for rank 0 to render the training frames", force=True)
    while time.monotonic() < deadline:
        context.check_stop()
        try:
            ready = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            ready = None
        if isinstance(ready, dict) and ready.get("signature") == signature:
            return ready
        time.sleep(0.5)
    raise CopyCatError(
        f"rank {rank} waited {RANK_WAIT_SECONDS:.0f} s for rank 0 to render the training frames into "
        f"{marker.parent}: start rank 0 with the same script and Data Directory"
    )


def render_pairs(context: jobs.Context, request: TrainingRequest) -> TrainConfig:
    """Render GroundTruth, then Input, at the training frames; the config with the sequences filled in.

    In a distributed run only rank 0 renders; the other ranks wait for its frames and train on them."""
    folder = request.data_directory / FRAMES_DIR
    truth_pattern, input_pattern = str(folder / TRUTH_PATTERN), str(folder / INPUT_PATTERN)
    # the marker sits in the Data Directory itself: rank 0 may have put its run in a run_NNN there
    marker, rank = (request.root or request.data_directory) / FRAMES_READY, distributed_rank()
    signature = context.call(_pairs_signature, context.node_name, request)
    if rank > 0:
        ready = _wait_for_rank_zero(context, marker, signature, rank)
        frames_folder = Path(ready["out"]) / FRAMES_DIR
        return replace(
            request.config,
            out=ready["out"],
            input=str(frames_folder / INPUT_PATTERN),
            target=str(frames_folder / TRUTH_PATTERN),
            frames=ready["frames"],
        )
    if marker.exists():
        marker.unlink()
    for pattern in (truth_pattern, input_pattern):
        gather.clear_sequence(pattern)
    config = request.config
    if request.frames is not None:
        frames, search = parse_frame_list(request.frames), False
    else:
        frames, search = context.call(_candidate_frames, context.node_name), True
    channels = gather.write_channels(config.channels_in, config.channels_out)
    truth = gather.render_frames(
        context, knobs.GROUND_TRUTH, "GroundTruth", truth_pattern, frames, channels, skip_failures=search
    )
    gather.render_frames(context, knobs.INPUT, "Input", input_pattern, truth, channels, progress=(0.0, 100.0))
    if config.temporal:  # and the neighbours Input has: load_pairs leaves out pairs that lack some
        first, last = context.call(gather.frame_range, context.node_name, knobs.INPUT, "Input")
        around = {f + k for f in truth for k in range(-config.temporal, config.temporal + 1)}
        extra = sorted(f for f in around - set(truth) if first <= f <= last)
        gather.render_frames(context, knobs.INPUT, "Input", input_pattern, extra, channels, skip_failures=True)
    ready = {"signature": signature, "frames": format_frame_list(truth), "out": str(request.data_directory)}
    results.write_json(marker, ready)
    return replace(config, input=input_pattern, target=truth_pattern, frames=format_frame_list(truth))


class _Progress:
    """Training progress on the Status line / ProgressTask, and log lines for farms: from the trainer's
    events in Nuke's Python (:meth:`__call__`, a training listener), or from an external Python's event lines
    (:meth:`external`). Both run on the job's thread."""

    def __init__(self, context: jobs.Context) -> None:
        self.context = context
        self.next_log = 0.0

    def __call__(self, event: Event) -> None:
        from copycat_nuke.train import CheckpointWritten, Started, StepDone  # torch: loaded by jobs only

        if isinstance(event, Started):
            self.started(event.total_steps, event.pairs, event.batch_size, event.device, event.resolutions)
        elif isinstance(event, StepDone):
            self.step(event.step, event.total_steps, event.loss, event.eta_seconds)
        elif isinstance(event, CheckpointWritten):
            self.checkpoint(str(event.path))

    def external(self, event: dict[str, Any]) -> None:
        """An event line of ``copycat train --events`` (the same fields as the trainer's events)."""
        kind = event.get("event")
        try:
            if kind == "Started":
                self.started(
                    int(event["total_steps"]),
                    int(event["pairs"]),
                    int(event["batch_size"]),
                    str(event["device"]),
                    str(event.get("resolutions", "off")),
                )
            elif kind == "StepDone":
                self.step(
                    int(event["step"]), int(event["total_steps"]), float(event["loss"]), float(event["eta_seconds"])
                )
            elif kind == "CheckpointWritten":
                self.checkpoint(str(event["path"]))
        except (KeyError, TypeError, ValueError):  # a line from another version: progress is not worth failing for
            pass

    def started(self, total_steps: int, pairs: int, batch_size: int, device: str, resolutions: str) -> None:
        context = self.context
        steps = f"{total_steps:,} steps ({pairs} pairs, batch {batch_size})"
        context.post(_set_knob, context.node_name, "totalSteps", steps)
        context.progress(0, f"training on {device}: {steps}", force=True)
        if resolutions != "off":  # which coarse stages run, and why others do not
            print(f"copycat_nuke: {context.node_name}: multi-resolution: {resolutions}", flush=True)

    def step(self, step: int, total_steps: int, loss: float, eta_seconds: float) -> None:
        context = self.context
        percent = 100.0 * step / max(total_steps, 1)
        message = f"training: step {step:,}/{total_steps:,}, loss {loss:.4g}, {_duration(eta_seconds)} left"
        context.progress(percent, message, force=step >= total_steps)  # the last step always shows
        if not context.gui and time.monotonic() >= self.next_log:  # farm logs: a line every 30 s
            self.next_log = time.monotonic() + 30
            print(f"copycat_nuke: {context.node_name}: {message}", flush=True)
        context.stop_requested()  # polls a terminal ProgressTask's Cancel and stops the trainer

    def checkpoint(self, path: str) -> None:
        if not self.context.gui:
            print(f"copycat_nuke: {self.context.node_name}: checkpoint {path}", flush=True)


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _set_knob(node_name: str, name: str, value: object) -> None:
    node = nuke.toNode(node_name)
    if node is not None:
        knobs.set_value(node, name, value)


def _train(context: jobs.Context, request: TrainingRequest) -> None:
    config = render_pairs(context, request)
    context.check_stop()
    context.progress(0, "training: preparing the network", force=True)
    progress = _Progress(context)
    if request.python is not None:  # the panel follows the run directory; Stop reaches it through the context
        finished = external.run_train(context, config, request.python, progress.external)
        _finished(
            context,
            bool(finished.get("stopped")),
            int(finished.get("step", 0)),
            int(finished.get("total_steps", 0)),
            float(finished.get("final_loss", float("nan"))),
            str(finished.get("model_path", "")),
        )
        return
    from copycat_nuke.train import Trainer, TrainingJob

    listeners = [progress]
    if context.gui:
        training = TrainingJob(config, listeners)
        context.attach_training(training)
        result = training.wait()  # re-raises the trainer's error
        if result is None:
            raise CopyCatError("training ended without a result")
    else:
        result = Trainer(config, listeners, context.stop_event).run()
    _finished(context, result.stopped, result.steps, result.total_steps, result.final_loss, str(result.model_path))


def _finished(context: jobs.Context, stopped: bool, steps: int, total: int, loss: float, model: str) -> None:
    done = "Stopped" if stopped else "Finished"
    message = f"{done} at step {steps:,}/{total:,}, loss {loss:.4g}: {model}"
    context.post(jobs.set_status, context.node_name, message, False)


def _start(node: nuke.Node, resume: bool) -> None:
    python = nodes.require_dependencies(node)
    request = read_request(node, resume=resume, python=python)
    for index, label in ((knobs.INPUT, "Input"), (knobs.GROUND_TRUTH, "GroundTruth")):
        gather.upstream(node.fullName(), index, label)
    knobs.set_status(node, "Resuming training..." if resume else "Starting training...")
    jobs.start(node, "training", lambda context: _train(context, request))


# ------------------------------------------------------------------------------------------ buttons
@jobs.button
def start_training(node: nuke.Node) -> None:
    """Start Training: render the training pairs into the Data Directory and train from the start."""
    _start(node, resume=False)


@jobs.button
def resume_training(node: nuke.Node) -> None:
    """Resume Training: carry on from the latest checkpoint in the Data Directory."""
    _start(node, resume=True)


@jobs.button
def export_farm_job(node: nuke.Node) -> None:
    """Export Farm Job: render the training pairs and write ``farm_job.yaml`` for ``copycat train --config``.

    Needs neither torch nor an external Python: rendering is Nuke's, the YAML is written with the standard
    library where pyyaml is missing."""
    request = read_request(node)

    def work(context: jobs.Context) -> None:
        from copycat_nuke.config import save_yaml

        path = save_yaml(render_pairs(context, request), request.data_directory / FARM_JOB)
        context.post(_exported, context.node_name, str(path))

    jobs.start(node, "exporting a farm job", work)


def _exported(node_name: str, path: str) -> None:
    command = f"copycat train --config {path}"
    jobs.set_status(node_name, f"Farm job written; on the farm run: {command}", False)
    if jobs.is_gui():
        nuke.message(f"{node_name}: the training frames and farm job are in {Path(path).parent}.\n\nRun:\n{command}")
    else:
        print(f"copycat_nuke: {node_name}: {command}", flush=True)


@jobs.button
def create_inference(node: nuke.Node) -> None:
    """Create Inference: add an Inference node below this one, applying its ``model.cat``."""
    from copycat_nuke.nuke import inference

    directory = knobs.path(node, "dataDirectory")
    model = Path(directory) / "model.cat" if directory else None
    if model is None or not model.is_file():
        latest = rundir.latest_checkpoint(directory) if directory else None
        if latest is None:
            raise CopyCatError(f"there is no model.cat in '{directory}' yet: train first (Start Training)")
        model = latest
    created = nodes.new_node(knobs.INFERENCE, node.parent())
    created.setInput(0, node.input(knobs.INPUT))
    created.setXYpos(node.xpos(), node.ypos() + 80)
    python, target = node.knob(external.KNOB), created.knob(external.KNOB)
    if python is not None and target is not None:  # render where this node trains
        target.setValue(python.value())
    knobs.set_value(created, "modelFile", str(model))
    inference.refresh_model(created)
    knobs.set_status(node, f"Created {created.name()} with {model.name}")
