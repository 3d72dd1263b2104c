"""Render the training panel offscreen, in the middle of a real training run, to ``docs/panel.png``.

Makes three frames of the demo's set (tracking markers to paint out, and a grade to match), trains two
short runs to compare against, then starts a third from the panel's own Start button and grabs the panel
while it trains::

    .venv/bin/python scripts/render_panel.py                # -> docs/panel.png (a few minutes on 2 cores)
    .venv/bin/python scripts/render_panel.py --out /tmp/panel.png --keep /tmp/panel-runs --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

import numpy as np  # noqa: E402

from copycat_nuke import imageio  # noqa: E402
from copycat_nuke.config import TrainConfig  # noqa: E402
from copycat_nuke.demo import HEIGHT, PAN_PIXELS_PER_FRAME, WIDTH, make_set  # noqa: E402
from copycat_nuke.train import train_model  # noqa: E402
from copycat_nuke.ui import TrainingPanel, apply_nuke_theme  # noqa: E402
from copycat_nuke.ui.qt import QtCore, QtWidgets  # noqa: E402
from copycat_nuke.ui.runs import set_display_name  # noqa: E402


def _wait(app: QtWidgets.QApplication, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the panel did not get there in time")
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


def write_frames(directory: Path) -> tuple[str, str]:
    """Three frames of the demo's panning set: markers in the Input; clean and graded in the Ground Truth."""
    clean, marked = make_set(seed=7)
    graded = clean * np.array([1.15, 0.95, 0.75], np.float32) + 0.02  # warmer, lifted: the loss starts high
    for index, offset in enumerate((0, 5, 10)):
        top, left = offset * PAN_PIXELS_PER_FRAME[1], offset * PAN_PIXELS_PER_FRAME[0]
        window = (slice(top, top + HEIGHT), slice(left, left + WIDTH))
        imageio.write_frame(directory / f"plate.{1001 + index:04d}.exr", marked[window], "rgb")
        imageio.write_frame(directory / f"grade.{1001 + index:04d}.exr", graded[window], "rgb")
    return str(directory / "plate.####.exr"), str(directory / "grade.####.exr")


def render(out: Path, work: Path, width: int, height: int, steps: int) -> Path:
    source, truth = write_frames(work / "shot")
    data = (work / "copycat").resolve()
    base = TrainConfig(
        input=source,
        target=truth,
        model_size="small",
        batch_size=3,
        crop_size=64,
        checkpoint_interval=1000,
        image_interval=50,
        seed=3,
    )
    print("training two runs to compare against…", file=sys.stderr)
    train_model(replace(base, out=str(data / "run_001"), steps=steps, learning_rate=1e-4))
    set_display_name(data / "run_001", "lr 1e-4")
    train_model(replace(base, out=str(data / "run_002"), steps=steps, learning_rate=3e-4))
    set_display_name(data / "run_002", "lr 3e-4")

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    apply_nuke_theme(app)
    panel = TrainingPanel()
    panel.resize(width, height)
    panel.attach_directory(data)
    panel.set_config(replace(base, steps=4 * steps, learning_rate=1e-3))  # Start makes run_003 in the data directory
    panel.show()
    app.processEvents()
    print("training a third run from the panel…", file=sys.stderr)
    job = panel.start()
    live = data / "run_003"
    _wait(app, lambda: live in panel.run_directories(), 60)
    panel.rename_run(live, "lr 1e-3")
    _wait(app, lambda: len(panel.curve.points(str(live))[0]) >= 1.5 * steps, 900)
    _wait(app, lambda: panel.contact_sheet.path is not None, 30)
    for _ in range(5):  # let the last events and the repaint land
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.05)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.stem}.tmp.png")
    if not panel.grab().save(str(temp), "PNG"):
        raise OSError(f"could not write {temp}")
    os.replace(temp, out)
    panel.stop()
    job.wait(60)
    panel.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "panel.png")
    parser.add_argument("--keep", type=Path, help="keep the shot and runs in this directory (default: a temp dir)")
    parser.add_argument("--size", default="1280x860", help="panel size in pixels, WIDTHxHEIGHT")
    parser.add_argument("--steps", type=int, default=160, help="steps of the runs compared (the live one: 1.5×)")
    parser.add_argument("--threads", type=int, help="torch threads (1 is much faster on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        path = render(args.out, args.keep, width, height, args.steps)
    else:
        with tempfile.TemporaryDirectory(prefix="copycat-panel-") as work:
            path = render(args.out, Path(work), width, height, args.steps)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
