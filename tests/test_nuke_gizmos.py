"""The gizmos, init.py and menu.py, read as Nuke reads them: syntax, knobs, buttons, menus, start-up cost.

The gizmo files are parsed with ``nukescript.nkscript``, a reader of Nuke's Tcl-based script syntax; the
Python the gizmos run is compiled and checked against the functions ``copycat_nuke.nuke`` really has, and
the knob names the Python reads are checked against the knobs the gizmos really define.
"""

from __future__ import annotations

import ast
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import OpenImageIO as oiio
import pytest
from nukestub import nkscript
from nukestub.fixtures import REPO, STUB_DIR, nuke_session

__all__ = ["nuke_session"]  # the fixture, imported for pytest

KINDS = ("CopyCat", "Inference", "Upscale", "Deblur")
ADAPTER = REPO / "copycat_nuke" / "nuke"


def gizmo(kind: str) -> nkscript.NodeDef:
    return nkscript.gizmo(REPO / "gizmos" / f"{kind}ML.gizmo")


def python_of(node: nkscript.NodeDef) -> dict[str, str]:
    """Every piece of Python a gizmo runs: buttons, onCreate, knobChanged."""
    scripts = {knob.name: knob.text or "" for knob in node.user_knobs if knob.type_id == 22}
    scripts.update({name: node.knobs[name] for name in ("onCreate", "knobChanged") if name in node.knobs})
    return scripts


# ---------------------------------------------------------------------------------------------- parser
def test_parser_reads_inputs_from_the_stack_top_first_as_nuke_does():
    script = nkscript.parse_script(
        "Read {\n inputs 0\n name A\n}\nset N1 [stack 0]\nRead {\n inputs 0\n name B\n}\n"
        "push $N1\nMerge2 {\n inputs 2\n name M\n}\nGrade {\n inputs 1+1\n name G\n}\n"
    )
    merge = script.nodes[2]
    assert [node.name for node in merge.inputs] == ["A", "B"]  # the top of the stack (A, pushed last) is input 0
    assert script.nodes[3].cls == "Grade" and len(script.nodes[3].inputs) == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Gizmo {\n name X\n", "never closed (unbalanced braces)"),
        ("Gizmo {\n name X\n}\n}\n", "unmatched '}'"),
        ('Gizmo {\n addUserKnob {22 b T "print([1])"}\n}\nend_group\n', "unescaped '['"),
        ('Gizmo {\n help "no end\n}\n', "is never closed"),
        ('Gizmo {\n onCreate "x = [1]"\n}\nend_group\n', "unescaped '[' in the Python of onCreate"),
        ("Gizmo {\n name X\n}\n", "never closed with end_group"),
        ("Gizmo {\n addUserKnob {3 a}\n addUserKnob {3 a}\n}\nend_group\n", "added twice"),
    ],
)
def test_parser_refuses_what_nuke_would_misread(text, problem):
    with pytest.raises(nkscript.NkSyntaxError, match=re.escape(problem)):
        nkscript.parse_script(text)


# ---------------------------------------------------------------------------------------------- gizmos
@pytest.fixture
def adapter(nuke_session):
    import copycat_nuke.nuke

    return copycat_nuke.nuke


@pytest.mark.parametrize("kind", KINDS)
def test_gizmo_is_one_group_with_the_knobs_and_nodes_the_python_uses(kind, adapter):
    knobs = adapter.knobs
    node = gizmo(kind)
    defined = {knob.name: knob for knob in node.user_knobs}
    missing = [name for name in knobs.KNOBS[kind] if name not in defined]
    assert not missing, f"{kind}.gizmo lacks knobs the Python reads: {missing}"
    assert node.knobs[knobs.KIND] == kind
    assert all(defined[name].type_id == 22 for name in knobs.KNOBS[kind] if name in _BUTTONS)
    assert defined["status"].type_id == 26
    internal = {child.name: child for child in node.children}
    assert set(knobs.INTERNAL_NODES[kind]) <= set(internal)
    assert "Output1" in internal and internal["Output1"].inputs[0] is not None
    # every named user knob is one the Python knows about (no dead knobs), tabs and dividers aside
    unknown = [
        k.name for k in node.user_knobs if k.name and k.type_id not in (20, 26) and k.name not in knobs.KNOBS[kind]
    ]
    assert not unknown, f"{kind}.gizmo has knobs copycat_nuke.nuke.knobs.KNOBS does not list: {unknown}"
    # defaults are given only for knobs that exist, and enumerations' defaults are among their choices
    for name, value in node.knobs.items():
        if name in defined and defined[name].type_id == 4:
            assert value in defined[name].items


