"""Nuke start-up for copycat_nuke: runs in every session, GUI or terminal (farms), and creates no UI.

Install: put this folder on NUKE_PATH, or ``nuke.pluginAddPath("/path/to/copycat_nuke")`` in
~/.nuke/init.py. This adds gizmos/ (CopyCatML, InferenceML, UpscaleML, DeblurML) to the plugin path, makes
the ``copycat_nuke`` package importable and registers the render callback that computes our nodes' missing
frames before a Write renders them (farms). Python dependencies (torch, numpy, OpenImageIO, pyyaml,
safetensors) installed with ``pip install --target DIR`` are found by setting COPYCAT_NUKE_SITE=DIR (see
docs/nuke.md). Nothing heavy is imported here: torch loads when a node first trains or renders.
"""

import os
import sys

import nuke

_root = os.path.dirname(os.path.abspath(__file__))
_site = os.environ.get("COPYCAT_NUKE_SITE", "")

for _path in (_root, *(os.path.expanduser(p) for p in _site.split(os.pathsep) if p)):
    if _path not in sys.path:
        sys.path.append(_path)

nuke.pluginAddPath(os.path.join(_root, "gizmos"), addToSysPath=False)
# scripts saved before the nodes were renamed (CopyCat, Inference...): found here where Nuke has no
# node of that name; copycat_nuke.nuke.migrate_script renames them for NukeX
nuke.pluginAddPath(os.path.join(_root, "gizmos", "legacy"), addToSysPath=False)

# imported into Nuke's __main__: the gizmos' checks ([python {copycat_nuke.nuke.result_ok(...)}]) use it
import copycat_nuke.nuke  # noqa: E402

nuke.addBeforeFrameRender(copycat_nuke.nuke.before_frame_render, nodeClass="Write")
