"""Deblur on a real GoPro motion-blur pair: the shipped Deblur network against the blurred frame itself.

Reads ``../shared/data/gopro_blur_sharp_pair`` (``Flower_blur1.png`` → ``Flower_sharp1.png``, 1280×720,
8-bit sRGB). The network runs on LINEAR light as in Nuke (the blurred frame's sRGB values are decoded,
run through the model, encoded back and rounded to 8 bits, as a PNG stores them). Scores, against the
sharp frame, on the sRGB-encoded values in 0..1 over all three channels:

* PSNR (dB, peak 1) of the network's output and of the blurred input ("do nothing");
* SSIM (Wang et al. 2004: 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, valid region only),
  the mean over R, G and B.

Floor (issue #5): the network gains at least 1.5 dB PSNR over the blurred input.

    .venv/bin/python benchmarks/deblur.py [--model X.cat] [--tile N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from sr import linear_to_srgb, model_summary, read_srgb, srgb_to_linear, to_8bit  # benchmarks/sr.py

from copycat_nuke.errors import CopyCatError
from copycat_nuke.infer import apply_model, load_model
from copycat_nuke.pretrained import require_shipped_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gopro_blur_sharp_pair"
FLOOR_DB = 1.5


def psnr(prediction: np.ndarray, truth: np.ndarray) -> float:
    """PSNR in dB of 0..1 values (peak 1), over every pixel and channel."""
    error = float(np.mean((prediction.astype(np.float64) - truth.astype(np.float64)) ** 2))
    return float(10 * np.log10(1.0 / max(error, 1e-12)))


def ssim(prediction: np.ndarray, truth: np.ndarray, sigma: float = 1.5, radius: int = 5) -> float:
    """Mean SSIM of two H×W×C images of 0..1 values, per channel then averaged (Gaussian window)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    window = torch.from_numpy(np.outer(g, g))[None, None]

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, window)  # valid region only, as the reference implementation

    a = torch.from_numpy(prediction.astype(np.float64).transpose(2, 0, 1))[:, None]  # C×1×H×W
    b = torch.from_numpy(truth.astype(np.float64).transpose(2, 0, 1))[:, None]
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def resolve_model(given: Optional[str]) -> Path:
    if given:
        return Path(given)
    try:
        return require_shipped_model("deblur", instead="pass --model X.cat, or build it (docs/pretrained.md)")
    except CopyCatError as error:
        sys.exit(f"deblur: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a same-size .cat (default: the shipped Deblur network)")
    parser.add_argument("--tile", type=int, help="inference tile size (default automatic; 0 = whole frame)")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels")
    parser.add_argument("--quick", action="store_true", help="smoke run: a 128×128 crop")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"deblur: {DATA} not found (the shared sample data)")
    model_path = resolve_model(args.model)
    model = load_model(model_path)
    if model.scale != 1:
        sys.exit(f"deblur: {model_path} is a ×{model.scale} network; deblurring keeps the frame's size")
    blurred = read_srgb(DATA / "Flower_blur1.png")
    sharp = read_srgb(DATA / "Flower_sharp1.png")
    if args.quick:
        top, left = (blurred.shape[0] - 128) // 2, (blurred.shape[1] - 128) // 2
        blurred, sharp = (image[top : top + 128, left : left + 128] for image in (blurred, sharp))
    start = time.perf_counter()
    linear = apply_model(model, srgb_to_linear(blurred), tile=args.tile, overlap=args.overlap)
    seconds = time.perf_counter() - start
    restored = to_8bit(linear_to_srgb(linear))
    scores = {
        "blurred_input": {"psnr_db": round(psnr(blurred, sharp), 3), "ssim": round(ssim(blurred, sharp), 4)},
        "deblur": {"psnr_db": round(psnr(restored, sharp), 3), "ssim": round(ssim(restored, sharp), 4)},
    }
    gain = round(scores["deblur"]["psnr_db"] - scores["blurred_input"]["psnr_db"], 3)
    report = {
        "benchmark": "deblur",
        "data": "GoPro Flower_blur1 -> Flower_sharp1"
        + (" (128x128 centre crop)" if args.quick else f" ({blurred.shape[1]}x{blurred.shape[0]})"),
        "score": "PSNR (dB, peak 1) and SSIM (Gaussian 11x11, sigma 1.5; mean of R, G, B) of sRGB 0..1 values "
        "against the sharp frame; the output rounded to 8 bits",
        "method": "the network on linear light (sRGB decoded before, encoded after)",
        "model": model_summary(model_path),
        "tile": args.tile if args.tile is not None else "auto",
        "overlap": args.overlap,
        "inference_seconds": round(seconds, 2),
        "device": model.runtime.describe(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": str(torch.__version__),
        "scores": scores,
        "floor": {
            "rule": f"deblur PSNR >= blurred input PSNR + {FLOOR_DB} dB",
            "gain_db": gain,
            "met": gain >= FLOOR_DB,
        },
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
