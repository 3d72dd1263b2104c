"""Temporal mode against flicker: a network that also sees its neighbouring frames, with and without.

Reads the 10 Sintel frames in ``../shared/data/sintel_raft_demo`` (sRGB PNG → linear), makes before/after
pairs for each effect, trains Small on frames 17, 20 and 23 (whose neighbours exist) with ``temporal`` 0
and N, runs each model over all ten frames through :func:`copycat_nuke.infer.infer_sequence` (which reads
the neighbours and holds the ends), and prints JSON per effect and setting:

- held-out PSNR (sRGB-encoded, 0..1) on the seven frames not trained on;
- flicker: the mean absolute frame-to-frame change of the output minus that of the Ground Truth
  (sRGB-encoded, ×1000), over the nine consecutive frame pairs. 0 is as steady as the Ground Truth;
  positive is flicker the network added (or left in), negative is motion it smoothed away;
- temporal error: the mean absolute difference between the output's frame-to-frame change and the Ground
  Truth's, per pixel (sRGB-encoded, ×1000): 0 only when the output changes exactly as the Ground Truth
  does, so it counts flicker and smoothing alike.

Effects: ``denoise`` (Input = plate + fresh noise every frame, Ground Truth = the plate: single frames
cannot tell noise from detail, neighbours can) and ``soften`` (fewshot's beauty soften: nothing to gain
from neighbours; checks that temporal mode costs nothing).

    python benchmarks/temporal.py [--effects denoise,soften] [--temporal 1] [--steps 1200] [--size small]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fewshot import linear_to_srgb, psnr_display, sintel_frames, soften, srgb_to_linear

from copycat_nuke import imageio
from copycat_nuke.config import TrainConfig
from copycat_nuke.device import resolve_runtime
from copycat_nuke.infer import infer_sequence, load_model
from copycat_nuke.train import Trainer

TRAIN_FRAMES = (17, 20, 23)
NOISE_SIGMA = 0.04  #: denoise: Gaussian noise σ added in sRGB-encoded values (0..1)


def add_noise(image: np.ndarray, frame: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + frame)
    encoded = linear_to_srgb(image) + rng.normal(0, NOISE_SIGMA, image.shape)
    return srgb_to_linear(np.clip(encoded, 0, 1).astype(np.float32))


def flicker(frames: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Mean |frame-to-frame change| of ``frames`` minus that of ``truths``, sRGB-encoded, ×1000."""

    def change(sequence: list[np.ndarray]) -> float:
        encoded = [linear_to_srgb(f) for f in sequence]
        return float(np.mean([np.abs(b - a).mean() for a, b in zip(encoded, encoded[1:])]))

    return round(1000 * (change(frames) - change(truths)), 3)


def temporal_error(frames: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Mean |Δoutput − ΔGround Truth| between consecutive frames, per pixel, sRGB-encoded, ×1000."""
    out = [linear_to_srgb(f) for f in frames]
    gt = [linear_to_srgb(f) for f in truths]
    errors = [np.abs((b - a) - (d - c)).mean() for a, b, c, d in zip(out, out[1:], gt, gt[1:])]
    return round(1000 * float(np.mean(errors)), 3)


def run(name: str, frames: dict[int, np.ndarray], temporal: int, args: argparse.Namespace, work: Path) -> dict:
    numbers = sorted(frames)
    inputs = {f: add_noise(img, f) if name == "denoise" else img for f, img in frames.items()}
    truths = {f: img if name == "denoise" else soften(img, f) for f, img in frames.items()}
    for f in numbers:
        imageio.write_frame(work / f"in.{f:04d}.exr", inputs[f], "rgb", pixel_type="float")
        imageio.write_frame(work / f"gt.{f:04d}.exr", truths[f], "rgb", pixel_type="float")
    config = TrainConfig(
        input=str(work / "in.####.exr"),
        target=str(work / "gt.####.exr"),
        out=str(work / f"run{temporal}"),
        frames=",".join(map(str, TRAIN_FRAMES)),
        steps=args.steps,
        model_size=args.size,
        batch_size=args.batch,
        crop_size=args.crop,
        checkpoint_interval=args.steps,
        image_interval=10**9,
        seed=args.seed,
        temporal=temporal,
    )
    started = time.perf_counter()
    result = Trainer(config).run()
    seconds = time.perf_counter() - started
    model = load_model(result.model_path)
    written = infer_sequence(model, str(work / "in.####.exr"), str(work / f"out{temporal}.####.exr"), tile=0)
    outputs = {n: imageio.read_frame(path, "rgb").pixels for n, path in zip(numbers, written)}
    held_out = [f for f in numbers if f not in TRAIN_FRAMES]
    return {
        "temporal": temporal,
        "train_seconds": round(seconds, 1),
        "held_out_psnr_db": round(float(np.mean([psnr_display(outputs[f], truths[f]) for f in held_out])), 2),
        "input_psnr_db": round(float(np.mean([psnr_display(inputs[f], truths[f]) for f in held_out])), 2),
        "flicker_x1000": flicker([outputs[f] for f in numbers], [truths[f] for f in numbers]),
        "input_flicker_x1000": flicker([inputs[f] for f in numbers], [truths[f] for f in numbers]),
        "temporal_error_x1000": temporal_error([outputs[f] for f in numbers], [truths[f] for f in numbers]),
        "input_temporal_error_x1000": temporal_error([inputs[f] for f in numbers], [truths[f] for f in numbers]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--effects", default="denoise,soften")
    parser.add_argument("--temporal", type=int, default=1, help="neighbours on each side of the temporal run")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frames = sintel_frames("temporal")
    results: dict[str, list[dict]] = {}
    for name in args.effects.split(","):
        results[name] = []
        for temporal in (0, args.temporal):
            with tempfile.TemporaryDirectory() as directory:
                results[name].append(run(name, frames, temporal, args, Path(directory)))
            done = {"effect": name, **results[name][-1]}
            print(f"temporal: done {json.dumps(done)}", file=sys.stderr, flush=True)
    report = {
        "benchmark": "temporal",
        "data": "sintel_raft_demo frames 16-25 (1024x436), trained on 17,20,23, PSNR on the other 7, "
        "flicker over all 10",
        "model_size": args.size,
        "steps": args.steps,
        "batch": f"{args.batch}x{args.crop}x{args.crop}",
        "noise_sigma_srgb": NOISE_SIGMA,
        "device": resolve_runtime().describe(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": str(torch.__version__),
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
