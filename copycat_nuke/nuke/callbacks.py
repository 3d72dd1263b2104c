"""What the gizmos' onCreate / knobChanged run, the shared Stop button, and the toolbar's node creation."""

from __future__ import annotations

from typing import Optional

import nuke

from copycat_nuke.errors import CopyCatError
from copycat_nuke.nuke import external, inference, jobs, knobs, nodes, training

_TOTAL_STEPS_KNOBS = frozenset({"epochs", "batchSize", "batchSizeType", "frames", "inputChange", "showPanel"})
_STALE_KNOBS = frozenset({"inputChange", "showPanel", "frameRange", "optimize"})


@jobs.callback
def on_create(node: nuke.Node) -> None:
    """onCreate (new nodes and nodes read from a script): cheap checks only; the graph may be half-loaded."""
    kind = knobs.kind_of(node)
    if kind == knobs.COPYCAT:
        training.update_enabled(node)
    elif kind in knobs.INFERENCE_KINDS:
        inference.apply_legacy_precision(node)
        inference.restore_status(node)
    missing = nodes.missing_dependencies()
    if missing and external.configured_python(node) is None:  # with an external Python the buttons work
        knobs.set_status(node, nodes.dependencies_message(missing), warning=True)
    elif kind in nodes.SHIPPED and not knobs.path(node, "modelFile"):
        inference.model_path(node)  # puts "not installed" on the Status line when the network is missing


@jobs.callback
def knob_changed(node: nuke.Node, knob: nuke.Knob) -> None:
    """knobChanged: keep derived knobs (total steps, channels, enabled states, Status) in step."""
    name = knob.name()
    kind = knobs.kind_of(node)
    if kind == knobs.COPYCAT:
        if name in ("batchSizeType", "initialWeights"):
            training.update_enabled(node)
        if name in _TOTAL_STEPS_KNOBS:
            training.update_total_steps(node)
    elif kind in knobs.INFERENCE_KINDS:
        if name in ("halfPrecision", "inferencePrecision"):
            inference.apply_legacy_precision(node)
        elif name == "modelFile":
            inference.refresh_model(node)
        elif name in _STALE_KNOBS:
            inference.check_stale(node)


@jobs.button
def stop(node: nuke.Node) -> None:
    """Stop: end the node's training within one step (a checkpoint and model.cat are still written), or its
    render after the current frame."""
    job = jobs.current(node.fullName())
    if job is None:
        knobs.set_status(node, "Nothing is running.")
        return
    job.stop()
    knobs.set_status(node, f"Stopping {job.title}...")


def create_node(kind: str) -> Optional[nuke.Node]:
    """The toolbar's command: create a CopyCat, Inference, Upscale or Deblur node (a message if it cannot)."""
    try:
        return nodes.make_node(kind)
    except CopyCatError as error:
        nuke.message(str(error))
        return None
