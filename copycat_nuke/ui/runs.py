"""Run directories as the panel reads them: loss log, settings, contact sheets, display names. No Qt here.

A *run directory* is what one training job writes (``config.yaml``, ``loss.csv``, ``contact_sheets/``,
``checkpoints/``, ``model.cat``); a *data directory* holds several runs as subdirectories. Everything
here tolerates a run that is being written at the same moment by a training thread or another process:
a half-written last line of ``loss.csv`` is skipped, a missing file reads as empty. A damaged or hostile
run (a binary ``config.yaml``, a ``display.json`` nested 100 000 deep, a ``loss.csv`` of NUL bytes) never
raises: it is listed as unreadable with the reason (:attr:`RunSummary.problem`), and the other runs load.

The name shown for a run is the directory's name until the artist renames it; the new name is kept in
``display.json`` inside the run (written atomically), so the directory and every path in it stay put.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from copycat_nuke import rundir
from copycat_nuke.config import TrainConfig, load_yaml, write_text_atomic
from copycat_nuke.errors import CopyCatError

LossHistory = rundir.LossHistory  # the rows of a loss.csv, as rundir reads them

PathLike = Union[str, Path]

#: Files that make a directory a run directory.
RUN_MARKERS = ("config.yaml", "loss.csv")
#: The run's display name, set by renaming it in the panel: ``{"name": "..."}``.
DISPLAY_FILE = "display.json"
#: New runs started from the panel in a data directory are called run_001, run_002, ...
NEW_RUN_PREFIX = "run_"
#: Largest ``display.json`` / ``latest.txt`` read (a name is a line; more is not ours).
MAX_SMALL_FILE_BYTES = 64 << 10
#: Status of a run whose files cannot be read (:attr:`RunSummary.problem` says why).
UNREADABLE = "unreadable"


@dataclass
class RunSummary:
    """What the run table shows for one run directory."""

    path: Path
    name: str
    step: int  #: last logged step (0: not started)
    total_steps: Optional[int]  #: None when the job counts epochs and the pairs are not known yet
    last_loss: Optional[float]
    status: str  #: "not started", "incomplete", "stopped", "finished", or "unreadable: <why>"
    has_checkpoint: bool
    problem: str = ""  #: why the run's files cannot be read ("" when they can)


def is_run_directory(path: PathLike) -> bool:
    """Whether ``path`` holds a training run (its config or its loss log)."""
    directory = Path(path)
    return any((directory / marker).is_file() for marker in RUN_MARKERS)


def find_runs(directory: PathLike) -> list[Path]:
    """Every run in ``directory``: the directory itself if it is a run, and its run subdirectories.

    Subdirectories are in natural order (run_2 before run_10). Unreadable entries are skipped.
    """
    root = Path(directory)
    runs = [root] if is_run_directory(root) else []
    try:
        children = [child for child in root.iterdir() if child.is_dir() and not child.name.startswith(".")]
    except OSError:
        children = []
    runs.extend(sorted((child for child in children if is_run_directory(child)), key=_natural_key))
    return runs


def _natural_key(path: Path) -> list[Union[int, str]]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def next_run_directory(data_directory: PathLike) -> Path:
    """A new, unused run directory in ``data_directory``: ``run_001``, then ``run_002`` and so on."""
    return rundir.numbered_run_dir(data_directory)


def read_loss_log(run_directory: PathLike) -> LossHistory:
    """The run's ``loss.csv``; empty when it does not exist (yet). Malformed or partial rows are skipped."""
    return rundir.read_loss_log(Path(run_directory) / rundir.LOSS_LOG)


def read_config(run_directory: PathLike) -> Optional[TrainConfig]:
    """The run's ``config.yaml`` as a :class:`TrainConfig`, or None when it has none.

    Raises :class:`~copycat_nuke.errors.ConfigError` when the file exists but cannot be used.
    """
    path = Path(run_directory) / "config.yaml"
    if not path.is_file():
        return None
    return load_yaml(TrainConfig, path)


