"""The Nuke host adapter: the only part of copycat_nuke that imports ``nuke``.

Each gizmo button and callback is one call into this package::

    CopyCat    Start Training       copycat_nuke.nuke.start_training(node)
               Resume Training      copycat_nuke.nuke.resume_training(node)
               Stop                 copycat_nuke.nuke.stop(node)
               Create Inference     copycat_nuke.nuke.create_inference(node)
               Show Panel           copycat_nuke.nuke.show_panel(node)
               Export Farm Job      copycat_nuke.nuke.export_farm_job(node)
               Create Native Inf.   copycat_nuke.nuke.create_native_inference(node)  (also on the three below)
    Inference, Render               copycat_nuke.nuke.render(node)
    Upscale,   Stop                 copycat_nuke.nuke.stop(node)
    Deblur     (internal Assert)    copycat_nuke.nuke.result_ok(node) / result_problem(node)
    all        onCreate/knobChanged copycat_nuke.nuke.on_create(node) / knob_changed(node, knob)
    menu.py    toolbar              copycat_nuke.nuke.create_node("CopyCat"), register_panel()
    init.py    every Write          nuke.addBeforeFrameRender(copycat_nuke.nuke.before_frame_render)

Modules: ``knobs`` (knob names, typed access), ``gather`` (render inputs to EXR with a temporary Write),
``jobs`` (worker threads and main-thread calls; synchronous in terminal sessions), ``training`` (CopyCat),
``inference`` (Inference/Upscale/Deblur), ``results`` (per-frame records), ``farm`` (render callback),
``legacy`` (scripts saved with the old class names), ``native`` (Nuke's own Inference node, Nuke 14+),
``panel`` (Show Panel), ``nodes`` (creating nodes, shipped networks, dependency checks), ``callbacks``
(onCreate, knobChanged, Stop), ``external`` (training and rendering in an external Python where Nuke's
cannot import torch). torch is imported only when a job runs in Nuke's Python, so Nuke starts (and shows a
clear message in the node) without it; with an external Python the buttons use the standard library only,
and all of this is Python 3.7 code (Nuke 13).
"""

from __future__ import annotations

from copycat_nuke.nuke.callbacks import create_node, knob_changed, on_create, stop
from copycat_nuke.nuke.farm import before_frame_render
from copycat_nuke.nuke.inference import render, result_ok, result_problem
from copycat_nuke.nuke.legacy import migrate_script
from copycat_nuke.nuke.native import create_native_inference
from copycat_nuke.nuke.nodes import shipped_model
from copycat_nuke.nuke.panel import register_panel, show_panel
from copycat_nuke.nuke.training import create_inference, export_farm_job, resume_training, start_training

__all__ = [
    "before_frame_render",
    "create_inference",
    "create_native_inference",
    "create_node",
    "export_farm_job",
    "knob_changed",
    "migrate_script",
    "on_create",
    "register_panel",
    "render",
    "result_ok",
    "result_problem",
    "resume_training",
    "shipped_model",
    "show_panel",
    "start_training",
    "stop",
]
