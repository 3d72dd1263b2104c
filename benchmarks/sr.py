"""×2 super-resolution on Set5: the shipped Upscale network against bicubic and Lanczos-3, PSNR on Y.

The standard single-image SR protocol, on the five Set5 images in ``../shared/data/sr_set5``:

* **High-res truth**: each image cropped to even sides (all five already are).
* **Low-res input**: antialiased bicubic ÷2 of the sRGB-encoded 0..1 values, as MATLAB's ``imresize``
  makes SR benchmarks (``F.interpolate(mode="bicubic", antialias=True)``: Keys' kernel with a = −0.5
  stretched ×2, 8 taps; checked against an explicit kernel), then rounded to 8 bits as a PNG stores it.
* **Methods**, each giving 8-bit sRGB:

  - ``upscale``: the shipped Upscale network (or ``--model X.cat``), on LINEAR light as in Nuke: the
    low-res sRGB values are linearised, run through the model, and encoded back to sRGB.
  - ``bicubic``: Keys' cubic convolution with a = −0.5 (MATLAB's and Pillow's bicubic; torch's own
    non-antialiased bicubic uses a = −0.75, so it is written out here as an explicit 4-tap kernel),
    on the low-res sRGB values.
  - ``lanczos3``: Lanczos-3 (6 taps, weights normalised to sum to one), on the same values.

  Both classical filters mirror the image at its border (MATLAB's "symmetric" padding).
* **Score**: PSNR on BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in 0..1, so Y is
  on the 0..255 scale, peak 255), with a 2-pixel border shaved (= the scale), as in the SR literature.

Floor (issue #5): the network's mean is at least bicubic's mean + 2 dB.

    .venv/bin/python benchmarks/sr.py [--model X.cat] [--tile N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from copycat_nuke import catfile, imageio
from copycat_nuke.errors import CopyCatError
from copycat_nuke.infer import LoadedModel, apply_model, load_model
from copycat_nuke.pretrained import require_shipped_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sr_set5"
SCALE = 2
SHAVE = 2
FLOOR_DB = 2.0
#: What of the model's manifest training summary the report repeats.
TRAINING_KEYS = ("seconds", "hardware", "device", "precision", "steps", "recipe", "recipe_sha256", "created")


# --------------------------------------------------------------------------------------------- colour
def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055).astype(np.float32)


def to_8bit(v: np.ndarray) -> np.ndarray:
    """0..1 values rounded to the 256 levels an 8-bit PNG holds (still float32 0..1)."""
    return (np.round(np.clip(v, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def luma_601(srgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma of H×W×3 sRGB 0..1 values, on the 0..255 scale (16..235)."""
    return 16.0 + srgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966])


def psnr_y(prediction: np.ndarray, truth: np.ndarray, shave: int = SHAVE) -> float:
    """PSNR (dB, peak 255) on BT.601 luma, ``shave`` pixels cut from every border."""
    a, b = luma_601(prediction), luma_601(truth)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    error = float(np.mean((a - b) ** 2))
    return float(10 * np.log10(255.0**2 / max(error, 1e-12)))


# ------------------------------------------------------------------------------------------ resampling
def bicubic_downscale(srgb: np.ndarray, factor: int = SCALE) -> np.ndarray:
    """Antialiased bicubic (Keys, a = −0.5) ÷``factor`` of H×W×C values whose sides divide by it, 8-bit."""
    tensor = torch.from_numpy(np.ascontiguousarray(srgb.transpose(2, 0, 1)))[None]
    small = F.interpolate(tensor, scale_factor=1 / factor, mode="bicubic", antialias=True)
    return to_8bit(small[0].permute(1, 2, 0).numpy())


def keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (support 2)."""
    t = np.abs(t)
    near = (a + 2) * t**3 - (a + 3) * t**2 + 1
    far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def lanczos3(t: np.ndarray) -> np.ndarray:
    """The Lanczos kernel with a = 3 (support 3): sinc(t)·sinc(t/3)."""
    return np.where(np.abs(t) < 3, np.sinc(t) * np.sinc(t / 3), 0.0)


def _mirror(index: np.ndarray, length: int) -> np.ndarray:
    """Indices reflected at the border, the edge pixel repeated (``…1 0 | 0 1 …``): "symmetric" padding."""
    period = 2 * length
    index = np.mod(index, period)
    return np.where(index < length, index, period - 1 - index)


def upsample_matrix(length: int, factor: int, kernel: Callable[[np.ndarray], np.ndarray], support: int) -> np.ndarray:
    """The (length·factor)×length matrix of a separable upsampling filter (pixel centres aligned)."""
    out = np.arange(length * factor)
    centre = (out + 0.5) / factor - 0.5  # source coordinate of each output pixel
    first = np.floor(centre).astype(int) - support + 1
    taps = first[:, None] + np.arange(2 * support)[None, :]
    weights = kernel(centre[:, None] - taps)
    weights /= weights.sum(axis=1, keepdims=True)  # Lanczos' weights do not sum to one by themselves
    matrix = np.zeros((length * factor, length))
    np.add.at(matrix, (np.repeat(out, 2 * support), _mirror(taps, length).ravel()), weights.ravel())
    return matrix


def upsample(image: np.ndarray, factor: int, kernel: Callable[[np.ndarray], np.ndarray], support: int) -> np.ndarray:
    """A separable ×``factor`` upsampling of H×W×C values with a ``support``-radius kernel, 8-bit."""
    rows = upsample_matrix(image.shape[0], factor, kernel, support)
    columns = upsample_matrix(image.shape[1], factor, kernel, support)
    result = np.einsum("ij,jkc,lk->ilc", rows, image.astype(np.float64), columns)
    return to_8bit(result)


def bicubic_upscale(srgb: np.ndarray, factor: int = SCALE) -> np.ndarray:
    return upsample(srgb, factor, keys_cubic, 2)


def lanczos_upscale(srgb: np.ndarray, factor: int = SCALE) -> np.ndarray:
    return upsample(srgb, factor, lanczos3, 3)


def model_upscale(model: LoadedModel, srgb: np.ndarray, tile: Optional[int]) -> np.ndarray:
    """The network on linear light: sRGB → linear → model → sRGB, 8-bit."""
    return to_8bit(linear_to_srgb(apply_model(model, srgb_to_linear(srgb), tile=tile)))


# ---------------------------------------------------------------------------------------------- report
def read_srgb(path: Path) -> np.ndarray:
    """An 8-bit image file as float32 H×W×3 sRGB-encoded 0..1 values (as stored; not linearised)."""
    pixels = imageio.read_frame(path).pixels
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3], np.float32)


def even_crop(image: np.ndarray, multiple: int = SCALE) -> np.ndarray:
    return np.ascontiguousarray(image[: image.shape[0] // multiple * multiple, : image.shape[1] // multiple * multiple])


def model_summary(path: Path) -> dict[str, Any]:
    """The model file and how it was trained (from its manifest)."""
    manifest = catfile.read_manifest(path)
    training = {key: manifest.training[key] for key in TRAINING_KEYS if key in manifest.training}
    return {"path": str(path), "scale": manifest.scale, "arguments": manifest.arguments, "training": training}


def resolve_model(given: Optional[str]) -> Path:
    """``--model`` or the shipped Upscale network; exits with the reason when neither is there."""
    if given:
        return Path(given)
    try:
        return require_shipped_model("upscale", instead="pass --model X.cat, or build it (docs/pretrained.md)")
    except CopyCatError as error:
        sys.exit(f"sr: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a ×2 .cat (default: the shipped Upscale network)")
    parser.add_argument("--tile", type=int, help="inference tile size (default automatic; 0 = whole image)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one image, a 96×96 crop")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"sr: {DATA} not found (the shared sample data)")
    model_path = resolve_model(args.model)
    model = load_model(model_path)
    if model.scale != SCALE:
        sys.exit(f"sr: {model_path} is a ×{model.scale} network; this benchmark is ×{SCALE}")
    paths = sorted(DATA.glob("*.png"))[: 1 if args.quick else None]
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "upscale": lambda lr: model_upscale(model, lr, args.tile),
        "bicubic": bicubic_upscale,
        "lanczos3": lanczos_upscale,
    }
    scores: dict[str, dict[str, float]] = {name: {} for name in methods}
    seconds: dict[str, float] = {name: 0.0 for name in methods}
    for path in paths:
        truth = read_srgb(path)
        if args.quick:
            top, left = (truth.shape[0] - 96) // 2, (truth.shape[1] - 96) // 2
            truth = truth[top : top + 96, left : left + 96]
        truth = even_crop(truth)
        low = bicubic_downscale(truth)
        for name, method in methods.items():
            start = time.perf_counter()
            result = method(low)
            seconds[name] += time.perf_counter() - start
            scores[name][path.stem] = round(psnr_y(result, truth), 3)
        print(f"sr: {path.stem} {dict((n, s[path.stem]) for n, s in scores.items())}", file=sys.stderr, flush=True)
    means = {name: round(float(np.mean(list(values.values()))), 3) for name, values in scores.items()}
    gain = round(means["upscale"] - means["bicubic"], 3)
    report = {
        "benchmark": "sr",
        "data": f"Set5 ({len(paths)} images{', 96x96 centre crops' if args.quick else ''}), x{SCALE}",
        "low_res": "antialiased bicubic (Keys a=-0.5) /2 of the sRGB-encoded values, rounded to 8 bits",
        "score": f"PSNR (dB) on BT.601 Y (0..255), {SHAVE}-px border shaved; outputs rounded to 8 bits",
        "methods": {
            "upscale": "the network on linear light (sRGB decoded before, encoded after)",
            "bicubic": "Keys cubic convolution a=-0.5 (4 taps) on the sRGB values, symmetric edges",
            "lanczos3": "Lanczos-3 (6 taps, normalised) on the sRGB values, symmetric edges",
        },
        "model": model_summary(model_path),
        "tile": args.tile if args.tile is not None else "auto",
        "device": model.runtime.describe(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": str(torch.__version__),
        "psnr_y_db": scores,
        "mean_psnr_y_db": means,
        "seconds_total": {name: round(value, 2) for name, value in seconds.items()},
        "floor": {
            "rule": f"upscale mean >= bicubic mean + {FLOOR_DB} dB",
            "gain_over_bicubic_db": gain,
            "met": gain >= FLOOR_DB,
        },
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
