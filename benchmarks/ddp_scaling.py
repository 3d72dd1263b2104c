"""Distributed scaling on this machine: one process against torchrun ranks, the same job.

Runs ``copycat train`` (Medium by default, 256² crops) on random EXR pairs as:

* ``single``: one process with every core (``torch.get_num_threads()``), batch B;
* ``ddp-same-global``: ``torchrun --nproc-per-node R`` with one thread per rank, batch B/R per rank
  (the same global batch);
* ``ddp-same-per-rank``: R ranks with batch B each (R× the global batch).

It reads each run's ``loss.csv`` (seconds since start per step) and prints JSON: median seconds per step
after warm-up and patches per second. On one CPU machine ranks share the same cores, so this measures the
machinery's cost (DDP's gradient all-reduce over gloo), not a speed-up; docs/farm.md has the GPU arithmetic.

    python benchmarks/ddp_scaling.py [--size medium] [--batch 4] [--crop 256] [--ranks 2] [--steps 8]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from copycat_nuke import imageio


def write_pairs(directory: Path, count: int, side: int) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    for frame in range(1, count + 1):
        image = rng.random((side, side, 3), dtype=np.float32)
        imageio.write_frame(directory / f"in.{frame:04d}.exr", image, "rgb")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", image * 0.5, "rgb")
    return str(directory / "in.####.exr"), str(directory / "gt.####.exr")


def step_seconds(out: Path, warmup: int) -> float:
    with open(out / "loss.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle)]
    stamps = [float(row["seconds"]) for row in rows]
    return statistics.median(b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :]))


def run(name: str, command: list[str], env: dict[str, str], out: Path, warmup: int, patches: int) -> dict[str, object]:
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"ddp_scaling: {name} failed:\n{completed.stderr[-3000:]}")
    seconds = step_seconds(out, warmup)
    return {
        "seconds_per_step": round(seconds, 3),
        "patches_per_step": patches,
        "patches_per_second": round(patches / seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="medium")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        source, truth = write_pairs(work, max(args.batch, args.ranks) * 2, args.crop * 2)

        def train_args(out: Path, batch: int) -> list[str]:
            return [
                "train", "--input", source, "--target", truth, "--out", str(out), "--steps", str(args.steps),
                "--model-size", args.size, "--batch-size", str(batch), "--crop-size", str(args.crop),
                "--checkpoint-interval", "1000000", "--image-interval", "1000000", "--quiet",
            ]  # fmt: skip

        env = dict(os.environ)
        out = work / "single"
        results["single"] = run(
            f"single process, {torch.get_num_threads()} threads",
            [sys.executable, "-m", "copycat_nuke", *train_args(out, args.batch)],
            env,
            out,
            args.warmup,
            args.batch,
        )
        ranked = dict(env, OMP_NUM_THREADS="1")
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.ranks}"]
        for name, per_rank in (
            ("ddp_same_global_batch", max(1, args.batch // args.ranks)),
            ("ddp_same_per_rank_batch", args.batch),
        ):
            out = work / name
            results[name] = run(
                name,
                [*torchrun, "-m", "copycat_nuke", *train_args(out, per_rank)],
                ranked,
                out,
                args.warmup,
                per_rank * args.ranks,
            )
    report = {
        "benchmark": "ddp_scaling",
        "model_size": args.size,
        "crop": args.crop,
        "ranks": args.ranks,
        "threads_single": torch.get_num_threads(),
        "threads_per_rank": 1,
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": str(torch.__version__),
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
