"""Helpers the test modules share (tiny pairs, configs, models); their fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from copycat_nuke import catfile, imageio
from copycat_nuke.config import TrainConfig
from copycat_nuke.models import MSRN, msrn_arguments
from copycat_nuke.transfer import Transfer


def write_pairs(directory: Path, frames=(1, 2, 3), size=(48, 64), seed=0) -> tuple[str, str]:
    """Input frames of smooth random colour; Ground Truth = a colour gain plus a painted-out square."""
    rng = np.random.default_rng(seed)
    height, width = size
    for frame in frames:
        image = rng.random((height // 8, width // 8, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)
        truth = image * np.array([0.8, 1.0, 1.2], np.float32)
        truth[8:16, 8:16] = 0.5
        imageio.write_frame(directory / f"in.{frame:04d}.exr", image, "rgb", pixel_type="float")
        imageio.write_frame(directory / f"gt.{frame:04d}.exr", truth, "rgb", pixel_type="float")
    return str(directory / "in.####.exr"), str(directory / "gt.####.exr")


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    source, truth = write_pairs(tmp_path)
    settings = dict(
        input=source,
        target=truth,
        out=str(tmp_path / "run"),
        steps=6,
        model_size="small",
        batch_size=2,
        crop_size=32,
        checkpoint_interval=3,
        image_interval=3,
        precision="fp32",
        seed=1,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def read_losses(path: Path) -> list[tuple[int, float]]:
    with path.open() as stream:
        return [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(stream)]


def smooth_image(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Blocky colour like the training pairs of ``write_pairs``: what the tiny model has learned on."""
    rng = np.random.default_rng(seed)
    blocks = rng.random((height // 8 + 1, width // 8 + 1, channels), dtype=np.float32)
    return np.ascontiguousarray(blocks.repeat(8, 0).repeat(8, 1)[:height, :width])


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread: these tiny tensors gain nothing from two, and on a busy 2-core machine OpenMP's
    second thread makes thousands of small ops wait on each other (measured: these tests took 220 s with
    two threads under load, 15 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_tiny(path: Path, steps: int = 40, width: int = 4) -> Path:
    """Train a width-4 MSRN with Adam on the colour-gain-and-patch task of ``write_pairs`` (64² crops).

    After 40 steps it changes images by ≈ 20 dB PSNR, so tiled-vs-whole differences are not hidden by an
    almost-identity network; a few seconds on two cores.
    """
    torch.manual_seed(0)
    arguments = {**msrn_arguments("small"), "width": width}
    network = MSRN(**arguments)
    working = Transfer()
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    gain = torch.tensor([0.8, 1.0, 1.2]).view(1, 3, 1, 1)
    with single_thread():
        for step in range(steps):
            crops = [smooth_image(64, 64, seed=2 * step + i).transpose(2, 0, 1) for i in range(2)]
            source = torch.from_numpy(np.stack(crops))
            target = source * gain
            target[:, :, 8:16, 8:16] = 0.5
            loss = (network(working.to_working(source)) - working.to_working(target)).abs().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    manifest = catfile.Manifest("msrn", arguments, ["R", "G", "B"], ["R", "G", "B"], working.to_dict())
    return catfile.save_cat(path, manifest, network.state_dict())


def tiny_cat(path: Path, *, channels_in=("R", "G", "B"), channels_out=("R", "G", "B"), scale: int = 1) -> Path:
    """A width-4 MSRN with a non-zero output layer, saved as a .cat (fast, and not the identity)."""
    torch.manual_seed(0)
    arguments = {**msrn_arguments("small", len(channels_in), len(channels_out)), "width": 4}
    network = MSRN(**arguments)
    torch.nn.init.normal_(network.out.weight, std=0.05)
    manifest = catfile.Manifest(
        "msrn", arguments, list(channels_in), list(channels_out), Transfer().to_dict(), scale=scale
    )
    return catfile.save_cat(path, manifest, network.state_dict())
