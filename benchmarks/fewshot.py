"""Few-shot quality: train Small on 3 frames of a real shot per synthetic effect, score the held-out frames.

Reads the 10 Sintel frames in ``../shared/data/sintel_raft_demo`` (sRGB PNG → linear), makes
before/after pairs for each effect, trains a CopyCat network on frames 16, 20 and 24 only, runs it over
all ten, and prints JSON: held-out PSNR (sRGB-encoded, 0..1) of the model against doing nothing (identity)
and a 3×4 colour matrix fitted on the training pairs. Floor: ≥ 6 dB over the better baseline on the
spatial effect.

    python benchmarks/fewshot.py [--effects soften,grade,markers] [--steps 1800] [--size small]
        [--batch 3|auto] [--variants default,fullres,equal,doubling,pixels,guard,allstages,lstm,lr1e-3,lr2e-3]
        [--plot curve.png]

Time to quality: each run also reports the training minutes (and CPU minutes) until held-out PSNR first
came within 0.5 dB of the best it reached. ``fullres`` is the engine issue's trainer (full resolution,
equal level weights), the "before" of the time-to-quality tables in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from copycat_nuke import catfile, imageio
from copycat_nuke import train as train_module
from copycat_nuke.config import TrainConfig
from copycat_nuke.demo import apply_colour_matrix, fit_colour_matrix
from copycat_nuke.device import resolve_runtime
from copycat_nuke.infer import apply_model, load_model
from copycat_nuke.plots import save_loss_curve
from copycat_nuke.train import MULTI_RESOLUTION_MIN_EFFECT as MIN_EFFECT
from copycat_nuke.train import CheckpointWritten, Started, Trainer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sintel_raft_demo"
TRAIN_FRAMES = (16, 20, 24)


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def sintel_frames(benchmark: str) -> dict[int, np.ndarray]:
    """The Sintel frames of the shared sample data, by frame number, linear float32 (exits if absent)."""
    if not DATA.is_dir():
        sys.exit(f"{benchmark}: {DATA} not found (the shared sample data)")
    return {
        int(path.stem.split("_")[-1]): srgb_to_linear(imageio.read_frame(path, "rgb").pixels)
        for path in sorted(DATA.glob("frame_*.png"))
    }


def psnr_display(prediction: np.ndarray, truth: np.ndarray) -> float:
    """PSNR in dB of the sRGB-encoded images, 0..1."""
    error = float(np.mean((linear_to_srgb(prediction) - linear_to_srgb(truth)) ** 2))
    return 10 * np.log10(1 / max(error, 1e-12))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(3 * sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = image
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in range(3)], mode="reflect")
        out = sum(kernel[i] * np.take(padded, range(i, i + image.shape[axis]), axis=axis) for i in range(len(kernel)))
    return out.astype(np.float32)


def soften(image: np.ndarray, frame: int) -> np.ndarray:
    """Spatial: a beauty soften — blur σ=2.5 px blended 80% over the plate."""
    return (0.2 * image + 0.8 * gaussian_blur(image, 2.5)).astype(np.float32)


def grade(image: np.ndarray, frame: int) -> np.ndarray:
    """Colour: a non-linear grade — filmic shoulder, warm split-tone, lifted saturation."""
    luma = image @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    saturated = luma[..., None] + 1.4 * (image - luma[..., None])
    toned = np.clip(saturated, 0, None) * np.array([1.08, 1.0, 0.86], np.float32) + np.array([0.0, 0.004, 0.012])
    return (toned / (1 + 0.6 * toned)).astype(np.float32)


def markers(image: np.ndarray, frame: int) -> np.ndarray:
    """Spatial (inverse): the *input* gets tracking markers; Ground Truth is the clean plate."""
    return image


def add_markers(image: np.ndarray, frame: int) -> np.ndarray:
    rng = np.random.default_rng(frame)
    marked = image.copy()
    for _ in range(20):
        y, x = int(rng.integers(10, image.shape[0] - 10)), int(rng.integers(10, image.shape[1] - 10))
        marked[y - 6 : y + 7, x - 1 : x + 2] = (0.9, 0.95, 0.3)
        marked[y - 1 : y + 2, x - 6 : x + 7] = (0.9, 0.95, 0.3)
    return marked


EFFECTS: dict[str, tuple[str, Callable[[np.ndarray, int], np.ndarray]]] = {
    "soften": ("spatial", soften),
    "grade": ("colour", grade),
    "markers": ("spatial", markers),
}


Point = tuple[float, int, float, float]  # training minutes, step, held-out PSNR, CPU minutes


class HeldOutCurve:
    """Listener: scores every checkpoint on the held-out frames while training runs.

    Scoring time is kept off the clock: ``points`` are (training minutes, step, PSNR, CPU minutes) with
    the minutes the trainer alone spent. CPU minutes are this process's CPU time in training (all
    threads): with other work on the machine, wall-clock minutes overstate the cost and CPU time does not.
    """

    def __init__(self, inputs: dict[int, np.ndarray], truths: dict[int, np.ndarray], held_out: list[int]) -> None:
        self.inputs, self.truths, self.held_out = inputs, truths, held_out
        self.start = time.perf_counter()
        self.paused = 0.0
        self.cpu_start = time.process_time()
        self.cpu_paused = 0.0
        self.points: list[Point] = []
        self.started: Started | None = None

    def cpu_seconds(self) -> float:
        return time.process_time() - self.cpu_start - self.cpu_paused

    def training_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def score(self, model_path: Path) -> float:
        model = load_model(model_path)
        return float(np.mean([psnr_display(apply_model(model, self.inputs[f]), self.truths[f]) for f in self.held_out]))

    def __call__(self, event: object) -> None:
        if isinstance(event, Started):
            self.started = event
            self.start, self.paused = time.perf_counter(), 0.0
            self.cpu_start, self.cpu_paused = time.process_time(), 0.0
        elif isinstance(event, CheckpointWritten):
            clock = self.training_seconds()
            began, cpu_began = time.perf_counter(), time.process_time()
            cpu = self.cpu_seconds()
            self.points.append((round(clock / 60, 3), event.step, round(self.score(event.path), 2), round(cpu / 60, 3)))
            self.paused += time.perf_counter() - began
            self.cpu_paused += time.process_time() - cpu_began


def minutes_to_plateau(points: list[Point], within_db: float = 0.5, cpu: bool = False) -> float:
    """Training minutes (or CPU minutes) until held-out PSNR first comes within ``within_db`` of its best."""
    best = max(p[2] for p in points)
    return next(p[3] if cpu else p[0] for p in points if p[2] >= best - within_db)


def run_effect(
    name: str, frames: dict[int, np.ndarray], args: argparse.Namespace, work: Path, variant: dict[str, object]
) -> dict[str, object]:
    kind, effect = EFFECTS[name]
    inputs = {f: add_markers(img, f) if name == "markers" else img for f, img in frames.items()}
    truths = {f: effect(img, f) for f, img in frames.items()}
    for f in frames:
        imageio.write_frame(work / name / f"in.{f:04d}.exr", inputs[f], "rgb", pixel_type="float")
        imageio.write_frame(work / name / f"gt.{f:04d}.exr", truths[f], "rgb", pixel_type="float")
    settings: dict[str, object] = {
        "input": str(work / name / "in.####.exr"),
        "target": str(work / name / "gt.####.exr"),
        "out": str(work / name / "run"),
        "frames": ",".join(map(str, TRAIN_FRAMES)),
        "steps": args.steps,
        "model_size": args.size,
        "batch_size": None if args.batch == "auto" else int(args.batch),
        "crop_size": args.crop,
        "checkpoint_interval": max(1, args.steps // args.points),
        "image_interval": 10**9,
        "seed": args.seed,
    }
    settings.update({key: value for key, value in variant.items() if not key.startswith("_")})
    train_module.plan.MULTI_RESOLUTION_MIN_EFFECT = float(variant.get("_min_effect", MIN_EFFECT))  # type: ignore[arg-type]
    config = TrainConfig(**settings)  # type: ignore[arg-type]
    held_out = [f for f in frames if f not in TRAIN_FRAMES]
    curve = HeldOutCurve(inputs, truths, held_out)
    result = Trainer(config, [curve]).run()
    train_seconds = curve.training_seconds()
    cpu_seconds = curve.cpu_seconds()
    if not curve.points or curve.points[-1][1] != result.steps:  # the last checkpoint is the model
        score = round(curve.score(result.model_path), 2)
        curve.points.append((round(train_seconds / 60, 3), result.steps, score, round(cpu_seconds / 60, 3)))
    final = curve.points[-1][2]
    matrix = fit_colour_matrix((inputs[f] for f in TRAIN_FRAMES), (truths[f] for f in TRAIN_FRAMES))
    scores = {
        "identity": float(np.mean([psnr_display(inputs[f], truths[f]) for f in held_out])),
        "colour_matrix": float(
            np.mean([psnr_display(apply_colour_matrix(matrix, inputs[f]), truths[f]) for f in held_out])
        ),
        "copycat": final,
    }
    best_baseline = max(scores["identity"], scores["colour_matrix"])
    return {
        "kind": kind,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds_all_threads": round(cpu_seconds, 1),
        "steps": result.steps,
        "batch_size": curve.started.batch_size if curve.started else None,
        "batch_choice": curve.started.batch_choice if curve.started else None,
        "multi_resolution": curve.started.resolutions if curve.started else None,
        "final_loss": round(result.final_loss, 5),
        "gradient_clipped_steps": catfile.read_manifest(result.model_path).training.get("gradient_clipped_steps"),
        "held_out_psnr_db": {k: round(v, 2) for k, v in scores.items()},
        "gain_over_best_baseline_db": round(scores["copycat"] - best_baseline, 2),
        "minutes_to_within_0.5db_of_best": minutes_to_plateau(curve.points),
        "cpu_minutes_to_within_0.5db_of_best": minutes_to_plateau(curve.points, cpu=True),
        "curve_minutes_step_psnr_cpuminutes": curve.points,
    }


VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "lstm": {"lstm": True},
    # the engine issue's trainer: full resolution throughout, equal level weights, no gradient guard
    "fullres": {"multi_resolution": False, "level_weights": "equal", "gradient_clip": 0.0},
    "equal": {"level_weights": "equal"},  # equal level weights for every effect (the default until 2026-12-01)
    "doubling": {"level_weights": "doubling"},  # 1:2:4 level weights for every effect, not only fine ones
    "pixels": {"level_weights": "pixels"},  # 1:4:16 level weights for every effect, not only fine ones
    "guard": {"gradient_clip": 4.0},  # the gradient guard on (off by default, by measurement)
    "doubling-guard": {"level_weights": "doubling", "gradient_clip": 4.0},
    "allstages": {"multi_resolution": True, "_min_effect": 0.0},  # every stage, whatever the effect
    "lr1e-3": {"learning_rate": 1e-3},
    "lr2e-3": {"learning_rate": 2e-3},
}


def save_plot(path: Path, results: dict[str, dict[str, dict[str, object]]]) -> None:
    """PSNR against training minutes, one line per effect and variant."""
    series = {
        f"{effect} {variant}": (
            [p[0] for p in run["curve_minutes_step_psnr_cpuminutes"]],  # type: ignore[attr-defined]
            [p[2] for p in run["curve_minutes_step_psnr_cpuminutes"]],  # type: ignore[attr-defined]
        )
        for variant, effects in results.items()
        for effect, run in effects.items()
    }
    first = next(iter(series))
    x, y = series.pop(first)
    save_loss_curve(
        path,
        x,
        y,
        series=series,
        label=first,
        smoothness=0.0,
        log_scale=False,
        show_original=False,
        title="Held-out PSNR against training time",
        x_label="training minutes",
        y_label="PSNR (dB, sRGB)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--effects", default="soften,grade")
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", default="3", help="patches per step, or auto (the trainer's default)")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--variants", default="default", help=f"comma-separated, of {sorted(VARIANTS)}")
    parser.add_argument("--points", type=int, default=8, help="held-out scores along the way")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="write PSNR against training minutes as a PNG here")
    args = parser.parse_args()
    frames = sintel_frames("fewshot")
    results: dict[str, dict[str, dict[str, object]]] = {}
    for variant in args.variants.split(","):
        results[variant] = {}
        for name in args.effects.split(","):
            with tempfile.TemporaryDirectory() as directory:
                results[variant][name] = run_effect(name, frames, args, Path(directory), VARIANTS[variant])
            done = {"variant": variant, "effect": name, **results[variant][name]}
            print(f"fewshot: done {json.dumps(done)}", file=sys.stderr, flush=True)  # kept if a later run dies
    if args.plot:
        save_plot(args.plot, results)
    report = {
        "benchmark": "fewshot",
        "data": "sintel_raft_demo frames 16-25 (1024x436), trained on 16,20,24, scored on the other 7",
        "model_size": args.size,
        "steps": args.steps,
        "batch": f"{args.batch}x{args.crop}x{args.crop}",
        "device": resolve_runtime().describe(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": str(torch.__version__),
        "variants": {name: VARIANTS[name] for name in results},
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
