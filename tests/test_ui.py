"""The training panel on Qt's offscreen platform: curve, smoothing, log scale, Start/Stop/Resume, runs.

Trainings here are real (tiny frames in ``tmp_path``, the small network, 32-pixel crops), on one torch
thread: tiny networks gain nothing from a second one, and it leaves a core to the UI thread being tested.
"""

from __future__ import annotations

import os
import queue
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qtpy")

from helpers import write_pairs

from copycat_nuke import plots
from copycat_nuke.config import TrainConfig
from copycat_nuke.train import Finished, Started, StepDone, train_model
from copycat_nuke.ui import TrainingPanel, runs
from copycat_nuke.ui.loss_curve import LossCurveWidget
from copycat_nuke.ui.panel import format_duration
from copycat_nuke.ui.qt import QtCore, QtGui, QtWidgets

LEFT = QtCore.Qt.MouseButton.LeftButton


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def job_config(tmp_path: Path, out: Path, **overrides) -> TrainConfig:
    source, truth = write_pairs(tmp_path, size=(32, 32))
    settings = dict(
        input=source,
        target=truth,
        out=str(out),
        steps=100_000,  # runs until stopped
        model_size="small",
        batch_size=2,
        crop_size=32,
        checkpoint_interval=100_000,
        image_interval=2,
        precision="fp32",
        seed=1,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def make_panel(qtbot) -> TrainingPanel:
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.resize(1100, 760)
    panel.show()
    return panel


class QueueJob:
    """A stand-in TrainingJob whose events the test writes: the panel reads only these attributes."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.running = True
        self.error = None
        self.result = None
        self.stop_requested = False

    def stop(self) -> None:
        self.stop_requested = True


def started(out_dir: Path, total: int = 10, start: int = 0) -> Started:
    return Started(total, start, 3, 2, 32, "cpu", "fp32", out_dir)


def step_done(step: int, loss: float, total: int = 10) -> StepDone:
    return StepDone(step, total, loss, 1e-4, 40.0, 0.1 * step, 0.1 * (total - step))


def points(panel: TrainingPanel, run: Path) -> int:
    """How many points the panel's curve has for ``run`` (0 before the run has a curve)."""
    key = str(run.resolve())
    return len(panel.curve.points(key)[0]) if panel.curve.has_series(key) else 0


def orange_pixels(widget: QtWidgets.QWidget) -> int:
    """Pixels of the grabbed widget close to the smoothed curve's orange (#f0a030)."""
    image = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    count = 0
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            colour = QtGui.QColor(image.pixel(x, y))
            if abs(colour.red() - 0xF0) < 24 and abs(colour.green() - 0xA0) < 24 and abs(colour.blue() - 0x30) < 40:
                count += 1
    return count


# ------------------------------------------------------------------------------------------ import
def test_importing_the_ui_loads_qt_but_not_torch():
    code = "import sys, copycat_nuke.ui; assert 'torch' not in sys.modules, 'torch loaded'; print('ok')"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


# ------------------------------------------------------------------------------------------- curve
def test_curve_points_appear_as_events_arrive(qtbot, tmp_path):
    panel = make_panel(qtbot)
    job = QueueJob()
    run = tmp_path / "run"
    panel.attach_job(job)
    assert panel.is_training and panel.stop_button.isEnabled() and not panel.start_button.isEnabled()

    job.events.put(started(run))
    for step, loss in enumerate((0.5, 0.4, 0.3), start=1):
        job.events.put(step_done(step, loss))
    qtbot.waitUntil(lambda: points(panel, run) == 3, timeout=2000)
    steps, losses = panel.curve.points(str(run.resolve()))
    assert steps.tolist() == [1, 2, 3] and losses.tolist() == [0.5, 0.4, 0.3]
    assert panel.stats["step"].value.text() == "3 / 10"
    assert panel.stats["patches"].value.text() == "40.0"
    assert panel.stats["eta"].value.text() == "00:01"
    assert panel.progress_bar.value() == 3 and panel.progress_bar.maximum() == 10
    assert panel.run_directories() == [run.resolve()]

    for step in range(4, 11):
        job.events.put(step_done(step, 0.3 / step))
    qtbot.waitUntil(lambda: points(panel, run) == 10, timeout=2000)
    assert orange_pixels(panel.curve) > 50  # the curve is drawn in Nuke's orange

    job.running = False
    with qtbot.waitSignal(panel.job_finished, timeout=2000):
        job.events.put(Finished(10, 10, False, run / "model.cat", 0.03, 1.0))
    assert not panel.is_training and not panel.stop_button.isEnabled()
    assert "finished" in panel.message.text()


def test_a_backlog_of_events_is_spread_over_timer_ticks(qtbot, tmp_path):
    """Attaching late to a long run must not freeze the UI while it catches up."""
    panel = make_panel(qtbot)
    job = QueueJob()
    run = tmp_path / "run"
    job.events.put(started(run, total=50_000))
    for step in range(1, 50_001):
        job.events.put(step_done(step, 1.0 / step, total=50_000))
    panel.attach_job(job)
    start = time.perf_counter()
    panel._poll()  # one tick
    assert time.perf_counter() - start < 0.25
    assert 0 < points(panel, run) < 50_000
    qtbot.waitUntil(lambda: points(panel, run) == 50_000, timeout=30_000)
    start = time.perf_counter()
    panel.curve.repaint()  # 50k points: drawn from their per-pixel envelope
    assert time.perf_counter() - start < 0.5


def test_smoothing_is_plots_smooth_at_the_panels_smoothness(qtbot):
    panel = make_panel(qtbot)
    rng = np.random.default_rng(0)
    losses = (np.exp(-np.arange(200) / 60) * (1 + 0.3 * rng.standard_normal(200))).clip(1e-4)
    panel.curve.set_series("run", np.arange(1, 201), losses)

    assert panel.smoothness_spin.value() == pytest.approx(0.6) and panel.smoothness_slider.value() == 60
    np.testing.assert_allclose(panel.curve.smoothed("run"), plots.smooth(losses, 0.6))
    panel.smoothness_spin.setValue(0.95)
    assert panel.smoothness_slider.value() == 95
    np.testing.assert_allclose(panel.curve.smoothed("run"), plots.smooth(losses, 0.95))
    panel.smoothness_slider.setValue(0)
    assert panel.smoothness_spin.value() == 0.0
    np.testing.assert_allclose(panel.curve.smoothed("run"), losses)  # 0: the raw values

    panel.curve.append("run", 201, 0.01)  # a new point is smoothed with the rest
    panel.set_smoothness(0.6)
    np.testing.assert_allclose(panel.curve.smoothed("run"), plots.smooth([*losses, 0.01], 0.6))


def test_log_scale_spaces_decades_evenly_and_the_toggle_makes_it_linear(qtbot):
    panel = make_panel(qtbot)
    curve = panel.curve
    curve.set_series("run", [1, 2, 3, 4], [1.0, 0.1, 0.01, 0.001])
    panel.set_smoothness(0.0)
    assert panel.log_scale_box.isChecked() and curve.log_scale

    y = {loss: curve.value_to_point(1, loss).y() for loss in (1.0, 0.1, 0.01, 0.001)}
    assert y[1.0] < y[0.1] < y[0.01] < y[0.001]  # larger losses higher up
    assert y[0.1] - y[1.0] == pytest.approx(y[0.01] - y[0.1]) == pytest.approx(y[0.001] - y[0.01])
    assert {"1e-3", "0.01", "0.1", "1"} <= set(curve.y_tick_labels())
    low, high = curve.y_range()
    assert low < 0.001 and high > 1.0

    qtbot.mouseClick(panel.log_scale_box, LEFT)
    assert not curve.log_scale
    y = {loss: curve.value_to_point(1, loss).y() for loss in (1.0, 0.5, 0.0)}
    assert y[0.5] - y[1.0] == pytest.approx(y[0.0] - y[0.5])  # linear: equal steps for equal differences
    ticks = [float(label) for label in curve.y_tick_labels()]
    assert ticks[0] == 0 and len(set(np.round(np.diff(ticks), 9))) == 1  # 0, 0.2, 0.4…: evenly spaced


def test_show_original_draws_the_raw_curve_behind_the_smoothed_one(qtbot):
    curve = LossCurveWidget()
    qtbot.addWidget(curve)
    curve.resize(600, 360)
    assert orange_pixels(curve) == 0  # empty: "no loss values yet"
    rng = np.random.default_rng(1)
    curve.set_series("run", np.arange(300), 0.1 + 0.05 * rng.standard_normal(300).clip(-1.9, 3))
    curve.set_show_original(False)
    without = curve.grab().toImage()
    curve.set_show_original(True)
    with_raw = curve.grab().toImage()
    assert without != with_raw
    curve.set_log_scale(False)
    curve.set_series("zero", [0, 1], [0.0, 0.0])  # zero losses: fine on a linear axis, and with log again
    curve.grab()
    curve.set_log_scale(True)
    curve.grab()


# -------------------------------------------------------------------------------- real training
def test_stop_button_stops_a_real_run_and_resume_continues_it(qtbot, tmp_path):
    panel = make_panel(qtbot)
    run = tmp_path / "run"
    panel.set_config(job_config(tmp_path, run))
    assert panel.start_button.isEnabled() and not panel.resume_button.isEnabled()

    with qtbot.waitSignal(panel.job_started, timeout=5000):
        qtbot.mouseClick(panel.start_button, LEFT)
    key = str(run.resolve())
    qtbot.waitUntil(lambda: points(panel, run) >= 3, timeout=30_000)
    qtbot.waitUntil(lambda: panel.contact_sheet.path is not None, timeout=10_000)
    assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled()

    with qtbot.waitSignal(panel.job_finished, timeout=30_000):
        qtbot.mouseClick(panel.stop_button, LEFT)
    job = panel.job
    result = job.result
    assert result is not None and result.stopped and 3 <= result.steps < 100_000
    assert (run / "model.cat").is_file() and runs.has_checkpoint(run)
    assert "stopped at step" in panel.message.text()
    assert panel.start_button.isEnabled() and panel.resume_button.isEnabled() and not panel.stop_button.isEnabled()
    stopped_at = result.steps

    with qtbot.waitSignal(panel.job_started, timeout=5000):
        qtbot.mouseClick(panel.resume_button, LEFT)
    qtbot.waitUntil(lambda: points(panel, run) >= stopped_at + 2, timeout=30_000)
    panel.stop()
    qtbot.waitUntil(lambda: not panel.is_training, timeout=30_000)
    steps = panel.curve.points(key)[0]
    assert steps.tolist() == list(range(1, len(steps) + 1))  # one run: the log up to the checkpoint, then on
    assert panel.job is not job and panel.job.result.steps > stopped_at


def test_ui_answers_clicks_within_100ms_while_training(qtbot, tmp_path):
    panel = make_panel(qtbot)
    run = tmp_path / "run"
    panel.set_config(job_config(tmp_path, run, image_interval=5))
    job = panel.start()
    qtbot.waitUntil(lambda: points(panel, run) >= 2, timeout=30_000)

    handled: list[float] = []
    panel.log_scale_box.toggled.connect(lambda _: handled.append(time.perf_counter()))
    box = panel.log_scale_box
    centre = QtCore.QPointF(box.rect().center())
    latencies = []
    steps_before = points(panel, run)
    for _ in range(12):
        qtbot.wait(40)
        posted = time.perf_counter()
        for kind in (QtCore.QEvent.Type.MouseButtonPress, QtCore.QEvent.Type.MouseButtonRelease):
            event = QtGui.QMouseEvent(
                kind, centre, QtCore.QPointF(box.mapToGlobal(centre.toPoint())), LEFT, LEFT,
                QtCore.Qt.KeyboardModifier.NoModifier,
            )  # fmt: skip
            QtWidgets.QApplication.postEvent(box, event)  # queued like a real click: the event loop must get to it
        count = len(handled)
        qtbot.waitUntil(lambda count=count: len(handled) > count, timeout=5000)
        latencies.append(handled[-1] - posted)
    assert job.running and points(panel, run) > steps_before  # it trained all along
    panel.stop()
    qtbot.waitUntil(lambda: not panel.is_training, timeout=30_000)
    print(f"click latency: median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < 0.100


def test_a_failed_run_says_why(qtbot, tmp_path):
    panel = make_panel(qtbot)
    config = job_config(tmp_path, tmp_path / "run", input=str(tmp_path / "missing.####.exr"))
    panel.set_config(config)
    with qtbot.waitSignal(panel.job_finished, timeout=30_000):
        panel.start()
    assert panel.job.error is not None
    assert "training failed" in panel.message.text() and "missing" in panel.message.text()
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()


# ------------------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def data_directory(tmp_path_factory) -> Path:
    """Two real finished runs, ``a`` (4 steps) and ``b`` (6 steps), in one data directory."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    source, truth = write_pairs(root, size=(32, 32))
    base = dict(input=source, target=truth, model_size="small", batch_size=2, crop_size=32, precision="fp32")
    train_model(TrainConfig(**base, out=str(root / "data" / "a"), steps=4, image_interval=2, checkpoint_interval=4))
    train_model(TrainConfig(**base, out=str(root / "data" / "b"), steps=6, image_interval=3, checkpoint_interval=3))
    return root / "data"


def test_run_table_reads_real_run_directories(qtbot, data_directory):
    panel = make_panel(qtbot)
    panel.attach_directory(data_directory)
    table = panel.run_table
    assert panel.run_directories() == [data_directory / "a", data_directory / "b"]
    rows = [[table.item(row, column).text() for column in range(1, 5)] for row in range(table.rowCount())]
    logged = [runs.read_loss_log(data_directory / name) for name in ("a", "b")]
    assert rows == [
        ["a", "4 / 4", f"{logged[0].losses[-1]:.4g}", "finished"],
        ["b", "6 / 6", f"{logged[1].losses[-1]:.4g}", "finished"],
    ]
    for name, log in zip("ab", logged):
        steps, losses = panel.curve.points(str(data_directory / name))
        assert steps.tolist() == log.steps and losses.tolist() == log.losses
    # the newest run is selected: its settings, contact sheet and numbers are shown
    assert panel.current_run == str(data_directory / "b")
    assert panel.contact_sheet.path == data_directory / "b" / "contact_sheets" / "contact_sheet.0000006.png"
    table = panel.settings_table
    settings = {table.item(row, 0).text(): table.item(row, 1).text() for row in range(table.rowCount())}
    assert settings["model_size"] == "small" and settings["steps"] == "6"
    assert panel.stats["step"].value.text() == "6 / 6"
    assert panel.start_button.isEnabled() and panel.resume_button.isEnabled()


def test_a_run_can_be_hidden_and_renamed_without_moving_it(qtbot, data_directory):
    panel = make_panel(qtbot)
    panel.attach_directory(data_directory)
    key = str(data_directory / "a")
    show = panel.run_table.item(0, 0)
    show.setCheckState(QtCore.Qt.CheckState.Unchecked)  # the Show box
    assert not panel.curve.is_series_visible(key) and panel.curve.is_series_visible(str(data_directory / "b"))
    show.setCheckState(QtCore.Qt.CheckState.Checked)
    assert panel.curve.is_series_visible(key)

    panel.run_table.item(0, 1).setText("baseline")  # as an edit of the Name cell does
    assert runs.display_name(data_directory / "a") == "baseline"
    assert (data_directory / "a" / "config.yaml").is_file()  # the directory kept its name
    assert not [p for p in (data_directory / "a").iterdir() if p.name.endswith(".tmp")]
    assert panel.curve.series_label(key) == "baseline"
    again = make_panel(qtbot)
    again.attach_directory(data_directory)
    assert again.run_table.item(0, 1).text() == "baseline"
    panel.rename_run(data_directory / "a", "")  # an empty name goes back to the directory's
    assert runs.display_name(data_directory / "a") == "a" and not (data_directory / "a" / runs.DISPLAY_FILE).exists()


def test_start_in_a_data_directory_makes_a_new_run_with_the_selected_runs_settings(qtbot, data_directory, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(data_directory, data)
    panel = make_panel(qtbot)
    panel.attach_directory(data)
    with qtbot.waitSignal(panel.job_finished, timeout=60_000):  # b's settings: 6 steps
        qtbot.mouseClick(panel.start_button, LEFT)
    assert panel.run_directories() == [data / "a", data / "b", data / "run_001"]
    assert runs.read_loss_log(data / "run_001").steps == [1, 2, 3, 4, 5, 6]
    assert runs.read_loss_log(data / "b").steps == [1, 2, 3, 4, 5, 6]  # b itself untouched
    assert panel.run_table.item(2, 4).text() == "finished"


def test_files_being_written_by_another_process_are_followed(qtbot, tmp_path):
    """A run trained elsewhere (``copycat train`` in a shell, a farm job) updates as its files change."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "loss.csv").write_text("step,loss,learning_rate,seconds\n1,0.5,0.0002,0.1\n2,0.4,0.0002,0.2\n3,0.3")
    panel = make_panel(qtbot)
    panel.refresh_interval = 0.1
    panel.attach_directory(run)
    assert panel.curve.points(str(run))[1].tolist() == [0.5, 0.4]  # the half-written row is skipped
    with (run / "loss.csv").open("a") as stream:
        stream.write(",0.0002,0.3\n4,0.2,0.0002,0.4\n")
    qtbot.waitUntil(lambda: len(panel.curve.points(str(run))[0]) == 4, timeout=5000)
    assert panel.run_table.item(0, 4).text() == "incomplete"


def test_one_unreadable_run_is_listed_with_its_reason_and_the_panel_keeps_the_others(qtbot, tmp_path):
    """Issue #21: a display.json nested 100 000 deep or a binary config.yaml used to take the panel down."""
    for name in ("good", "nested", "binary"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "loss.csv").write_text("step,loss,learning_rate,seconds\n1,0.5,0.0002,0.1\n")
        (tmp_path / name / "config.yaml").write_text("steps: 10\n")
    (tmp_path / "nested" / runs.DISPLAY_FILE).write_text("[" * 100_000)
    (tmp_path / "binary" / "config.yaml").write_bytes(b"\x00\xff\xfe\x89PNG binary")
    panel = make_panel(qtbot)
    panel.attach_directory(tmp_path)
    rows = {panel.run_table.item(row, 1).text(): panel.run_table.item(row, 4).text() for row in range(3)}
    assert rows["good"] == rows["nested"] == "incomplete"
    assert rows["binary"].startswith("unreadable: ") and "config.yaml" in rows["binary"]


# ------------------------------------------------------------------------------------ run files
def test_run_files_helpers(tmp_path):
    for name in ("run_10", "run_2", ".hidden", "notes"):
        (tmp_path / name).mkdir()
    for name in ("run_10", "run_2", ".hidden"):
        (tmp_path / name / "loss.csv").write_text("step,loss,learning_rate,seconds\n")
    assert runs.find_runs(tmp_path) == [tmp_path / "run_2", tmp_path / "run_10"]
    assert runs.find_runs(tmp_path / "run_2") == [tmp_path / "run_2"]
    assert runs.find_runs(tmp_path / "nowhere") == []
    assert runs.next_run_directory(tmp_path) == tmp_path / "run_001"
    assert runs.set_display_name(tmp_path / "run_2", "  my   best run ") == "my best run"
    assert runs.display_name(tmp_path / "run_2") == "my best run"
    (tmp_path / "run_10" / runs.DISPLAY_FILE).write_text("{not json")
    assert runs.display_name(tmp_path / "run_10") == "run_10"
    assert runs.read_loss_log(tmp_path / "notes").steps == []
    assert format_duration(75) == "01:15" and format_duration(3725) == "1:02:05" and format_duration(np.inf) == "—"


def test_cli_gui_opens_the_panel_on_a_directory(qtbot, data_directory, monkeypatch, capsys):
    import copycat_nuke.ui
    from copycat_nuke import cli
    from copycat_nuke.ui import qt

    themed = []
    monkeypatch.setattr(copycat_nuke.ui, "apply_nuke_theme", themed.append)  # keep the session's app as it is
    before = set(QtWidgets.QApplication.topLevelWidgets())
    opened = []
    monkeypatch.setattr(qt, "exec_", lambda app: opened.extend(set(app.topLevelWidgets()) - before) or 0)
    assert cli.main(["gui", str(data_directory)]) == 0
    (panel,) = [widget for widget in opened if isinstance(widget, TrainingPanel)]
    assert panel.isVisible() and panel.run_directories() == [data_directory / "a", data_directory / "b"]
    assert themed == [QtWidgets.QApplication.instance()]
    panel.close()
    assert cli.main(["gui", str(data_directory / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
