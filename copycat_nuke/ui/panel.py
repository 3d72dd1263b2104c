"""The CopyCat training panel: loss curve, progress, contact sheet, Start / Stop / Resume, settings and runs.

Usable docked in Nuke (``nukescripts.panels.registerWidgetAsPanel`` builds it with no arguments) and
standalone (``copycat gui DATA_DIR``)::

    panel = TrainingPanel()
    panel.attach_directory("/shots/sh010/copycat")   # a run directory, or a data directory of runs
    panel.attach_job(copycat_nuke.train_in_background(config))   # follow a run already started

Threads: the trainer never calls into Qt. Its events go into the job's thread-safe queue
(``TrainingJob.events``), which a QTimer on the UI thread drains every ``POLL_INTERVAL_MS``, spending at
most ``EVENT_BUDGET_S`` per tick so clicks stay responsive however fast steps arrive. Runs not being
trained by this process (another panel, ``copycat train`` in a shell, a farm job) are followed by
re-reading their files when they change.
"""

from __future__ import annotations

import math
import queue
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from copycat_nuke import rundir
from copycat_nuke.config import TrainConfig, to_dict
from copycat_nuke.errors import ConfigError, CopyCatError
from copycat_nuke.ui import runs, theme
from copycat_nuke.ui.contact_sheet import ContactSheetView
from copycat_nuke.ui.loss_curve import DEFAULT_SMOOTHNESS, LossCurveWidget
from copycat_nuke.ui.progress import Progress, Stat, format_duration
from copycat_nuke.ui.qt import QtCore, QtGui, QtWidgets, Signal, combine
from copycat_nuke.ui.run_table import NAME, SHOW, Run, RunTable, format_loss, run_signature

if TYPE_CHECKING:  # copycat_nuke.train imports torch: loaded only when a job is started or attached
    from copycat_nuke.train import Event, TrainingJob

PathLike = Union[str, Path]

#: How often the event queue is drained (ms). 10 Hz is smooth for a curve and cheap.
POLL_INTERVAL_MS = 100
#: Longest time one drain may take (s): a backlog of events is spread over several ticks.
EVENT_BUDGET_S = 0.025
#: How often runs on disk are checked for changes (s).
REFRESH_INTERVAL_S = 2.0


