"""Long work of a node (gathering frames, training, rendering) without locking Nuke, and its errors.

In an interactive session (``nuke.env['gui']``) a :class:`NodeJob` runs its work on a worker thread, and
every Nuke call the work makes goes through :meth:`Context.call` / :meth:`Context.post`, i.e.
``nuke.executeInMainThreadWithResult`` / ``nuke.executeInMainThread``: Nuke's API is not thread-safe. The
worker holds node *names*, never node objects, and main-thread functions look the nodes up again.

In a terminal session (``nuke -t``, ``nuke -X``, a farm) there is no event loop to run main-thread calls,
and a farm script expects ``node['startTraining'].execute()`` to return when the work is done: the same work
then runs synchronously on the calling thread, with progress in a ``nuke.ProgressTask``, and errors propagate
so the farm job fails.

Errors meant for the artist are :class:`~copycat_nuke.errors.CopyCatError` s; :func:`button` turns them into
``nuke.message`` and the node's Status line, never a traceback dialog.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import nuke

from copycat_nuke.errors import CopyCatError
from copycat_nuke.nuke import knobs

T = TypeVar("T")

#: Seconds between progress updates of the Status line / ProgressTask (training steps can be ~10 ms).
PROGRESS_INTERVAL = 0.25


class Stopped(CopyCatError):
    """The artist pressed Stop (or cancelled the ProgressTask)."""


def is_gui() -> bool:
    """True in an interactive Nuke session, False in ``nuke -t`` / ``-X`` (farms, scripts)."""
    return bool(nuke.env["gui"])


def on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@dataclass
class _Outcome:
    value: Any = None
    error: Optional[BaseException] = None


def _capture(function: Callable[..., Any], args: tuple[Any, ...]) -> _Outcome:
    # executeInMainThreadWithResult prints and swallows exceptions (returning None): hand them back instead
    try:
        return _Outcome(value=function(*args))
    except BaseException as error:
        return _Outcome(error=error)


class Context:
    """What a job's work function gets: main-thread calls, stop checks and progress.

    Attributes:
        node_name: the node's ``fullName()``; look the node up with ``nuke.toNode`` on the main thread.
        gui: whether the work runs on a worker thread of an interactive session.
    """

    def __init__(self, job: NodeJob) -> None:
        self._job = job
        self.node_name = job.node_name
        self.gui = job.gui
        self._last_progress = 0.0
        self.task: Optional[nuke.ProgressTask] = None

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on Nuke's main thread and return its result (or raise its error)."""
        if not self.gui or on_main_thread():
            return function(*args)
        # Nuke docs: nuke.executeInMainThreadWithResult(call, args=(), kwargs={}); untyped in types-nuke
        outcome = nuke.executeInMainThreadWithResult(_capture, (function, args))  # type: ignore[no-untyped-call]
        if not isinstance(outcome, _Outcome):
            raise CopyCatError(f"Nuke did not run {getattr(function, '__name__', function)} on its main thread")
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[no-any-return]

    def post(self, function: Callable[..., object], *args: Any) -> None:
        """Run ``function(*args)`` on Nuke's main thread without waiting (at once in a terminal session)."""
        if not self.gui or on_main_thread():
            function(*args)
        else:
            nuke.executeInMainThread(function, args)

    def stop_requested(self) -> bool:
        """Whether Stop was pressed (or, in a terminal session, the ProgressTask was cancelled)."""
        if self.task is not None and self.task.isCancelled():
            self._job.stop()
        return self._job.stop_event.is_set()

    @property
    def stop_event(self) -> threading.Event:
        return self._job.stop_event

    def check_stop(self) -> None:
        """Raise :class:`Stopped` if Stop was pressed."""
        if self.stop_requested():
            raise Stopped(f"{self.node_name}: stopped")

    def progress(self, percent: float, message: str, *, force: bool = False) -> None:
        """Report progress: the ProgressTask in a terminal session, the node's Status line in the GUI."""
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        if self.task is not None:
            self.task.setProgress(int(max(0.0, min(100.0, percent))))
            self.task.setMessage(message)
        else:
            self.post(set_status, self.node_name, message, False)

    def attach_training(self, training: Any) -> None:
        """Remember the running :class:`~copycat_nuke.train.TrainingJob` (Stop and the panel use it)."""
        self._job.training = training
        if self._job.stop_event.is_set():
            training.stop()


