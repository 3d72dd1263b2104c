"""Farm renders, views, proxy and old scripts in a stand-in Nuke: a Write below our nodes computes their
missing frames first, chunks of one render on several machines never collide, a multi-view script renders
every view, and scripts saved with the old class names still open.

Models are Small networks with random weights; shots are real EXRs in tmp_path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nukestub.fixtures import REPO, STUB_DIR, make_model, nuke_session, write_shot

from copycat_nuke import imageio

__all__ = ["nuke_session"]  # the fixture, imported for pytest


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "random.cat")


def script(tmp_path: Path, model: Path, node_class: str = "InferenceML", frames: range = range(1, 7)) -> Path:
    """A comp as Nuke saves it: Read -> our node -> Write."""
    plate, _ = write_shot(tmp_path / "shot", frames, range(0))
    text = f"""Root {{
 inputs 0
 first_frame {frames[0]}
 last_frame {frames[-1]}
}}
Read {{
 inputs 0
 file {plate}
 first {frames[0]}
 last {frames[-1]}
 name Plate
}}
{node_class} {{
 modelFile {model}
 outputFile {tmp_path / "cache" / "clean.####.exr"}
 name Clean
}}
Write {{
 file {tmp_path / "comp" / "comp.####.exr"}
 channels all
 datatype "32 bit float"
 name Out
}}
"""
    path = tmp_path / "shot.nk"
    path.write_text(text)
    return path


def terminal_render(nk: Path, frames: str) -> subprocess.Popen[str]:
    """``nuke -F frames -x nk`` as a separate process (a farm machine)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STUB_DIR), str(REPO)])}
    command = [sys.executable, str(STUB_DIR / "terminal.py"), str(nk), frames]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_write_below_the_node_computes_its_missing_frames_first(nuke_session, tmp_path, model):
    nuke = nuke_session
    nuke.scriptOpen(str(script(tmp_path, model, frames=range(1, 4))))
    clean, out = nuke.toNode("Clean"), nuke.toNode("Out")
    nuke.frame(2)
    assert clean.error()  # nothing computed yet: in the Viewer it is an error, not the plate

    nuke.execute(out, 1, 3)  # nobody pressed Render

    for frame in (1, 2, 3):
        result = imageio.read_frame(tmp_path / "cache" / f"clean.{frame:04d}.exr")
        comp = imageio.read_frame(tmp_path / "comp" / f"comp.{frame:04d}.exr")
        np.testing.assert_array_equal(comp.pixels, result.pixels)
        plate = imageio.read_frame(tmp_path / "shot" / f"in.{frame:04d}.exr")
        assert not np.array_equal(comp.pixels[..., :3], plate.pixels[..., :3])  # the network's, not the plate
        nuke.frame(frame)
        assert not clean.error()
    assert [n.Class() for n in nuke.allNodes()] == ["Read", "InferenceML", "Write"]  # temporary Writes gone


def test_a_render_fails_loudly_when_a_frame_cannot_be_computed(nuke_session, tmp_path, model):
    nuke = nuke_session
    nuke.scriptOpen(str(script(tmp_path, model, frames=range(1, 3))))
    nuke.toNode("Clean")["modelFile"].setValue(str(tmp_path / "gone.cat"))
    with pytest.raises(RuntimeError, match=r"the Model File .*gone.cat does not exist"):
        nuke.execute(nuke.toNode("Out"), 1, 2)
    assert not (tmp_path / "comp").exists() or not list((tmp_path / "comp").glob("*.exr"))


def test_farm_chunks_with_overlapping_ranges_compute_each_frame_and_never_collide(tmp_path, model):
    nk = script(tmp_path, model)
    chunks = [terminal_render(nk, "1-4"), terminal_render(nk, "3-6")]  # two machines, frames 3-4 in both
    for chunk in chunks:
        _, stderr = chunk.communicate(timeout=240)
        assert chunk.returncode == 0, stderr

    cache = tmp_path / "cache"
    assert sorted(p.name for p in cache.iterdir()) == [".copycat"] + [f"clean.{f:04d}.exr" for f in range(1, 7)]
    assert sorted(p.name for p in (cache / ".copycat").iterdir()) == [f"clean.{f:04d}.exr.json" for f in range(1, 7)]
    assert not list(tmp_path.rglob("*.tmp*")) and not list(cache.glob(".copycat-input-*"))  # nothing left over
    for frame in range(1, 7):
        comp = imageio.read_frame(tmp_path / "comp" / f"comp.{frame:04d}.exr").pixels
        np.testing.assert_array_equal(comp, imageio.read_frame(cache / f"clean.{frame:04d}.exr").pixels)

    again = terminal_render(nk, "1-6")  # a rerender finds every frame up to date: nothing recomputed
    before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.exr")}
    _, stderr = again.communicate(timeout=240)
    assert again.returncode == 0, stderr
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.exr")} == before


