"""Create Native Inference: a model as Nuke's own Inference node (Nuke 14+), live in the DAG, on Nuke's GPU.

The button (on CopyCat: ``<Data Directory>/model.cat``; on Inference, Upscale, Deblur: their Model File)
exports the model as TorchScript next to it (``<model>_nuke.pt``), has Foundry's **CatFileCreator** wrap it
into a Foundry ``.cat`` (``<model>_nuke.cat``; knobs ``torchScriptFile``, ``catFile``, ``channelsIn``,
``channelsOut``, ``outputScale``, button ``createCatFile``), deletes the CatFileCreator, and leaves Foundry's
**Inference** node reading that ``.cat`` beside ours, fed by what feeds ours. Both names are new files:
when ``model_nuke.pt`` or ``model_nuke.cat`` exists, ``model_nuke_2`` and so on are used, so nothing is
ever overwritten. ``docs/nuke-native.md`` has the same steps by hand.

Nuke 13 has no CatFileCreator of this kind and its torch 1.6 cannot run the export (``copysign``,
``nan_to_num``): the button says so. The export runs in Nuke's Python with torch (imported only when the
button is pressed) through :func:`_export_torchscript`, the one place to route it to another Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import nuke

from copycat_nuke.errors import CopyCatError
from copycat_nuke.nuke import jobs, knobs, nodes

#: The first Nuke with CatFileCreator's torch 1.12 (and the knobs used here).
MIN_NUKE_MAJOR = 14
#: Foundry's node classes.
CAT_FILE_CREATOR = "CatFileCreator"
FOUNDRY_INFERENCE = "Inference"
#: Added to the model's name for the files made here: ``model.cat`` → ``model_nuke.pt``, ``model_nuke.cat``.
SUFFIX = "_nuke"
#: Names tried before giving up (``model_nuke_2`` ... ``model_nuke_99``).
MAX_NAMES = 99


def nuke_major() -> int:
    """The running Nuke's major version."""
    return int(nuke.NUKE_VERSION_MAJOR)


def require_native_nuke() -> None:
    """Refuse Nukes older than 14, saying what to do instead."""
    major = nuke_major()
    if major < MIN_NUKE_MAJOR:
        raise CopyCatError(
            f"Create Native Inference needs Nuke {MIN_NUKE_MAJOR} or newer (this is Nuke {major}, whose torch "
            "cannot run the exported model): press Render on a copycat_nuke Inference node instead, or in Nuke "
            f"{MIN_NUKE_MAJOR}+ run 'copycat export model.cat --torchscript model.pt' and use CatFileCreator "
            "(docs/nuke-native.md)"
        )


def model_file(node: nuke.Node) -> Path:
    """The copycat_nuke ``.cat`` a node stands for: CopyCat's ``model.cat``, or an Inference node's model."""
    kind = knobs.kind_of(node)
    if kind == knobs.COPYCAT:
        directory = knobs.path(node, "dataDirectory")
        if not directory:
            raise CopyCatError("Data Directory is empty: set it and train first (Start Training)")
        model = Path(directory) / "model.cat"
        if not model.is_file():
            raise CopyCatError(f"there is no model.cat in '{directory}' yet: train first (Start Training)")
        return model
    if kind in knobs.INFERENCE_KINDS:
        from copycat_nuke.nuke import inference

        return inference.model_path(node)
    raise CopyCatError(f"{node.name()} is not a copycat_nuke CopyCat, Inference, Upscale or Deblur node")


def check_exportable(model: Path) -> None:
    """Refuse, before anything is written, a model Nuke's Inference node cannot run (reads the manifest only)."""
    from copycat_nuke import catfile

    manifest = catfile.read_manifest(model)
    temporal = int(manifest.arguments.get("temporal", 0))
    if temporal:
        raise CopyCatError(
            f"{model} is a temporal model (it sees {temporal} neighbouring frame(s) on each side) and Nuke's "
            "Inference node gives a network one frame: use the copycat_nuke Inference node's Render instead"
        )
    if manifest.architecture != "msrn":
        raise CopyCatError(f"{model}: the {manifest.architecture!r} architecture cannot be exported (only msrn)")


def output_files(model: Path) -> tuple[Path, Path]:
    """A TorchScript and a Foundry ``.cat`` path beside ``model``, neither of which exists yet."""
    base = model.with_name(model.stem + SUFFIX)
    for number in range(1, MAX_NAMES + 1):
        stem = base.name if number == 1 else f"{base.name}_{number}"
        torchscript, cat = base.with_name(stem + ".pt"), base.with_name(stem + ".cat")
        if not torchscript.exists() and not cat.exists():
            return torchscript, cat
    raise CopyCatError(f"{base}.pt to {base}_{MAX_NAMES}.cat all exist beside {model.name}: delete old exports")


