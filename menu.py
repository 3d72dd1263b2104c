"""Nuke GUI start-up for copycat_nuke: the "CopyCat ML" toolbar menu (menu.py runs in GUI sessions only).

Each item creates its node through ``copycat_nuke.nuke.create_node``, which says so in a message when a
node cannot be made, instead of failing silently. The menu says "CopyCat", "Inference"...; the nodes'
classes are CopyCatML, InferenceML... (names no Nuke ships, see copycat_nuke.nuke.knobs.CLASSES).
"""

import os

import nuke

import copycat_nuke.nuke

_icons = os.path.join(os.path.dirname(os.path.abspath(__file__)), "icons")
_menu = nuke.menu("Nodes").addMenu("CopyCat ML", icon=os.path.join(_icons, "CopyCatML.png"))

for _kind in ("CopyCat", "Inference", "Upscale", "Deblur"):
    _menu.addCommand(
        _kind,
        f"import copycat_nuke.nuke\ncopycat_nuke.nuke.create_node({_kind!r})",
        icon=os.path.join(_icons, f"{_kind}.png"),
    )

copycat_nuke.nuke.register_panel()
