"""Inference: seamless tiles, bounded memory, sequences that keep their format, and bad input refused early."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch
from helpers import smooth_image, tiny_cat
from hypothesis import given, settings
from hypothesis import strategies as st

from copycat_nuke import imageio, infer
from copycat_nuke.cli import main
from copycat_nuke.device import cpu_has_fast_bf16
from copycat_nuke.errors import CatFileError, ChannelError, ConfigError, ImageIOError, SequenceError
from copycat_nuke.transfer import NonFiniteValuesWarning, Transfer

#: tiny tensors gain nothing from two torch threads, and lose much on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


# ------------------------------------------------------------------------------------------ seamless tiles


def test_tiles_at_the_default_overlap_match_the_whole_frame_above_50_db(trained):
    model = infer.load_model(trained, "cpu")
    image = smooth_image(256, 384, seed=3)
    whole = infer.apply_model(model, image, tile=0)
    tiled = infer.apply_model(model, image, tile=192)  # 2×3 tiles of 160–176 px, default overlap
    assert psnr(whole, image) < 30, "the model must change the image for this test to mean anything"
    assert psnr(tiled, whole) >= 50
    butted = infer.apply_model(model, image, tile=128, overlap=0)
    assert psnr(butted, whole) < psnr(tiled, whole) - 20, "without overlap the seams show"


def test_whole_frame_is_the_network_on_the_transferred_frame(tiny):
    model = infer.load_model(tiny, "cpu")
    image = smooth_image(40, 56)
    working = Transfer().to_working(image)
    with torch.no_grad():
        expected = model.network(torch.from_numpy(working.transpose(2, 0, 1).copy())[None])
    expected_linear = Transfer().from_working(expected[0].permute(1, 2, 0).numpy())
    np.testing.assert_allclose(infer.apply_model(model, image, tile=0), expected_linear, rtol=1e-5, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(16, 5000),
    tile=st.integers(1, 40).map(lambda n: 16 * n),
    overlap=st.integers(0, 8).map(lambda n: 16 * n),
)
def test_tiles_cover_the_axis_on_the_16_pixel_grid_overlapping_by_at_least_the_overlap(length, tile, overlap):
    if tile < 2 * overlap + 16:
        return
    spans = infer.plan_spans(length, tile, overlap)
    assert spans[0].start == 0 and spans[-1].stop == length
    assert all(span.start % 16 == 0 and 0 < span.size < tile + 16 for span in spans)
    assert all(a.stop - b.start >= overlap and b.start > a.start for a, b in zip(spans, spans[1:]))
    assert not spans[0].feather_start and not spans[-1].feather_stop
    weights = infer._normalised_weights(spans, overlap, 1)
    total = np.zeros(length)
    for span, w in zip(spans, weights):
        total[span.start : span.stop] += w
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_tiles_shrink_to_fit_instead_of_wasting_a_whole_tile_on_the_remainder():
    spans = infer.plan_spans(1080, 512, 64)
    assert [(s.start, s.stop) for s in spans] == [(0, 416), (352, 768), (656, 1080)]


def test_tile_and_overlap_that_cannot_work_are_refused(tiny):
    model = infer.load_model(tiny, "cpu")
    image = smooth_image(64, 64)
    with pytest.raises(ConfigError, match="too small"):
        infer.apply_model(model, image, tile=64, overlap=32)
    with pytest.raises(ConfigError, match="overlap"):
        infer.apply_model(model, image, tile=0, overlap=-1)
    with pytest.raises(ConfigError, match="tile"):
        infer.apply_model(model, image, tile=-16)


# ------------------------------------------------------------------------------------- memory, precision


def test_auto_tile_is_the_whole_frame_when_it_fits_and_bounded_when_it_does_not(tiny):
    model = infer.load_model(tiny, "cpu")
    per_pixel = model.bytes_per_pixel()
    assert infer.auto_tile_size(model, 1080, 1920, free_bytes=10 * 1088 * 1920 * per_pixel) == 0
    frame_planes = 2 * 4 * 2160 * 3840 * (3 + 3)  # a 4K frame's input and output planes, with a copy each
    free = (600 * 600 * per_pixel + frame_planes) / infer.MEMORY_SHARE["cpu"]  # and room for one 600² tile
    assert infer.auto_tile_size(model, 2160, 3840, free_bytes=free) == 592
    assert infer.auto_tile_size(model, 2160, 3840, free_bytes=1) == infer.MIN_AUTO_TILE


def test_free_memory_is_read_from_the_host():
    assert infer.available_memory(torch.device("cpu")) > 64 << 20


def test_half_uses_bf16_on_a_cpu_that_has_it_and_stays_close_to_fp32(trained):
    model = infer.load_model(trained, "cpu", half=True)
    assert model.runtime.precision == ("bf16" if cpu_has_fast_bf16() else "fp32")
    image = smooth_image(64, 80)
    full = infer.apply_model(infer.load_model(trained, "cpu"), image, tile=0)
    assert psnr(infer.apply_model(model, image, tile=0), full) > 35


def test_nan_and_inf_in_a_frame_give_finite_output_with_a_warning(tiny):
    model = infer.load_model(tiny, "cpu")
    image = smooth_image(32, 48)
    image[3, 4, 0], image[5, 6, 1] = np.nan, np.inf
    with pytest.warns(NonFiniteValuesWarning):
        result = infer.apply_model(model, image, tile=0)
    assert np.isfinite(result).all()


# ------------------------------------------------------------------------------------------------ sequences


def write_rgba_plate(directory: Path, frames=(1, 2, 3), size=(48, 64)) -> str:
    for frame in frames:
        pixels = np.concatenate([smooth_image(*size, seed=frame), np.full((*size, 1), 0.25 * frame, np.float32)], 2)
        imageio.write_frame(
            directory / f"plate.{frame:04d}.exr",
            pixels,
            "rgba",
            display_window=imageio.Window(-8, 4, size[1], size[0]),
            data_window=imageio.Window(0, 10, size[1] - 16, size[0] - 10),
            metadata={"note": "plate"},
        )
    return str(directory / "plate.####.exr")


def test_sequence_keeps_windows_half_pixels_metadata_and_passes_alpha_through(tiny, tmp_path):
    plate = write_rgba_plate(tmp_path)
    written = infer.infer_sequence(tiny, plate, str(tmp_path / "out" / "clean.####.exr"), device="cpu")
    assert [p.name for p in written] == ["clean.0001.exr", "clean.0002.exr", "clean.0003.exr"]
    source, result = imageio.read_frame(tmp_path / "plate.0002.exr"), imageio.read_frame(written[1])
    assert result.channels == ("R", "G", "B", "A") and result.pixel_type == "half"
    assert (result.display_window, result.data_window) == (source.display_window, source.data_window)
    assert np.array_equal(result.select("A"), source.select("A"))
    assert result.metadata["copycat:model"] == "tiny.cat" and result.metadata["note"] == "plate"
    assert not np.allclose(result.select("rgb"), source.select("rgb"), atol=1e-3)


def test_no_passthrough_writes_only_the_models_channels(tiny, tmp_path):
    plate = write_rgba_plate(tmp_path, frames=(1,))
    (out,) = infer.infer_sequence(tiny, plate, str(tmp_path / "o.####.exr"), device="cpu", passthrough=False)
    assert imageio.read_frame(out).channels == ("R", "G", "B")


def test_frame_list_processes_only_those_frames_and_reports_progress_in_order(tiny, tmp_path):
    plate = write_rgba_plate(tmp_path, frames=(1, 2, 3, 4))
    calls = []
    written = infer.infer_sequence(
        tiny, plate, str(tmp_path / "o.####.exr"), "2-3", device="cpu", progress=lambda *a: calls.append(a)
    )
    assert [p.name for p in written] == ["o.0002.exr", "o.0003.exr"]
    assert [c[:3] for c in calls] == [(1, 2, 2), (2, 2, 3)] and all(c[3] >= 0 for c in calls)


def test_the_next_frame_is_read_and_the_last_written_while_the_network_computes(tiny, tmp_path, monkeypatch):
    plate = write_rgba_plate(tmp_path, frames=(1, 2))
    reading_2, writing_1 = threading.Event(), threading.Event()
    real_read, real_write, real_infer = imageio.read_frame, imageio.write_frame, infer.infer_frame

    def read(path, *args, **kwargs):
        if Path(path).name == "plate.0002.exr":
            reading_2.set()
        return real_read(path, *args, **kwargs)

    def write(path, *args, **kwargs):
        if Path(path).name == "o.0001.exr":
            writing_1.set()
        return real_write(path, *args, **kwargs)

    overlapped = []

    def compute(model, frame, **kwargs):
        # Without the worker threads these events could only be set after this call returns: a timeout.
        overlapped.append((reading_2 if frame.path.name == "plate.0001.exr" else writing_1).wait(timeout=20))
        return real_infer(model, frame, **kwargs)

    monkeypatch.setattr(imageio, "read_frame", read)
    monkeypatch.setattr(imageio, "write_frame", write)
    monkeypatch.setattr(infer, "infer_frame", compute)
    infer.infer_sequence(tiny, plate, str(tmp_path / "o.####.exr"))
    assert overlapped == [True, True]


def test_a_loaded_model_is_reused_across_calls(tiny, tmp_path):
    plate = write_rgba_plate(tmp_path, frames=(1,))
    model = infer.load_model(tiny, "cpu")
    (out,) = infer.infer_sequence(model, plate, str(tmp_path / "o.####.exr"), tile=0)
    assert out.exists()


def test_sequences_are_tiled_as_asked(trained, tmp_path):
    plate = write_rgba_plate(tmp_path, frames=(1,), size=(128, 256))
    (whole,) = infer.infer_sequence(trained, plate, str(tmp_path / "w.####.exr"), tile=0, passthrough=False)
    (tiled,) = infer.infer_sequence(trained, plate, str(tmp_path / "t.####.exr"), tile=160, passthrough=False)
    whole_pixels, tiled_pixels = imageio.read_image(whole), imageio.read_image(tiled)
    assert not np.array_equal(tiled_pixels, whole_pixels) and psnr(tiled_pixels, whole_pixels) > 50


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_model_channels_are_refused_before_anything_is_written(tiny, tmp_path):
    imageio.write_frame(tmp_path / "depth.0001.exr", smooth_image(32, 32, channels=1), ["depth.Z"])
    with pytest.raises(ChannelError, match=r"tiny\.cat needs R, G, B"):
        infer.infer_sequence(tiny, str(tmp_path / "depth.####.exr"), str(tmp_path / "out" / "o.####.exr"))
    assert not (tmp_path / "out").exists()


def test_a_frame_smaller_than_the_network_minimum_is_refused_naming_the_file(tiny, tmp_path):
    imageio.write_frame(tmp_path / "small.0001.exr", smooth_image(8, 40), "rgb")
    with pytest.raises(ImageIOError, match=r"small\.0001\.exr is 40×8 pixels.*at least 16×16"):
        infer.infer_sequence(tiny, str(tmp_path / "small.####.exr"), str(tmp_path / "out" / "o.####.exr"))
    assert not (tmp_path / "out").exists()


def test_an_output_without_a_frame_number_is_refused_for_several_frames(tiny, tmp_path):
    plate = write_rgba_plate(tmp_path, frames=(1, 2))
    with pytest.raises(SequenceError, match="no frame number"):
        infer.infer_sequence(tiny, plate, str(tmp_path / "result.exr"))
    assert not (tmp_path / "result.exr").exists()


@pytest.mark.parametrize("output", ["plate.####.exr", "plate.%04d.exr", "./plate.0001.exr"])
def test_an_output_that_is_the_input_is_refused_and_the_plate_is_untouched(tiny, tmp_path, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    write_rgba_plate(tmp_path, frames=(1,))
    before = (tmp_path / "plate.0001.exr").read_bytes()
    with pytest.raises(SequenceError, match="input frame 1 itself"):
        infer.infer_sequence(tiny, str(tmp_path / "plate.####.exr"), output)
    assert (tmp_path / "plate.0001.exr").read_bytes() == before


def test_a_bad_frame_later_in_the_shot_stops_the_job_after_writing_the_good_ones(tiny, tmp_path):
    plate = write_rgba_plate(tmp_path, frames=(1, 2, 3))
    imageio.write_frame(tmp_path / "plate.0002.exr", smooth_image(8, 8), "rgb")
    with pytest.raises(ImageIOError, match=r"plate\.0002\.exr"):
        infer.infer_sequence(tiny, plate, str(tmp_path / "o.####.exr"))
    assert sorted(p.name for p in tmp_path.glob("o.*")) == ["o.0001.exr"]


def test_a_manifest_scale_the_network_cannot_produce_is_refused_when_loading(tmp_path):
    # TODO(upscale head): MSRN has no upscale head yet, so a scale-2 .cat can only be refused; once it has
    # one, test that a ×2 model writes ×2 frames with scaled windows.
    path = tiny_cat(tmp_path / "up.cat", scale=2)
    with pytest.raises(CatFileError, match="scale 2"):
        infer.load_model(path, "cpu")


# -------------------------------------------------------------------------------------------------- the CLI


def test_cli_infer_takes_tile_overlap_half_and_no_passthrough(tiny, tmp_path):
    plate = write_rgba_plate(tmp_path, frames=(1, 2), size=(64, 80))
    out = tmp_path / "o.####.exr"
    args = ["infer", str(tiny), plate, str(out), "--tile", "48", "--overlap", "16", "--half", "--no-passthrough"]
    assert main([*args, "--frames", "2", "--device", "cpu", "--quiet"]) == 0
    assert imageio.read_frame(tmp_path / "o.0002.exr").channels == ("R", "G", "B")
    assert not (tmp_path / "o.0001.exr").exists()
    assert main(["infer", str(tiny), plate, str(out), "--tile", "auto", "--quiet"]) == 0


def test_cli_tile_must_be_a_size_or_auto(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", str(tiny), "a.####.exr", "b.####.exr", "--tile", "big"])
    assert exit_info.value.code == 2 and "auto" in capsys.readouterr().err


def test_cli_help_states_the_real_default_overlap(capsys):
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    assert f"(default {infer.DEFAULT_OVERLAP})" in " ".join(capsys.readouterr().out.split())


def test_cli_refuses_an_output_that_overwrites_the_input_in_one_line(tiny, tmp_path, capsys):
    plate = write_rgba_plate(tmp_path, frames=(1,))
    assert main(["infer", str(tiny), plate, plate, "--quiet"]) == 3  # errors.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("copycat: error: ") and "itself" in err and "Traceback" not in err


def test_clean_frames_raise_no_warnings(tiny):
    model = infer.load_model(tiny, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        infer.apply_model(model, smooth_image(32, 32), tile=0)


# ------------------------------------------------------------------------------------ overscan and layers

OVERSCAN_CHANNELS = ("R", "G", "B", "A", "depth.Z", "mask.A")


def write_overscan_plate(path: Path, seed: int = 0) -> np.ndarray:
    """What a Nuke Write (raw, 32-bit float, channels all) renders with overscan: a 24×16 format, a 32×24
    bbox at (-4, -4), rgb the tiny model knows plus alpha and two layers holding arbitrary bits. Written
    with OpenImageIO directly; returns the bbox's pixels in OVERSCAN_CHANNELS order."""
    rng = np.random.default_rng(seed)
    extra = rng.standard_normal((24, 32, 3)).astype(np.float32) * np.float32(1e3)  # any float, not just 0..1
    data = np.ascontiguousarray(np.concatenate([smooth_image(24, 32, seed=seed), extra], axis=2))
    spec = oiio.ImageSpec(32, 24, 6, "float")
    spec.channelnames = OVERSCAN_CHANNELS
    spec.x, spec.y = -4, -4
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 24, 16
    out = oiio.ImageOutput.create(str(path))
    assert out is not None and out.open(str(path), spec), oiio.geterror()
    assert out.write_image(data), out.geterror()
    out.close()
    return data