_BUTTONS = {
    "startTraining",
    "resumeTraining",
    "stopTraining",
    "createInference",
    "showTrainingPanel",
    "exportFarmJob",
    "render",
    "stopRender",
    "createNativeInference",
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_button_and_callback_is_one_call_to_a_function_that_exists(kind, adapter):
    for where, script in python_of(gizmo(kind)).items():
        tree = ast.parse(script, filename=f"{kind}.{where}")
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
        ours = [
            call
            for call in calls
            if isinstance(call.func, ast.Attribute) and ast.unparse(call.func.value) == "copycat_nuke.nuke"
        ]
        assert len(ours) == 1, f"{kind}.{where} must make one call into copycat_nuke.nuke: {script!r}"
        name = ours[0].func.attr
        assert callable(getattr(adapter, name, None)), (
            f"{kind}.{where} calls copycat_nuke.nuke.{name}, which does not exist"
        )
        assert name in adapter.__all__
        assert all(ast.unparse(arg) in ("nuke.thisNode()", "nuke.thisKnob()") for arg in ours[0].args)


@pytest.mark.parametrize("kind", KINDS)
def test_expressions_inside_the_gizmo_refer_to_knobs_that_exist(kind):
    node = gizmo(kind)
    defined = {knob.name for knob in node.user_knobs}
    for child in node.children:
        for value in child.knobs.values():
            for reference in _parent_references(value):
                assert reference in defined, f"{kind}.gizmo: {child.name} refers to parent.{reference}"


def _parent_references(value: str) -> list[str]:
    return re.findall(r"parent\.(\w+)", value)


#: Knobs of Nuke's own nodes the adapter uses: a Read's reload button, root's name (the script's path) and
#: proxy switch, an Input node's number.
NUKE_KNOBS = {"reload", "name", "proxy", "number"}


def _knob_names_read_by_the_adapter() -> set[str]:
    """Knob names written as string literals in copycat_nuke/nuke: ``knobs.text(node, "x")``-style helpers,
    ``node.knob("x")`` and ``node["x"]`` (dictionaries of other data aside)."""
    helpers = {"knob", "text", "path", "integer", "boolean", "set_value", "set_enabled", "_positive", "_set_knob"}
    names: set[str] = set()
    for source in ADAPTER.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            literal = None
            if isinstance(node, ast.Call):
                func = node.func
                helper = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                if helper in helpers and len(node.args) >= 2:
                    literal = node.args[1]
                elif helper == "knob" and isinstance(func, ast.Attribute) and len(node.args) == 1:
                    literal = node.args[0]  # node.knob("x")
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call):
                literal = node.slice  # nuke.root()["name"], nuke.toNode(...)["x"]
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                names.add(literal.value)
    return names


def test_every_knob_the_python_reads_exists_in_the_gizmos(adapter):
    read = _knob_names_read_by_the_adapter()
    declared = {name for names in adapter.knobs.KNOBS.values() for name in names}
    assert not read - NUKE_KNOBS - declared, f"not in knobs.KNOBS: {sorted(read - NUKE_KNOBS - declared)}"
    assert {"dataDirectory", "modelFile", "resultFirst", "totalSteps", "status", "reload"} <= read  # found
    defined = {knob.name for kind in KINDS for knob in gizmo(kind).user_knobs} | NUKE_KNOBS
    assert not read - defined, f"knobs read by copycat_nuke.nuke that no gizmo defines: {sorted(read - defined)}"


def test_gizmos_from_the_plugin_path_are_built_with_typed_knobs(nuke_session):
    nuke = nuke_session
    node = nuke.nodes.CopyCatML()
    assert node.Class() == "CopyCatML" and node.name() == "CopyCatML1" and node.maxInputs() == 3
    assert node["epochs"].value() == 10000 and node["cropSize"].value() == 256
    assert node["checkpointInterval"].value() == 1000 and node["imageInterval"].value() == 100
    assert node["modelSize"].value() == "Medium" and node["modelSize"].values() == ["Small", "Medium", "Large"]
    assert node["initialWeights"].values() == ["None", "Checkpoint", "Deblur", "Upscale"]
    assert node["useGPUIfAvailable"].value() is True and isinstance(node["startTraining"], nuke.PyScript_Knob)
    assert node["useMultiResolutionTraining"].value() is True and node["temporalFrames"].value() == 0
    with pytest.raises(NameError):
        node["noSuchKnob"]


