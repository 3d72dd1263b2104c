"""The ``copycat`` command: a thin layer over the Python API.

Every error prints one line (``copycat: error: …``) on stderr, no traceback (set ``COPYCAT_DEBUG=1`` for one),
and exits with a status a farm manager can act on (:mod:`copycat_nuke.errors`' ``EXIT_*``): 2 a bad option or
setting, 3 a bad file (.cat, frames, sequence), 4 training diverged or a model made NaN pixels, 130 interrupted,
1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import json
import math
import os
import signal
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import Any, Optional, Union

from copycat_nuke import __version__, rundir
from copycat_nuke.config import MAX_SEED, TrainConfig, from_dict, load_yaml, resolve_paths, to_dict
from copycat_nuke.errors import (
    DEBUG_ENV,
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ConfigError,
    CopyCatError,
    exit_status,
)


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class TqdmListener:
    """Draws training events as a tqdm bar with loss and ETA, and logs checkpoints above it."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def __call__(self, event: Any) -> None:
        from tqdm import tqdm

        from copycat_nuke.train import CheckpointWritten, Finished, Started, StepDone

        if isinstance(event, Started):
            self.bar = tqdm(
                total=event.total_steps,
                initial=event.start_step,
                unit="step",
                desc="CopyCat",
                disable=self.quiet,
                dynamic_ncols=True,
            )
            tqdm.write(
                f"training {event.pairs} pair(s), batch {event.batch_size}×{event.crop_size}² "
                f"({event.batch_choice or 'set'}), "
                f"{event.total_steps} steps on {event.device} → {event.out_dir}",
                file=sys.stderr,
            )
            if event.resolutions != "off":
                tqdm.write(f"multi-resolution: {event.resolutions}", file=sys.stderr)
            if event.level_weights:
                tqdm.write(f"loss level weights: {event.level_weights}", file=sys.stderr)
        elif isinstance(event, StepDone) and self.bar is not None:
            self.bar.set_postfix(loss=f"{event.loss:.4g}", lr=f"{event.learning_rate:.2g}", refresh=False)
            self.bar.update(event.step - self.bar.n)
        elif isinstance(event, CheckpointWritten) and not self.quiet:
            tqdm.write(f"checkpoint: {event.path}", file=sys.stderr)
        elif isinstance(event, Finished) and self.bar is not None:
            self.bar.close()
            state = "stopped" if event.stopped else "finished"
            print(
                f"{state} at step {event.step}/{event.total_steps}, loss {event.final_loss:.4g}, "
                f"{_format_seconds(event.seconds)}: {event.model_path}",
                file=sys.stderr,
            )


