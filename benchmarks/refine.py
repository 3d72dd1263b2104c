"""Refine-on-shot: does fine-tuning the ×2 Upscale network on a shot's own frames help, with no ground truth?

On the 10 Sintel frames in ``../shared/data/sintel_raft_demo`` (1024×436 PNG):

* **High-res truth**: each frame (sRGB-encoded 0..1 values).
* **Low-res shot** (512×218), by default exactly as ``benchmarks/sr.py`` makes its inputs: antialiased
  bicubic ÷2 (Keys, a = −0.5) of the sRGB-encoded values, rounded to 8 bits. ``--degrade linear`` uses
  :func:`copycat_nuke.resample.downscale` on linear light instead, the very degradation
  refinement trains on (the default is the harder, more realistic case: the shot's degradation is not
  the one refinement assumes).
* **Methods**, each upscaling the low-res shot ×2:

  - ``bicubic``: Keys' cubic convolution (a = −0.5) on the sRGB values, as in ``sr.py``;
  - ``upscale``: the shipped Upscale network (or ``--model``), on linear light;
  - ``refined``: that network after :func:`copycat_nuke.upscale.refine_on_shot` on the low-res frames
    themselves (pairs: each low-res frame downscaled ×0.5 again in linear light → the low-res frame;
    the high-res frames are never seen), ``--steps`` steps (default 300), on all 10 frames.

* **Score**: PSNR on BT.601 Y with a 2-pixel border shaved, as in ``sr.py``; times for refinement
  (writing the pairs and training) and inference.

    .venv/bin/python benchmarks/refine.py [--steps 300] [--model X.cat] [--degrade srgb|linear] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sr import (  # benchmarks/sr.py, beside this file
    bicubic_downscale,
    bicubic_upscale,
    linear_to_srgb,
    model_summary,
    model_upscale,
    psnr_y,
    read_srgb,
    srgb_to_linear,
    to_8bit,
)

from copycat_nuke import catfile, imageio
from copycat_nuke.errors import CopyCatError
from copycat_nuke.infer import load_model
from copycat_nuke.pretrained import require_shipped_model
from copycat_nuke.resample import downscale
from copycat_nuke.upscale import REFINE_LEARNING_RATE, refine_on_shot

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sintel_raft_demo"


def degrade(truth: np.ndarray, how: str) -> np.ndarray:
    """The low-res shot frame (8-bit sRGB values) made from a high-res sRGB frame."""
    if how == "linear":
        return to_8bit(linear_to_srgb(downscale(srgb_to_linear(truth), 2)))
    return bicubic_downscale(truth, 2)


def resolve_model(given: Optional[str]) -> Path:
    if given:
        return Path(given)
    try:
        return require_shipped_model("upscale", instead="pass --model X.cat, or build it (docs/pretrained.md)")
    except CopyCatError as error:
        sys.exit(f"refine: {error}")


def score(
    method: str,
    frames: dict[int, np.ndarray],
    truths: dict[int, np.ndarray],
    run: Callable[[np.ndarray], np.ndarray],
) -> tuple[dict[int, float], float]:
    """PSNR-Y of ``run(low-res frame)`` per frame, and the seconds it took in all."""
    start = time.perf_counter()
    scores = {f: round(psnr_y(run(frames[f]), truths[f]), 3) for f in frames}
    seconds = time.perf_counter() - start
    print(f"refine: {method} mean {np.mean(list(scores.values())):.3f} dB", file=sys.stderr, flush=True)
    return scores, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a ×2 .cat (default: the shipped Upscale network)")
    parser.add_argument("--steps", type=int, default=300, help="refinement steps (default 300)")
    parser.add_argument("--learning-rate", type=float, default=REFINE_LEARNING_RATE)
    parser.add_argument("--degrade", choices=("srgb", "linear"), default="srgb", help="how the low-res shot is made")
    parser.add_argument("--tile", type=int, help="inference tile size (default automatic; 0 = whole frame)")
    parser.add_argument("--device", default="auto", help="refinement and inference device")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 frames, 128×192 crops, 2 steps")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"refine: {DATA} not found (the shared sample data)")
    model_path = resolve_model(args.model)
    paths = sorted(DATA.glob("frame_*.png"))[: 2 if args.quick else None]
    steps = 2 if args.quick else args.steps
    truths: dict[int, np.ndarray] = {}
    for path in paths:
        truth = read_srgb(path)
        if args.quick:
            top, left = (truth.shape[0] - 128) // 2, (truth.shape[1] - 192) // 2
            truth = truth[top : top + 128, left : left + 192]
        # sides divisible by 4: the shot is ÷2 and refinement's own inputs ÷2 again
        truths[int(path.stem.split("_")[-1])] = np.ascontiguousarray(
            truth[: truth.shape[0] // 4 * 4, : truth.shape[1] // 4 * 4]
        )
    shot = {f: degrade(truth, args.degrade) for f, truth in truths.items()}
    model = load_model(model_path, args.device)
    results: dict[str, dict[int, float]] = {}
    seconds: dict[str, float] = {}
    results["bicubic"], seconds["bicubic"] = score("bicubic", shot, truths, bicubic_upscale)
    results["upscale"], seconds["upscale"] = score(
        "upscale", shot, truths, lambda lr: model_upscale(model, lr, args.tile)
    )
    with tempfile.TemporaryDirectory(prefix="copycat-refine-bench-") as directory:
        work = Path(directory)
        for f, low in shot.items():  # the shot as a linear EXR sequence, as it would arrive in Nuke
            imageio.write_frame(work / "shot" / f"shot.{f:04d}.exr", srgb_to_linear(low), "rgb", pixel_type="float")
        start = time.perf_counter()
        result = refine_on_shot(
            str(work / "shot" / "shot.####.exr"),
            work / "run",
            steps=steps,
            model=model_path,
            device=args.device,
            max_frames=len(shot),
            learning_rate=args.learning_rate,
            seed=args.seed,
        )
        refine_seconds = time.perf_counter() - start
        refined_manifest = catfile.read_manifest(result.model_path)
        refined = load_model(result.model_path, args.device)
        results["refined"], seconds["refined"] = score(
            "refined", shot, truths, lambda lr: model_upscale(refined, lr, args.tile)
        )
    means = {name: round(float(np.mean(list(values.values()))), 3) for name, values in results.items()}
    report = {
        "benchmark": "refine",
        "data": f"sintel_raft_demo, {len(truths)} frames"
        + (" (128x192 centre crops)" if args.quick else " (1024x436 -> 512x218 shot)"),
        "low_res": (
            "antialiased bicubic (Keys a=-0.5) /2 of the sRGB-encoded values, rounded to 8 bits (as sr.py)"
            if args.degrade == "srgb"
            else "copycat_nuke.resample.downscale /2 in linear light, encoded to 8-bit sRGB"
        ),
        "score": "PSNR (dB) on BT.601 Y (0..255), 2-px border shaved; outputs rounded to 8 bits",
        "model": model_summary(model_path),
        "refine": {
            "how": "copycat_nuke.upscale.refine_on_shot on the low-res frames (each downscaled x0.5 again, "
            "linear light, as Input; itself as Ground Truth); no high-res frame used",
            "steps": result.steps,
            "learning_rate": args.learning_rate,
            "frames": len(shot),
            "batch_size": refined_manifest.training.get("batch_size"),
            "crop_size": refined_manifest.training.get("crop_size"),
            "final_loss": round(result.final_loss, 5),
            "train_seconds": round(result.seconds, 1),
            "total_seconds": round(refine_seconds, 1),
            "device": refined_manifest.training.get("device"),
        },
        "inference_seconds": {name: round(value, 2) for name, value in seconds.items()},
        "device": model.runtime.describe(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": str(torch.__version__),
        "psnr_y_db": results,
        "mean_psnr_y_db": means,
        "gain_db": {
            "upscale_over_bicubic": round(means["upscale"] - means["bicubic"], 3),
            "refined_over_upscale": round(means["refined"] - means["upscale"], 3),
            "refined_over_bicubic": round(means["refined"] - means["bicubic"], 3),
        },
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