# -------------------------------------------------------------------------------------- init and menu
def test_init_adds_the_gizmos_and_the_dependency_folder_and_makes_no_ui(nuke_session, tmp_path, monkeypatch):
    nuke = nuke_session
    assert str(REPO / "gizmos") in nuke.pluginPath()
    monkeypatch.setenv("COPYCAT_NUKE_SITE", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    runpy.run_path(str(REPO / "init.py"))
    assert str(tmp_path / "a") in sys.path and str(tmp_path / "b") in sys.path
    assert nuke.STATE.menus == {}  # init.py runs in terminal sessions too: no UI


def test_menu_adds_the_copycat_ml_toolbar_with_icons_whose_commands_create_our_nodes(nuke_session):
    nuke = nuke_session
    nuke.env["gui"] = True
    runpy.run_path(str(REPO / "menu.py"))
    import nukescripts.panels as panels

    menu = nuke.menu("Nodes").findItem("CopyCat ML")
    assert menu is not None and Path(menu.icon()).is_file()
    assert [item.name() for item in menu.items()] == list(KINDS)
    for item in menu.items():
        icon = oiio.ImageInput.open(item.icon())
        assert icon is not None and (icon.spec().width, icon.spec().height, icon.spec().nchannels) == (24, 24, 4)
        icon.close()
        item.invoke()
    assert [(n.Class(), n["copycatNode"].value()) for n in nuke.allNodes()] == [(k + "ML", k) for k in KINDS]
    connected = [n.Class() for n in nuke.allNodes()[1:] if n.input(0) is not None]
    assert connected == ["InferenceML", "UpscaleML", "DeblurML"]
    assert panels.registered and panels.registered[-1][1] == "CopyCat Training"
    assert nuke.STATE.messages == []


def test_nukes_own_nodes_of_the_old_names_never_stand_in_for_ours(nuke_session, monkeypatch):
    nuke = nuke_session
    import copycat_nuke.nuke

    for foundry in ("CopyCat", "Inference", "Upscale", "Deblur"):  # NukeX 13+ ships these classes
        monkeypatch.setitem(nuke.BUILTIN_KNOBS, foundry, {"modelFile": nuke.File_Knob})
        monkeypatch.setitem(nuke._INPUTS, foundry, 1)
    made = [copycat_nuke.nuke.create_node(kind) for kind in KINDS]
    assert [(n.Class(), n["copycatNode"].value()) for n in made] == [(k + "ML", k) for k in KINDS]
    assert nuke.STATE.messages == []


def test_creating_a_node_reports_a_missing_gizmo_folder_or_another_plugins_node_of_our_name(nuke_session, monkeypatch):
    nuke = nuke_session
    import copycat_nuke.nuke

    nuke.STATE.plugin_paths.clear()
    monkeypatch.setitem(nuke.BUILTIN_KNOBS, "InferenceML", {})  # someone else's InferenceML, without our knobs
    monkeypatch.setitem(nuke._INPUTS, "InferenceML", 1)
    assert copycat_nuke.nuke.create_node("Inference") is None
    assert "another plugin on NUKE_PATH has a gizmo called InferenceML" in nuke.STATE.messages[-1]
    assert copycat_nuke.nuke.create_node("CopyCat") is None
    assert "gizmos/ folder is not on the plugin path" in nuke.STATE.messages[-1]


def test_legacy_gizmos_are_the_same_gizmos_under_the_old_names():
    for kind in KINDS:
        legacy = REPO / "gizmos" / "legacy" / f"{kind}.gizmo"
        assert legacy.read_bytes() == (REPO / "gizmos" / f"{kind}ML.gizmo").read_bytes(), f"{legacy} differs"


def test_importing_the_adapter_loads_none_of_the_heavy_dependencies():
    code = (
        "import sys, copycat_nuke.nuke\n"
        "heavy = [m for m in ('torch', 'OpenImageIO', 'yaml', 'safetensors') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STUB_DIR), str(REPO)])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_gizmos_defaults_are_the_engines():
    from copycat_nuke.config import InferConfig, TrainConfig
    from copycat_nuke.limits import DEFAULT_EPOCHS

    copycat = gizmo("CopyCat").knobs
    train = TrainConfig()
    assert int(copycat["epochs"]) == DEFAULT_EPOCHS and int(copycat["cropSize"]) == train.crop_size
    assert int(copycat["checkpointInterval"]) == train.checkpoint_interval
    assert int(copycat["imageInterval"]) == train.image_interval
    assert copycat["modelSize"].lower() == train.model_size
    assert (copycat["useMultiResolutionTraining"] == "true") is train.multi_resolution
    assert int(copycat.get("temporalFrames", 0)) == train.temporal
    for kind in ("Inference", "Upscale", "Deblur"):
        knobs = gizmo(kind).knobs
        assert int(knobs["tileOverlap"]) == InferConfig().overlap, kind
        assert int(knobs.get("tileSize", 0)) == 0 and InferConfig().tile is None  # 0 on the knob: automatic
