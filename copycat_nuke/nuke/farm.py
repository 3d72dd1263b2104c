"""Farm renders that just work: a Write below our nodes computes their missing or stale frames first.

``init.py`` registers :func:`before_frame_render` with ``nuke.addBeforeFrameRender`` for every Write, in
every session (``nuke -x``, ``nuke -t``, the GUI). Before each frame the Write renders, it finds the
Inference, Upscale and Deblur nodes upstream of the Write and computes that frame of each, in every view,
where its result is missing or stale, upstream nodes first. Each chunk of a split render computes exactly
its own frames; overlapping chunks may compute a frame twice, but each frame file and its record are
replaced atomically, so both end with the same, complete files. A problem raises, and Nuke documents that
an exception in a beforeFrameRender callback aborts the render: the render fails loudly, never with the
untreated input.
"""

from __future__ import annotations

from typing import Optional

import nuke

from copycat_nuke.nuke import inference, knobs

#: Nodes being computed right now: the Writes our own computing executes must not recompute them.
_BUSY: set[str] = set()


def upstream_nodes(start: nuke.Node) -> list[nuke.Node]:
    """Our Inference/Upscale/Deblur nodes that ``start`` reads from, directly or through other nodes and
    groups, the most upstream first (each computes before the nodes that read it)."""
    ordered: list[nuke.Node] = []
    seen: set[str] = set()

    def visit(node: Optional[nuke.Node]) -> None:
        if node is None or node.fullName() in seen:
            return
        seen.add(node.fullName())
        inputs = [node.input(index) for index in range(node.inputs())]
        if isinstance(node, nuke.Group) and not knobs.kind_of(node):
            output = node.output()  # a plain group: what its Output reads, and the group's own inputs
            inputs.append(output)
        for source in inputs:
            visit(source)
        if node.Class() == "Input" and isinstance(node.parent(), nuke.Group):
            number = node.knob("number")
            group = node.parent()
            visit(group.input(int(number.value()) if number is not None else 0))
        if knobs.kind_of(node) in knobs.INFERENCE_KINDS:
            ordered.append(node)

    visit(start)
    return ordered


def before_frame_render() -> None:
    """beforeFrameRender of every Write: compute this frame of our nodes upstream where it is missing/stale."""
    write = nuke.thisNode()
    frame = int(nuke.frame())
    for node in upstream_nodes(write):
        name = node.fullName()
        if name in _BUSY:
            continue
        _BUSY.add(name)
        try:
            inference.ensure(node, [frame])
        finally:
            _BUSY.discard(name)