class _GracefulInterrupt:
    """First Ctrl-C (or SIGTERM, as farm schedulers and Nuke's Stop send) asks training to stop after the step,
    leaving a checkpoint and model.cat; the second aborts."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        print("\nstopping after this step (Ctrl-C again to abort without a checkpoint)…", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        for number, previous in self.previous.items():
            signal.signal(number, previous)


class _EventLog:
    """``--events FILE``: what happens, as JSON lines (``{"event": "StepDone", "step": 12, ...}``), flushed
    line by line, for a parent process that follows the run (Nuke with an external Python)."""

    #: Seconds between StepDone lines (steps can take ~10 ms); the last step is always written.
    STEP_INTERVAL = 0.25

    def __init__(self, path: Optional[str]) -> None:
        # open for the whole run (closed by close()): the parent reads the lines as they come
        self.stream = Path(path).open("w", encoding="utf-8") if path else None  # noqa: SIM115
        self.next_step = 0.0

    def write(self, kind: str, **fields: Any) -> None:
        if self.stream is not None:
            self.stream.write(json.dumps({"event": kind, **fields}, default=str) + "\n")
            self.stream.flush()

    def __call__(self, event: Any) -> None:
        """A training listener."""
        from copycat_nuke.train import StepDone

        if isinstance(event, StepDone):
            now = time.monotonic()
            if now < self.next_step and event.step < event.total_steps:
                return
            self.next_step = now + self.STEP_INTERVAL
        self.write(type(event).__name__, **dataclasses.asdict(event))

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def _stop_on_eof(stop: threading.Event) -> None:
    """``--stop-on-eof``: stop (as after Ctrl-C) when standard input closes. A parent (Nuke) closes it to
    stop the run, and it closes by itself when the parent dies, so the run never outlives it."""

    def watch(descriptor: int) -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader's lock aborts the
        # interpreter's shutdown ("could not acquire lock for <stdin>")
        with contextlib.suppress(OSError):
            while os.read(descriptor, 4096):
                pass
        stop.set()

    try:
        descriptor = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # no standard input (pythonw): nothing to watch
        return
    threading.Thread(target=watch, args=(descriptor,), name="copycat stop-on-eof", daemon=True).start()


def _add_follow_options(parser: argparse.ArgumentParser) -> None:
    """Options for a parent process that runs the command and follows it (Nuke with an external Python)."""
    parser.add_argument("--events", metavar="FILE", help="write progress events to FILE as JSON lines")
    parser.add_argument(
        "--stop-on-eof",
        action="store_true",
        help="stop when standard input closes (training: after the step, with a checkpoint and model.cat; "
        "inference: after the frame)",
    )


# ------------------------------------------------------------------------------------------- train
def _whole_number(text: str, low: int, high: int) -> int:
    """An option's whole number from ``low`` to ``high``, refused by argparse (status 2) otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text} is out of range: give {low} to {high}")
    return value


