"""Fixtures for the Nuke layer's tests: a fresh stand-in Nuke session per test, and small real EXR shots.

Import the fixtures into a test module (``from nukestub.fixtures import nuke_session``). The stand-in
``nuke``/``nukescripts`` and ``copycat_nuke.nuke`` are removed from ``sys.modules`` after each test, so no
other test sees a ``nuke`` module (the Qt panel, for one, checks for it to know it is inside Nuke).
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from copycat_nuke import imageio

STUB_DIR = Path(__file__).resolve().parent
REPO = STUB_DIR.parent.parent

_OWNED = ("nuke", "nukescripts", "copycat_nuke.nuke", "nkscript")


def _owned(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in _OWNED)


@pytest.fixture
def nuke_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The stand-in ``nuke`` module in terminal mode (``env['gui']`` False) after the repository's init.py ran.

    Set ``nuke.env['gui'] = True`` for an interactive session; jobs then run on worker threads and the
    test drives Nuke's event loop with ``nuke.process_events``.
    """
    monkeypatch.syspath_prepend(str(STUB_DIR))
    monkeypatch.setattr(sys, "path", list(sys.path))  # init.py may add to it
    import nuke

    nuke.reset(gui=False)
    # Nuke runs init.py in its __main__ namespace, where [python ...] expressions are evaluated too
    nuke.STATE.main_namespace.update(runpy.run_path(str(REPO / "init.py")))
    try:
        yield nuke
    finally:
        _stop_jobs()
        for name in [name for name in sys.modules if _owned(name)]:
            del sys.modules[name]
        import copycat_nuke

        if hasattr(copycat_nuke, "nuke"):
            delattr(copycat_nuke, "nuke")


def _stop_jobs() -> None:
    jobs = sys.modules.get("copycat_nuke.nuke.jobs")
    if jobs is None:
        return
    for job in list(jobs._JOBS.values()):
        job.stop()
        if job.thread is not None:
            job.thread.join(30)
        if job.training is not None:
            job.training.wait(30)


def wait_for(nuke: Any, node: Any, timeout: float = 60) -> None:
    """Be Nuke's event loop until the node's job (started in the GUI) has finished."""
    from copycat_nuke.nuke import jobs

    name = node.fullName()
    nuke.process_events(until=lambda: jobs.current(name) is None, timeout=timeout)


def write_shot(
    directory: Path, frames: range, truth_frames: range, size: tuple[int, int] = (32, 48)
) -> tuple[str, str]:
    """A plate (``in.####.exr``, smooth random colour) and a Ground Truth (``gt.####.exr``: a grade plus a
    painted square) at the given frames; returns both patterns."""
    rng = np.random.default_rng(7)
    height, width = size
    directory.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        image = rng.random((height // 8, width // 8, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)
        alpha = np.ones((height, width, 1), np.float32)
        imageio.write_frame(directory / f"in.{frame:04d}.exr", np.concatenate([image, alpha], 2), "rgba")
        if frame in truth_frames:
            truth = image * np.array([0.8, 1.0, 1.2], np.float32)
            truth[8:16, 8:16] = 0.5
            imageio.write_frame(directory / f"gt.{frame:04d}.exr", truth, "rgb", pixel_type="float")
    return str(directory / "in.####.exr"), str(directory / "gt.####.exr")


def make_model(path: Path, seed: int = 0, temporal: int = 0) -> Path:
    """A Small RGB→RGB ``.cat`` with random weights (no training): for tests that only need a model.
    ``temporal`` N: one that also sees N neighbouring frames on each side, with a random output layer too
    (an untrained residual network returns its own frame, whatever its neighbours)."""
    import torch

    from copycat_nuke import catfile, transfer
    from copycat_nuke.models import build_model, msrn_arguments

    arguments = msrn_arguments("small", 3, 3, temporal=temporal)
    torch.manual_seed(seed)
    network = build_model("msrn", arguments)
    if temporal:
        torch.nn.init.normal_(network.out.weight, std=0.05)
    manifest = catfile.Manifest(
        architecture="msrn",
        arguments=arguments,
        channels_in=["R", "G", "B"],
        channels_out=["R", "G", "B"],
        transfer=transfer.Transfer().to_dict(),
    )
    return catfile.save_cat(path, manifest, network.state_dict())


def read_exr(path: Path) -> Any:
    return imageio.read_frame(path)