def test_a_terminal_render_with_a_missing_model_exits_with_the_error(tmp_path, model):
    nk = script(tmp_path, tmp_path / "missing.cat", frames=range(1, 2))
    chunk = terminal_render(nk, "1-1")
    _, stderr = chunk.communicate(timeout=240)
    assert chunk.returncode == 1 and "missing.cat does not exist" in stderr


def test_every_view_of_a_stereo_script_is_computed_into_its_own_files(nuke_session, tmp_path, model):
    from copycat_nuke.infer import apply_model, load_model

    nuke = nuke_session
    nuke.STATE.views = ["left", "right"]
    for view, shift in (("left", 0.0), ("right", 0.25)):
        plate, _ = write_shot(tmp_path / view, range(1, 2), range(0))
        image = imageio.read_frame(tmp_path / view / "in.0001.exr")
        imageio.write_frame(tmp_path / "stereo" / f"in.{view}.0001.exr", image.pixels + shift, list(image.channels))
    read = nuke.nodes.Read(file=str(tmp_path / "stereo" / "in.%V.####.exr"), first=1, last=1)
    node = nuke.nodes.InferenceML(modelFile=str(model), outputFile=str(tmp_path / "out" / "clean.####.exr"))
    node.setInput(0, read)

    with pytest.raises(Exception, match="needs %V"):
        node["render"].execute()  # a terminal session re-raises after reporting

    node["outputFile"].setValue(str(tmp_path / "out" / "clean.%V.####.exr"))
    node["render"].execute()
    loaded = load_model(model, "cpu")
    for view in ("left", "right"):
        plate = imageio.read_frame(tmp_path / "stereo" / f"in.{view}.0001.exr", "rgb").pixels
        result = imageio.read_frame(tmp_path / "out" / f"clean.{view}.0001.exr", "rgb").pixels
        np.testing.assert_allclose(result, apply_model(loaded, plate, tile=0), atol=1e-4)
        nuke.STATE.view = view
        assert not node.error()


def test_proxy_mode_is_refused_for_computing_with_a_clear_message(nuke_session, tmp_path, model):
    nuke = nuke_session
    nuke.env["gui"] = True
    plate, _ = write_shot(tmp_path / "shot", range(1, 2), range(0))
    node = nuke.nodes.InferenceML(modelFile=str(model), outputFile=str(tmp_path / "out" / "r.####.exr"))
    node.setInput(0, nuke.nodes.Read(file=plate, first=1, last=1))
    nuke.root()["proxy"].setValue(True)
    node["render"].execute()
    (message,) = nuke.STATE.messages
    assert "proxy mode is on: InferenceML1 computes its results at full resolution only" in message
    assert not (tmp_path / "out").exists()


def test_scripts_saved_with_the_old_class_names_still_open_and_render(nuke_session, tmp_path, model, monkeypatch):
    nuke = nuke_session
    monkeypatch.delitem(nuke.BUILTIN_KNOBS, "Inference")  # a Nuke without its own Inference node
    old = script(tmp_path, model, node_class="Inference", frames=range(1, 2))
    nuke.scriptOpen(str(old))  # this Nuke has no Inference of its own: the legacy gizmo opens it
    clean = nuke.toNode("Clean")
    assert clean.Class() == "Inference" and clean["copycatNode"].value() == "Inference"
    nuke.execute(nuke.toNode("Out"), 1, 1)
    assert (tmp_path / "comp" / "comp.0001.exr").is_file()


def test_migrate_script_renames_our_old_nodes_for_nukex_and_leaves_foundrys_alone(nuke_session, tmp_path, model):
    nuke = nuke_session
    import copycat_nuke.nuke
    from copycat_nuke.errors import CopyCatError

    old = script(tmp_path, model, node_class="Inference", frames=range(1, 2))
    text = old.read_text().replace("name Clean\n", "name Clean\n tileOverlap 16\n")
    text += "Inference {\n modelFile /models/foundry.cat\n name TheirInference\n}\n"  # NukeX's own
    old.write_text(text)
    new = tmp_path / "shot_v2.nk"

    assert copycat_nuke.nuke.migrate_script(old, new) == ["Clean"]
    migrated = new.read_text()
    assert "InferenceML {\n modelFile" in migrated and "Inference {\n modelFile /models/foundry.cat" in migrated
    with pytest.raises(CopyCatError, match="already exists: name a new file"):
        copycat_nuke.nuke.migrate_script(old, old)
    with pytest.raises(RuntimeError, match="no knob named 'outputFile'"):
        nuke.scriptOpen(str(old))  # a NukeX: its own Inference wins the old name and refuses our knobs
    for node in nuke.allNodes():
        nuke.delete(node)
    nuke.scriptOpen(str(new))
    assert nuke.toNode("Clean").Class() == "InferenceML" and nuke.toNode("TheirInference").Class() == "Inference"