def _batch_size(text: str) -> Union[int, str]:
    """``--batch-size``: a whole number of at least 1, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of patches (at least 1), or auto")
    return value


#: Settings whose option text needs more than its field's type to read.
_OPTION_PARSERS: dict[str, Callable[[str], Any]] = {
    "batch_size": _batch_size,
    "seed": lambda text: _whole_number(text, 0, MAX_SEED),
}


def _train_options() -> Iterator[tuple[str, dict[str, Any]]]:
    """``copycat train``'s options, one per :class:`TrainConfig` field, typed and explained by the field
    (its ``setting(...)`` help, choices and default): a new setting needs no code here."""
    hints = typing.get_type_hints(TrainConfig)
    for setting in fields(TrainConfig):
        if "help" not in setting.metadata:
            continue
        kind = hints[setting.name]
        kind = next((arg for arg in typing.get_args(kind) if arg is not type(None)), kind)  # Optional[X]: X
        text = str(setting.metadata["help"])
        spec: dict[str, Any] = {}
        if kind is bool:
            spec["action"] = argparse.BooleanOptionalAction
            text += f" (default {'on' if setting.default else 'off'})"
        else:
            spec["type"] = _OPTION_PARSERS.get(setting.name, kind if kind in (int, float) else str)
            if setting.default not in (None, ""):
                text += f" (default {setting.default})"
        for extra in ("choices", "metavar"):
            if extra in setting.metadata:
                spec[extra] = list(setting.metadata[extra]) if extra == "choices" else setting.metadata[extra]
        yield setting.name, {**spec, "help": text.replace("%", "%%")}  # argparse formats help with %


def _add_train(sub: Any) -> None:
    parser = sub.add_parser(
        "train",
        help="train a CopyCat network on Input/Ground Truth frame pairs",
        description="Train a CopyCat network. Settings come from --config (YAML), then the options given.",
    )
    parser.add_argument("--config", help="a job YAML (e.g. a run's config.yaml) to start from")
    for name, spec in _train_options():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **spec)
    parser.add_argument(
        "--new-run",
        action="store_true",
        help="where --out already holds a run, train a new one beside it in --out/run_NNN (nothing is replaced)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_follow_options(parser)
    parser.set_defaults(handler=_run_train)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    config = load_yaml(TrainConfig, args.config) if args.config else TrainConfig()
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    # Absolute from here on, so the run's config.yaml repeats the job from any directory.
    given = resolve_paths(given, Path.cwd())
    merged = {**to_dict(config), **given}
    if merged.get("batch_size") == "auto":  # overrides a number from --config too
        merged["batch_size"] = None
    if getattr(args, "new_run", False):
        if merged.get("resume"):
            raise ConfigError("--new-run and --resume contradict each other: choose one")
        if merged.get("out"):
            merged["out"] = str(rundir.new_run_dir(merged["out"]))
    return from_dict(TrainConfig, merged, source="command line")


def _run_train(args: argparse.Namespace) -> int:
    from copycat_nuke.train import Trainer

    config = _train_config(args)
    stop = threading.Event()
    events = _EventLog(args.events)
    trainer = Trainer(config, [TqdmListener(args.quiet), events], stop)
    if args.stop_on_eof:
        _stop_on_eof(stop)
    try:
        with _GracefulInterrupt(stop):
            result = trainer.run()
    finally:
        events.close()
    if trainer.dist.is_main:
        print(result.model_path)
    # Stopped early (Ctrl-C, SIGTERM, --stop-on-eof): model.cat and a checkpoint exist, but the job is not
    # done; a farm manager requeues it with --resume.
    return EXIT_INTERRUPTED if result.stopped else 0


# ------------------------------------------------------------------------------------------- infer
def _add_infer(sub: Any) -> None:
    parser = sub.add_parser("infer", help="run a .cat model over an image sequence")
    parser.add_argument("model", help="the .cat file")
    parser.add_argument("input", help="input sequence: shot.####.exr, a directory or a file")
    parser.add_argument("output", help="output sequence, e.g. out/result.####.exr")
    _add_frame_options(parser)
    _add_follow_options(parser)
    parser.set_defaults(handler=_run_infer)


def _add_frame_options(parser: argparse.ArgumentParser, passthrough: str = "") -> None:
    """Options every command that runs a network over frames shares (infer, upscale, deblur)."""
    parser.add_argument("--frames", help="frames to process, e.g. 1001-1100 (default: all that exist)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument(
        "--half", action="store_true", help="fp16 on a GPU, bf16 on a CPU with native bf16 (faster, less memory)"
    )
    parser.add_argument(
        "--tile",
        type=_tile_size,
        default=None,
        help="tile size in pixels, 0 for the whole frame at once, or auto (default: from free memory)",
    )
    parser.add_argument(
        "--overlap", type=int, default=None, help="pixels neighbouring tiles share, cross-faded (default 64)"
    )
    parser.add_argument(
        "--no-passthrough",
        dest="passthrough",
        action="store_false",
        help=passthrough
        or "write only the model's output channels (default: also copy alpha and other untouched channels)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _tile_size(text: str) -> Optional[int]:
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size in pixels, 0 for the whole frame, or auto")
    return value


def _frame_progress(quiet: bool, desc: str) -> tuple[Any, Callable[[int, int, int, float], None]]:
    """A tqdm bar counting frames, and the progress callback that drives it."""
    from tqdm import tqdm

    bar = tqdm(unit="frame", desc=desc, disable=quiet, dynamic_ncols=True)

    def progress(done: int, total: int, frame: int, seconds: float) -> None:
        # tqdm shows frames/s and the ETA from the updates; the postfix adds the last frame's own time.
        bar.total = total
        bar.set_postfix(frame=frame, last=f"{seconds:.1f}s", refresh=False)
        bar.update(done - bar.n)

    return bar, progress


def _frame_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The shared frame options as keyword arguments of infer_sequence/upscale_sequence/deblur_sequence."""
    from copycat_nuke.infer import DEFAULT_OVERLAP

    return {
        "device": args.device,
        "half": args.half,
        "tile": args.tile,
        "overlap": DEFAULT_OVERLAP if args.overlap is None else args.overlap,
        "passthrough": args.passthrough,
    }


