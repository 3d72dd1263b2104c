"""The public API: train and block, or train on a background thread."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Optional

from copycat_nuke.config import TrainConfig
from copycat_nuke.errors import ConfigError
from copycat_nuke.train.events import Event, Listener, TrainResult
from copycat_nuke.train.loop import Trainer


def train_model(
    config: Optional[TrainConfig] = None, *, listeners: Iterable[Listener] = (), **settings: Any
) -> TrainResult:
    """Train a CopyCat job and block until it ends.

    Give a :class:`TrainConfig`, or its fields as keywords (``input=``, ``target=``, ``out=``,
    ``steps=``…), or both (keywords override). Returns a :class:`TrainResult` with ``model_path``.

    Example (Nuke Script Editor or a shell)::

        import copycat_nuke
        result = copycat_nuke.train_model(input="plate.####.exr", target="clean.####.exr", out="/tmp/run", steps=2000)
    """
    return Trainer(_config(config, settings), listeners).run()


def _config(config: Optional[TrainConfig], settings: dict[str, Any]) -> TrainConfig:
    try:
        merged = replace(config or TrainConfig(), **settings)
    except TypeError as error:
        raise ConfigError(f"unknown training setting: {error}") from None
    return merged.validate()


class TrainingJob:
    """A training run on a background thread: :meth:`stop` it, :meth:`wait` for it, read its events.

    Events are also kept in :attr:`events` (a thread-safe queue) for UIs that poll.
    """

    def __init__(self, config: TrainConfig, listeners: Iterable[Listener] = ()) -> None:
        import queue

        self.events: queue.Queue[Event] = queue.Queue()
        self._listeners = [*listeners, self.events.put]
        self._trainer = Trainer(config, self._listeners)
        self.result: Optional[TrainResult] = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="copycat-train", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._trainer.run()
        except BaseException as error:  # handed to the caller by wait()
            self.error = error

    def stop(self) -> None:
        """Stop after the current step; a checkpoint and model.cat are still written."""
        self._trainer.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> Optional[TrainResult]:
        """Block until the run ends (or ``timeout`` seconds); re-raise its error if it failed."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result


def train_in_background(
    config: Optional[TrainConfig] = None, *, listeners: Iterable[Listener] = (), **settings: Any
) -> TrainingJob:
    """Start training on a background thread and return its :class:`TrainingJob` handle at once."""
    return TrainingJob(_config(config, settings), listeners)
