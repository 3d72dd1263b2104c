"""Inference speed and memory: 1080p and 4K frames (8K with --8k), Medium MSRN, whole frame vs tiles.

    .venv/bin/python benchmarks/infer_speed.py                  # 1080p and 4K, bf16 and fp32, prints JSON
    .venv/bin/python benchmarks/infer_speed.py --8k             # also one 8K frame in tiles (minutes on 2 cores)
    .venv/bin/python benchmarks/infer_speed.py --overlap-sweep MODEL.cat IMAGE   # tiled-vs-whole PSNR by overlap

Weights are random (a freshly initialised Medium network with a non-zero output layer): speed and memory
do not depend on what the weights are. Each case runs in its own subprocess so that peak RSS
(``VmHWM``) belongs to that case alone; it includes the Python/torch baseline, reported separately.
FLOPs come from ``torch.utils.flop_counter`` on one 256×256 forward, scaled by the padded pixels actually
computed (convolution FLOPs are exactly proportional to area at multiples of 16). "useful" GFLOP/s divides
the whole-frame FLOPs by the time taken, so tiles pay for their overlap there; "executed" counts the
overlap too.

Floors from issue 4: tiled 1080p within 1.3× of the whole frame; 4K tiled at ≤ 1.5 GB peak RSS; 8K completes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from copycat_nuke import catfile, infer
from copycat_nuke.models import MSRN, msrn_arguments
from copycat_nuke.transfer import Transfer

SIZES = {"1080p": (1080, 1920), "4k": (2160, 3840), "8k": (4320, 7680)}
TILE = 1024


def write_model(path: Path, size: str = "medium") -> Path:
    """A random-init MSRN (output layer made non-zero, so the network is not the identity) as a .cat."""
    torch.manual_seed(0)
    arguments = msrn_arguments(size)
    network = MSRN(**arguments)
    torch.nn.init.normal_(network.out.weight, std=1e-3)
    manifest = catfile.Manifest("msrn", arguments, ["R", "G", "B"], ["R", "G", "B"], Transfer().to_dict())
    return catfile.save_cat(path, manifest, network.state_dict())


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def flops_per_pixel(model: infer.LoadedModel) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for side in (128, 256):
        probe = model.runtime.place(torch.zeros(1, len(model.channels_in), side, side))
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model.network(probe)
        counts.append(counter.get_total_flops() / side**2)
    assert abs(counts[0] - counts[1]) < 1e-6 * counts[1], counts  # exactly proportional to area
    return counts[1]


def frame_size(name: str) -> tuple[int, int]:
    """``1080p``, ``4k``, ``8k`` or ``HEIGHTxWIDTH``."""
    if name in SIZES:
        return SIZES[name]
    height, width = name.lower().split("x")
    return int(height), int(width)


def _padded(n: int, m: int = 16) -> int:
    return -(-n // m) * m


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this (child) process."""
    torch.manual_seed(0)
    model = infer.load_model(case["model"], "cpu", half=case["precision"] != "fp32")
    height, width = frame_size(case["size"])
    per_pixel = flops_per_pixel(model)
    frame = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    infer.apply_model(model, frame[:256, :256], tile=0)  # warm-up: oneDNN kernels for this precision
    tile = case["tile"]
    if tile is None:
        tile = infer.auto_tile_size(model, height, width)
    _, overlap = infer.check_tiling(tile, case["overlap"], model.multiple)
    rows = infer.plan_spans(height, tile, overlap)
    columns = infer.plan_spans(width, tile, overlap)
    executed_pixels = sum(_padded(r.size) * _padded(c.size) for r in rows for c in columns)
    baseline = _rss_kib("VmRSS")
    times = []
    for _ in range(case["repeat"]):
        start = time.perf_counter()
        infer.apply_model(model, frame, tile=tile, overlap=overlap)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    useful = per_pixel * _padded(height) * _padded(width)
    return {
        "size": case["size"],
        "precision": model.runtime.precision,
        "mode": "whole" if len(rows) * len(columns) == 1 else "tiled",
        "tile_asked": case["tile"] if case["tile"] is not None else "auto",
        "tile_used": tile,
        "overlap": overlap,
        "tiles": f"{len(rows)}x{len(columns)}",
        "tile_px": f"{max(r.size for r in rows)}x{max(c.size for c in columns)}",
        "s_per_frame": round(seconds, 2),
        "all_runs_s": [round(t, 2) for t in times],
        "executed_over_whole": round(executed_pixels / (_padded(height) * _padded(width)), 3),
        "gflop_whole_frame": round(useful / 1e9, 1),
        "gflops_useful": round(useful / seconds / 1e9, 1),
        "gflops_executed": round(per_pixel * executed_pixels / seconds / 1e9, 1),
        "peak_rss_mb": round(_rss_kib("VmHWM") / 1024),
        "baseline_rss_mb": round(baseline / 1024),
        "threads": torch.get_num_threads(),
    }


