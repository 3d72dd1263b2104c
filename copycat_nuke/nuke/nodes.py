"""Creating our nodes, the shipped networks, and where the work runs: Nuke's Python when it has our
dependencies, else an external Python (:mod:`copycat_nuke.nuke.external`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Optional

import nuke

from copycat_nuke import pretrained
from copycat_nuke.errors import CopyCatError
from copycat_nuke.nuke import external, knobs

#: Import names of the packages training and inference need, and their pip names.
DEPENDENCIES = {
    "torch": "torch",
    "numpy": "numpy",
    "OpenImageIO": "OpenImageIO",
    "yaml": "pyyaml",
    "safetensors": "safetensors",
}

#: The shipped network of each node that has one.
SHIPPED = {knobs.UPSCALE: "upscale", knobs.DEBLUR: "deblur"}


def shipped_model(name: str) -> Path:
    """Where the shipped network ``name`` (``"upscale"``, ``"deblur"``) lives: ``copycat_nuke/pretrained/``.

    The path is returned whether or not the file is installed; see :func:`require_shipped_model`.
    """
    return pretrained.shipped_model(name)


def require_shipped_model(name: str, *, instead: str) -> Path:
    """The shipped network ``name``, or a :class:`CopyCatError` saying it is missing and what to do instead."""
    path = shipped_model(name)
    if not path.is_file():
        raise CopyCatError(f"The shipped {name.capitalize()} network is not installed ({path} is missing): {instead}")
    return path


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module half-imported: not usable either
        return False


def missing_dependencies() -> list[str]:
    """The pip names of the packages Nuke's Python cannot import (checked without importing them)."""
    return [pip for module, pip in DEPENDENCIES.items() if not _findable(module)]


def dependencies_message(missing: list[str]) -> str:
    """The two fixes for a Nuke whose Python lacks ``missing``: install them for it, or use another Python."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (
        f"Nuke's Python {version} cannot import {', '.join(missing)}. Either install them with Nuke's own "
        f"Python (python3 -m pip install --target DIR {' '.join(missing)}) and set COPYCAT_NUKE_SITE=DIR "
        f"before starting Nuke, or train and render in another Python: set the node's Python Executable "
        f"({external.KNOB}) or {external.ENV} to the python of a venv with copycat_nuke installed. "
        "docs/nuke.md in copycat_nuke has the steps."
    )


def require_dependencies(node: Optional[nuke.Node] = None) -> Optional[str]:
    """Main thread: where a button's work runs: the external Python (its path) when the node's
    ``pythonExecutable`` knob or ``COPYCAT_PYTHON`` names one, else None for Nuke's own Python, which must
    then import torch & co. Raises a :class:`CopyCatError` with both fixes when it cannot."""
    python = external.configured_python(node)
    if python is not None:
        return python
    missing = missing_dependencies()
    if missing:
        raise CopyCatError(dependencies_message(missing))
    return None


def _check_ours(node: nuke.Node, kind: str) -> nuke.Node:
    if knobs.kind_of(node) != kind:
        raise CopyCatError(
            f"Nuke made a {node.Class()} node that is not copycat_nuke's {kind}: another plugin on NUKE_PATH "
            f"has a gizmo called {knobs.CLASSES[kind]}. Remove it from the plugin path, or put copycat_nuke first."
        )
    return node


def make_node(kind: str) -> nuke.Node:
    """Create one of our nodes the way the toolbar does: after the selected node, with its panel open."""
    try:
        node = nuke.createNode(knobs.CLASSES[kind])
    except RuntimeError as error:
        raise CopyCatError(
            f"Nuke cannot create {kind} ({error}): copycat_nuke's gizmos/ folder is not on the plugin path. "
            "Put the copycat_nuke folder on NUKE_PATH (or nuke.pluginAddPath it in ~/.nuke/init.py)."
        ) from None
    return _check_ours(node, kind)


def new_node(kind: str, parent: nuke.Group) -> nuke.Node:
    """Create one of our nodes inside ``parent`` without connecting it to the selection."""
    with parent:
        node = getattr(nuke.nodes, knobs.CLASSES[kind])()
    return _check_ours(node, kind)
