"""Create Native Inference in a stand-in Nuke 14: TorchScript → CatFileCreator → Nuke's own Inference node.

Nuke's built-in Inference wins over a gizmo of the same name (the stand-in does the same), which is why our
classes are CopyCatML, InferenceML... Models are Small networks with random weights.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nukestub.fixtures import make_model, nuke_session, write_shot

__all__ = ["nuke_session"]  # the fixture, imported for pytest

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


@pytest.fixture
def nuke14(nuke_session: Any, tmp_path: Path) -> Any:
    """A Nuke 14 session."""
    nuke = nuke_session
    nuke.NUKE_VERSION_MAJOR = 14
    return nuke


def foundry_inference(nuke: Any) -> list[Any]:
    return [node for node in nuke.allNodes("Inference") if node.knob("copycatNode") is None]


def check_native(nuke: Any, node: Any, read: Any, model: Path) -> Any:
    """The button made exactly one Foundry Inference, fed by ``read``, reading a .cat made from a TorchScript
    file that loads and matches the model; returns the TorchScript module."""
    from copycat_nuke.infer import apply_model, load_model

    (inference,) = foundry_inference(nuke)
    assert inference.input(0) is read and inference.xpos() == node.xpos() + 120
    assert nuke.allNodes("CatFileCreator") == [] and nuke.STATE.messages == []
    cat = Path(inference["modelFile"].value())
    assert cat == model.with_name(model.stem + "_nuke.cat") and model.is_file()
    with zipfile.ZipFile(cat) as archive:
        knobs = json.loads(archive.read("knobs.json"))
        scripted = torch.jit.load(model.with_name(model.stem + "_nuke.pt"))
        assert archive.read("model.pt") == model.with_name(model.stem + "_nuke.pt").read_bytes()
    assert knobs["channelsIn"] == "rgba.red, rgba.green, rgba.blue" and knobs["outputScale"] == 1
    image = np.random.default_rng(3).random((20, 24, 3), dtype=np.float32)
    with torch.no_grad():
        result = scripted(torch.from_numpy(image.transpose(2, 0, 1).copy())[None])[0].permute(1, 2, 0).numpy()
    expected = apply_model(load_model(model, "cpu"), image, tile=0)
    assert np.abs(result - expected).max() <= 1e-4
    assert "Created Inference" in node["status"].value()
    return scripted


def test_on_copycat_it_makes_nukes_inference_node_reading_a_cat_of_the_model(nuke14, tmp_path):
    nuke = nuke14
    (tmp_path / "run").mkdir()
    model = make_model(tmp_path / "run" / "model.cat")
    plate, _ = write_shot(tmp_path / "shot", range(1, 2), range(0))
    read = nuke.nodes.Read(file=plate, first=1, last=1)
    node = nuke.nodes.CopyCatML(dataDirectory=str(tmp_path / "run"))
    node.setInput(0, read)

    from copycat_nuke.nuke import create_native_inference

    create_native_inference(node)
    check_native(nuke, node, read, model)


def test_on_inference_it_uses_the_model_file_and_never_overwrites_earlier_files(nuke14, tmp_path):
    nuke = nuke14
    (tmp_path / "models").mkdir()
    model = make_model(tmp_path / "models" / "clean.cat")
    mine = tmp_path / "models" / "clean_nuke.pt"
    mine.write_bytes(b"the artist's own file")
    read = nuke.nodes.Read(file=str(tmp_path / "in.####.exr"), first=1, last=1)
    node = nuke.nodes.InferenceML(modelFile=str(model))
    node.setInput(0, read)

    from copycat_nuke.nuke import native

    native.create_native_inference(node)

    assert mine.read_bytes() == b"the artist's own file"
    (inference,) = foundry_inference(nuke)
    assert inference["modelFile"].value() == str(tmp_path / "models" / "clean_nuke_2.cat")
    assert torch.jit.load(tmp_path / "models" / "clean_nuke_2.pt") is not None
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "clean.cat",
        "clean_nuke.pt",
        "clean_nuke_2.cat",
        "clean_nuke_2.pt",
    ]


def test_it_refuses_nuke_13_saying_what_to_do_instead(nuke_session, tmp_path):
    nuke = nuke_session
    assert nuke.NUKE_VERSION_MAJOR == 13
    model = make_model(tmp_path / "model.cat")
    node = nuke.nodes.InferenceML(modelFile=str(model))

    from copycat_nuke.nuke import create_native_inference

    with pytest.raises(Exception, match="needs Nuke 14 or newer"):
        create_native_inference(node)  # a terminal session re-raises after reporting
    assert "copycat export model.cat --torchscript" in node["status"].value()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.cat"]


def test_it_refuses_a_temporal_model_before_writing_anything(nuke14, tmp_path):
    nuke = nuke14
    nuke.env["gui"] = True
    model = make_model(tmp_path / "temporal.cat", temporal=1)
    node = nuke.nodes.InferenceML(modelFile=str(model))

    from copycat_nuke.nuke import create_native_inference

    create_native_inference(node)
    (message,) = nuke.STATE.messages
    assert "temporal model" in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["temporal.cat"]
    assert foundry_inference(nuke) == [] and nuke.allNodes("CatFileCreator") == []


def test_a_torchscript_file_catfilecreator_refuses_leaves_no_node_behind(nuke14, tmp_path, monkeypatch):
    nuke = nuke14
    nuke.env["gui"] = True
    model = make_model(tmp_path / "model.cat")
    node = nuke.nodes.InferenceML(modelFile=str(model))

    from copycat_nuke.nuke import native

    monkeypatch.setattr(native, "_export_torchscript", lambda model, out: out.write_bytes(b"not TorchScript"))
    native.create_native_inference(node)
    (message,) = nuke.STATE.messages
    assert "CatFileCreator could not make" in message and "model_nuke.cat" in message
    assert nuke.allNodes("CatFileCreator") == [] and foundry_inference(nuke) == []
    assert not (tmp_path / "model_nuke.cat").exists()


def test_our_gizmo_under_nukes_class_name_is_not_taken_for_nukes_inference(nuke_session, tmp_path, monkeypatch):
    nuke = nuke_session
    nuke.env["gui"] = True
    nuke.NUKE_VERSION_MAJOR = 14
    monkeypatch.delitem(nuke.BUILTIN_KNOBS, "Inference")  # a Nuke where our legacy gizmo wins the old name
    model = make_model(tmp_path / "model.cat")
    node = nuke.nodes.InferenceML(modelFile=str(model))

    from copycat_nuke.nuke import native

    make_cat_file = native.make_cat_file  # as if the button had made no Inference node: we make one
    monkeypatch.setattr(native, "make_cat_file", lambda *args: (make_cat_file(*args), None)[1])
    native.create_native_inference(node)
    (message,) = nuke.STATE.messages
    assert "take copycat_nuke's gizmos/legacy folder off the plugin path" in message