class TrainingPanel(QtWidgets.QWidget):
    """CopyCat's Progress tab as a widget: follow a training run, start, stop and resume runs, compare runs.

    Build it empty, then :meth:`attach_directory` and/or :meth:`attach_job`. Start and Resume need a
    job's settings: those given to :meth:`set_config`, else the ``config.yaml`` of the selected run.

    Signals:
        job_started(TrainingJob): the panel's Start or Resume started a job.
        job_finished(TrainingJob): an attached job ended (finished, stopped, or failed: see its ``error``).
    """

    job_started = Signal(object)
    job_finished = Signal(object)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("CopyCatTrainingPanel")
        self.setWindowTitle("CopyCat Training")
        self._directory: Optional[Path] = None
        self._config: Optional[TrainConfig] = None
        self._job: Optional[TrainingJob] = None
        self._job_done = True
        self._stop_requested = False
        self._live: Optional[Path] = None  # the attached job's run directory, known from its Started event
        self._progress = Progress()
        self._runs: dict[str, Run] = {}
        self._current: Optional[str] = None  # key of the run whose details are shown
        self._colours_used = 0
        self._last_refresh = -math.inf
        self.refresh_interval = REFRESH_INTERVAL_S  #: seconds between looks at the runs' files
        self._build()
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self._poll)
        self._timer.start()
        self._update_buttons()
        self._show_current()

    # ================================================================================= public API
    @property
    def job(self) -> Optional[TrainingJob]:
        """The attached training job (it may have ended), or None."""
        return self._job

    @property
    def directory(self) -> Optional[Path]:
        """The attached run or data directory, or None."""
        return self._directory

    @property
    def curve(self) -> LossCurveWidget:
        return self._curve

    @property
    def current_run(self) -> Optional[str]:
        """The run whose details (progress, contact sheet, settings) are shown: its directory, or None."""
        return self._current

    @property
    def is_training(self) -> bool:
        """Whether the attached job is still running (its last event not yet handled)."""
        return self._job is not None and not self._job_done

    def run_directories(self) -> list[Path]:
        """The runs in the table, top to bottom."""
        return [run.path for run in self._runs.values()]

    def attach_directory(self, path: PathLike) -> None:
        """Show a run directory, or a data directory whose subdirectories are runs (it may not exist yet:
        runs appear as they are written). A job still training stays attached, and its run listed."""
        self._directory = Path(path).expanduser().resolve()
        if not self.is_training:  # a job that has ended is let go; one still training stays attached
            self._job, self._live = None, None
        for key in [key for key in self._runs if Path(key) != self._live]:
            self._remove_run(key)
        if not self._runs:
            self._colours_used = 0  # the first run is orange again
        self._current = str(self._live) if self._live is not None else None
        self._refresh_runs()
        if self._current is None and self._runs:
            self._select(next(reversed(self._runs)))  # the newest run
        if not self._runs:
            self._set_message(f"no training runs in {self._directory} yet")
        self._update_buttons()
        self._show_current()

    def attach_job(self, job: TrainingJob) -> None:
        """Follow a running job: its events drive the curve, progress and contact sheet.

        The panel takes the job's events out of ``job.events`` (it is that queue's consumer). A job
        attached before keeps running, unwatched. The job's run joins the run table when it starts.
        """
        self._job = job
        self._job_done = False
        self._stop_requested = False
        self._live = None
        self._progress = Progress(state="preparing")
        self._set_message("preparing: reading the frame pairs and building the network…")
        self._update_buttons()
        self._show_progress()

    def set_config(self, config: Optional[TrainConfig]) -> None:
        """The settings Start uses (``config.out`` is where the run goes; in an attached data directory
        with no ``out``, a new run directory there). None: use the selected run's ``config.yaml``."""
        self._config = replace(config).validate() if config is not None else None
        self._update_buttons()
        self._show_current()

    def start(self) -> TrainingJob:
        """Start a new training run in the background and follow it: where the target already holds a run,
        beside it in ``run_NNN``. Raises :class:`CopyCatError` if there is nothing to start."""
        config = replace(self._start_config(), resume=False)
        return self._launch(config)

    def resume(self) -> TrainingJob:
        """Resume the selected run from its latest checkpoint, with the settings it was trained with."""
        return self._launch(self._resume_config())

    def stop(self) -> None:
        """Ask the attached job to stop after its current step (it still writes a checkpoint and model)."""
        if self.is_training and self._job is not None:
            self._job.stop()
            self._stop_requested = True
            self._progress.state = "stopping"
            self._set_message("stopping after this step…")
            self._update_buttons()
            self._show_progress()

    # ==================================================================================== layout
    def _build(self) -> None:
        root = QtWidgets.QVBoxLayout(self)
        root.setContentsMargins(8, 8, 8, 8)
        root.setSpacing(6)

        # header: which run, and the buttons
        header = QtWidgets.QHBoxLayout()
        self._title = QtWidgets.QLabel("CopyCat")
        title_font = QtGui.QFont(self._title.font())
        title_font.setBold(True)
        if title_font.pointSizeF() > 0:
            title_font.setPointSizeF(title_font.pointSizeF() * 1.3)
        self._title.setFont(title_font)
        self._subtitle = QtWidgets.QLabel("")
        self._subtitle.setStyleSheet(f"color: {theme.TEXT_DIM};")
        self._subtitle.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        header.addWidget(self._title)
        header.addSpacing(8)
        header.addWidget(self._subtitle, 1)
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.setToolTip("Start a new training run with the run's settings")
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.resume_button.setToolTip("Continue the selected run from its latest checkpoint")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step; a checkpoint and model.cat are still written")
        for button in (self.start_button, self.resume_button, self.stop_button):
            button.setMinimumWidth(84)
            header.addWidget(button)
        self.start_button.clicked.connect(self._on_start_clicked)
        self.resume_button.clicked.connect(self._on_resume_clicked)
        self.stop_button.clicked.connect(self.stop)
        root.addLayout(header)

        # progress: bar and numbers
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.progress_bar.setMaximumHeight(18)
        root.addWidget(self.progress_bar)
        stats = QtWidgets.QHBoxLayout()
        stats.setSpacing(24)
        self.stats = {  # the progress numbers, by name
            "step": Stat("Step"),
            "patches": Stat("Patches/s"),
            "elapsed": Stat("Elapsed"),
            "eta": Stat("ETA"),
            "loss": Stat("Loss"),
            "lr": Stat("Learning rate"),
        }
        for stat in self.stats.values():
            stats.addWidget(stat)
        stats.addStretch(1)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setAlignment(combine(QtCore.Qt.AlignmentFlag.AlignRight, QtCore.Qt.AlignmentFlag.AlignVCenter))
        self.message.setMinimumWidth(160)
        stats.addWidget(self.message, 2)
        root.addLayout(stats)

        # the curve and its options | the contact sheet
        self._curve = LossCurveWidget()
        options = QtWidgets.QHBoxLayout()
        options.setContentsMargins(0, 0, 0, 0)
        self.log_scale_box = QtWidgets.QCheckBox("Log scale")
        self.log_scale_box.setChecked(self._curve.log_scale)
        self.log_scale_box.toggled.connect(self._curve.set_log_scale)
        self.show_original_box = QtWidgets.QCheckBox("Show original")
        self.show_original_box.setChecked(self._curve.show_original)
        self.show_original_box.setToolTip("Draw the raw, unsmoothed losses faintly behind the smoothed curve")
        self.show_original_box.toggled.connect(self._curve.set_show_original)
        self.smoothness_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.smoothness_slider.setRange(0, 100)
        self.smoothness_slider.setMinimumWidth(100)
        self.smoothness_spin = QtWidgets.QDoubleSpinBox()
        self.smoothness_spin.setRange(0.0, 1.0)
        self.smoothness_spin.setSingleStep(0.05)
        self.smoothness_spin.setDecimals(2)
        self.smoothness_slider.valueChanged.connect(lambda value: self.set_smoothness(value / 100.0))
        self.smoothness_spin.valueChanged.connect(self.set_smoothness)
        options.addWidget(self.log_scale_box)
        options.addSpacing(12)
        options.addWidget(QtWidgets.QLabel("Smoothness"))
        options.addWidget(self.smoothness_slider, 1)
        options.addWidget(self.smoothness_spin)
        options.addSpacing(12)
        options.addWidget(self.show_original_box)
        self.set_smoothness(DEFAULT_SMOOTHNESS)
        curve_pane = QtWidgets.QWidget()
        curve_layout = QtWidgets.QVBoxLayout(curve_pane)
        curve_layout.setContentsMargins(0, 0, 0, 0)
        curve_layout.addWidget(self._curve, 1)
        curve_layout.addLayout(options)

        self.contact_sheet = ContactSheetView()
        self._sheet_caption = QtWidgets.QLabel("Contact sheet")
        self._sheet_caption.setStyleSheet(f"color: {theme.TEXT};")
        sheet_pane = QtWidgets.QWidget()
        sheet_layout = QtWidgets.QVBoxLayout(sheet_pane)
        sheet_layout.setContentsMargins(0, 0, 0, 0)
        sheet_layout.addWidget(self._sheet_caption)
        sheet_layout.addWidget(self.contact_sheet, 1)

        # runs and settings
        self.run_table = RunTable()
        self.run_table.itemChanged.connect(self._on_run_item_changed)
        self.run_table.itemSelectionChanged.connect(self._on_run_selected)

        self.settings_table = QtWidgets.QTableWidget(0, 2)
        self.settings_table.setHorizontalHeaderLabels(["Setting", "Value"])
        self.settings_table.verticalHeader().setVisible(False)
        self.settings_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.settings_table.setAlternatingRowColors(True)
        self.settings_table.setShowGrid(False)
        resize = QtWidgets.QHeaderView.ResizeMode
        self.settings_table.horizontalHeader().setSectionResizeMode(0, resize.ResizeToContents)
        self.settings_table.horizontalHeader().setSectionResizeMode(1, resize.Stretch)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(self.run_table, "Runs")
        self.tabs.addTab(self.settings_table, "Settings")

        # the curve across the whole width (steps need pixels); below it the runs and the contact sheet,
        # whose 4-column rows are wide rather than tall
        lower = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        lower.addWidget(self.tabs)
        lower.addWidget(sheet_pane)
        lower.setStretchFactor(0, 1)
        lower.setStretchFactor(1, 1)
        lower.setChildrenCollapsible(False)
        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        main.addWidget(curve_pane)
        main.addWidget(lower)
        main.setStretchFactor(0, 3)
        main.setStretchFactor(1, 2)
        main.setChildrenCollapsible(False)
        root.addWidget(main, 1)

    def set_smoothness(self, value: float) -> None:
        """Curve smoothness, 0 to 1 (keeps the slider and the number box in step)."""
        value = min(max(float(value), 0.0), 1.0)
        self._curve.set_smoothness(value)
        for control in (self.smoothness_slider, self.smoothness_spin):
            blocked = control.blockSignals(True)
            if control is self.smoothness_slider:
                self.smoothness_slider.setValue(round(value * 100))
            else:
                self.smoothness_spin.setValue(value)
            control.blockSignals(blocked)

    # ================================================================================ the timer
    def _poll(self) -> None:
        if self._job is not None and not self._job_done:
            self._drain_events()
        now = time.monotonic()
        if now - self._last_refresh >= self.refresh_interval:
            self._refresh_runs()

    def _drain_events(self) -> None:
        """Handle the job's queued events for at most ``EVENT_BUDGET_S``; step points are added in one go."""
        job = self._job
        assert job is not None
        from copycat_nuke.train import StepDone  # already imported: the job came from it

        deadline = time.perf_counter() + EVENT_BUDGET_S
        steps: list[int] = []
        losses: list[float] = []
        last: Optional[StepDone] = None
        while time.perf_counter() < deadline:
            try:
                event = job.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, StepDone):
                steps.append(event.step)
                losses.append(event.loss)
                last = event
                continue
            self._add_points(steps, losses, last)
            steps, losses, last = [], [], None
            self._handle(event)
        self._add_points(steps, losses, last)
        if not self._job_done and not job.running and job.events.empty():
            self._job_ended(job)  # the thread is gone and left no Finished event: it failed

    def _add_points(self, steps: list[int], losses: list[float], last: Any) -> None:
        if not steps or self._live is None:
            return
        self._curve.extend(str(self._live), steps, losses)
        run = self._runs.get(str(self._live))
        if run is not None:
            run.history.steps.extend(steps)
            run.history.losses.extend(losses)
            run.history.seconds.extend([math.nan] * len(steps))
        progress = self._progress
        progress.step, progress.total, progress.loss = last.step, last.total_steps, last.loss
        progress.learning_rate = last.learning_rate
        progress.patches_per_second = last.patches_per_second
        progress.elapsed, progress.eta = last.elapsed_seconds, last.eta_seconds
        if progress.state not in ("stopping",):
            progress.state = "training"
        self._show_progress()
        self._update_row(str(self._live))

    def _handle(self, event: Event) -> None:
        from copycat_nuke.train import CheckpointWritten, ContactSheetWritten, Finished, Started

        if isinstance(event, Started):
            self._on_started(event)
        elif isinstance(event, ContactSheetWritten):
            if self._live is not None and self._current == str(self._live):
                self._show_contact_sheet(event.path, event.step)
        elif isinstance(event, CheckpointWritten):
            self._set_message(f"checkpoint written at step {event.step}")
        elif isinstance(event, Finished):
            self._on_finished(event)

    def _on_started(self, event: Any) -> None:
        live = Path(event.out_dir).expanduser().resolve()
        self._live = live
        if self._directory is None:
            self._directory = live
        run = self._runs.get(str(live)) or self._add_run(live)
        run.history = runs.read_loss_log(live).until(event.start_step)  # a resumed run's log up to its checkpoint
        run.signature = ()
        self._curve.set_series(run.key, run.history.steps, run.history.losses, label=run.name, colour=run.colour)
        self._curve.set_highlight(run.key)
        self._progress = Progress(step=event.start_step, total=event.total_steps, device=event.device, state="training")
        if run.history.losses:
            self._progress.loss = run.history.losses[-1]
        verb = "resuming at step " + str(event.start_step) if event.start_step else "training"
        self._set_message(
            f"{verb}: {event.pairs} pair(s), batch {event.batch_size}×{event.crop_size}² on {event.device}"
        )
        self._select(run.key)
        self._update_row(run.key)
        self._update_buttons()
        self._show_current()

    def _on_finished(self, event: Any) -> None:
        job = self._job
        progress = self._progress
        progress.step, progress.total, progress.loss = event.step, event.total_steps, event.final_loss
        progress.eta = 0.0 if not event.stopped else math.nan
        progress.state = "stopped" if event.stopped else "finished"
        state = f"stopped at step {event.step}" if event.stopped else "finished"
        self._set_message(f"{state} in {format_duration(event.seconds)}: {event.model_path}")
        self._job_done = True
        if self._live is not None and str(self._live) in self._runs:
            self._runs[str(self._live)].signature = ()  # re-read from disk: everything is flushed now
        self._refresh_runs()
        self._update_buttons()
        self._show_current()
        if job is not None:
            self.job_finished.emit(job)

    def _job_ended(self, job: TrainingJob) -> None:
        self._job_done = True
        error = job.error
        if error is not None:
            text = str(error) if isinstance(error, CopyCatError) else f"{type(error).__name__}: {error}"
            self._progress.state = "failed"
            self._set_message(f"training failed: {text}", error=True)
        self._refresh_runs()
        self._update_buttons()
        self._show_current()
        self.job_finished.emit(job)

    # ============================================================================ start / resume
    def _launch(self, config: TrainConfig) -> TrainingJob:
        from copycat_nuke.train import train_in_background

        job = train_in_background(config)
        self.attach_job(job)
        self.job_started.emit(job)
        return job

    def _data_directory(self) -> Optional[Path]:
        """The attached directory when it is a data directory (holds runs, is not one itself)."""
        if self._directory is None or runs.is_run_directory(self._directory):
            return None
        return self._directory

    def _start_target(self) -> Path:
        """Where Start trains: the set config's ``out``; a new run in a data directory; the run directory."""
        if self._config is not None and self._config.out:
            return Path(self._config.out).expanduser().resolve()
        data = self._data_directory()
        if data is not None:
            return runs.next_run_directory(data)
        if self._directory is not None:
            return self._directory
        raise ConfigError("nothing to start: attach a data directory or give the panel a job's settings")

    def _start_config(self) -> TrainConfig:
        config = self._config
        if config is None and self._current is not None:
            config = runs.read_config(self._current)
        if config is None:
            raise ConfigError(
                "Start needs the job's settings: a run with a config.yaml, or settings given to set_config()"
            )
        return replace(config, out=str(rundir.new_run_dir(self._start_target())))  # never over another run

    def _resume_run(self) -> Optional[Path]:
        if self._current is not None:
            return Path(self._current)
        if self._config is not None and self._config.out:
            return Path(self._config.out).expanduser().resolve()
        return None

    def _resume_config(self) -> TrainConfig:
        run = self._resume_run()
        if run is None or not runs.has_checkpoint(run):
            raise ConfigError("nothing to resume: the selected run has no checkpoint yet; start it instead")
        config = runs.read_config(run) or self._config
        if config is None:
            raise ConfigError(f"cannot resume {run}: it has no config.yaml")
        return replace(config, out=str(run), resume=True)

    def _on_start_clicked(self) -> None:
        try:
            config = self._start_config()
        except CopyCatError as error:
            self._set_message(str(error), error=True)
            return
        try:
            self._launch(replace(config, resume=False))
        except CopyCatError as error:
            self._set_message(str(error), error=True)

    def _on_resume_clicked(self) -> None:
        try:
            self.resume()
        except CopyCatError as error:
            self._set_message(str(error), error=True)

    def _update_buttons(self) -> None:
        training = self.is_training
        has_settings = self._config is not None or (
            self._current is not None and (Path(self._current) / "config.yaml").is_file()
        )
        has_target = self._directory is not None or bool(self._config and self._config.out)
        can_start = not training and has_settings and has_target
        run = self._resume_run()
        can_resume = not training and run is not None and runs.has_checkpoint(run) and has_settings
        self.start_button.setEnabled(can_start)
        self.resume_button.setEnabled(can_resume)
        self.stop_button.setEnabled(training and not self._stop_requested)
        self.stop_button.setText("Stopping…" if training and self._stop_requested else "Stop")

    # ================================================================================= the runs
    def _add_run(self, path: Path) -> Run:
        run = Run(path=path, colour=theme.series_colour(self._colours_used), name=runs.display_name(path))
        self._colours_used += 1
        self._runs[run.key] = run
        self._curve.set_series(run.key, [], [], label=run.name, colour=run.colour)
        self._rebuild_table()
        return run

    def _remove_run(self, key: str) -> None:
        self._runs.pop(key, None)
        self._curve.remove_series(key)
        if self._current == key:
            self._current = None
        self._rebuild_table()

    def _refresh_runs(self) -> None:
        """Bring the table and curves up to date with the disk: new runs, removed runs, changed runs."""
        self._last_refresh = time.monotonic()
        found = runs.find_runs(self._directory) if self._directory is not None else []
        wanted = {str(path) for path in found}
        if self._live is not None:
            wanted.add(str(self._live))
        for key in [key for key in self._runs if key not in wanted]:
            self._remove_run(key)
        for path in found:
            if str(path) not in self._runs:
                self._add_run(path)
        for run in self._runs.values():
            live = self.is_training and run.path == self._live
            signature = run_signature(run.path)
            if signature == run.signature:
                continue
            run.signature = signature
            if not live:  # the live run's curve comes from its events
                run.history = runs.read_loss_log(run.path)
                self._curve.set_series(run.key, run.history.steps, run.history.losses)
            run.summary = runs.summarize(run.path, run.history)
            if run.summary.name != run.name:
                run.name = run.summary.name
                self._curve.set_series_label(run.key, run.name)
            self._update_row(run.key)
            if run.key == self._current and not live:
                self._show_current()
        if self._current is None and self._runs:
            self._select(next(reversed(self._runs)))
        self._update_buttons()

    def _rebuild_table(self) -> None:
        table = self.run_table
        with table.quietly():
            table.rebuild(list(self._runs.values()))
            for row, run in enumerate(self._runs.values()):
                self._fill_row(row, run)
            if self._current in self._runs:
                table.selectRow(list(self._runs).index(self._current))

    def _update_row(self, key: str) -> None:
        if key in self._runs:
            self._fill_row(list(self._runs).index(key), self._runs[key])

    def _fill_row(self, row: int, run: Run) -> None:
        summary = run.summary
        live = run.path == self._live and self._job is not None
        if live and self.is_training:
            progress = self._progress
            step_text = f"{progress.step} / {progress.total}" if progress.total else str(progress.step)
            loss, status = progress.loss, progress.state or "training"
        elif summary is not None:
            total = summary.total_steps
            step_text = f"{summary.step} / {total}" if total else str(summary.step)
            loss, status = summary.last_loss, summary.status
        else:
            step_text, loss, status = "", None, ""
        self.run_table.fill_row(row, run, step_text, loss, status)

    def _on_run_item_changed(self, item: QtWidgets.QTableWidgetItem) -> None:
        if self.run_table.updating:
            return
        keys = list(self._runs)
        if not 0 <= item.row() < len(keys):
            return
        run = self._runs[keys[item.row()]]
        if item.column() == SHOW:
            run.visible = item.checkState() == QtCore.Qt.CheckState.Checked
            self._curve.set_series_visible(run.key, run.visible)
        elif item.column() == NAME:
            self.rename_run(run.path, item.text())

    def rename_run(self, path: PathLike, name: str) -> str:
        """Give a run a display name (kept in its ``display.json``; the directory is not renamed).

        Returns the name shown; on a write error the old name stays and the message says why."""
        key = str(Path(path).expanduser().resolve())
        run = self._runs.get(key)
        if run is None:
            raise CopyCatError(f"{path} is not a run in this panel")
        try:
            run.name = runs.set_display_name(run.path, name)
        except CopyCatError as error:
            self._set_message(str(error), error=True)
        self._curve.set_series_label(run.key, run.name)
        self._update_row(run.key)
        if key == self._current:
            self._show_title()
        return run.name

    def set_run_visible(self, path: PathLike, visible: bool) -> None:
        """Show or hide a run's curve (as the run table's Show box does)."""
        key = str(Path(path).expanduser().resolve())
        run = self._runs[key]
        run.visible = bool(visible)
        self._curve.set_series_visible(key, run.visible)
        self.run_table.set_checked(list(self._runs).index(key), run.visible)

    def _on_run_selected(self) -> None:
        if self.run_table.updating:
            return
        rows = {index.row() for index in self.run_table.selectionModel().selectedRows()}
        keys = list(self._runs)
        if len(rows) == 1:
            (row,) = rows
            if 0 <= row < len(keys) and keys[row] != self._current:
                self._current = keys[row]
                self._curve.set_highlight(self._current)
                self._update_buttons()
                self._show_current()

    def _select(self, key: str) -> None:
        self._current = key
        self._curve.set_highlight(key)
        if key in self._runs:
            self.run_table.select_quietly(list(self._runs).index(key))

    # ============================================================================== the details
    def _show_current(self) -> None:
        """Title, progress, contact sheet and settings of the selected run."""
        self._show_title()
        self._show_progress()
        run = self._runs.get(self._current) if self._current else None
        sheet = runs.latest_contact_sheet(run.path) if run is not None else None
        self._show_contact_sheet(sheet, runs.contact_sheet_step(sheet) if sheet else None)
        config: Optional[TrainConfig] = None
        problem = ""
        if run is not None:
            try:
                config = runs.read_config(run.path)
            except CopyCatError as error:
                problem = str(error)
        if config is None and run is None:
            config = self._config
        self._show_settings(config, problem)

    def _show_title(self) -> None:
        run = self._runs.get(self._current) if self._current else None
        if run is not None:
            self._title.setText(run.name)
            self._subtitle.setText(str(run.path))
        elif self._directory is not None:
            self._title.setText("CopyCat")
            self._subtitle.setText(str(self._directory))
        else:
            self._title.setText("CopyCat")
            self._subtitle.setText("no run attached")

    def _show_progress(self) -> None:
        stats = self.stats
        live = self._job is not None and (self._live is None or self._current in (None, str(self._live)))
        if live:
            progress = self._progress
            step, total = progress.step, progress.total
            rate = progress.patches_per_second
            stats["patches"].set(f"{rate:.1f}" if math.isfinite(rate) else "—")
            stats["elapsed"].set(format_duration(progress.elapsed))
            stats["eta"].set(format_duration(progress.eta))
            stats["loss"].set(format_loss(progress.loss))
            stats["lr"].set(f"{progress.learning_rate:.3g}" if progress.learning_rate is not None else "—")
            state = progress.state
        else:
            run = self._runs.get(self._current) if self._current else None
            summary = run.summary if run is not None else None
            step = summary.step if summary is not None else 0
            total = summary.total_steps if summary is not None else None
            seconds = [s for s in run.history.seconds if math.isfinite(s)] if run is not None else []
            stats["patches"].set("—")
            stats["elapsed"].set(format_duration(seconds[-1]) if seconds else "—")
            stats["eta"].set("—")
            stats["loss"].set(format_loss(summary.last_loss if summary is not None else None))
            stats["lr"].set("—")
            state = summary.status if summary is not None else ""
        stats["step"].set(f"{step} / {total}" if total else (str(step) if step else "—"))
        bar = self.progress_bar
        if total:
            bar.setRange(0, total)
            bar.setValue(min(step, total))
            bar.setFormat(f"{state}   {100.0 * step / total:.0f}%" if state else f"{100.0 * step / total:.0f}%")
        else:
            busy = live and state in ("preparing", "training")
            bar.setRange(0, 0 if busy else 1)  # 0..0 is Qt's "busy" bar
            bar.setValue(0)
            bar.setFormat(state)

    def _show_contact_sheet(self, path: Optional[Path], step: Optional[int]) -> None:
        if path is not None and not self.contact_sheet.set_image(path):
            return
        if path is None:
            self.contact_sheet.set_image(None)
        caption = "Contact sheet" if step is None else f"Contact sheet · step {step}"
        self._sheet_caption.setText(
            f"{caption}    <span style='color:{theme.TEXT_DIM}'>input | prediction | ground truth | difference</span>"
        )

    def _show_settings(self, config: Optional[TrainConfig], problem: str = "") -> None:
        table = self.settings_table
        rows = [(key, _describe_setting(value)) for key, value in to_dict(config).items()] if config else []
        if problem:
            rows = [("problem", problem), *rows]
        table.setRowCount(len(rows))
        for row, (key, value) in enumerate(rows):
            table.setItem(row, 0, QtWidgets.QTableWidgetItem(key))
            item = QtWidgets.QTableWidgetItem(value)
            item.setToolTip(value)
            table.setItem(row, 1, item)

    def _set_message(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setToolTip(text)
        self.message.setStyleSheet(f"color: {theme.ERROR if error else theme.TEXT};")


def _describe_setting(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


__all__ = ["TrainingPanel", "format_duration"]