def _export_torchscript(model: Path, out: Path) -> None:
    """Write ``model`` (a copycat_nuke ``.cat``) as TorchScript to ``out``, atomically, in Nuke's own Python.

    The single hook for running the export elsewhere (a Python with torch when Nuke's has none).
    """
    nodes.require_dependencies()
    from copycat_nuke.errors import ConfigError
    from copycat_nuke.export import export_torchscript

    try:
        export_torchscript(model, out)
    except (OSError, ConfigError) as error:
        raise CopyCatError(
            f"cannot write {out} beside the model ({error}): copy {model.name} into a folder you can write to "
            "and point the node at it"
        ) from None


def _knob(node: nuke.Node, name: str) -> nuke.Knob:
    """A knob of one of Foundry's nodes; a clear error when this Nuke's node has none by that name."""
    found = node.knob(name)
    if found is None:
        raise CopyCatError(
            f"Nuke {nuke_major()}'s {node.Class()} has no knob {name!r}: make the .cat by hand with "
            "CatFileCreator (docs/nuke-native.md)"
        )
    return found


def _create(cls: str, parent: nuke.Group, torchscript: Path) -> nuke.Node:
    try:
        with parent:
            return getattr(nuke.nodes, cls)()  # type: ignore[no-any-return]
    except RuntimeError as error:
        raise CopyCatError(
            f"Nuke cannot create its {cls} node ({error}): CatFileCreator needs NukeX or Nuke Studio 14 or newer. "
            f"The TorchScript file is {torchscript}: make the .cat by hand where CatFileCreator exists "
            "(docs/nuke-native.md)"
        ) from None


def _inference_nodes(parent: nuke.Group) -> list[nuke.Node]:
    with parent:
        return [found for found in nuke.allNodes(FOUNDRY_INFERENCE) if not knobs.kind_of(found)]


def make_cat_file(node: nuke.Node, torchscript: Path, cat: Path, settings: dict[str, str]) -> Optional[nuke.Node]:
    """Run CatFileCreator on ``torchscript`` → ``cat`` and delete it again; return the Inference node its
    button made, if it made one (Nuke's button is "Create .cat file and Inference")."""
    parent = node.parent()
    before = {found.fullName() for found in _inference_nodes(parent)}
    creator = _create(CAT_FILE_CREATOR, parent, torchscript)
    try:
        creator.setXYpos(node.xpos() + 120, node.ypos() - 60)
        _knob(creator, "torchScriptFile").setValue(str(torchscript))
        _knob(creator, "catFile").setValue(str(cat))
        _knob(creator, "channelsIn").setValue(settings["channelsIn"])
        _knob(creator, "channelsOut").setValue(settings["channelsOut"])
        _knob(creator, "outputScale").setValue(int(settings["outputScale"]))
        button = _knob(creator, "createCatFile")
        if not isinstance(button, nuke.Script_Knob):
            raise CopyCatError(f"Nuke {nuke_major()}'s CatFileCreator.createCatFile is not a button")
        try:
            button.execute()
        except RuntimeError as error:
            raise CopyCatError(f"CatFileCreator could not make {cat} from {torchscript}: {error}") from None
    finally:
        nuke.delete(creator)
    if not cat.is_file():
        raise CopyCatError(
            f"CatFileCreator did not write {cat}: make it by hand from {torchscript} (docs/nuke-native.md)"
        )
    made = [found for found in _inference_nodes(parent) if found.fullName() not in before]
    return made[0] if made else None


def _foundry_inference(node: nuke.Node, made: Optional[nuke.Node], torchscript: Path) -> nuke.Node:
    if made is not None:
        return made
    created = _create(FOUNDRY_INFERENCE, node.parent(), torchscript)
    if knobs.kind_of(created):  # our gizmo under Nuke's class name: Nuke would make its own, so would we
        nuke.delete(created)
        raise CopyCatError(
            "Nuke created copycat_nuke's old Inference gizmo instead of its own Inference node: take "
            "copycat_nuke's gizmos/legacy folder off the plugin path and press the button again"
        )
    return created


@jobs.button
def create_native_inference(node: nuke.Node) -> None:
    """Create Native Inference: Nuke's own Inference node running this node's model, beside it."""
    require_native_nuke()
    model = model_file(node)
    check_exportable(model)
    torchscript, cat = output_files(model)
    knobs.set_status(node, f"Exporting {model.name} as TorchScript...")
    _export_torchscript(model, torchscript)
    from copycat_nuke.catfile import read_manifest
    from copycat_nuke.export import catfilecreator_settings

    made = make_cat_file(node, torchscript, cat, catfilecreator_settings(read_manifest(model)))
    inference = _foundry_inference(node, made, torchscript)
    _knob(inference, "modelFile").setValue(str(cat))
    inference.setInput(0, node.input(knobs.INPUT))
    inference.setXYpos(node.xpos() + 120, node.ypos())
    gpu = inference.knob("useGPUIfAvailable")
    if gpu is not None and node.knob("useGPUIfAvailable") is not None:
        gpu.setValue(knobs.boolean(node, "useGPUIfAvailable"))
    knobs.set_status(node, f"Created {inference.name()} (Nuke's Inference) reading {cat.name}")


__all__ = ["create_native_inference"]
