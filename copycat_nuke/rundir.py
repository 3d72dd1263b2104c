"""A run directory's layout, shared by the trainer, the panel, the run table and the Nuke side.

No torch here: the Qt panel and Nuke read run directories without importing the trainer::

    <run>/config.yaml                    the job, as asked (``copycat train --config`` repeats it)
    <run>/loss.csv                       one row per step (:class:`LossLog`)
    <run>/loss.png                       its plot
    <run>/checkpoints/checkpoint.NNNNNNN.cat   the last :data:`KEEP_CHECKPOINTS`, each resumes exactly
    <run>/contact_sheets/contact_sheet.NNNNNNN.png and latest.txt
    <run>/model.cat                      the trained network, at the end or on Stop
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import re
from pathlib import Path
from typing import Optional, Union

from copycat_nuke.config import write_text_atomic

CONFIG = "config.yaml"
LOSS_LOG = "loss.csv"
LOSS_PLOT = "loss.png"
MODEL = "model.cat"
CHECKPOINTS = "checkpoints"
CONTACT_SHEETS = "contact_sheets"
#: Checkpoints kept in ``checkpoints/`` (older ones are removed; model.cat is always kept).
KEEP_CHECKPOINTS = 3

_CHECKPOINT = re.compile(r"checkpoint\.(\d+)\.cat")


def checkpoint_path(run: Union[str, Path], step: int) -> Path:
    """Where the checkpoint of ``step`` goes: ``checkpoints/checkpoint.NNNNNNN.cat`` (7 digits or more)."""
    return Path(run) / CHECKPOINTS / f"checkpoint.{step:07d}.cat"


def contact_sheet_path(run: Union[str, Path], step: int) -> Path:
    return Path(run) / CONTACT_SHEETS / f"contact_sheet.{step:07d}.png"


def checkpoints(run: Union[str, Path]) -> list[tuple[int, Path]]:
    """The run's checkpoints as (step, path), oldest first, ordered by step number (not by name, which
    would put step 10,000,000 before 9,999,999)."""
    found = []
    for path in Path(run).glob(f"{CHECKPOINTS}/checkpoint.*.cat"):
        match = _CHECKPOINT.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: Union[str, Path]) -> Optional[Path]:
    """The checkpoint with the highest step in ``out_dir/checkpoints``, or None."""
    found = checkpoints(out_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run: Union[str, Path], keep: int = KEEP_CHECKPOINTS) -> None:
    """Remove all but the ``keep`` newest checkpoints (by step)."""
    for _, old in checkpoints(run)[:-keep]:
        with contextlib.suppress(FileNotFoundError):  # pruned already (not unlink(missing_ok): Python 3.7)
            old.unlink()


class LossLog:
    """``loss.csv``: one row per step (step, loss, learning_rate, seconds), buffered, flushed at checkpoints.

    Rows past a resumed checkpoint's step are dropped, so a resumed run's log reads as one run.
    """

    HEADER = ("step", "loss", "learning_rate", "seconds")

    def __init__(self, path: Path, flush_every: int = 50) -> None:
        self.path = path
        self.flush_every = flush_every
        self._pending: list[tuple[int, float, float, float]] = []

    def reset(self) -> None:
        write_text_atomic(self.path, ",".join(self.HEADER) + "\n")

    def truncate(self, step: int) -> None:
        rows = [row for row in self._rows() if int(row[0]) <= step]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.HEADER)
        writer.writerows(rows)
        write_text_atomic(self.path, buffer.getvalue())

    def append(self, step: int, loss: float, lr: float, seconds: float) -> None:
        self._pending.append((step, loss, lr, seconds))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        with self.path.open("a", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerows((s, f"{loss:.8g}", f"{lr:.6g}", f"{sec:.3f}") for s, loss, lr, sec in self._pending)
        self._pending.clear()

    def _rows(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream))
        return [row for row in rows[1:] if len(row) == len(self.HEADER)]

    def read(self) -> tuple[list[int], list[float]]:
        """Steps and losses logged so far (including unflushed rows)."""
        self.flush()
        rows = self._rows()
        return [int(row[0]) for row in rows], [float(row[1]) for row in rows]

    def last_loss(self) -> float:
        _, losses = self.read()
        return losses[-1] if losses else math.nan
