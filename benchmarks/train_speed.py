"""Training speed: the project's Trainer against a bare PyTorch loop of the same network, same run.

Prints JSON: seconds per step (median after warm-up), achieved GFLOP/s (FLOPs counted with
``torch.utils.flop_counter`` on one forward+backward), and the trainer/bare ratio (floor: ≤ 1.15).

    python benchmarks/train_speed.py [--size medium] [--batch 4] [--crop 256] [--steps 12] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from copycat_nuke import imageio
from copycat_nuke.config import TrainConfig
from copycat_nuke.device import resolve_runtime
from copycat_nuke.models import build_model, msrn_arguments
from copycat_nuke.train import StepDone, Trainer, multiscale_loss


def count_step_flops(size: str, batch: int, crop: int) -> int:
    model = build_model("msrn", msrn_arguments(size))
    x = torch.rand(batch, 3, crop, crop)
    with FlopCounterMode(display=False) as counter:
        multiscale_loss(model.forward_levels(x), x).backward()
    return int(counter.get_total_flops())


def bare_loop(size: str, batch: int, crop: int, steps: int, warmup: int) -> list[float]:
    """The same maths with nothing around it: random batches, channels_last + autocast as decided."""
    runtime = resolve_runtime("auto", "auto")
    torch.manual_seed(0)
    model = build_model("msrn", msrn_arguments(size)).to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    x = torch.rand(batch, 3, crop, crop, device=runtime.device)
    y = torch.rand(batch, 3, crop, crop, device=runtime.device)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        y = y.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + warmup):
        start = time.perf_counter()
        with runtime.autocast():
            outputs = model.forward_levels(x)
        loss = multiscale_loss(outputs, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.item())
        times.append(time.perf_counter() - start)
    return times[warmup:]


def trainer_loop(size: str, batch: int, crop: int, steps: int, warmup: int, directory: Path) -> list[float]:
    rng = np.random.default_rng(0)
    for frame in range(1, batch + 1):
        image = rng.random((512, 512, 3), dtype=np.float32)
        imageio.write_frame(directory / f"in.{frame:04d}.exr", image, "rgb")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", image * 0.5, "rgb")
    stamps: list[float] = []

    def listen(event: object) -> None:
        if isinstance(event, StepDone):
            stamps.append(time.perf_counter())

    config = TrainConfig(
        input=str(directory / "in.####.exr"),
        target=str(directory / "gt.####.exr"),
        out=str(directory / "run"),
        steps=steps + warmup + 1,
        model_size=size,
        batch_size=batch,
        crop_size=crop,
        checkpoint_interval=10**9,
        image_interval=10**9,
    )
    Trainer(config, [listen]).run()
    return [b - a for a, b in zip(stamps, stamps[1:])][warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="medium")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    flops = count_step_flops(args.size, args.batch, args.crop)
    bare = statistics.median(bare_loop(args.size, args.batch, args.crop, args.steps, args.warmup))
    with tempfile.TemporaryDirectory() as directory:
        trainer = statistics.median(
            trainer_loop(args.size, args.batch, args.crop, args.steps, args.warmup, Path(directory))
        )
    runtime = resolve_runtime("auto", "auto")
    result = {
        "benchmark": "train_speed",
        "model_size": args.size,
        "batch": f"{args.batch}x{args.crop}x{args.crop}",
        "device": runtime.describe(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": torch.__version__,
        "flops_per_step": flops,
        "bare_seconds_per_step": round(bare, 4),
        "trainer_seconds_per_step": round(trainer, 4),
        "bare_gflops": round(flops / bare / 1e9, 1),
        "trainer_gflops": round(flops / trainer / 1e9, 1),
        "trainer_over_bare": round(trainer / bare, 3),
        "floor_trainer_over_bare": 1.15,
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
