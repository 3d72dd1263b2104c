"""Contact sheets: a few training pairs, cropped where the effect is, with the network's prediction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from copycat_nuke import plots, rundir, transfer
from copycat_nuke.config import write_text_atomic
from copycat_nuke.data import Pair

if TYPE_CHECKING:
    from copycat_nuke.train.loop import RunContext

#: Largest side of a contact-sheet tile, in pixels.
PREVIEW_SIZE = 256
#: Pairs shown in a contact sheet.
PREVIEW_PAIRS = 3


def write_contact_sheet(out_dir: Path, run: RunContext, step: int) -> Path:
    """``contact_sheets/contact_sheet.NNNNNNN.png``: input | prediction | ground truth | difference per pair."""
    rows = []
    titles = []
    model = run.model
    model.eval()
    with torch.no_grad():
        for pair in preview_pairs(run.data.pairs, run.data.scale):
            inputs = run.runtime.place(torch.from_numpy(pair.input.transpose(2, 0, 1)[None].copy()))
            with run.runtime.autocast():
                prediction = model(inputs)
            predicted = prediction.float()[0].permute(1, 2, 0).cpu().numpy()
            shown_input = pair.centre.repeat(run.data.scale, axis=0).repeat(run.data.scale, axis=1)
            rows.append(
                [
                    transfer.to_display(run.working.from_working(shown_input)),
                    transfer.to_display(run.working.from_working(predicted)),
                    transfer.to_display(run.working.from_working(pair.target)),
                    plots.difference_image(predicted, pair.target),
                ]
            )
            titles.append(pair.label)
    model.train()
    path = rundir.contact_sheet_path(out_dir, step)
    plots.save_contact_sheet(path, rows, row_titles=titles)
    write_text_atomic(out_dir / rundir.CONTACT_SHEETS / "latest.txt", path.name + "\n")
    return path


def preview_pairs(pairs: Sequence[Pair], scale: int = 1) -> list[Pair]:
    """Up to ``PREVIEW_PAIRS`` pairs, each cropped to at most ``PREVIEW_SIZE`` Input pixels around where
    Input and Ground Truth differ most (the centre where they do not differ, or for an upscaler with
    Ground Truth ``scale`` × the Input, where the Input has most detail), at multiples of 16."""
    chosen = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, min(PREVIEW_PAIRS, len(pairs)))]
    previews = []
    for pair in chosen:
        height, width = pair.input.shape[:2]
        size_y = max(16, min(PREVIEW_SIZE, height) // 16 * 16) if height >= 16 else height
        size_x = max(16, min(PREVIEW_SIZE, width) // 16 * 16) if width >= 16 else width
        if scale > 1:
            difference = np.abs(np.diff(pair.centre, axis=0, prepend=pair.centre[:1])).mean(axis=2)
        elif pair.centre.shape[2] == pair.target.shape[2]:
            difference = np.abs(pair.centre - pair.target).mean(axis=2)
        else:
            difference = np.zeros((height, width), np.float32)
        if difference.max() > 0:
            cy, cx = np.unravel_index(int(np.argmax(_box_blur(difference, 15))), difference.shape)
        else:
            cy, cx = height // 2, width // 2
        top = int(np.clip(cy - size_y // 2, 0, height - size_y))
        left = int(np.clip(cx - size_x // 2, 0, width - size_x))
        window = (slice(top, top + size_y), slice(left, left + size_x))
        target_window = (slice(top * scale, (top + size_y) * scale), slice(left * scale, (left + size_x) * scale))
        previews.append(
            Pair(
                input=np.ascontiguousarray(pair.input[window]),
                target=np.ascontiguousarray(pair.target[target_window]),
                label=pair.label,
                frames=pair.frames,
            )
        )
    return previews


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """A separable box blur by cumulative sums: finds the densest area of change, not a lone pixel."""
    out = image.astype(np.float64)
    for axis in (0, 1):
        padded = np.concatenate([np.zeros_like(out.take([0], axis=axis)), out], axis=axis).cumsum(axis=axis)
        n = out.shape[axis]
        hi = np.minimum(np.arange(n) + radius + 1, n)
        lo = np.maximum(np.arange(n) - radius, 0)
        out = padded.take(hi, axis=axis) - padded.take(lo, axis=axis)
    return out
