"""Scripts saved before our nodes were renamed (classes CopyCat, Inference, Upscale, Deblur).

Where Nuke has no node of that name, such a script opens as it is: ``init.py`` puts ``gizmos/legacy/`` (the
same gizmos under the old names) on the plugin path. NukeX 13+ has its own CopyCat, Inference, Upscale and
Deblur, which would take our nodes' place when the script loads: :func:`migrate_script` writes a copy of the
script with our nodes renamed to CopyCatML, InferenceML... Standard library only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Union

from copycat_nuke.errors import CopyCatError
from copycat_nuke.nuke import results

#: Old class name -> new class name.
RENAMED = {"CopyCat": "CopyCatML", "Inference": "InferenceML", "Upscale": "UpscaleML", "Deblur": "DeblurML"}

#: Knobs only our old nodes saved (Foundry's nodes of the same names have none of them): how a node of an
#: old class name is known to be ours.
OURS = {
    "CopyCat": ("frames", "temporalFrames", "useMultiResolutionTraining", "copycatNode"),
    "Inference": ("outputFile", "tileSize", "tileOverlap", "frameRange", "renderSignature", "resultReady"),
}
OURS["Upscale"] = OURS["Deblur"] = OURS["Inference"]

_NODE = re.compile(
    r"^(?P<indent>\s*)(?P<cls>CopyCat|Inference|Upscale|Deblur) \{\n(?P<body>.*?)^(?P=indent)\}",
    re.MULTILINE | re.DOTALL,
)


def migrate_script(path: Union[str, Path], out: Union[str, Path]) -> list[str]:
    """Write ``path`` to ``out`` with our old-named nodes renamed; returns their names.

    A node of an old class name is ours when it sets one of the knobs only our nodes have (:data:`OURS`),
    ``out`` must be a new file: the original script is never overwritten.
    """
    source, target = Path(path), Path(out)
    if target.exists() or target.resolve() == source.resolve():
        raise CopyCatError(f"{target} already exists: name a new file for the migrated script")
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CopyCatError(f"cannot read the script {source}: {error}") from None
    renamed: list[str] = []

    def rename(match: re.Match[str]) -> str:
        cls, body = match.group("cls"), match.group("body")
        if not any(re.search(rf"^\s*{knob} ", body, re.MULTILINE) for knob in OURS[cls]):
            return match.group(0)
        name = re.search(r"^\s*name (\S+)", body, re.MULTILINE)
        renamed.append(name.group(1) if name else cls)
        return match.group(0).replace(f"{cls} {{", f"{RENAMED[cls]} {{", 1)

    results.write_text(target, _NODE.sub(rename, text))
    return renamed
