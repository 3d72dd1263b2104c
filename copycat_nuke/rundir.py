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
import json
import math
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from copycat_nuke.config import write_text_atomic
from copycat_nuke.errors import RunInUseError

CONFIG = "config.yaml"
LOSS_LOG = "loss.csv"
LOSS_PLOT = "loss.png"
MODEL = "model.cat"
CHECKPOINTS = "checkpoints"
CONTACT_SHEETS = "contact_sheets"
#: Checkpoints kept in ``checkpoints/`` (older ones are removed; model.cat is always kept).
KEEP_CHECKPOINTS = 3
#: Held by the process training into a run directory (pid, host): a second trainer is refused.
LOCK = ".copycat-train.lock"

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


def holds_run(run: Union[str, Path]) -> bool:
    """Whether ``run`` holds a training run worth keeping: a model or a checkpoint. (A run killed before its
    first checkpoint leaves only its config and loss log, which nothing can resume: it may be started over.)"""
    return (Path(run) / MODEL).is_file() or bool(checkpoints(run))


def numbered_run_dir(parent: Union[str, Path]) -> Path:
    """The first unused ``parent/run_NNN`` (``run_001``, ``run_002``...), as Nuke's CopyCat numbers its runs."""
    folder = Path(parent)
    number = 1
    while (folder / f"run_{number:03d}").exists():
        number += 1
    return folder / f"run_{number:03d}"


def new_run_dir(parent: Union[str, Path]) -> Path:
    """Where a new run goes in ``parent``: ``parent`` itself while it holds none, else
    :func:`numbered_run_dir`, so no run is ever replaced."""
    return numbered_run_dir(parent) if holds_run(parent) else Path(parent)


def latest_run_dir(parent: Union[str, Path]) -> Path:
    """The run to resume in ``parent``: its newest ``run_NNN`` that holds a run, else ``parent`` itself."""
    folder = Path(parent)
    numbered = sorted(
        (int(match.group(1)), path)
        for path in folder.glob("run_*")
        for match in [re.fullmatch(r"run_(\d+)", path.name)]
        if match and holds_run(path)
    )
    return numbered[-1][1] if numbered else folder


class RunLock:
    """The right to train into a run directory: ``.copycat-train.lock`` holding this process's pid and host.

    A second trainer is refused with a :class:`RunInUseError` naming the holder; a lock left by a process
    that no longer runs on this host is taken over with a warning (a crash, ``kill -9``). A lock from another
    host is never taken over: its process cannot be checked from here (delete the file if it is dead).
    """

    def __init__(self, run: Union[str, Path]) -> None:
        self.path = Path(run) / LOCK
        self.held = False

    def acquire(self) -> RunLock:
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                descriptor = os.open(str(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._dead(holder):
                    raise RunInUseError(
                        f"{self.path.parent} is being trained into by process {holder.get('pid')} on "
                        f"{holder.get('host')} (since {holder.get('since')}): wait for it to finish, or train "
                        "into another --out"
                    ) from None
                warnings.warn(
                    f"taking over {self.path} from a training process that is no longer running", stacklevel=2
                )
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump(mine, stream)
            self.held = True
            return self
        raise RunInUseError(f"cannot take the lock {self.path}: another process took it meanwhile; try again")

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _holder(self) -> Optional[dict[str, object]]:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable: a writer killed half-way; treated as dead
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def _dead(holder: dict[str, object]) -> bool:
        if holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return True
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, someone else's
            return False
        return False


def remove_leftovers(run: Union[str, Path]) -> list[Path]:
    """Delete temporary files a killed run left in ``run`` and its checkpoints/ and contact_sheets/ (call
    it holding the run's lock, so no live writer owns them); returns what was removed."""
    removed = []
    folder = Path(run)
    for place in (folder, folder / CHECKPOINTS, folder / CONTACT_SHEETS):
        if not place.is_dir():
            continue
        for path in place.iterdir():
            if path.is_file() and path.name.startswith(".") and ".tmp" in path.name:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def prune_checkpoints(run: Union[str, Path], keep: int = KEEP_CHECKPOINTS) -> None:
    """Remove all but the ``keep`` newest checkpoints (by step)."""
    for _, old in checkpoints(run)[:-keep]:
        with contextlib.suppress(FileNotFoundError):  # pruned already (not unlink(missing_ok): Python 3.7)
            old.unlink()


@dataclass
class LossHistory:
    """The rows of a ``loss.csv``: step, loss and seconds since the run started, in file order."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def until(self, step: int) -> LossHistory:
        """The rows up to and including ``step`` (a resumed run's log, as it was at its checkpoint)."""
        keep = [i for i, s in enumerate(self.steps) if s <= step]
        return LossHistory(
            [self.steps[i] for i in keep], [self.losses[i] for i in keep], [self.seconds[i] for i in keep]
        )


def read_loss_log(path: Union[str, Path]) -> LossHistory:
    """A ``loss.csv`` (step, loss, seconds), read while its writer may be appending: a missing file reads
    as empty, and malformed or partial rows (the line being written) are skipped. The one reader of the
    format, for the trainer, the panel and the run table."""
    path = Path(path)
    history = LossHistory()
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as stream:
            rows = list(csv.reader(stream))
    except (OSError, csv.Error):  # csv.Error: NUL bytes, a field over csv's size limit (not a loss log)
        return history
    if not rows:
        return history
    header = [name.strip() for name in rows[0]]
    try:
        step_at, loss_at = header.index("step"), header.index("loss")
    except ValueError:
        return history
    seconds_at = header.index("seconds") if "seconds" in header else None
    for row in rows[1:]:
        if len(row) != len(header):  # the line a writer is in the middle of
            continue
        try:
            step, loss = int(row[step_at]), float(row[loss_at])
            seconds = float(row[seconds_at]) if seconds_at is not None else math.nan
        except ValueError:
            continue
        history.steps.append(step)
        history.losses.append(loss)
        history.seconds.append(seconds)
    return history


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
        history = read_loss_log(self.path)
        return history.steps, history.losses

    def last_loss(self) -> float:
        _, losses = self.read()
        return losses[-1] if losses else math.nan
