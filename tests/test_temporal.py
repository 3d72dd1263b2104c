"""Temporal mode: a network that also sees its neighbouring frames, in training and in inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nukestub.fixtures import make_model

from copycat_nuke import catfile, export, imageio, infer
from copycat_nuke.cli import _train_config, build_parser
from copycat_nuke.config import TrainConfig
from copycat_nuke.data import Pair, PatchSampler, stack_frames, temporal_offsets
from copycat_nuke.errors import CatFileError, ConfigError, SequenceError, TrainingError
from copycat_nuke.models import MSRN, msrn_arguments
from copycat_nuke.train import load_pairs, train_model
from copycat_nuke.transfer import Transfer
from copycat_nuke.upscale import deblur_sequence


def write_shot(directory: Path, frames=range(1, 7), truth_frames=(1, 3, 6), size=(32, 48)) -> tuple[str, str]:
    """Input frames that differ from frame to frame (so each neighbour is recognisable); Ground Truth at
    ``truth_frames`` only."""
    height, width = size
    for frame in frames:
        image = np.full((height, width, 3), 0.1 * frame, np.float32)
        image[:, :, 1] += np.linspace(0, 0.2, width, dtype=np.float32)
        imageio.write_frame(directory / f"in.{frame:04d}.exr", image, "rgb", pixel_type="float")
        if frame in truth_frames:
            imageio.write_frame(directory / f"gt.{frame:04d}.exr", image * 0.5, "rgb", pixel_type="float")
    return str(directory / "in.####.exr"), str(directory / "gt.####.exr")


def test_neighbours_are_stacked_after_the_frame_in_offset_order():
    assert temporal_offsets(2) == [-2, -1, 1, 2]
    frame, before, after = (np.full((2, 2, 3), v, np.float32) for v in (0.0, -1.0, 1.0))
    stacked = stack_frames(frame, [before, after])
    assert stacked.shape == (2, 2, 9)
    assert [float(stacked[0, 0, c]) for c in (0, 3, 6)] == [0.0, -1.0, 1.0]
    pair = Pair(stacked, frame, frames=3)
    assert np.array_equal(pair.centre, frame)


@pytest.mark.parametrize("scale", [1, 2])
def test_an_untrained_temporal_network_returns_its_own_frame_not_a_neighbour(scale):
    torch.manual_seed(0)
    network = MSRN(**{**msrn_arguments("small", temporal=1, scale=scale), "width": 4}).eval()
    frames = torch.rand(1, 9, 32, 48)
    with torch.no_grad():
        out = network(frames)
        alone = MSRN(**{**msrn_arguments("small", scale=scale), "width": 4}).eval()(frames[:, :3])
    assert out.shape == (1, 3, 32 * scale, 48 * scale)
    assert torch.allclose(out, alone, atol=1e-6)  # identity (or bilinear ×2) of the frame itself


def test_pairs_carry_their_neighbours_and_pairs_at_the_ends_are_left_out(tmp_path):
    source, truth = write_shot(tmp_path)
    config = TrainConfig(input=source, target=truth, temporal=1)
    with pytest.warns(UserWarning, match=r"left out the pair\(s\) at frame\(s\) 1,6,"):
        data = load_pairs(config, Transfer())
    assert data.frames == [3] and data.left_out == [1, 6]
    (pair,) = data.pairs
    assert pair.frames == 3 and pair.input.shape == (32, 48, 9)
    working = Transfer()
    for index, frame in enumerate((3, 2, 4)):  # the frame, then offsets -1, +1
        expected = working.to_working(imageio.read_frame(tmp_path / f"in.{frame:04d}.exr", "rgb").pixels)
        assert np.allclose(pair.input[:, :, 3 * index : 3 * index + 3], expected)
    batch, _ = PatchSampler(data.pairs, crop_size=16, batch_size=1, seed=0).next_batch()
    assert batch.shape == (1, 9, 16, 16)


def test_a_temporal_job_without_any_complete_pair_or_sequence_is_refused_before_training(tmp_path):
    source, truth = write_shot(tmp_path, truth_frames=(1, 6))
    with pytest.raises(TrainingError, match=r"every training frame \(1,6\) lacks a neighbouring Input frame"):
        load_pairs(TrainConfig(input=source, target=truth, temporal=1), Transfer())
    with pytest.raises(ConfigError, match="single file"):
        load_pairs(
            TrainConfig(input=str(tmp_path / "in.0001.exr"), target=str(tmp_path / "gt.0001.exr"), temporal=1),
            Transfer(),
        )
    with pytest.raises(ConfigError, match="temporal must be a whole number"):
        TrainConfig(temporal=4).validate()


def test_the_command_line_sets_temporal():
    args = build_parser().parse_args(["train", "--input", "a.####.exr", "--target", "b.####.exr", "--temporal", "2"])
    assert _train_config(args).temporal == 2


@pytest.fixture(scope="module")
def temporal_run(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("temporal")
    source, truth = write_shot(directory, truth_frames=(2, 3, 5))
    config = TrainConfig(
        input=source,
        target=truth,
        out=str(directory / "run"),
        temporal=1,
        steps=4,
        model_size="small",
        batch_size=2,
        crop_size=16,
        checkpoint_interval=2,
        image_interval=2,
        precision="fp32",
    )
    result = train_model(config)
    return directory, result.model_path


def test_a_temporal_model_is_trained_saved_and_described(temporal_run):
    directory, model = temporal_run
    manifest = catfile.read_manifest(model)
    assert manifest.arguments["temporal"] == 1 and manifest.channels_in == ["R", "G", "B"]
    assert "sees 1 neighbouring frame(s) on each side" in catfile.format_description(catfile.describe(model))
    assert (directory / "run" / "contact_sheets").is_dir()


def test_inference_reads_the_neighbours_in_order_and_holds_the_ends_of_the_sequence(tmp_path):
    write_shot(tmp_path)
    model = infer.load_model(make_model(tmp_path / "random.cat", temporal=1), "cpu")  # random output layer
    written = infer.infer_sequence(model, str(tmp_path / "in.####.exr"), str(tmp_path / "out.####.exr"))
    assert len(written) == 6
    frames = {n: imageio.read_frame(tmp_path / f"in.{n:04d}.exr", "rgb").pixels for n in range(1, 7)}

    def run(number: int, neighbours: tuple[int, int]) -> np.ndarray:
        return infer.apply_model(model, frames[number], neighbours=[frames[n] for n in neighbours], tile=0)

    for number, neighbours, wrong in ((1, (1, 2), (2, 1)), (4, (3, 5), (5, 3)), (6, (5, 6), (6, 5))):
        result = imageio.read_frame(tmp_path / f"out.{number:04d}.exr", "rgb").pixels  # half-float files
        assert np.abs(result - run(number, neighbours)).max() < 2e-3 < np.abs(result - run(number, wrong)).max()


def test_automatic_batch_size_probes_a_temporal_network_with_all_its_frames(tmp_path):
    source, truth = write_shot(tmp_path, truth_frames=(2, 3, 5))
    config = TrainConfig(
        input=source,
        target=truth,
        out=str(tmp_path / "run"),
        temporal=1,
        steps=1,
        model_size="small",
        crop_size=16,
        precision="fp32",
    )
    result = train_model(config)  # batch size: auto
    assert 1 <= catfile.read_manifest(result.model_path).training["batch_size"] <= 3


def test_neighbours_past_the_ends_or_across_a_gap_are_the_nearest_frame_towards_the_centre(tmp_path):
    for frame in (1, 2, 3, 5, 6):
        imageio.write_frame(tmp_path / f"p.{frame:04d}.exr", np.zeros((16, 16, 3), np.float32), "rgb")
    source = imageio.ImageSequence.parse(str(tmp_path / "p.####.exr"))
    around = infer.NeighbourFrames(source, [1, 2, 3, 5, 6], temporal=2)
    assert [around.number(k, 1) for k in temporal_offsets(2)] == [1, 1, 2, 3]
    assert [around.number(k, 3) for k in temporal_offsets(2)] == [1, 2, 3, 5]  # 4 is missing: hold 3
    assert [around.number(k, 6) for k in temporal_offsets(2)] == [5, 5, 6, 6]  # 4 and 7, 8 are missing
    with pytest.raises(SequenceError, match="single file"):
        infer.NeighbourFrames(imageio.ImageSequence.parse(str(tmp_path / "p.0001.exr")), [1], temporal=1)


def test_a_temporal_model_without_its_neighbours_or_a_plain_one_with_them_is_refused(temporal_run, tmp_path):
    _, path = temporal_run
    model = infer.load_model(path, "cpu")
    image = np.zeros((32, 48, 3), np.float32)
    with pytest.raises(ConfigError, match="needs 2 neighbouring frames"):
        infer.apply_model(model, image)
    with pytest.raises(ConfigError, match="offset \\+1 is 16×32×3"):
        infer.apply_model(model, image, neighbours=[image, np.zeros((32, 16, 3), np.float32)])
    with pytest.raises(CatFileError, match="temporal network"):
        export.export_module(path)
    with pytest.raises(CatFileError, match="apply it with 'copycat infer'"):
        deblur_sequence(str(tmp_path / "in.####.exr"), str(tmp_path / "out.####.exr"), model=str(path))


def test_initial_weights_must_see_as_many_frames_as_the_job(temporal_run, tmp_path):
    directory, path = temporal_run
    config = TrainConfig(
        input=str(directory / "in.####.exr"),
        target=str(directory / "gt.####.exr"),
        out=str(tmp_path / "run"),
        initial_weights=str(path),
        steps=1,
        batch_size=1,
        crop_size=16,
    )
    with pytest.raises(CatFileError, match="set temporal to 1"):
        train_model(config)
