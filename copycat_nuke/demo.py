"""``copycat demo``: a whole CopyCat job on a shot made on the spot, with nothing but the package.

The shot is a procedural plate panning across the frame with tracking markers on the set (they move
with the plate); its Ground Truth is the clean plate — marker removal, a real CopyCat job. The demo
trains a Small network on three frames, runs it over every frame, scores the frames it never saw
against two baselines (doing nothing, and a 3×4 colour matrix fitted on the training pairs), and writes
``before_after.png``: a held-out frame's input, the network's result and the Ground Truth side by side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from copycat_nuke import imageio, infer, plots, transfer
from copycat_nuke.config import TrainConfig, write_text_atomic
from copycat_nuke.train import Listener, Trainer, TrainResult

FIRST_FRAME = 1001
FRAME_COUNT = 12
TRAINING_FRAMES = (1001, 1006, 1011)
WIDTH, HEIGHT = 320, 192
MARKERS = 40  #: on the whole set; about half are in frame at a time
MARKER_ARM = 6
MARKER_COLOUR = np.array([0.9, 0.95, 0.3], np.float32)
PAN_PIXELS_PER_FRAME = (7, 3)


@dataclass
class DemoResult:
    """Paths and scores of a demo run; ``psnr`` maps method → mean held-out PSNR in dB."""

    out_dir: Path
    training: TrainResult
    psnr: dict[str, float]
    held_out_frames: list[int]
    outputs: list[Path]
    before_after: Path

    @property
    def margin_db(self) -> float:
        """How far the network beats the better baseline, in dB."""
        return self.psnr["copycat"] - max(self.psnr["identity"], self.psnr["colour_matrix"])

    def summary(self) -> dict[str, Any]:
        return {
            "held_out_psnr_db": {key: round(value, 2) for key, value in self.psnr.items()},
            "held_out_frames": imageio.format_frame_list(self.held_out_frames),
            "over_better_baseline_db": round(self.margin_db, 2),
            "training_steps": self.training.steps,
            "training_seconds": round(self.training.seconds, 1),
            "final_loss": self.training.final_loss,
            "model": str(self.training.model_path),
            "loss_curve": str(self.out_dir / "run" / "loss.png"),
            "contact_sheets": str(self.out_dir / "run" / "contact_sheets"),
            "outputs": str(self.out_dir / "output" / "clean.####.exr"),
            "before_after": str(self.before_after),
        }


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Value noise: a random grid every ``cell`` pixels, bicubic-smooth between grid points."""
    grid = rng.random((height // cell + 4, width // cell + 4)).astype(np.float32)
    ys = np.arange(height, dtype=np.float32) / cell + 1
    xs = np.arange(width, dtype=np.float32) / cell + 1
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    ty, tx = ys - y0, xs - x0
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)  # smoothstep: no grid creases
    top = grid[y0][:, x0] * (1 - tx) + grid[y0][:, x0 + 1] * tx
    bottom = grid[y0 + 1][:, x0] * (1 - tx) + grid[y0 + 1][:, x0 + 1] * tx
    return top * (1 - ty[:, None]) + bottom * ty[:, None]


def make_set(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """The whole set, clean and with markers, as linear float32 H×W×3 (larger than a frame: it pans)."""
    rng = np.random.default_rng(seed)
    height = HEIGHT + PAN_PIXELS_PER_FRAME[1] * FRAME_COUNT + 32
    width = WIDTH + PAN_PIXELS_PER_FRAME[0] * FRAME_COUNT + 32
    detail = sum(_smooth_noise(rng, height, width, cell) * weight for cell, weight in ((48, 0.5), (16, 0.3), (5, 0.2)))
    palette = np.array([[0.05, 0.07, 0.04], [0.35, 0.28, 0.18], [0.18, 0.32, 0.12], [0.9, 0.8, 0.6]], np.float32)
    position = np.clip(detail, 0, 0.999) * (len(palette) - 1)
    index = position.astype(int)
    blend = (position - index)[..., None]
    clean = palette[index] * (1 - blend) + palette[np.minimum(index + 1, len(palette) - 1)] * blend
    # independent tints per channel, so colours vary in all three dimensions (no channel predicts the rest)
    tint = np.stack([_smooth_noise(rng, height, width, 40) for _ in range(3)], axis=2)
    clean = clean * (0.3 + 1.4 * tint)
    highlight = _smooth_noise(rng, height, width, 64)[..., None]
    clean = clean * (0.6 + 1.6 * highlight**3)  # a few values over 1: it is a linear, HDR plate
    marked = clean.copy()
    for _ in range(MARKERS):
        # tracking markers: crosses of yellow-green tape, 3 pixels wide, as on a set
        y = int(rng.integers(12, height - 12))
        x = int(rng.integers(12, width - 12))
        marked[y - MARKER_ARM : y + MARKER_ARM + 1, x - 1 : x + 2] = MARKER_COLOUR
        marked[y - 1 : y + 2, x - MARKER_ARM : x + MARKER_ARM + 1] = MARKER_COLOUR
    return clean.astype(np.float32), marked.astype(np.float32)


def write_shot(directory: Union[str, Path], seed: int = 7) -> tuple[str, str]:
    """Write the demo shot: ``plate.####.exr`` (with markers) and ``clean.####.exr`` (Ground Truth)."""
    directory = Path(directory)
    clean, marked = make_set(seed)
    for offset in range(FRAME_COUNT):
        top, left = offset * PAN_PIXELS_PER_FRAME[1], offset * PAN_PIXELS_PER_FRAME[0]
        window = (slice(top, top + HEIGHT), slice(left, left + WIDTH))
        frame = FIRST_FRAME + offset
        imageio.write_frame(directory / f"plate.{frame:04d}.exr", marked[window], "rgb")
        imageio.write_frame(directory / f"clean.{frame:04d}.exr", clean[window], "rgb")
    return str(directory / "plate.####.exr"), str(directory / "clean.####.exr")


def psnr(prediction: np.ndarray, truth: np.ndarray) -> float:
    """PSNR in dB of linear images clipped to 0..1 (peak 1)."""
    error = float(np.mean((np.clip(prediction, 0, 1) - np.clip(truth, 0, 1)) ** 2))
    return math.inf if error == 0 else 10 * math.log10(1 / error)


def fit_colour_matrix(sources: Iterable[np.ndarray], targets: Iterable[np.ndarray]) -> np.ndarray:
    """Least-squares 3×4 matrix M with target ≈ M @ [r, g, b, 1] over every pixel of the pairs."""
    a = np.concatenate([np.c_[s.reshape(-1, 3), np.ones(s.size // 3)] for s in sources])
    b = np.concatenate([t.reshape(-1, 3) for t in targets])
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    return solution.T.astype(np.float32)


def apply_colour_matrix(matrix: np.ndarray, image: np.ndarray) -> np.ndarray:
    return np.einsum("ij,hwj->hwi", matrix[:, :3], image) + matrix[:, 3]


def write_before_after(
    path: Path, frame: int, plate: np.ndarray, result: np.ndarray, truth: np.ndarray, zoom: int = 2
) -> Path:
    """Input | network | Ground Truth of one held-out frame as a PNG, each titled with its PSNR."""
    tiles = [transfer.to_display(image).repeat(zoom, axis=0).repeat(zoom, axis=1) for image in (plate, result, truth)]
    titles = (
        f"input: {psnr(plate, truth):.1f} dB",
        f"CopyCat: {psnr(result, truth):.1f} dB",
        "ground truth",
    )
    return plots.save_contact_sheet(path, [tiles], column_titles=titles, row_titles=[f"frame {frame} (held out)"])


def run_demo(
    out_dir: Union[str, Path] = "copycat-demo",
    *,
    steps: int = 600,
    device: str = "auto",
    listeners: Iterable[Listener] = (),
    seed: int = 0,
    model_size: str = "small",
    crop_size: int = 128,
    progress: Optional[infer.ProgressCallback] = None,
) -> DemoResult:
    """Make the shot, train on three frames, infer every frame, score the held-out ones."""
    out = Path(out_dir)
    plate, clean = write_shot(out / "shot")
    config = TrainConfig(
        input=plate,
        target=clean,
        out=str(out / "run"),
        frames=",".join(str(f) for f in TRAINING_FRAMES),
        steps=steps,
        model_size=model_size,
        crop_size=crop_size,
        batch_size=len(TRAINING_FRAMES),
        checkpoint_interval=max(steps // 3, 1),
        image_interval=max(steps // 6, 1),
        device=device,
        seed=seed,
        # a paint-out is a local effect: its early stages train on small crops full of markers, which
        # learns it in far fewer steps than full resolution (docs/decisions.md, "The demo")
        multi_resolution=True,
    )
    training = Trainer(config, listeners).run()
    outputs = infer.infer_sequence(
        training.model_path, plate, str(out / "output" / "clean.####.exr"), device=device, progress=progress
    )
    frames = list(range(FIRST_FRAME, FIRST_FRAME + FRAME_COUNT))
    plates = {f: imageio.read_frame(imageio.ImageSequence.parse(plate).path(f), "rgb").pixels for f in frames}
    truths = {f: imageio.read_frame(imageio.ImageSequence.parse(clean).path(f), "rgb").pixels for f in frames}
    results = dict(zip(frames, (imageio.read_frame(path, "rgb").pixels for path in outputs)))
    matrix = fit_colour_matrix((plates[f] for f in TRAINING_FRAMES), (truths[f] for f in TRAINING_FRAMES))
    held_out = [f for f in frames if f not in TRAINING_FRAMES]
    scores = {
        "identity": float(np.mean([psnr(plates[f], truths[f]) for f in held_out])),
        "colour_matrix": float(np.mean([psnr(apply_colour_matrix(matrix, plates[f]), truths[f]) for f in held_out])),
        "copycat": float(np.mean([psnr(results[f], truths[f]) for f in held_out])),
    }
    shown = held_out[len(held_out) // 2]
    before_after = write_before_after(out / "before_after.png", shown, plates[shown], results[shown], truths[shown])
    result = DemoResult(
        out_dir=out,
        training=training,
        psnr=scores,
        held_out_frames=held_out,
        outputs=outputs,
        before_after=before_after,
    )
    write_text_atomic(out / "demo.json", json.dumps(result.summary(), indent=2) + "\n")
    return result
