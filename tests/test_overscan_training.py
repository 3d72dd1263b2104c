"""Training on Nuke renders with overscan: pairs keep every pixel both frames cover, aligned by coordinates."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from copycat_nuke.config import TrainConfig
from copycat_nuke.data import PatchSampler
from copycat_nuke.errors import ResolutionMismatchError
from copycat_nuke.train import load_pairs
from copycat_nuke.transfer import Transfer

FORMAT = (0, 0, 24, 16)  # Nuke's format: the display window
BBOX = (-4, -4, 32, 24)  # the data window, 4 pixels of overscan on every side


def write_exr(path: Path, pixels: np.ndarray, bbox: Sequence[int], display: Sequence[int] = FORMAT) -> None:
    """A float RGB EXR written with OpenImageIO directly, as a Nuke Write (raw, 32-bit float) renders it."""
    height, width, count = pixels.shape
    assert (bbox[2], bbox[3]) == (width, height)
    spec = oiio.ImageSpec(width, height, count, "float")
    spec.x, spec.y = bbox[0], bbox[1]
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = display
    out = oiio.ImageOutput.create(str(path))
    assert out is not None and out.open(str(path), spec), oiio.geterror()
    assert out.write_image(np.ascontiguousarray(pixels)), out.geterror()
    out.close()


def plate(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def config(directory: Path, **extra: object) -> TrainConfig:
    return TrainConfig(input=str(directory / "in.####.exr"), target=str(directory / "gt.####.exr"), **extra)


def test_a_pair_with_overscan_trains_on_the_overscan_pixels(tmp_path: Path) -> None:
    source = plate(0)
    truth = source.copy()
    truth[0:4, 0:8] = 0.0  # the only change lies in the overscan, above the format
    write_exr(tmp_path / "in.0001.exr", source, BBOX)
    write_exr(tmp_path / "gt.0001.exr", truth, BBOX)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same windows: nothing to warn about
        data = load_pairs(config(tmp_path), Transfer())
    (pair,) = data.pairs
    working = Transfer()
    np.testing.assert_array_equal(pair.input, working.to_working(source))
    np.testing.assert_array_equal(pair.target, working.to_working(truth))
    # Crops placed where Input and Ground Truth differ find the change in the overscan.
    sampler = PatchSampler(data.pairs, crop_size=16, batch_size=8, difference_share=1.0, augment=False, seed=1)
    inputs, targets = sampler.next_batch()
    assert all(not np.array_equal(a, b) for a, b in zip(inputs.numpy(), targets.numpy()))


def test_an_input_with_overscan_beside_a_ground_truth_without_trains_on_what_both_cover(tmp_path: Path) -> None:
    source = plate(1)
    write_exr(tmp_path / "in.0001.exr", source, BBOX)
    write_exr(tmp_path / "gt.0001.exr", plate(2, 16, 24), FORMAT)
    with pytest.warns(UserWarning, match=r"frame 1: .*in\.0001\.exr covers 32×24 at \(-4, -4\).*training on the 24×16"):
        (pair,) = load_pairs(config(tmp_path), Transfer()).pairs
    np.testing.assert_array_equal(pair.input, Transfer().to_working(source[4:20, 4:28]))
    assert pair.target.shape == (16, 24, 3)


def test_offset_data_windows_are_aligned_by_their_coordinates(tmp_path: Path) -> None:
    source, truth = plate(3), plate(4)
    write_exr(tmp_path / "in.0001.exr", source, BBOX)
    write_exr(tmp_path / "gt.0001.exr", truth, (0, -2, 32, 24))  # shifted right by 4 and down by 2
    with pytest.warns(UserWarning, match="training on the 28×22 at \\(0, -2\\)"):
        (pair,) = load_pairs(config(tmp_path), Transfer()).pairs
    working = Transfer()
    np.testing.assert_array_equal(pair.input, working.to_working(source[2:24, 4:32]))
    np.testing.assert_array_equal(pair.target, working.to_working(truth[0:22, 0:28]))


def test_an_upscaling_pair_scales_its_windows_with_its_format(tmp_path: Path) -> None:
    source, truth = plate(5), plate(6, 48, 64)
    write_exr(tmp_path / "in.0001.exr", source, BBOX)
    write_exr(tmp_path / "gt.0001.exr", truth, (-8, -8, 64, 48), (0, 0, 48, 32))
    data = load_pairs(config(tmp_path), Transfer())
    assert data.scale == 2
    (pair,) = data.pairs
    assert pair.input.shape == (24, 32, 3) and pair.target.shape == (48, 64, 3)


def test_frames_that_share_too_few_pixels_are_refused_naming_the_frame(tmp_path: Path) -> None:
    write_exr(tmp_path / "in.0001.exr", plate(7), BBOX)
    # A format of the same size but elsewhere: together with its bbox it meets the Input's in 8×20 pixels.
    write_exr(tmp_path / "gt.0001.exr", plate(8), (20, 4, 32, 24), (24, 0, 24, 16))
    with pytest.raises(ResolutionMismatchError) as caught:
        load_pairs(config(tmp_path), Transfer())
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("frame 1: ") and "in.0001.exr" in message and "gt.0001.exr" in message
    assert "8×20" in message and "same format and bounding box" in message


def test_temporal_neighbours_whose_bbox_moves_are_placed_where_they_lie(tmp_path: Path) -> None:
    frames = {number: plate(10 + number) for number in (1, 2, 3)}
    for number, pixels in frames.items():
        origin = -4 + (number - 2)  # the bbox moves one pixel right each frame
        write_exr(tmp_path / f"in.{number:04d}.exr", pixels, (origin, -4, 32, 24))
    write_exr(tmp_path / "gt.0002.exr", plate(20), BBOX)
    (pair,) = load_pairs(config(tmp_path, temporal=1), Transfer()).pairs
    assert pair.input.shape == (24, 32, 9)
    working = Transfer()
    before = np.zeros((24, 32, 3), np.float32)
    before[:, :31] = frames[1][:, 1:]  # frame 1's bbox starts one pixel left of frame 2's
    after = np.zeros((24, 32, 3), np.float32)
    after[:, 1:] = frames[3][:, :31]
    np.testing.assert_array_equal(pair.input[:, :, 3:6], working.to_working(before))
    np.testing.assert_array_equal(pair.input[:, :, 6:9], working.to_working(after))
