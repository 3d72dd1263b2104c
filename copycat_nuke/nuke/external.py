"""Training and rendering in an external Python, for a Nuke whose own Python cannot import torch.

Nuke 13 has Python 3.7, which current torch does not support, and some studios lock Nuke's Python down. The
node then renders its inputs as usual and runs ``copycat train`` / ``copycat infer`` in another Python (a
venv with copycat_nuke's dependencies) as a subprocess, which a :mod:`~copycat_nuke.nuke.jobs` work function
follows:

- **which Python**: the node's ``pythonExecutable`` knob, else the ``COPYCAT_PYTHON`` environment variable;
  with neither, training runs in Nuke's own Python (:func:`configured_python` says None);
- **what runs**: ``python -m copycat_nuke.cli train --config <run>/external_job.yaml`` with this very
  copycat_nuke first on ``PYTHONPATH`` (the external Python supplies torch & co., both sides run the same
  code and so agree on the job's keys);
- **progress**: the command writes its events as JSON lines (``--events``) into the run directory, next to
  ``loss.csv``, ``checkpoints/`` and ``contact_sheets/`` (which the training panel reads by itself);
- **Stop**: standard input is closed (``--stop-on-eof``): training stops after the step and still writes a
  checkpoint and ``model.cat``, inference after the frame. Standard input also closes when Nuke dies, so a
  run never outlives Nuke; a run that ends the follower any other way (an error, a deleted node) is killed;
- **output**: stdout and stderr go to a log file (no pipe can fill up and block the command, nothing is
  lost); a failure becomes a :class:`CopyCatError` with the command's one-line error and the log's path.

This module is imported by Nuke's Python on a button press: standard library only, Python 3.7 compatible
(``./dev test`` checks it with vermin).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import nuke

from copycat_nuke.errors import CopyCatError
from copycat_nuke.framelist import format_frame_list
from copycat_nuke.nuke import jobs

#: The node knob naming the external Python (a File_Knob on CopyCat, Inference, Upscale and Deblur).
KNOB = "pythonExecutable"
#: The environment variable naming it when the knob is empty or absent.
ENV = "COPYCAT_PYTHON"
#: Files an external training run writes into its run directory (besides what ``copycat train`` writes).
JOB_FILE = "external_job.yaml"
LOG_FILE = "external_job.log"
EVENTS_FILE = "external_job.events"
#: Seconds between looks at a running command (events, Stop).
POLL_INTERVAL = 0.2
#: Seconds a stopped command may take to write its checkpoint and model.cat before it is killed.
STOP_GRACE = 120.0
#: Seconds ``copycat info`` may take (it imports torch).
INFO_TIMEOUT = 120.0
#: The error line the copycat command prints (cli.main).
_ERROR_PREFIX = "copycat: error: "


# ------------------------------------------------------------------------------------------ which Python
def configured_python(node: Optional[nuke.Node] = None) -> Optional[str]:
    """Main thread: the external Python to run ``copycat`` with, as an absolute path, or None for Nuke's own.

    The node's ``pythonExecutable`` knob (tolerated missing: older gizmos) wins over ``COPYCAT_PYTHON``.
    Raises a :class:`CopyCatError` naming the knob or variable when it names no runnable program.
    """
    knob = node.knob(KNOB) if node is not None else None
    value = str(knob.value()).strip() if knob is not None else ""
    where = f"{node.name()}.{KNOB}" if value and node is not None else ENV
    if "[" in value:  # a Tcl expression, as in other file knobs
        value = nuke.tcl("subst", value).strip()
    if not value:
        value = os.environ.get(ENV, "").strip()
    return resolve_python(value, where) if value else None


def resolve_python(value: str, where: str) -> str:
    """``value`` (a path, or a program name on ``PATH``) as an absolute path to a runnable program."""
    expanded = os.path.expanduser(value)
    is_path = os.sep in expanded or (os.altsep is not None and os.altsep in expanded)
    found = (expanded if os.path.isfile(expanded) else None) if is_path else shutil.which(expanded)
    if found is None or not os.access(found, os.X_OK):
        raise CopyCatError(
            f"{where} is {value!r}, which is not a Python this machine can run: set it to the python of a venv "
            "with copycat_nuke's dependencies (e.g. /tools/copycat-venv/bin/python), or clear it"
        )
    return os.path.abspath(found)


def package_root() -> str:
    """The folder holding this ``copycat_nuke`` package: first on the external Python's ``PYTHONPATH``."""
    return str(Path(__file__).resolve().parent.parent.parent)


