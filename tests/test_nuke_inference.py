"""The Inference, Upscale and Deblur nodes in a stand-in Nuke: render, per-frame results that are errors when
missing or stale, farm renders, views, proxy, old knobs and old class names.

Models here are Small networks with random weights (no training needed); shots are real EXRs in tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nukestub.fixtures import make_model, nuke_session, wait_for, write_shot

from copycat_nuke import imageio

__all__ = ["nuke_session"]  # the fixture, imported for pytest

WARNING = "\u26a0 "


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "random.cat")


def shot(nuke: Any, tmp_path: Path, frames: range = range(1, 4)) -> Any:
    plate, _ = write_shot(tmp_path / "shot", frames, range(0))
    return nuke.nodes.Read(file=plate, first=frames[0], last=frames[-1])


def test_gui_render_runs_off_the_main_thread_and_the_node_shows_the_result(nuke_session, tmp_path, model):
    nuke = nuke_session
    nuke.env["gui"] = True
    read = shot(nuke, tmp_path)
    node = nuke.nodes.InferenceML(modelFile=str(model), outputFile=str(tmp_path / "out" / "result.%04d.exr"))
    node.setInput(0, read)

    nuke.frame(2)
    assert node.error()  # nothing rendered yet: an error, not the input
    node["render"].execute()
    assert node["status"].value() == "Rendering 3 frame(s)..."
    wait_for(nuke, node)

    assert nuke.STATE.violations == [] and nuke.STATE.messages == []
    assert sorted(p.name for p in (tmp_path / "out").glob("*.exr")) == [
        "result.0001.exr",
        "result.0002.exr",
        "result.0003.exr",
    ]
    records = sorted(p.name for p in (tmp_path / "out" / ".copycat").iterdir())
    assert records == ["result.0001.exr.json", "result.0002.exr.json", "result.0003.exr.json"]
    assert json.loads((tmp_path / "out" / ".copycat" / records[0]).read_text())["model"] == str(model)
    assert node["status"].value() == f"Up to date: frames 1-3 in {tmp_path / 'out' / 'result.%04d.exr'}"
    for frame in (1, 2, 3):
        nuke.frame(frame)
        assert not node.error()
    assert (node["resultFirst"].value(), node["resultLast"].value()) == (1, 3)
    inside = node.node("Result")
    assert inside["file"].getEvaluatedValue() == str(tmp_path / "out" / "result.%04d.exr")
    assert (inside["first"].value(), inside["last"].value()) == (1, 3)


def test_frame_range_and_default_output_beside_the_script(nuke_session, tmp_path, model):
    nuke = nuke_session
    nuke.root()["name"].setValue(str(tmp_path / "shots" / "comp.nk"))
    node = nuke.nodes.InferenceML(modelFile=str(model), frameRange="2", tileSize=48, tileOverlap=8)
    node.setInput(0, shot(nuke, tmp_path))

    node["render"].execute()

    folder = tmp_path / "shots" / "copycat" / "InferenceML1"
    assert node["outputFile"].value() == str(folder / "InferenceML1.####.exr")
    assert sorted(p.name for p in folder.glob("*.exr")) == ["InferenceML1.0002.exr"]
    assert imageio.read_frame(folder / "InferenceML1.0002.exr").channels == ("R", "G", "B", "A")

    nuke.user_set(node["frameRange"], "1-3")
    assert node["status"].value() == WARNING + "Stale: 2 frame(s) of the Frame Range have no result yet: press Render."
    nuke.user_set(node["frameRange"], "2")
    assert node["status"].value().startswith("Up to date: frames 2 in")
    nuke.user_set(node["optimize"], True)
    assert node["status"].value() == WARNING + "Stale: Optimize changed since it was rendered: press Render."
    nuke.frame(2)
    assert node.error()


def test_a_temporal_model_sees_the_neighbouring_frames_nuke_renders_for_it(nuke_session, tmp_path):
    from copycat_nuke.infer import apply_model, load_model

    nuke = nuke_session
    model = make_model(tmp_path / "temporal.cat", temporal=1)
    out = tmp_path / "out"
    node = nuke.nodes.InferenceML(modelFile=str(model), frameRange="2", outputFile=str(out / "result.####.exr"))
    node.setInput(0, shot(nuke, tmp_path))

    node["render"].execute()

    assert nuke.STATE.violations == [] and nuke.STATE.messages == []
    assert sorted(p.name for p in out.glob("*.exr")) == ["result.0002.exr"]  # neighbours rendered, not output
    loaded = load_model(model, "cpu")
    plate = {n: imageio.read_frame(tmp_path / "shot" / f"in.{n:04d}.exr", "rgb").pixels for n in (1, 2, 3)}
    result = imageio.read_frame(out / "result.0002.exr", "rgb").pixels
    seen = apply_model(loaded, plate[2], neighbours=[plate[1], plate[3]], tile=0)
    alone = apply_model(loaded, plate[2], neighbours=[plate[2], plate[2]], tile=0)
    assert abs(result - seen).max() < 0.01 < abs(result - alone).max()


def test_a_reopened_script_shows_the_results_again(nuke_session, tmp_path, model):
    nuke = nuke_session
    read = shot(nuke, tmp_path)
    values = {"modelFile": str(model), "outputFile": str(tmp_path / "out" / "r.####.exr")}
    node = nuke.nodes.InferenceML(**values)
    node.setInput(0, read)
    node["render"].execute()
    # a reopened script: the same knobs on a new node (its internal nodes come from the .gizmo)
    nuke.delete(node)
    again = nuke.nodes.InferenceML(**values)
    again.setInput(0, read)
    nuke.open_panel(again)
    assert again["status"].value() == f"Up to date: frames 1-3 in {values['outputFile']}"
    nuke.frame(3)
    assert not again.error() and again.node("Result")["file"].getEvaluatedValue() == values["outputFile"]


def test_a_missing_or_stale_frame_is_an_error_that_says_why_and_what_to_press(nuke_session, tmp_path, model):
    nuke = nuke_session
    read = shot(nuke, tmp_path)
    node = nuke.nodes.InferenceML(modelFile=str(model), outputFile=str(tmp_path / "out" / "r.####.exr"))
    node.setInput(0, read)
    nuke.frame(2)
    assert "InferenceML1 has no result for frame 2: press Render" in nuke._error_of(node)

    node["render"].execute()
    assert nuke._error_of(node) is None
    read["file"].setValue(read["file"].value().replace("in.", "in."))  # same value: not stale
    assert nuke._error_of(node) is None
    grade = nuke.nodes.Dot()  # the input graph changes
    grade.setInput(0, read)
    node.setInput(0, grade)
    assert "the result for frame 2 is stale: the input changed since it was rendered: press Render" in (
        nuke._error_of(node)
    )
    node.setInput(0, read)
    make_model(model.parent / "other.cat", seed=1)
    (model.parent / "other.cat").replace(model)  # the model retrained in place
    assert "the model changed" in nuke._error_of(node)
    (tmp_path / "out" / "r.0002.exr").unlink()
    assert "has no result for frame 2" in nuke._error_of(node)


def test_choosing_a_model_fills_the_channels_from_its_manifest(nuke_session, tmp_path, model):
    nuke = nuke_session
    node = nuke.nodes.InferenceML()
    nuke.user_set(node["modelFile"], str(model))
    assert (node["channelsIn"].value(), node["channelsOut"].value()) == ("R,G,B", "R,G,B")
    assert not node["channelsIn"].enabled()  # read-only: they come from the .cat
    assert node["status"].value() == "Model random.cat (model): press Render."

    nuke.user_set(node["modelFile"], str(tmp_path / "gone.cat"))
    assert node["channelsIn"].value() == ""
    assert (
        node["status"].value() == WARNING + f"the Model File {tmp_path / 'gone.cat'} does not exist: choose a .cat file"
    )


@pytest.mark.parametrize(
    ("knobs", "optimize"),
    [({"halfPrecision": True}, True), ({"inferencePrecision": "Half"}, True), ({"inferencePrecision": "Full"}, False)],
)
def test_old_scripts_half_precision_knobs_map_onto_optimize(nuke_session, knobs, optimize):
    nuke = nuke_session
    # a script written for Nuke's own Inference sets these knobs before onCreate runs
    node = nuke.nodes.InferenceML(optimize=not optimize, **knobs)
    assert node["optimize"].value() is optimize
    assert node["halfPrecision"].value() is False and node["inferencePrecision"].value() == ""


def test_old_knob_names_set_later_also_reach_optimize(nuke_session):
    nuke = nuke_session
    node = nuke.nodes.DeblurML()
    nuke.user_set(node["inferencePrecision"], "fp16")
    assert node["optimize"].value() is True
    nuke.user_set(node["halfPrecision"], False)
    nuke.user_set(node["inferencePrecision"], "float")
    assert node["optimize"].value() is False


@pytest.mark.parametrize("kind", ["Upscale", "Deblur"])
def test_upscale_and_deblur_say_their_network_is_not_installed_until_it_is(
    nuke_session, tmp_path, monkeypatch, model, kind
):
    nuke = nuke_session
    nuke.env["gui"] = True
    from copycat_nuke.nuke import nodes

    monkeypatch.setattr(nodes, "shipped_model", lambda name: tmp_path / "pretrained" / f"{name}.cat")
    node = getattr(nuke.nodes, kind)(outputFile=str(tmp_path / "out" / "x.####.exr"))
    node.setInput(0, shot(nuke, tmp_path, range(1, 2)))
    missing = f"The shipped {kind} network is not installed ({tmp_path / 'pretrained' / kind.lower()}.cat is missing)"
    assert node["status"].value().startswith(WARNING + missing)
    assert "set Model File to a .cat file" in node["status"].value()

    node["render"].execute()
    assert len(nuke.STATE.messages) == 1 and missing in nuke.STATE.messages[0]

    monkeypatch.setattr(nodes, "shipped_model", lambda name: model)  # the network arrives
    node["render"].execute()
    wait_for(nuke, node)
    assert (tmp_path / "out" / "x.0001.exr").is_file() and node["status"].value().startswith("Up to date")
    assert json.loads((tmp_path / "out" / ".copycat" / "x.0001.exr.json").read_text())["model"] == str(model)


@pytest.mark.parametrize(
    ("knobs", "connect", "fix"),
    [
        ({}, True, "Model File is empty: choose a .cat file"),
        ({"modelFile": "MODEL"}, False, "nothing is connected to the Input input of InferenceML1"),
        ({"modelFile": "MODEL", "outputFile": "/tmp/result.exr"}, True, "needs a frame number, e.g. result.####.exr"),
        ({"modelFile": "MODEL", "tileSize": -1}, True, "Tile Size and Overlap cannot be negative"),
    ],
    ids=["no-model", "no-input", "no-frame-number", "negative-tile"],
)
def test_render_problems_become_a_message_with_the_fix(nuke_session, tmp_path, model, knobs, connect, fix):
    nuke = nuke_session
    nuke.env["gui"] = True
    knobs = {key: str(model) if value == "MODEL" else value for key, value in knobs.items()}
    node = nuke.nodes.InferenceML(**knobs)
    if connect:
        node.setInput(0, shot(nuke, tmp_path, range(1, 2)))
    node["render"].execute()
    assert len(nuke.STATE.messages) == 1 and fix in nuke.STATE.messages[0], nuke.STATE.messages
    assert node["status"].value().startswith(WARNING)


def test_stop_pressed_while_rendering_starts_cleans_up_and_says_so(nuke_session, tmp_path, model):
    nuke = nuke_session
    nuke.env["gui"] = True
    node = nuke.nodes.InferenceML(modelFile=str(model), outputFile=str(tmp_path / "out" / "r.####.exr"))
    node.setInput(0, shot(nuke, tmp_path, range(1, 4)))
    node["render"].execute()
    node["stopRender"].execute()  # the worker is waiting for the main thread to create its Write
    assert node["status"].value() == "Stopping rendering..."
    wait_for(nuke, node)
    assert node["status"].value() == "Stopped rendering."
    assert sorted(n.Class() for n in nuke.allNodes()) == ["InferenceML", "Read"]  # the temporary Write is gone
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    nuke.frame(1)
    assert node.error()


def test_cancelling_a_terminal_render_stops_after_the_current_frame(nuke_session, tmp_path, model, monkeypatch):
    nuke = nuke_session
    from copycat_nuke.nuke import jobs

    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL", 0.0)  # every progress message reaches the ProgressTask
    nuke.STATE.cancel_when = lambda task: any(m.startswith("rendering: frame") for m in task.messages)
    node = nuke.nodes.InferenceML(modelFile=str(model), outputFile=str(tmp_path / "out" / "r.####.exr"))
    node.setInput(0, shot(nuke, tmp_path, range(1, 4)))

    node["render"].execute()

    assert node["status"].value() == "Stopped rendering."
    # cancelled while frame 1 was reported; frame 2 was already on its way to disk; frame 3 is not written
    assert sorted(p.name for p in (tmp_path / "out").glob("r.*.exr")) == ["r.0001.exr", "r.0002.exr"]
    errors = {}
    for frame in (1, 2, 3):
        nuke.frame(frame)
        errors[frame] = node.error()
    assert errors == {1: False, 2: False, 3: True}  # frame 2 was complete on disk when the stop was seen
    assert not list((tmp_path / "out").glob(".copycat-input-*"))  # the rendered input is cleaned up