def display_name(run_directory: PathLike) -> str:
    """The name the artist gave the run, or its directory's name."""
    directory = Path(run_directory)
    try:
        data = json.loads(_read_small(directory / DISPLAY_FILE))
    except (OSError, ValueError, RecursionError):  # missing, not JSON (or not UTF-8), nested past the stack
        return directory.name
    name = data.get("name") if isinstance(data, dict) else None
    return " ".join(name.split())[:200] if isinstance(name, str) and name.strip() else directory.name


def _read_small(path: Path) -> str:
    """A small text file (``display.json``, ``latest.txt``); ValueError when it is too large or not UTF-8."""
    with path.open("rb") as stream:
        data = stream.read(MAX_SMALL_FILE_BYTES + 1)
    if len(data) > MAX_SMALL_FILE_BYTES:
        raise ValueError(f"{path} is over {MAX_SMALL_FILE_BYTES} bytes")
    return data.decode("utf-8")


def set_display_name(run_directory: PathLike, name: str) -> str:
    """Rename a run for display (the directory keeps its name). An empty name goes back to the directory's.

    Returns the name now shown. Raises :class:`CopyCatError` when ``display.json`` cannot be written.
    """
    directory = Path(run_directory)
    name = " ".join(name.split())  # one line, no stray spaces
    path = directory / DISPLAY_FILE
    try:
        if not name or name == directory.name:
            with contextlib.suppress(FileNotFoundError):  # not unlink(missing_ok=True): Nuke 13 has Python 3.7
                path.unlink()
            return directory.name
        write_text_atomic(path, json.dumps({"name": name}, ensure_ascii=False) + "\n")
    except OSError as error:
        raise CopyCatError(f"cannot rename the run in {directory}: {error.strerror or error}") from None
    return name


def latest_contact_sheet(run_directory: PathLike) -> Optional[Path]:
    """The newest contact sheet of a run (from ``contact_sheets/latest.txt``, else the highest step)."""
    sheets = Path(run_directory) / "contact_sheets"
    try:
        named = _read_small(sheets / "latest.txt").strip()
    except (OSError, ValueError):
        named = ""
    if named and (sheets / Path(named).name).is_file():
        return sheets / Path(named).name
    found = sorted(sheets.glob("contact_sheet.*.png"))
    return found[-1] if found else None


def contact_sheet_step(path: PathLike) -> Optional[int]:
    """The step in a contact sheet's file name (``contact_sheet.0000300.png`` → 300)."""
    match = re.fullmatch(r"contact_sheet\.(\d+)\.png", Path(path).name)
    return int(match.group(1)) if match else None


def has_checkpoint(run_directory: PathLike) -> bool:
    """Whether the run can be resumed (it has a ``checkpoints/checkpoint.NNNNNNN.cat``)."""
    return any(Path(run_directory).glob("checkpoints/checkpoint.*.cat"))


def summarize(run_directory: PathLike, history: Optional[LossHistory] = None) -> RunSummary:
    """A :class:`RunSummary` of a run on disk (``history``: its loss log, when already read)."""
    directory = Path(run_directory)
    history = history if history is not None else read_loss_log(directory)
    problem = ""
    try:
        config = read_config(directory)
    except CopyCatError as error:
        config, problem = None, " ".join(str(error).split())
    total = config.steps if config is not None else None
    step = history.steps[-1] if history.steps else 0
    if not history.steps:
        status = "not started"
    elif not (directory / "model.cat").is_file():
        status = "incomplete"
    elif total is not None and step < total:
        status = "stopped"
    else:
        status = "finished"
    if problem:
        status = f"{UNREADABLE}: {problem}"
    return RunSummary(
        path=directory,
        name=display_name(directory),
        step=step,
        total_steps=total,
        last_loss=history.losses[-1] if history.losses else None,
        status=status,
        has_checkpoint=has_checkpoint(directory),
        problem=problem,
    )


__all__ = [
    "DISPLAY_FILE",
    "UNREADABLE",
    "LossHistory",
    "RunSummary",
    "contact_sheet_step",
    "display_name",
    "find_runs",
    "has_checkpoint",
    "is_run_directory",
    "latest_contact_sheet",
    "next_run_directory",
    "read_config",
    "read_loss_log",
    "set_display_name",
    "summarize",
]