def _run_infer(args: argparse.Namespace) -> int:
    from copycat_nuke.infer import infer_sequence

    bar, show = _frame_progress(args.quiet, "Inference")
    events = _EventLog(args.events)
    stop = threading.Event()
    if args.stop_on_eof:
        _stop_on_eof(stop)
    done: list[int] = []

    def progress(count: int, total: int, frame: int, seconds: float) -> None:
        show(count, total, frame, seconds)
        done.append(frame)
        events.write("FrameWritten", done=count, total=total, frame=frame, seconds=seconds)
        if stop.is_set():
            raise _Stopped

    try:
        written = infer_sequence(
            args.model, args.input, args.output, args.frames, progress=progress, **_frame_settings(args)
        )
    except _Stopped:
        print(f"copycat: stopped after {len(done)} frame(s): {args.output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
        events.close()
    print(f"wrote {len(written)} frame(s): {args.output}")
    return 0


class _Stopped(Exception):
    """--stop-on-eof: standard input closed while frames were being written."""


# ---------------------------------------------------------------------------------- upscale, deblur
def _add_upscale(sub: Any) -> None:
    parser = sub.add_parser(
        "upscale",
        help="upscale a shot ×2 or ×4 with the shipped network (or your own ×2 .cat)",
        description="Upscale a sequence or a single file ×2 or ×4 (×4 runs the ×2 network twice). "
        "--refine-on-shot N first fine-tunes the ×2 network for N steps on the shot itself (each frame "
        "downscaled ×0.5 is an Input, the frame its Ground Truth: no higher-resolution Ground Truth needed), "
        "then upscales with the refined network.",
    )
    parser.add_argument("input", help="input sequence: shot.####.exr, a directory or a file")
    parser.add_argument("output", help="output sequence, e.g. out/result.####.exr, or a file for a single file")
    parser.add_argument(
        "--scale", type=int, choices=[2, 4], default=2, help="2, or 4 = the ×2 network run twice (default 2)"
    )
    parser.add_argument("--model", metavar="X.cat", help="a ×2 .cat to use instead of the shipped Upscale network")
    _add_frame_options(
        parser,
        passthrough="write only the model's output channels (default: also alpha and other channels the model "
        "does not produce, resized bilinearly)",
    )
    parser.add_argument(
        "--refine-on-shot",
        type=int,
        metavar="N",
        help="first fine-tune the ×2 network N steps on the shot's own frames (--frames, or up to 8 spread "
        "over the shot); Ctrl-C ends refining early and upscales with the network so far",
    )
    parser.add_argument(
        "--refine-out",
        metavar="DIR",
        help="run directory for --refine-on-shot: pairs, checkpoints, model.cat (default: OUT's folder/refine_run)",
    )
    parser.set_defaults(handler=_run_upscale)


def _run_upscale(args: argparse.Namespace) -> int:
    from copycat_nuke.errors import ConfigError
    from copycat_nuke.upscale import check_outputs, refine_on_shot, upscale_sequence

    model = args.model
    if args.refine_on_shot is None:
        if args.refine_out is not None:
            raise ConfigError("--refine-out names the run directory of --refine-on-shot N: give both, or neither")
    else:
        check_outputs(args.input, args.output, args.frames)  # fail now rather than after training
        run_dir = args.refine_out or str(Path(args.output).parent / "refine_run")
        stop = threading.Event()
        with _GracefulInterrupt(stop):
            result = refine_on_shot(
                args.input,
                run_dir,
                args.frames,
                steps=args.refine_on_shot,
                model=model,
                device=args.device,
                listeners=[TqdmListener(args.quiet)],
                stop=stop,
            )
        model = result.model_path
        print(f"refined network: {model}")
    bar, progress = _frame_progress(args.quiet, f"Upscale ×{args.scale}")
    try:
        written = upscale_sequence(
            args.input,
            args.output,
            args.frames,
            scale=args.scale,
            model=model,
            progress=progress,
            **_frame_settings(args),
        )
    finally:
        bar.close()
    print(f"wrote {len(written)} frame(s): {args.output}")
    return 0


def _add_deblur(sub: Any) -> None:
    parser = sub.add_parser(
        "deblur",
        help="remove motion and defocus blur with the shipped network (or your own same-size .cat)",
        description="Deblur a sequence or a single file; outputs keep the input's size.",
    )
    parser.add_argument("input", help="input sequence: shot.####.exr, a directory or a file")
    parser.add_argument("output", help="output sequence, e.g. out/result.####.exr, or a file for a single file")
    parser.add_argument("--model", metavar="X.cat", help="a same-size .cat to use instead of the shipped network")
    _add_frame_options(parser)
    parser.set_defaults(handler=_run_deblur)


def _run_deblur(args: argparse.Namespace) -> int:
    from copycat_nuke.upscale import deblur_sequence

    bar, progress = _frame_progress(args.quiet, "Deblur")
    try:
        written = deblur_sequence(
            args.input, args.output, args.frames, model=args.model, progress=progress, **_frame_settings(args)
        )
    finally:
        bar.close()
    print(f"wrote {len(written)} frame(s): {args.output}")
    return 0


# ------------------------------------------------------------------------------------------ export
def _add_export(sub: Any) -> None:
    parser = sub.add_parser(
        "export",
        help="write a .cat as TorchScript (Nuke's CatFileCreator) and/or ONNX",
        description="Export a .cat for Nuke's own Inference node (via CatFileCreator) or for ONNX runtimes. "
        "Both take scene-linear 1×C×H×W input of any size ≥ 16×16. See docs/nuke-native.md.",
    )
    parser.add_argument("model", help="the .cat file")
    parser.add_argument("--torchscript", metavar="OUT.pt", help="write a TorchScript file for CatFileCreator")
    parser.add_argument("--onnx", metavar="OUT.onnx", help="write an ONNX file with dynamic height and width")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 13, at least 11)")
    parser.add_argument(
        "--force", action="store_true", help="replace existing output files (never the model itself or any .cat)"
    )
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from copycat_nuke import catfile, export
    from copycat_nuke.errors import ConfigError

    if not args.torchscript and not args.onnx:
        raise ConfigError("name at least one output: --torchscript OUT.pt and/or --onnx OUT.onnx")
    if args.torchscript and args.onnx and os.path.realpath(args.torchscript) == os.path.realpath(args.onnx):
        raise ConfigError(f"--torchscript and --onnx both name {args.onnx}: give each its own file")
    # Checked before the model is read and again just before each write (a file may appear meanwhile).
    for option, output in (("--torchscript", args.torchscript), ("--onnx", args.onnx)):
        if output:
            export.check_output(output, args.model, overwrite=args.force, option=option)
    cat = catfile.load_cat(args.model)
    if args.torchscript:
        print(f"TorchScript: {export.export_torchscript(cat, args.torchscript, overwrite=args.force)}")
    if args.onnx:
        opset = export.DEFAULT_OPSET if args.opset is None else args.opset
        print(f"ONNX (opset {opset}): {export.export_onnx(cat, args.onnx, opset=opset, overwrite=args.force)}")
    settings = export.catfilecreator_settings(cat.manifest)
    print("CatFileCreator: " + ", ".join(f"{knob} {value}" for knob, value in settings.items()))
    return 0


