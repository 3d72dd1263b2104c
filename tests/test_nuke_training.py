"""The CopyCat node driven through its buttons in a stand-in Nuke: gather, train, stop, resume, export, errors.

Shots are real EXRs in tmp_path read by Read nodes; training is tiny (Small network, 32 px crops, 2 pairs).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from nukestub.fixtures import nuke_session, wait_for, write_shot

from copycat_nuke import imageio
from copycat_nuke.config import TrainConfig, load_yaml
from copycat_nuke.errors import CopyCatError

__all__ = ["nuke_session"]  # the fixture, imported for pytest

WARNING = "\u26a0 "


@pytest.fixture(autouse=True)
def fp32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Train in fp32: on this CPU "auto" picks bf16, whose kernels take seconds to set up for each new
    tensor shape, which dominates a 2-step training run (fp32 is what tests/test_train.py uses too)."""
    monkeypatch.setattr("copycat_nuke.device.cpu_has_fast_bf16", lambda: False)


def copycat(nuke: Any, tmp_path: Path, frames: range = range(1, 4), truth: range = range(1, 3), **knobs: Any) -> Any:
    """A CopyCat node fed by Reads of a plate (``frames``) and a Ground Truth that exists at ``truth``."""
    plate, ground_truth = write_shot(tmp_path / "shot", frames, truth)
    read_in = nuke.nodes.Read(file=plate, first=frames[0], last=frames[-1])
    read_truth = nuke.nodes.Read(file=ground_truth, first=frames[0], last=frames[-1])
    settings = {
        "dataDirectory": str(tmp_path / "run"),
        "epochs": 2,
        "modelSize": "Small",
        "batchSizeType": "Manual",
        "batchSize": 2,
        "cropSize": 32,
        "checkpointInterval": 1000,
        "imageInterval": 1000,
        **knobs,
    }
    node = nuke.nodes.CopyCatML(**settings)
    node.setInput(0, read_in)
    node.setInput(1, read_truth)
    return node


