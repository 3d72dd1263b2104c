"""What tests/test_nuke_external.py does inside the locked-down Nuke (tests/nukestub/locked_down.py).

Each function gets the stand-in ``nuke`` module and returns what it saw as plain JSON data; the test asserts.
Standard library only: this runs where numpy, torch and pyyaml cannot be imported by test code either.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


def _copycat(nuke: Any, shot: dict[str, Any], directory: str, **knobs: Any) -> Any:
    read_in = nuke.nodes.Read(file=shot["input"], first=shot["first"], last=shot["last"])
    read_truth = nuke.nodes.Read(file=shot["truth"], first=shot["first"], last=shot["last"])
    settings = {
        "dataDirectory": directory,
        "epochs": 2,
        "modelSize": "Small",
        "batchSizeType": "Manual",
        "batchSize": 2,
        "cropSize": 32,
        "checkpointInterval": 1000,
        "imageInterval": 1000,
        **knobs,
    }
    node = nuke.nodes.CopyCat(**settings)
    node.setInput(0, read_in)
    node.setInput(1, read_truth)
    return node


def _wait(nuke: Any, node: Any, timeout: float = 240) -> None:
    from copycat_nuke.nuke import jobs

    name = node.fullName()
    nuke.process_events(until=lambda: jobs.current(name) is None, timeout=timeout)


def train(nuke: Any, shot: dict[str, Any], work: str, python: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    work_dir = Path(work)

    # no external Python and no torch: the node says both fixes, the button refuses with the same words
    os.environ.pop("COPYCAT_PYTHON", None)
    nuke.env["gui"] = True
    bare = _copycat(nuke, shot, str(work_dir / "bare"))
    seen["bare_status"] = bare["status"].value()
    bare["startTraining"].execute()
    seen["bare_messages"] = list(nuke.STATE.messages)
    nuke.STATE.messages.clear()

    # Export Farm Job needs nothing but Nuke (the YAML is written without pyyaml)
    nuke.env["gui"] = False
    bare["exportFarmJob"].execute()
    seen["farm_status"] = bare["status"].value()

    os.environ["COPYCAT_PYTHON"] = python
    # a farm session (nuke -t): the button returns when training is done
    farm = _copycat(nuke, shot, str(work_dir / "farm"))
    seen["farm_created_status"] = farm["status"].value()
    farm["startTraining"].execute()
    seen["terminal_status"] = farm["status"].value()
    seen["terminal_total_steps"] = farm["totalSteps"].value()
    seen["terminal_task_messages"] = list(nuke.STATE.tasks[-1].messages)

    # the GUI: training on a worker thread, progress on the Status line, Stop
    nuke.env["gui"] = True
    gui = _copycat(nuke, shot, str(work_dir / "gui"), epochs=100000)
    gui["startTraining"].execute()
    nuke.process_events(until=lambda: "training: step" in gui["status"].value(), timeout=240)
    seen["gui_progress"] = gui["status"].value()
    from copycat_nuke.nuke import jobs

    job = jobs.current(gui.fullName())
    seen["gui_job_training"] = None if job is None else repr(job.training)  # None: the panel reads the run
    gui["stopTraining"].execute()
    _wait(nuke, gui)
    seen["gui_stopped_status"] = gui["status"].value()
    seen["gui_messages"] = list(nuke.STATE.messages)

    # an error of the command (a batch larger than the pairs) on the node, in one line
    broken = _copycat(nuke, shot, str(work_dir / "broken"), batchSize=5)
    broken["startTraining"].execute()
    _wait(nuke, broken)
    seen["error_status"] = broken["status"].value()
    seen["error_messages"] = list(nuke.STATE.messages)
    seen["violations"] = list(nuke.STATE.violations)
    return seen


def infer(nuke: Any, shot: dict[str, Any], model: str, output: str, python: str) -> dict[str, Any]:
    from copycat_nuke.nuke import external

    seen: dict[str, Any] = {}
    described = external.describe_model(python, Path(model))
    seen["channels"] = [described["channels_in"], described["channels_out"]]
    read = nuke.nodes.Read(file=shot["input"], first=1, last=3)
    node = nuke.nodes.InferenceML(modelFile=model, outputFile=output, pythonExecutable=python, tileOverlap=8)
    node["useGPUIfAvailable"].setValue(False)
    node.setInput(0, read)
    nuke.env["gui"] = False
    node["render"].execute()  # the Render button, in a Nuke whose Python has no torch
    folder = Path(output).parent
    seen["written"] = sorted(int(p.name.split(".")[1]) for p in folder.glob("*.exr"))
    seen["records"] = sorted(p.name for p in (folder / ".copycat").iterdir())
    seen["errors"] = [(nuke.frame(frame), node.error())[1] for frame in (1, 2, 3)]
    seen["status"] = node["status"].value()
    seen["error_text"] = nuke._error_of(node)
    seen["task_messages"] = list(nuke.STATE.tasks[-1].messages)
    try:
        external.describe_model(python, Path(output.replace("####", "0001")))
    except Exception as error:
        seen["describe_error"] = f"{type(error).__name__}: {error}"
    seen["frames_match"] = all(re.search(r"frame \d", m) for m in seen["task_messages"])
    return seen