def windows_on_disk(path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    inp.close()
    return (spec.x, spec.y, spec.width, spec.height), (spec.full_x, spec.full_y, spec.full_width, spec.full_height)


def test_overscan_is_inferred_and_kept_and_other_layers_pass_through_bit_for_bit(tiny, tmp_path):
    data = write_overscan_plate(tmp_path / "plate.0001.exr")
    (out,) = infer.infer_sequence(tiny, str(tmp_path / "plate.####.exr"), str(tmp_path / "o.####.exr"), device="cpu")
    assert windows_on_disk(out) == ((-4, -4, 32, 24), (0, 0, 24, 16))
    result = imageio.read_frame(out)
    assert result.channels == OVERSCAN_CHANNELS and result.pixel_type == "float"
    for index, name in enumerate(OVERSCAN_CHANNELS[3:], start=3):
        assert result.select(name).tobytes() == np.ascontiguousarray(data[:, :, index : index + 1]).tobytes(), name
    # The network saw the whole bbox as one image: its overscan rows and columns are results, not copies.
    model = infer.load_model(tiny, "cpu")
    expected = infer.apply_model(model, data[:, :, :3], tile=0)
    np.testing.assert_allclose(result.select("rgb"), expected, atol=1e-6)
    assert np.abs(result.select("rgb")[:4] - data[:4, :, :3]).mean() > 1e-2

    pixels, names = infer.infer_frame(model, imageio.read_frame(tmp_path / "plate.0001.exr"), tile=0)
    assert names == list(OVERSCAN_CHANNELS) and pixels.shape == (24, 32, 6)
    assert pixels[:, :, 3:].tobytes() == np.ascontiguousarray(data[:, :, 3:]).tobytes()


def test_a_bbox_inside_the_format_is_inferred_over_the_format_and_keeps_its_bbox(tiny, tmp_path):
    plate = write_rgba_plate(tmp_path, frames=(1,))  # bbox 48×38 at (0, 10) inside a 64×48 format at (-8, 4)
    (out,) = infer.infer_sequence(tiny, plate, str(tmp_path / "o.####.exr"), device="cpu")
    assert windows_on_disk(out) == ((0, 10, 48, 38), (-8, 4, 64, 48))


def test_passthrough_matches_channels_by_name_not_only_by_spelling(tiny):
    frame = imageio.Frame(
        np.zeros((16, 16, 4), np.float32),
        ("rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"),
        imageio.Window(0, 0, 16, 16),
        imageio.Window(0, 0, 16, 16),
        "float",
    )
    pixels, names = infer.pass_through(frame, np.ones((16, 16, 3), np.float32), ["R", "G", "B"])
    assert names == ["R", "G", "B", "rgba.alpha"] and pixels.shape == (16, 16, 4)