def test_farm_session_trains_to_the_end_then_inference_renders_and_flags_a_stale_result(nuke_session, tmp_path):
    nuke = nuke_session
    node = copycat(nuke, tmp_path)
    read_in = node.input(0)

    nuke.toNode("CopyCatML1")["startTraining"].execute()  # a farm's call: returns when training is done

    run = tmp_path / "run"
    assert (run / "model.cat").is_file()
    # GroundTruth exists at frames 1-2 of its 1-3 range: only those became pairs, Input rendered to match
    assert sorted(p.name for p in (run / "frames").glob("*.exr")) == [
        "groundtruth.0001.exr",
        "groundtruth.0002.exr",
        "input.0001.exr",
        "input.0002.exr",
    ]
    assert [n.Class() for n in nuke.allNodes()] == ["Read", "Read", "CopyCatML"]  # the temporary Write is gone
    assert node["status"].value().startswith("Finished at step 2/2, loss ")
    assert node["totalSteps"].value() == "2 steps (2 pairs, batch 2)"
    task = nuke.STATE.tasks[-1]
    assert task.title == "CopyCatML1: training" and "step 2/2" in task.messages[-1]
    config = load_yaml(TrainConfig, run / "config.yaml")
    assert (config.frames, config.model_size, config.batch_size, config.epochs, config.crop_size) == (
        "1-2",
        "small",
        2,
        2,
        32,
    )
    assert nuke.STATE.messages == [] and nuke.STATE.violations == []

    node["createInference"].execute()
    inference = nuke.toNode("InferenceML1")
    assert inference["modelFile"].value() == str(run / "model.cat")
    assert inference.input(0) is read_in and inference["channelsIn"].value() == "R,G,B"
    inference["outputFile"].setValue(str(tmp_path / "out" / "clean.####.exr"))
    inference["render"].execute()

    assert sorted(p.name for p in (tmp_path / "out").glob("*.exr")) == [f"clean.{f:04d}.exr" for f in range(1, 4)]
    result = imageio.read_frame(tmp_path / "out" / "clean.0003.exr")
    assert result.channels == ("R", "G", "B", "A") and result.pixels.shape == (32, 48, 4)  # alpha passed through
    assert np.isfinite(result.pixels).all()
    assert inference["status"].value().startswith("Up to date: frames 1-3 in ")
    # the node shows the result through the Read inside the gizmo: render it downstream
    check = nuke.nodes.Write(file=str(tmp_path / "check.####.exr"), channels="all", datatype="32 bit float")
    check.setInput(0, inference)
    nuke.execute(check, 3, 3)
    np.testing.assert_array_equal(imageio.read_frame(tmp_path / "check.0003.exr").pixels, result.pixels)

    read_in["label"].setValue("a note")  # cosmetic: still up to date
    nuke.open_panel(inference)
    assert inference["status"].value().startswith("Up to date")
    read_in["first"].setValue(2)
    nuke.open_panel(inference)
    assert inference["status"].value() == WARNING + "Stale: the input changed since it was rendered: press Render."
    read_in["first"].setValue(1)
    stat = (run / "model.cat").stat()
    os.utime(run / "model.cat", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    nuke.open_panel(inference)
    assert "Stale: the model changed since it was rendered" in inference["status"].value()


def test_gui_training_runs_off_the_main_thread_stops_on_request_and_resumes(nuke_session, tmp_path):
    nuke = nuke_session
    nuke.env["gui"] = True
    node = copycat(nuke, tmp_path, epochs=10000)
    from copycat_nuke.nuke import jobs

    node["startTraining"].execute()  # returns at once: Nuke stays usable
    job = jobs.current("CopyCatML1")
    assert job is not None and job.thread is not None and job.thread is not threading.current_thread()
    nuke.process_events(until=lambda: "training: step" in node["status"].value(), timeout=180)
    assert job.training is not None  # the TrainingJob the panel follows
    node["stopTraining"].execute()
    wait_for(nuke, node)

    stopped = re.match(r"Stopped at step (\d+)/10,000, loss ", node["status"].value())
    assert stopped, node["status"].value()
    step = int(stopped.group(1))
    run = tmp_path / "run"
    assert (run / "model.cat").is_file() and (run / "checkpoints" / f"checkpoint.{step:07d}.cat").is_file()
    assert nuke.STATE.violations == [] and nuke.STATE.messages == []

    node["epochs"].setValue(step + 1)  # 2 pairs at batch 2: one step an epoch
    node["resumeTraining"].execute()
    wait_for(nuke, node)
    assert node["status"].value().startswith(f"Finished at step {step + 1:,}/{step + 1:,}")
    assert nuke.STATE.violations == [] and nuke.STATE.messages == []


def test_temporal_frames_render_each_pairs_neighbours_where_input_has_them(nuke_session, tmp_path):
    nuke = nuke_session
    node = copycat(nuke, tmp_path, frames=range(1, 5), truth=range(2, 5), temporalFrames=1)

    node["exportFarmJob"].execute()

    config = load_yaml(TrainConfig, tmp_path / "run" / "farm_job.yaml")
    assert config.temporal == 1 and config.frames == "2-4"
    assert imageio.ImageSequence.parse(config.input).existing_frames() == [1, 2, 3, 4]  # 5 is past Input's end
    node["temporalFrames"].setValue(4)
    with pytest.raises(CopyCatError, match=r"Temporal Frames is 4: set it to 0 \(one frame\) up to 3"):
        node["exportFarmJob"].execute()


def test_export_farm_job_renders_the_pairs_and_writes_a_config_copycat_train_accepts(nuke_session, tmp_path):
    nuke = nuke_session
    node = copycat(nuke, tmp_path, truth=range(2, 4), channelsOut="rgb")
    node["useMultiResolutionTraining"].setValue(True)

    node["exportFarmJob"].execute()

    run = tmp_path / "run"
    config = load_yaml(TrainConfig, run / "farm_job.yaml")  # what `copycat train --config` reads
    assert config.frames == "2-3" and config.out == str(run) and not config.resume
    assert config.multi_resolution
    assert imageio.ImageSequence.parse(config.target).existing_frames() == [2, 3]
    assert imageio.ImageSequence.parse(config.input).existing_frames() == [2, 3]
    assert not (run / "model.cat").exists()
    assert (
        node["status"].value() == f"Farm job written; on the farm run: copycat train --config {run / 'farm_job.yaml'}"
    )


def _no_ground_truth(node: Any, tmp_path: Path) -> None:
    node.setInput(1, None)


def _knob(name: str, value: Any) -> Any:
    return lambda node, tmp_path: node[name].setValue(value)


def _checkpoint_without_file(node: Any, tmp_path: Path) -> None:
    node["initialWeights"].setValue("Checkpoint")


def _shipped_deblur_missing(node: Any, tmp_path: Path) -> None:
    from copycat_nuke.nuke import nodes

    nodes.shipped_model = lambda name: tmp_path / "pretrained" / f"{name}.cat"
    node["initialWeights"].setValue("Deblur")


@pytest.mark.parametrize(
    ("break_it", "fix"),
    [
        (_no_ground_truth, "nothing is connected to the GroundTruth input of CopyCatML1: connect it"),
        (_knob("dataDirectory", ""), "Data Directory is empty: choose a folder"),
        (_knob("cropSize", 8), "Crop Size must be at least 16 (it is 8): set CopyCatML1.cropSize"),
        (_knob("frames", "1-x"), "Cannot read '1-x' in the frame list"),
        (_knob("frames", "3-4"), "cannot render the GroundTruth input at frame 3"),
        (_checkpoint_without_file, "Checkpoint File is empty: choose a .cat file"),
        (_shipped_deblur_missing, "The shipped Deblur network is not installed"),
    ],
    ids=[
        "no-ground-truth",
        "no-data-directory",
        "tiny-crop",
        "bad-frames",
        "frames-without-truth",
        "checkpoint",
        "deblur",
    ],
)
def test_problems_become_a_message_and_a_status_warning_with_the_fix(
    nuke_session, tmp_path, monkeypatch, break_it, fix
):
    nuke = nuke_session
    nuke.env["gui"] = True
    node = copycat(nuke, tmp_path)
    from copycat_nuke.nuke import nodes

    monkeypatch.setattr(nodes, "shipped_model", nodes.shipped_model)  # restored if the case replaces it
    break_it(node, tmp_path)

    node["startTraining"].execute()  # no exception: problems are reported, not raised
    wait_for(nuke, node)

    assert len(nuke.STATE.messages) == 1 and fix in nuke.STATE.messages[0], nuke.STATE.messages
    assert nuke.STATE.messages[0].startswith("CopyCatML1: ")
    assert node["status"].value().startswith(WARNING) and fix in node["status"].value()
    assert "Traceback" not in nuke.STATE.messages[0] and nuke.STATE.violations == []
    assert [n.Class() for n in nuke.allNodes()] == ["Read", "Read", "CopyCatML"]  # no Write left behind


def test_resume_without_checkpoints_says_to_start_training(nuke_session, tmp_path):
    nuke = nuke_session
    nuke.env["gui"] = True
    node = copycat(nuke, tmp_path)
    node["resumeTraining"].execute()
    assert nuke.STATE.messages == [
        f"CopyCatML1: nothing to resume in {tmp_path / 'run'}: it has no checkpoints yet. Press Start Training."
    ]


def test_in_a_terminal_a_problem_is_printed_and_raised_so_the_farm_job_fails(nuke_session, tmp_path, capsys):
    nuke = nuke_session
    node = copycat(nuke, tmp_path)
    node.setInput(1, None)
    with pytest.raises(CopyCatError, match="GroundTruth input"):
        node["startTraining"].execute()
    assert "copycat_nuke: CopyCatML1: nothing is connected to the GroundTruth input" in capsys.readouterr().err


def test_cancelling_the_progress_task_stops_the_job_and_cleans_up(nuke_session, tmp_path):
    nuke = nuke_session
    node = copycat(nuke, tmp_path)
    nuke.STATE.cancel_when = lambda task: any("rendering GroundTruth" in m for m in task.messages)

    node["startTraining"].execute()

    assert node["status"].value() == "Stopped training."
    assert [n.Class() for n in nuke.allNodes()] == ["Read", "Read", "CopyCatML"]
    assert not (tmp_path / "run" / "model.cat").exists()


def test_knob_changes_keep_total_steps_and_enabled_knobs_in_step(nuke_session, tmp_path):
    nuke = nuke_session
    node = copycat(nuke, tmp_path)  # GroundTruth's range is 1-3, Manual batch 2
    assert not node["checkpointFile"].enabled() and node["batchSize"].enabled()

    nuke.user_set(node["epochs"], 100)
    assert node["totalSteps"].value() == "up to 150 steps (3 pairs, batch 2)"
    nuke.user_set(node["frames"], "1,2")
    assert node["totalSteps"].value() == "100 steps (2 pairs, batch 2)"
    nuke.user_set(node["batchSizeType"], "Auto")
    assert node["totalSteps"].value() == "100–200 steps (2 pairs, batch auto: 1–2, chosen at the start)"
    assert not node["batchSize"].enabled()
    nuke.user_set(node["initialWeights"], "Checkpoint")
    assert node["checkpointFile"].enabled()
    nuke.user_connect(node, 1, None)
    nuke.user_set(node["frames"], "")
    assert node["totalSteps"].value() == "total steps: connect GroundTruth"


def test_without_torch_the_node_says_how_to_install_it_and_nothing_crashes(nuke_session, tmp_path, monkeypatch):
    nuke = nuke_session
    nuke.env["gui"] = True
    import copycat_nuke.nuke.nodes as nodes

    monkeypatch.setitem(nodes.DEPENDENCIES, "copycat_test_module_that_is_not_installed", "torch")
    node = copycat(nuke, tmp_path)  # onCreate runs: no exception

    status = node["status"].value()
    assert status.startswith(WARNING + "Nuke's Python") and "cannot import torch" in status
    assert "pip install --target DIR torch" in status and "COPYCAT_NUKE_SITE=DIR" in status
    node["startTraining"].execute()
    assert len(nuke.STATE.messages) == 1 and "cannot import torch" in nuke.STATE.messages[0]


class _FakePanel:
    made: ClassVar[list[_FakePanel]] = []

    def __init__(self) -> None:
        self.attached: list[tuple[str, Any]] = []
        _FakePanel.made.append(self)

    def attach_job(self, job: Any) -> None:
        self.attached.append(("job", job))

    def attach_directory(self, path: Any) -> None:
        self.attached.append(("directory", path))


def test_show_panel_docks_the_training_panel_on_the_run_or_the_running_job(nuke_session, tmp_path, monkeypatch):
    nuke = nuke_session
    nuke.env["gui"] = True
    monkeypatch.setitem(sys.modules, "copycat_nuke.ui", types.SimpleNamespace(TrainingPanel=_FakePanel))
    _FakePanel.made.clear()
    node = copycat(nuke, tmp_path)
    import nukescripts.panels as panels

    from copycat_nuke.nuke import jobs, panel

    node["showTrainingPanel"].execute()
    assert _FakePanel.made[-1].attached == [("directory", str(tmp_path / "run"))]
    assert panels.registered[-1] == (panel.WIDGET, "CopyCat Training", panel.PANEL_ID)
    assert panels.shown[-1].pane.name == "Properties.1"

    running = jobs.NodeJob("CopyCatML1", "training", gui=True)
    running.training = types.SimpleNamespace(stop=lambda: None, wait=lambda timeout=None: None)
    monkeypatch.setitem(jobs._JOBS, "CopyCatML1", running)
    node["showTrainingPanel"].execute()
    assert _FakePanel.made[-1].attached == [("job", running.training)]
    assert nuke.STATE.messages == []


def test_show_panel_without_the_panel_module_says_so(nuke_session, tmp_path, monkeypatch):
    nuke = nuke_session
    nuke.env["gui"] = True
    monkeypatch.setitem(sys.modules, "copycat_nuke.ui", None)  # import fails, as without Qt
    node = copycat(nuke, tmp_path)
    node["showTrainingPanel"].execute()
    assert len(nuke.STATE.messages) == 1 and "the training panel cannot load" in nuke.STATE.messages[0]


def test_the_knob_side_auto_batch_limit_is_the_trainers(nuke_session):
    from copycat_nuke import train
    from copycat_nuke.nuke import training

    assert training.AUTO_MAX_BATCH == train.AUTO_MAX_BATCH


def test_in_a_distributed_run_only_rank_0_renders_the_pairs_and_the_others_wait_for_them(
    nuke_session, tmp_path, monkeypatch
):
    nuke = nuke_session
    from copycat_nuke.nuke import jobs, training

    node = copycat(nuke, tmp_path)
    made: dict[str, Any] = {}

    def pairs() -> Any:
        request = training.read_request(node)
        jobs.start(node, "rendering", lambda context: made.update(config=training.render_pairs(context, request)))
        return made["config"]

    monkeypatch.setenv("COPYCAT_RANK", "0")
    assert pairs().frames == "1-2"
    rendered = list(nuke.STATE.executed)
    marker = tmp_path / "run" / training.FRAMES_READY
    assert json.loads(marker.read_text())["frames"] == "1-2"
    (tmp_path / "run" / "config.yaml").write_text("a run trains here now")  # a new rank 0 would take run_001

    monkeypatch.setenv("COPYCAT_RANK", "1")
    config = pairs()
    assert nuke.STATE.executed == rendered  # rank 1 rendered nothing: it trains on rank 0's frames
    assert (config.frames, config.input) == ("1-2", str(tmp_path / "run" / "frames" / "input.####.exr"))

    node["epochs"].setValue(3)  # not part of the pairs: rank 0's frames still serve
    assert pairs().frames == "1-2"
    node.input(0)["first"].setValue(2)  # the Input changed: rank 0's frames were rendered from another graph
    monkeypatch.setattr(training, "RANK_WAIT_SECONDS", 0.6)
    with pytest.raises(CopyCatError, match="rank 1 waited 1 s for rank 0 to render the training frames"):
        pairs()
