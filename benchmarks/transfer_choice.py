"""Measure candidate linear -> working-space transfers on real HDR EXRs; print the numbers as JSON.

    .venv/bin/python benchmarks/transfer_choice.py [--data ../shared/data/openexr] [--samples 200000]

Candidates: plain linear, a sign-extended sRGB curve, sign-extended PQ (SMPTE ST 2084, linear 1.0 = 100
nits), ACEScct, and the sign-preserving log ``slog(x) = sign(x)*log1p(a|x|)/k`` over a range of knees
``a`` (each with ``k`` set so that linear 1.0 lands at 0.6, the spec's "diffuse white ~0.5-0.7").

What is measured (see docs/transfer.md for the reading of it):
* ``anchors``: working value of typical linear values (0.18, 1, 1e4, negatives...) and the slope
  around 0 (how much noise in the blacks is amplified).
* ``content``: over the colour channels of the photographic/rendered EXRs (equal pixel sample per image):
  percentiles of the working values, ``p99/p50`` (how far the brightest 1% sit above the median: large
  means a few highlight pixels dominate activations and the L1 loss), and the fraction of pixels inside
  [-1, 1], pooled and per image.
* ``perceptual``: how uniformly a fixed L1 error in working space maps to a *visible* error. Reference:
  PQ code values (SMPTE ST 2084, built on Barten's contrast-sensitivity model so that equal PQ steps are
  equally visible), with linear 1.0 shown at 100 nits (SDR reference white) and at 203 nits (BT.2408 HDR
  reference white). For each content pixel between 0.01 and 10000 nits we take s = dPQ/dy, the visible
  change per unit of working-space error; ``p95/p5`` of s is 1 for a perfectly uniform transfer (pq100
  scores 1 by construction at 100 nits). Also the relative linear error that a working-space error of
  0.01 causes at a few linear values.
* ``float32``: round trip to working space and back, all in float32, over ±logspace(1e-6, 1e4) and over
  every finite half-float value: max relative error; plus monotonicity and non-finite outputs.
* ``extremes``: the float-range test image (±1.7e38): non-finite working values and the largest one.
* ``sanitize``: NaN/Inf counts found by copycat_nuke.transfer.sanitize in the NaN/Inf test images.
* ``torch``: the chosen transfer on tensors: float32 round trip, agreement with numpy, bfloat16 round trip.
* ``speed``: numpy float32 and torch float32 (CPU) time of the chosen transfer for a 1920×1080×3 frame.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import OpenImageIO as oiio
import torch

from copycat_nuke.transfer import (
    SLOG_A,
    SLOG_K,
    Transfer,
    sanitize,
    slog_from_working_np,
    slog_to_working_np,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "openexr"

# "Typical content": photographs, renders and real charts. The synthetic stress images (every half value,
# ±1e38 ramps, NaN/Inf rings, display-window and 0/1 stripe tests) are measured separately.
TYPICAL = [
    "Beachball/singlepart.0001.exr",
    "Chromaticities/Rec709.exr",
    "ScanLines/Cannon.exr",
    "ScanLines/Carrots.exr",
    "ScanLines/Desk.exr",
    "v2/LowResLeftView/composited.exr",
    "TestImages/WideColorGamut.exr",
    "TestImages/GrayRampsHorizontal.exr",
    "TestImages/BrightRings.exr",
]

Fn = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------------------
# Candidates (written for any float dtype: the float32 round trip runs them in float32)


def _srgb_to(x: np.ndarray) -> np.ndarray:
    m = np.abs(x)
    with np.errstate(invalid="ignore"):
        y = np.where(m <= 0.0031308, m * 12.92, 1.055 * np.power(m, 1 / 2.4) - 0.055)
    return np.copysign(y, x).astype(x.dtype)


def _srgb_from(y: np.ndarray) -> np.ndarray:
    m = np.abs(y)
    with np.errstate(invalid="ignore"):
        x = np.where(m <= 0.04045, m / 12.92, np.power((m + 0.055) / 1.055, 2.4))
    return np.copysign(x, y).astype(y.dtype)


PQ_M1, PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
PQ_C1, PQ_C2, PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
PQ_SCALE = 100.0 / 10000.0  # the pq100 candidate: linear 1.0 = 100 nits; PQ's 10000 nits = linear 100
WHITES_NITS = (100.0, 203.0)  # perceptual reference: SDR reference white, and BT.2408's HDR reference white


def _pq_encode(nits_fraction: np.ndarray) -> np.ndarray:
    p = np.power(nits_fraction, PQ_M1)
    return np.power((PQ_C1 + PQ_C2 * p) / (1 + PQ_C3 * p), PQ_M2)


def _pq_to(x: np.ndarray) -> np.ndarray:
    # the formula is monotone beyond 10000 nits too (towards (c2/c3)^m2 ≈ 1.98): that is the extension
    with np.errstate(over="ignore", invalid="ignore"):
        y = _pq_encode(np.abs(x) * x.dtype.type(PQ_SCALE))
    return np.copysign(y, x).astype(x.dtype)


def _pq_from(y: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.power(np.abs(y), 1 / PQ_M2)
        num = np.maximum(e - PQ_C1, 0)
        x = np.power(num / (PQ_C2 - PQ_C3 * e), 1 / PQ_M1) / PQ_SCALE
    return np.copysign(x, y).astype(y.dtype)


def _acescct_to(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(x <= 0.0078125, 10.5402377416545 * x + 0.0729055341958355, (np.log2(x) + 9.72) / 17.52)
    return y.astype(x.dtype)


def _acescct_from(y: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = np.where(
            y <= 0.155251141552511,
            (y - 0.0729055341958355) / 10.5402377416545,
            np.exp2(y * 17.52 - 9.72),
        )
    return x.astype(y.dtype)


def _identity(x: np.ndarray) -> np.ndarray:
    return x.copy()


def _slog_pair(a: float, k: float) -> tuple[Fn, Fn]:
    return (lambda x: slog_to_working_np(x, a, k)), (lambda y: slog_from_working_np(y, a, k))


def candidates() -> dict[str, dict]:
    out: dict[str, dict] = {
        "linear": {"to": _identity, "from": _identity, "formula": "y = x"},
        "srgb": {"to": _srgb_to, "from": _srgb_from, "formula": "sign(x)*sRGB_OETF(|x|), power continued >1"},
        "pq100": {"to": _pq_to, "from": _pq_from, "formula": "sign(x)*PQ(|x|*100 nits), formula continued"},
        "acescct": {"to": _acescct_to, "from": _acescct_from, "formula": "ACEScct (S-2016-001)"},
    }
    for a in (10.0, 30.0, 50.0, 100.0, 200.0, 300.0, 1000.0, 10000.0):
        k = float(np.log1p(a) / 0.6)
        to, back = _slog_pair(a, k)
        out[f"slog_a{a:g}"] = {"to": to, "from": back, "formula": f"sign(x)*log1p({a:g}|x|)/{k:.4f}"}
    to, back = _slog_pair(SLOG_A, SLOG_K)
    out["slog (chosen default)"] = {
        "to": to,
        "from": back,
        "formula": f"sign(x)*log1p({SLOG_A:g}|x|)/{SLOG_K:g}",
    }
    return out


# ---------------------------------------------------------------------------------------------------------
# Data


def read_colour(path: Path) -> np.ndarray:
    """Colour channels (R,G,B, or Y, or the only channel) of an EXR, flattened, float32."""
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise RuntimeError(f"cannot open {path}: {oiio.geterror()}")
    names = list(inp.spec().channelnames)
    pixels = np.asarray(inp.read_image("float"))
    inp.close()
    pixels = pixels.reshape(-1, len(names))
    wanted = [names.index(c) for c in ("R", "G", "B") if c in names] or [0]
    return pixels[:, wanted].ravel()


def sample_typical(data: Path, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for rel in TYPICAL:
        values = read_colour(data / rel)
        values = values[np.isfinite(values)]
        out[rel] = values if values.size <= n else rng.choice(values, n, replace=False)
    return out


def pct(v: np.ndarray, q: float) -> float:
    return float(np.percentile(v, q))


def r(v: float, digits: int = 4) -> float:
    return float(f"{v:.{digits}g}")


# ---------------------------------------------------------------------------------------------------------
# Measurements


def anchors(to: Fn) -> dict[str, float]:
    xs = [-1e4, -1.0, -0.01, 0.0, 1e-3, 0.01, 0.18, 1.0, 10.0, 100.0, 1e3, 1e4]
    ys = to(np.asarray(xs, np.float64))
    out = {f"{x:g}": r(float(y)) for x, y in zip(xs, ys)}
    # gain for noise around black: slope over ±1e-5 (PQ's slope is unbounded at 0)
    out["slope_near_0"] = r(float(np.diff(to(np.asarray([-1e-5, 1e-5])))[0] / 2e-5))
    return out


def content_stats(to: Fn, samples: dict[str, np.ndarray]) -> dict:
    per_image_inside = {}
    pooled = []
    for rel, x in samples.items():
        y = to(x.astype(np.float64))
        pooled.append(y)
        per_image_inside[rel] = r(float(np.mean(np.abs(y) <= 1.0)), 3)
    y = np.concatenate(pooled)
    return {
        "p1": r(pct(y, 1)),
        "p50": r(pct(y, 50)),
        "p99": r(pct(y, 99)),
        "p99_over_p50": r(pct(y, 99) / pct(y, 50), 3),
        "max_abs": r(float(np.max(np.abs(y)))),
        "fraction_inside_-1_1": r(float(np.mean(np.abs(y) <= 1.0)), 3),
        "fraction_inside_-1_1_per_image": per_image_inside,
    }


def perceptual(to: Fn, samples: dict[str, np.ndarray]) -> dict:
    values = np.abs(np.concatenate(list(samples.values())).astype(np.float64))
    h = 1e-4
    out: dict = {}
    for white in WHITES_NITS:
        scale = white / 10000.0
        x = values[(values * white >= 0.01) & (values * white <= 10000.0)]
        lo, hi = x * (1 - h), x * (1 + h)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (_pq_encode(hi * scale) - _pq_encode(lo * scale)) / (to(hi) - to(lo))
        s = s[np.isfinite(s)]
        p5, p50, p95 = pct(s, 5), pct(s, 50), pct(s, 95)
        out[f"white_{white:g}_nits"] = {
            "pixels": int(x.size),
            "dPQ_per_working_unit_p5_p50_p95": [r(p5), r(p50), r(p95)],
            "uniformity_p95_over_p5": r(p95 / p5, 3),
        }
    rel = {}
    for x0 in (1e-3, 0.01, 0.18, 1.0, 100.0, 1e4):
        xs = np.asarray([x0 * (1 - h), x0 * (1 + h)])
        slope = float(np.diff(to(xs))[0] / np.diff(xs)[0])
        rel[f"{x0:g}"] = r(0.01 / slope / x0, 3) if slope > 0 else None
    out["relative_linear_error_of_0.01_working_error_at"] = rel
    return out


def float32_roundtrip(to: Fn, back: Fn, half_values: np.ndarray) -> dict:
    mags = np.logspace(-6, 4, 20001)
    grid = np.concatenate([-mags[::-1], [0.0], mags]).astype(np.float32)
    with np.errstate(all="ignore"):
        y = to(grid)
        x2 = back(y)
        nonzero = grid != 0
        rel = np.abs(x2[nonzero].astype(np.float64) - grid[nonzero]) / np.abs(grid[nonzero].astype(np.float64))
        big = np.abs(grid[nonzero]) >= 1e-3
        yh = to(half_values)
        xh = back(yh)
        nz = half_values != 0
        rel_half = np.abs(xh[nz].astype(np.float64) - half_values[nz]) / np.abs(half_values[nz].astype(np.float64))
    y64 = to(grid.astype(np.float64))
    return {
        "max_rel_error_1e-6_to_1e4_both_signs": r(float(np.nanmax(rel)) if np.isfinite(rel).all() else float("inf")),
        "max_rel_error_1e-3_to_1e4_both_signs": r(
            float(np.max(rel[big])) if np.isfinite(rel[big]).all() else float("inf")
        ),
        "max_rel_error_every_finite_half": r(float(np.max(rel_half)) if np.isfinite(rel_half).all() else float("inf")),
        "zero_round_trips_to_zero": bool(back(to(np.zeros(1, np.float32)))[0] == 0.0),
        "non_finite_outputs": int(np.count_nonzero(~np.isfinite(x2)) + np.count_nonzero(~np.isfinite(y))),
        "strictly_increasing_float64": bool(np.all(np.diff(y64) > 0)),
    }


def extremes(to: Fn, wide: np.ndarray) -> dict:
    with np.errstate(all="ignore"):
        y = to(wide)
    finite = np.isfinite(y)
    return {
        "non_finite_working_values": int(np.count_nonzero(~finite)),
        "max_abs_working_value": r(float(np.max(np.abs(y[finite])))) if finite.any() else None,
    }


def torch_checks() -> dict:
    transfer = Transfer()
    mags = np.logspace(-6, 4, 20001)
    grid = np.concatenate([-mags[::-1], mags]).astype(np.float32)
    x = torch.from_numpy(grid)
    y = transfer.to_working(x)
    back = transfer.from_working(y)
    y_np = transfer.to_working(grid)
    rel = ((back.double() - x.double()).abs() / x.double().abs()).max().item()
    agree = (np.abs(y.numpy().astype(np.float64) - y_np) / np.maximum(np.abs(y_np), 1e-30)).max()
    xb = x.to(torch.bfloat16)
    back_b = transfer.from_working(transfer.to_working(xb))
    rel_b = ((back_b.double() - xb.double()).abs() / xb.double().abs()).max().item()
    return {
        "float32_max_rel_round_trip_error": r(rel),
        "max_rel_difference_torch_vs_numpy_working_values": r(float(agree)),
        "bfloat16_max_rel_round_trip_error_1e-6_to_1e4": r(rel_b),
    }


def speed() -> dict:
    transfer = Transfer()
    frame = np.random.default_rng(0).random((1080, 1920, 3), dtype=np.float32) * 10
    tensor = torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous()
    out = {}
    runs: dict[str, Callable[[], object]] = {
        "numpy_float32_ms": lambda: transfer.from_working(transfer.to_working(frame)),
        "torch_float32_cpu_ms": lambda: transfer.from_working(transfer.to_working(tensor)),
    }
    for label, run in runs.items():
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
        out[label + "_to_and_back_1080p_rgb"] = round(best * 1e3, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--samples", type=int, default=200_000, help="pixel values per image")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    samples = sample_typical(args.data, args.samples, rng)
    half_values = read_colour(args.data / "TestImages/AllHalfValues.exr")
    half_values = np.unique(half_values[np.isfinite(half_values)])
    wide = read_colour(args.data / "TestImages/WideFloatRange.exr")

    linear_stats = {
        rel: {"p1": r(pct(x, 1)), "p50": r(pct(x, 50)), "p99": r(pct(x, 99)), "max": r(float(x.max()))}
        for rel, x in samples.items()
    }
    results = {}
    for name, c in candidates().items():
        results[name] = {
            "formula": c["formula"],
            "anchors": anchors(c["to"]),
            "content": content_stats(c["to"], samples),
            "perceptual": perceptual(c["to"], samples),
            "float32": float32_roundtrip(c["to"], c["from"], half_values),
            "extremes_WideFloatRange": extremes(c["to"], wide),
        }

    sanitized = {}
    for rel in ("TestImages/BrightRingsNanInf.exr", "TestImages/AllHalfValues.exr"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sanitize(read_colour(args.data / rel), rel)
        sanitized[rel] = [str(w.message) for w in caught]

    print(
        json.dumps(
            {
                "data": str(args.data),
                "typical_images_linear_values": linear_stats,
                "candidates": results,
                "sanitize": sanitized,
                "torch": torch_checks(),
                "speed": speed(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