class NodeJob:
    """One long task of one node. At most one runs per node at a time."""

    def __init__(self, node_name: str, title: str, gui: bool) -> None:
        self.node_name = node_name
        self.title = title
        self.gui = gui
        self.stop_event = threading.Event()
        self.training: Any = None  #: the TrainingJob while training runs in the GUI
        self.error: Optional[BaseException] = None
        self.thread: Optional[threading.Thread] = None
        self.finished = threading.Event()

    def stop(self) -> None:
        """Ask the work to stop: within one training step, or after the current frame."""
        self.stop_event.set()
        if self.training is not None:
            self.training.stop()

    @property
    def running(self) -> bool:
        return not self.finished.is_set()


_JOBS: dict[str, NodeJob] = {}
_LOCK = threading.Lock()


def current(node_name: str) -> Optional[NodeJob]:
    """The job running for a node (by ``fullName()``), or None."""
    with _LOCK:
        job = _JOBS.get(node_name)
    return job if job is not None and job.running else None


def start(node: nuke.Node, title: str, work: Callable[[Context], None], *, inline: bool = False) -> NodeJob:
    """Run ``work`` for ``node``: on a worker thread in the GUI (returns at once), inline in a terminal.

    ``title`` says what the job does ("training", "rendering"), for messages. ``inline`` runs it on the
    calling thread in the GUI too (a render callback must have the frames before it returns).
    """
    name = node.fullName()
    with _LOCK:
        running = _JOBS.get(name)
        if running is not None and running.running:
            raise CopyCatError(f"{name} is already {running.title}: press Stop first, or wait for it to finish")
        job = NodeJob(name, title, is_gui() and not inline)
        _JOBS[name] = job
    context = Context(job)
    if job.gui:
        job.thread = threading.Thread(target=_run_worker, args=(job, context, work), name=f"copycat {name}")
        job.thread.daemon = True
        job.thread.start()
        return job
    context.task = nuke.ProgressTask(f"{name}: {title}")
    try:
        work(context)
    except Stopped:
        set_status(name, f"Stopped {title}.", False)
    except BaseException as error:
        job.error = error
        raise
    finally:
        context.task = None  # a ProgressTask closes when it is released
        job.finished.set()
    return job


def _run_worker(job: NodeJob, context: Context, work: Callable[[Context], None]) -> None:
    try:
        work(context)
    except Stopped:
        context.post(set_status, job.node_name, f"Stopped {job.title}.", False)
    except CopyCatError as error:
        job.error = error
        context.post(report, job.node_name, str(error))
    except BaseException as error:  # a bug: the details to the terminal, a sentence to the artist
        job.error = error
        traceback.print_exc()
        context.post(report, job.node_name, _unexpected(job.title, error))
    finally:
        job.finished.set()


def _unexpected(action: str, error: BaseException) -> str:
    return (
        f"{action} failed unexpectedly ({type(error).__name__}: {error}). The details are in the terminal "
        "Nuke was started from; please report them with the copycat_nuke version."
    )


# ------------------------------------------------------------------------------------ main-thread helpers
def set_status(node_name: str, message: str, warning: bool) -> None:
    """Main thread: show ``message`` on the node's Status line (if the node still exists)."""
    node = nuke.toNode(node_name)
    if node is not None and node.knob("status") is not None:
        knobs.set_status(node, message, warning=warning)


def report(node_name: str, message: str) -> None:
    """Main thread: tell the artist about a problem: Status line and a message box (stderr in a terminal)."""
    set_status(node_name, message, True)
    if is_gui():
        nuke.message(f"{node_name}: {message}")
    else:
        print(f"copycat_nuke: {node_name}: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ decorators
NodeAction = Callable[[nuke.Node], None]


def button(action: NodeAction) -> NodeAction:
    """Wrap a button's function: problems become a message and a Status warning, never a traceback dialog.

    In a terminal session the error is also re-raised after printing it, so a farm job that runs
    ``node['startTraining'].execute()`` fails instead of reporting success.
    """

    @functools.wraps(action)
    def wrapper(node: nuke.Node) -> None:
        try:
            action(node)
        except CopyCatError as error:
            report(node.fullName(), str(error))
            if not is_gui():
                raise
        except Exception as error:
            traceback.print_exc()
            report(node.fullName(), _unexpected(action.__name__.replace("_", " "), error))
            if not is_gui():
                raise

    return wrapper


def callback(action: Callable[..., None]) -> Callable[..., None]:
    """Wrap a knobChanged/onCreate callback: it never raises; problems go to the Status line and stderr."""

    @functools.wraps(action)
    def wrapper(node: nuke.Node, *args: Any) -> None:
        try:
            action(node, *args)
        except CopyCatError as error:
            if node.knob("status") is not None:
                knobs.set_status(node, str(error), warning=True)
        except Exception:
            traceback.print_exc()

    return wrapper