# -------------------------------------------------------------------------------------------- info
def _add_info(sub: Any) -> None:
    parser = sub.add_parser("info", help="describe a .cat file: channels, size, scale, how it was trained")
    parser.add_argument("model", help="the .cat file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from copycat_nuke import catfile

    info = catfile.describe(args.model)
    print(json.dumps(info, indent=2, default=str) if args.json else catfile.format_description(info))
    return 0


# -------------------------------------------------------------------------------------------- demo
def _add_demo(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="make a small shot, train marker removal on 3 frames, apply it to all, score it",
        description="A whole CopyCat job on a procedural shot with tracking markers (a few minutes on a CPU).",
    )
    parser.add_argument("--out", default="copycat-demo", help="where to write the shot, run and output")
    parser.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from copycat_nuke.demo import run_demo

    result = run_demo(args.out, steps=args.steps, device=args.device, listeners=[TqdmListener(args.quiet)])
    summary = result.summary()
    print("\nheld-out PSNR (dB), frames " + summary["held_out_frames"] + ":")
    for method, value in summary["held_out_psnr_db"].items():
        print(f"  {method:<14}{value:6.2f}")
    for key in ("before_after", "loss_curve", "contact_sheets", "outputs", "model"):
        print(f"{key.replace('_', ' ')}: {summary[key]}")
    return 0


# --------------------------------------------------------------------------------------------- gui
def _add_gui(sub: Any) -> None:
    parser = sub.add_parser(
        "gui",
        help="open the training panel: loss curves, contact sheets, Start/Stop/Resume, runs",
        description="Open the CopyCat training panel on a run directory, or a data directory of runs.",
    )
    parser.add_argument("data_dir", nargs="?", help="a run directory, or a data directory holding runs")
    parser.add_argument("--config", help="a job YAML for Start (default: the selected run's config.yaml)")
    parser.set_defaults(handler=_run_gui)


def _run_gui(args: argparse.Namespace) -> int:
    from copycat_nuke.ui import TrainingPanel, apply_nuke_theme, qt

    if args.data_dir and not Path(args.data_dir).is_dir():
        raise ConfigError(f"{args.data_dir} is not a directory: give a run directory or a data directory of runs")
    existing = qt.QtWidgets.QApplication.instance()
    app = existing if isinstance(existing, qt.QtWidgets.QApplication) else qt.QtWidgets.QApplication(sys.argv[:1])
    apply_nuke_theme(app)
    panel = TrainingPanel()
    if args.config:
        panel.set_config(load_yaml(TrainConfig, args.config))
    if args.data_dir:
        panel.attach_directory(args.data_dir)
    panel.resize(1280, 860)
    panel.show()
    try:
        return qt.exec_(app)
    finally:
        job = panel.job
        if job is not None and job.running:  # the window closed mid-run: stop cleanly, with a checkpoint
            print("stopping training after this step…", file=sys.stderr)
            job.stop()
            try:
                job.wait()
            except CopyCatError as error:
                print(f"copycat: training failed: {error}", file=sys.stderr)


# -------------------------------------------------------------------------------------------- main
_EXIT_STATUS_HELP = f"""exit status:
  0    done
  {EXIT_ERROR}    any other error (set {DEBUG_ENV}=1 for its traceback)
  {EXIT_USAGE}    a bad option or setting (fix the command or the job's YAML)
  {EXIT_BAD_INPUT}    a file is missing, damaged, hostile or does not fit the job (.cat, frames, sequence)
  {EXIT_DIVERGED}    training diverged, or the model made NaN/infinite pixels (retrain, other settings)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C, SIGTERM, --stop-on-eof); training leaves a checkpoint to resume
Every error is one line on stderr."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="copycat",
        description="copycat_nuke: train CopyCat networks on before/after frame pairs and apply them to shots.",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"copycat_nuke {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (_add_train, _add_infer, _add_upscale, _add_deblur, _add_export, _add_info, _add_demo, _add_gui):
        add(sub)
    return parser


def _show_native_crashes() -> None:
    """A crash in native code (gloo on a farm node, a GPU driver) prints the Python stack of every thread."""
    if faulthandler.is_enabled():
        return
    with contextlib.suppress(AttributeError, ValueError, OSError):  # stderr without a file descriptor
        faulthandler.enable()


def main(argv: Optional[Sequence[str]] = None) -> int:
    _show_native_crashes()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except CopyCatError as error:
        print(f"copycat: error: {_one_line(str(error))}", file=sys.stderr)
        return exit_status(error)
    except KeyboardInterrupt:
        print("copycat: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(
            "copycat: error: out of memory; try a smaller --tile, --half, or a machine with more memory",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except Exception as error:  # a bug or an environment problem: still one line unless asked for more
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"copycat: error: unexpected {type(error).__name__}: {_one_line(str(error)) or 'no message'} "
            f"(set {DEBUG_ENV}=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _one_line(text: str) -> str:
    """An error message on one line: a farm log greps line by line."""
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "main"]