def environment() -> dict[str, str]:
    """The command's environment: Nuke's, without the variables that point Python at Nuke's own packages
    (another Python version's), with this copycat_nuke importable and unbuffered UTF-8 output."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONPATH"] = package_root()
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the log in the order they were printed
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def command(python: str, *arguments: str) -> list[str]:
    """``python -m copycat_nuke.cli ARGUMENTS`` (``copycat`` itself may not be on PATH, nor the venv's)."""
    return [python, "-m", "copycat_nuke.cli", *arguments]


# ----------------------------------------------------------------------------------------- a running command
class _Events:
    """Reads the JSON lines a command appends to its ``--events`` file, as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as stream:
                stream.seek(self.offset)
                data = stream.read()
        except OSError:  # not written yet
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # a line still being written
        events = []
        for line in lines:
            try:
                event = json.loads(line.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


@dataclass
class Outcome:
    """How a command ended: its exit status, whether Stop was pressed, and its events."""

    returncode: int
    stopped: bool
    events: list[dict[str, Any]]

    def last(self, kind: str) -> Optional[dict[str, Any]]:
        """The last event called ``kind`` (``"Finished"``...), or None."""
        found = [event for event in self.events if event.get("event") == kind]
        return found[-1] if found else None


def last_error(log: Path) -> str:
    """The command's one-line error from its log: ``copycat: error: ...`` if it printed one, else the last line
    (a traceback's exception, a crash)."""
    try:
        with log.open("rb") as stream:
            stream.seek(0, os.SEEK_END)
            stream.seek(max(stream.tell() - 65536, 0))
            text = stream.read().decode("utf-8", "replace")
    except OSError:
        return "it wrote no log"
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(_ERROR_PREFIX)]
    if errors:
        return errors[-1][len(_ERROR_PREFIX) :]
    return lines[-1] if lines else "it printed nothing"


def _end(process: subprocess.Popen[bytes]) -> None:
    """End a command that is still running: politely, then for sure."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(
    context: jobs.Context,
    python: str,
    arguments: Sequence[str],
    *,
    log: Path,
    events: Path,
    what: str,
    on_event: Callable[[dict[str, Any]], None],
    cwd: Optional[Path] = None,
) -> Outcome:
    """Run ``copycat ARGUMENTS --events EVENTS --stop-on-eof`` in ``python`` and follow it to the end.

    Every event goes to ``on_event`` (on the job's thread) as it comes. Stop closes the command's standard
    input; a command that has not ended ``STOP_GRACE`` s later is killed. A command that fails (and was not
    stopped) raises a :class:`CopyCatError` naming ``what``, its error line and the log.
    """
    for stale in (events, log):  # a previous run's: never read as this run's
        if stale.exists():
            stale.unlink()
    full = command(python, *arguments, "--events", str(events), "--stop-on-eof")
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
    try:
        with log.open("wb") as output:  # the child writes through its own handle
            process = subprocess.Popen(
                full,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=str(cwd) if cwd is not None else None,
                env=environment(),
                creationflags=flags,
            )
    except OSError as error:
        raise CopyCatError(
            f"cannot start the external Python {python} ({error.strerror or error}): set {KNOB} or {ENV} to "
            "the python of a venv with copycat_nuke's dependencies"
        ) from None
    reader = _Events(events)
    seen: list[dict[str, Any]] = []
    stop_asked: Optional[float] = None
    killed = False
    try:
        while True:
            finished = process.poll() is not None
            for event in reader.new():  # after poll(): a command that ended has written all its events
                seen.append(event)
                on_event(event)
            if finished:
                break
            if stop_asked is None and context.stop_requested():
                stop_asked = time.monotonic()
                _close_stdin(process)
                context.progress(0, f"{what}: stopping...", force=True)
            elif stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE:
                killed = True
                _end(process)
            context.stop_event.wait(POLL_INTERVAL)
    finally:
        _close_stdin(process)
        _end(process)  # the follower ended early (an error, a deleted node): so does the command
    if killed:
        raise CopyCatError(
            f"{what} in the external Python did not stop within {STOP_GRACE:.0f} s of Stop and was ended; "
            f"its log is {log}"
        )
    returncode = int(process.returncode)
    if returncode != 0 and stop_asked is None:
        raise CopyCatError(f"{what} in the external Python {python} failed: {last_error(log)} (log: {log})")
    return Outcome(returncode=returncode, stopped=stop_asked is not None, events=seen)


def _close_stdin(process: subprocess.Popen[bytes]) -> None:
    stream = process.stdin
    if stream is not None and not stream.closed:
        with contextlib.suppress(OSError):  # the command has gone: nothing to tell it
            stream.close()


# ------------------------------------------------------------------------------------------------ train
def write_job(config: Any, path: Path) -> Path:
    """Write the training job (a :class:`~copycat_nuke.config.TrainConfig`) for ``copycat train --config``."""
    from copycat_nuke.config import save_yaml  # stdlib (pyyaml only when it is installed)

    return save_yaml(config, path)


def run_train(
    context: jobs.Context, config: Any, python: str, on_event: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Train ``config`` (a :class:`~copycat_nuke.config.TrainConfig` with its sequences filled in) with
    ``copycat train`` in ``python``; returns the ``Finished`` event (``step``, ``total_steps``, ``stopped``,
    ``model_path``, ``final_loss``, ``seconds``). Stop ends it after the step, with a checkpoint and model.cat.
    """
    run_directory = Path(config.out)
    run_directory.mkdir(parents=True, exist_ok=True)
    job = write_job(config, run_directory / JOB_FILE)
    outcome = run(
        context,
        python,
        ["train", "--config", str(job), "--quiet"],
        log=run_directory / LOG_FILE,
        events=run_directory / EVENTS_FILE,
        what="training",
        on_event=on_event,
        cwd=run_directory,
    )
    finished = outcome.last("Finished")
    if finished is None:
        if outcome.stopped:  # stopped before the first step (reading pairs, the batch probe): nothing to keep
            raise jobs.Stopped(f"{context.node_name}: stopped")
        raise CopyCatError(
            f"training in the external Python ended without finishing: {last_error(run_directory / LOG_FILE)} "
            f"(log: {run_directory / LOG_FILE})"
        )
    return finished


# ------------------------------------------------------------------------------------------------ infer
def run_infer(
    context: jobs.Context,
    python: str,
    model: Path,
    input_pattern: str,
    output_pattern: str,
    frames: Sequence[int],
    *,
    device: str = "auto",
    half: bool = False,
    tile: Optional[int] = None,
    overlap: Optional[int] = None,
    progress: tuple[float, float] = (0.0, 100.0),
    log: Optional[Path] = None,
) -> list[int]:
    """Run ``model`` over ``input_pattern`` into ``output_pattern`` at ``frames`` with ``copycat infer`` in
    ``python``, as :func:`copycat_nuke.infer.infer_sequence` would in Nuke's Python; returns the frames written.

    ``tile``: None chooses tiles automatically, 0 renders whole frames; ``overlap`` None: the default.
    ``progress`` is the span of the job's progress (percent) the frames cover. Stop ends it after the
    current frame (:class:`~copycat_nuke.nuke.jobs.Stopped`). The log goes to ``log`` (default: a file in
    the system's temporary folder named after the node); its path is in the error if the command fails.
    """
    if not frames:
        return []
    if log is None:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in context.node_name)
        log = Path(tempfile.gettempdir()) / f"copycat-infer-{safe}.log"
    arguments = [
        "infer",
        str(model),
        input_pattern,
        output_pattern,
        "--frames",
        format_frame_list(frames),
        "--device",
        device,
        "--quiet",
    ]
    if half:
        arguments.append("--half")
    if tile is not None:
        arguments += ["--tile", str(tile)]
    if overlap is not None:
        arguments += ["--overlap", str(overlap)]
    start, span = progress
    written: list[int] = []

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") != "FrameWritten":
            return
        done, total = int(event.get("done", 0)), max(int(event.get("total", 1)), 1)
        written.append(int(event.get("frame", 0)))
        message = (
            f"rendering: frame {event.get('frame')} ({done}/{total}, {float(event.get('seconds', 0)):.1f} s a frame)"
        )
        context.progress(start + span * done / total, message)

    events = log.with_name(log.name + ".events")
    try:
        outcome = run(context, python, arguments, log=log, events=events, what="rendering", on_event=on_event)
    finally:
        if events.exists():
            events.unlink()
    if outcome.stopped:
        raise jobs.Stopped(f"{context.node_name}: stopped after {len(written)} frame(s)")
    return sorted(written)


# ------------------------------------------------------------------------------------------------- info
def describe_model(python: str, model: Path) -> dict[str, Any]:
    """``copycat info --json`` of a ``.cat`` in ``python``: ``channels_in``, ``channels_out``, ``scale``,
    ``kind``, ``arguments`` (``temporal``...), as :func:`copycat_nuke.catfile.describe` gives them.

    Blocks for as long as the external Python takes to import torch (seconds); raises a
    :class:`CopyCatError` with the command's error (a damaged file, a missing package).
    """
    try:
        done = subprocess.run(
            command(python, "info", "--json", str(model)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=environment(),
            timeout=INFO_TIMEOUT,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CopyCatError(f"cannot read {model} with the external Python {python}: {error}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {done.returncode}"
        if detail.startswith(_ERROR_PREFIX):
            detail = detail[len(_ERROR_PREFIX) :]
        raise CopyCatError(f"cannot read {model} with the external Python {python}: {detail}")
    try:
        info = json.loads(done.stdout.decode("utf-8"))
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise CopyCatError(f"the external Python {python} described {model} in a form this copycat_nuke cannot read")
    return info