def spawn(case: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {**case, "error": done.stderr.strip().splitlines()[-1:] or f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def overlap_sweep(model_path: str, image: str, tile: int, overlaps: list[int]) -> dict[str, Any]:
    """PSNR of tiled against whole-frame results by overlap, on a real model and image."""
    from copycat_nuke import imageio

    model = infer.load_model(model_path, "cpu")
    pixels = imageio.read_frame(image, model.channels_in).pixels
    whole = infer.apply_model(model, pixels, tile=0)
    peak = float(np.abs(whole).max())
    change = float(np.mean((whole - pixels) ** 2))
    results = {}
    for overlap in overlaps:
        tiled = infer.apply_model(model, pixels, tile=max(tile, 2 * overlap + 16), overlap=overlap)
        error = float(np.mean((tiled - whole) ** 2))
        results[overlap] = {
            "psnr_db": round(10 * np.log10(peak**2 / error), 1) if error > 0 else float("inf"),
            "max_abs": float(np.abs(tiled - whole).max()),
        }
    return {
        "model": model_path,
        "image": image,
        "tile": tile,
        "size": list(pixels.shape),
        "model_change_psnr_db": round(10 * np.log10(peak**2 / change), 1),
        "by_overlap": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--8k", dest="eight_k", action="store_true", help="also run one 8K frame in tiles")
    parser.add_argument("--sizes", default="1080p,4k", help="comma-separated: 1080p, 4k")
    parser.add_argument("--precisions", default="bf16,fp32", help="bf16 (the --half path), fp32")
    parser.add_argument("--tile", type=int, default=TILE, help=f"tile for the tiled cases (default {TILE})")
    parser.add_argument("--overlap", type=int, default=infer.DEFAULT_OVERLAP)
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (the fastest is reported)")
    parser.add_argument("--skip-whole-4k", action="store_true", help="skip 4K whole frames (≈ 8–11 GB RSS)")
    parser.add_argument("--overlap-sweep", nargs=2, metavar=("MODEL", "IMAGE"))
    parser.add_argument("--sweep-tile", type=int, default=512)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    if args.overlap_sweep:
        overlaps = [0, 16, 32, 48, 64, 96, 128]
        print(json.dumps(overlap_sweep(*args.overlap_sweep, args.sweep_tile, overlaps), indent=2))
        return
    with tempfile.TemporaryDirectory() as directory:
        model = str(write_model(Path(directory) / "medium.cat"))
        cases = []
        sizes = [size for size in args.sizes.split(",") if size]
        for size in sizes:
            for precision in args.precisions.split(","):
                for tile in (0, args.tile):
                    if size == "4k" and tile == 0 and args.skip_whole_4k:
                        continue
                    cases.append({"size": size, "precision": precision, "tile": tile})
        if "1080p" in sizes:
            cases.append({"size": "1080p", "precision": "bf16", "tile": None})  # what auto picks here
        if args.eight_k:
            cases.append({"size": "8k", "precision": "bf16", "tile": args.tile})
        report: dict[str, Any] = {
            "cpu": f"{os.cpu_count()} cores",
            "torch": torch.__version__,
            "weights": "random init (Medium, 6.88 M weights)",
            "load_average_before": load_average(),
            "cases": [],
        }
        for case in cases:
            result = spawn({**case, "model": model, "overlap": args.overlap, "repeat": args.repeat})
            result["load_average_after"] = load_average()
            report["cases"].append(result)
            print(json.dumps(result), file=sys.stderr)
        report["floors"] = floors(report["cases"])
        print(json.dumps(report, indent=2))


def floors(cases: list[dict[str, Any]]) -> dict[str, Any]:
    def find(size: str, precision: str, mode: str) -> dict[str, Any] | None:
        for case in cases:
            if (case.get("size"), case.get("precision"), case.get("mode"), case.get("tile_asked")) == (
                size,
                precision,
                mode,
                0 if mode == "whole" else case.get("tile_asked"),
            ) and "error" not in case:
                if mode == "tiled" and case.get("tile_asked") == "auto":
                    continue
                return case
        return None

    out: dict[str, Any] = {}
    for precision in ("bf16", "fp32"):
        whole, tiled = find("1080p", precision, "whole"), find("1080p", precision, "tiled")
        if whole and tiled:
            ratio = tiled["s_per_frame"] / whole["s_per_frame"]
            out[f"1080p_{precision}_tiled_over_whole"] = {"ratio": round(ratio, 3), "pass": ratio <= 1.3}
        four_k = find("4k", precision, "tiled")
        if four_k:
            out[f"4k_{precision}_tiled_peak_rss_gb"] = {
                "value": round(four_k["peak_rss_mb"] / 1024, 2),
                "pass": four_k["peak_rss_mb"] <= 1.5 * 1024,
            }
    eight = [c for c in cases if c.get("size") == "8k"]
    if eight:
        out["8k_completes"] = {"pass": "error" not in eight[0], "s_per_frame": eight[0].get("s_per_frame")}
    return out


if __name__ == "__main__":
    main()
