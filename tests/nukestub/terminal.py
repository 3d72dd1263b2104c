"""``nuke -F FIRST-LAST -x script.nk`` in the stand-in: open a script and render its Write nodes.

Run as ``python terminal.py script.nk FIRST-LAST`` with the stand-in and the repository on PYTHONPATH. Like
Nuke's terminal render, it runs init.py (every session does), opens the script, executes each Write over the
frames, and exits with status 1 and the error on stderr when a render fails.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import nuke

REPO = Path(__file__).resolve().parent.parent.parent


def main(script: str, frames: str) -> int:
    nuke.reset(gui=False)
    nuke.STATE.main_namespace.update(runpy.run_path(str(REPO / "init.py")))
    nuke.scriptOpen(script)
    first, _, last = frames.partition("-")
    try:
        for write in nuke.allNodes("Write"):
            nuke.execute(write, int(first), int(last or first))
    except RuntimeError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
