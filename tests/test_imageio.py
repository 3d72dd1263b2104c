"""Specification of copycat_nuke.imageio: tiny images made with numpy in tmp_path, fixed seeds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from copycat_nuke import imageio
from copycat_nuke.errors import (
    ChannelError,
    CopyCatError,
    FrameMissingError,
    ImageIOError,
    ResolutionMismatchError,
    SequenceError,
)
from copycat_nuke.imageio import (
    Frame,
    ImageSequence,
    Window,
    check_same_size,
    format_frame_list,
    parse_frame_list,
    read_frame,
    read_image,
    resolve_channels,
    write_frame,
)

H, W = 5, 7


def random_pixels(channels: int, seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, channels), dtype=np.float32)


def smooth_pixels(channels: int = 3, height: int = 16, width: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [xx / width, yy / height, (xx + yy) / (width + height), 1 - xx / width][:channels]
    return np.dstack(planes).astype(np.float32)


def write_with_oiio(path: Path, specs_and_pixels: list[tuple[oiio.ImageSpec, np.ndarray]]) -> None:
    """Write a (multi-part) file with OpenImageIO directly, independent of the module under test."""
    out = oiio.ImageOutput.create(str(path))
    assert out is not None
    assert out.open(str(path), [spec for spec, _ in specs_and_pixels]), out.geterror()
    for index, (spec, pixels) in enumerate(specs_and_pixels):
        if index:
            assert out.open(str(path), spec, "AppendSubimage"), out.geterror()
        assert out.write_image(pixels), out.geterror()
    out.close()


def oiio_spec(path: Path) -> oiio.ImageSpec:
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None
    spec = inp.spec().copy()
    inp.close()
    return spec


# ----------------------------------------------------------------------------------------------------------
# EXR


def test_exr_half_round_trip_is_exact_for_half_representable_values(tmp_path: Path) -> None:
    pixels = random_pixels(4).astype(np.float16).astype(np.float32)
    write_frame(tmp_path / "a.exr", pixels, "rgba")
    frame = read_frame(tmp_path / "a.exr")
    assert frame.pixel_type == "half"
    assert frame.channels == ("R", "G", "B", "A")
    assert frame.pixels.dtype == np.float32 and frame.pixels.shape == (H, W, 4)
    np.testing.assert_array_equal(frame.pixels, pixels)


def test_exr_half_rounds_float_values_to_half_precision(tmp_path: Path) -> None:
    pixels = random_pixels(3) * 100
    write_frame(tmp_path / "a.exr", pixels)
    np.testing.assert_allclose(read_image(tmp_path / "a.exr"), pixels, rtol=2**-11)


def test_exr_float_round_trip_is_bit_exact(tmp_path: Path) -> None:
    pixels = (random_pixels(3, seed=1) - 0.5) * 1e4  # HDR and negative values survive
    write_frame(tmp_path / "a.exr", pixels, "rgb", pixel_type="float")
    frame = read_frame(tmp_path / "a.exr")
    assert frame.pixel_type == "float"
    np.testing.assert_array_equal(frame.pixels, pixels)


def test_exr_layers_round_trip_by_name_although_oiio_reorders_them(tmp_path: Path) -> None:
    names = ["mask.A", "Z", "B", "G", "R", "N.z", "N.x", "N.y", "A"]
    pixels = random_pixels(len(names), seed=2).astype(np.float16).astype(np.float32)
    write_frame(tmp_path / "layers.exr", pixels, names)
    frame = read_frame(tmp_path / "layers.exr")
    assert list(frame.channels) != names, "OIIO reorders EXR channels on read: RGBA first, then sorted"
    assert frame.channels[:4] == ("R", "G", "B", "A")
    for index, name in enumerate(names):
        np.testing.assert_array_equal(frame.select(name)[..., 0], pixels[..., index])
    np.testing.assert_array_equal(frame.select("mask.a")[..., 0], pixels[..., 0])
    np.testing.assert_array_equal(frame.select("N"), pixels[..., [6, 7, 5]])  # a layer: N.x, N.y, N.z


def test_reading_named_channels_returns_them_in_the_order_asked(tmp_path: Path) -> None:
    names = ["R", "G", "B", "A", "mask.A"]
    pixels = random_pixels(5, seed=3).astype(np.float16).astype(np.float32)
    write_frame(tmp_path / "a.exr", pixels, names)
    frame = read_frame(tmp_path / "a.exr", "mask.a, rgba.red, alpha")
    assert frame.channels == ("mask.A", "R", "A")
    np.testing.assert_array_equal(frame.pixels, pixels[..., [4, 0, 3]])
    np.testing.assert_array_equal(read_image(tmp_path / "a.exr", ["B", "G"]), pixels[..., [2, 1]])


def test_multi_part_exr_reads_part_zero_by_default_and_others_by_index_or_name(tmp_path: Path) -> None:
    beauty, aux = random_pixels(3, seed=4), random_pixels(2, seed=5)
    beauty_spec = oiio.ImageSpec(W, H, 3, "float")
    beauty_spec.attribute("name", "beauty")
    aux_spec = oiio.ImageSpec(W, H, 2, "float")
    aux_spec.channelnames = ("mask.A", "Z")
    aux_spec.attribute("name", "aux")
    write_with_oiio(tmp_path / "parts.exr", [(beauty_spec, beauty), (aux_spec, aux)])

    np.testing.assert_array_equal(read_image(tmp_path / "parts.exr"), beauty)
    by_index = read_frame(tmp_path / "parts.exr", subimage=1)
    by_name = read_frame(tmp_path / "parts.exr", subimage="aux")
    assert by_index.channels == by_name.channels == ("Z", "mask.A")  # stored mask.A, Z: sorted on read
    np.testing.assert_array_equal(by_name.select("mask.A")[..., 0], aux[..., 0])
    with pytest.raises(ImageIOError, match=r"no part named 'diffuse'.*beauty.*aux"):
        read_frame(tmp_path / "parts.exr", subimage="diffuse")


def test_multi_part_exr_finds_a_channel_that_only_another_part_has(tmp_path: Path) -> None:
    beauty, aux = random_pixels(3, seed=6), random_pixels(2, seed=7)
    beauty_spec = oiio.ImageSpec(W, H, 3, "float")
    beauty_spec.attribute("name", "beauty")
    aux_spec = oiio.ImageSpec(W, H, 2, "float")
    aux_spec.channelnames = ("mask.A", "Z")
    aux_spec.attribute("name", "aux")
    write_with_oiio(tmp_path / "parts.exr", [(beauty_spec, beauty), (aux_spec, aux)])

    frame = read_frame(tmp_path / "parts.exr", "R, mask.a, G, aux.Z")
    assert frame.channels == ("R", "mask.A", "G", "aux.Z")
    np.testing.assert_array_equal(frame.pixels, np.dstack([beauty[..., 0], aux[..., 0], beauty[..., 1], aux[..., 1]]))
    with pytest.raises(ChannelError, match=r"'depth'.*R, G, B, aux\.Z, aux\.mask\.A"):
        read_frame(tmp_path / "parts.exr", "depth")


def test_a_channel_name_two_parts_share_is_qualified_by_its_part(tmp_path: Path) -> None:
    left, right = random_pixels(3, seed=18), random_pixels(3, seed=19)
    specs = []
    for name in ("left", "right"):
        spec = oiio.ImageSpec(W, H, 3, "float")
        spec.attribute("name", name)
        specs.append(spec)
    write_with_oiio(tmp_path / "stereo.exr", [(specs[0], left), (specs[1], right)])

    frame = read_frame(tmp_path / "stereo.exr", "R, right.R, right.G")
    assert frame.channels == ("R", "right.R", "right.G")
    assert read_frame(tmp_path / "stereo.exr", "G, G").channels == ("G", "G")  # asked twice, not renamed
    np.testing.assert_array_equal(frame.pixels, np.dstack([left[..., 0], right[..., 0], right[..., 1]]))


# ----------------------------------------------------------------------------------------------------------
# Data windows


def test_data_window_with_negative_origin_is_kept_beside_the_display_window(tmp_path: Path) -> None:
    data = random_pixels(3, seed=8, height=4, width=5)
    spec = oiio.ImageSpec(5, 4, 3, "float")
    spec.x, spec.y = -2, -1
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, W, H
    write_with_oiio(tmp_path / "bbox.exr", [(spec, data)])

    frame = read_frame(tmp_path / "bbox.exr")
    assert frame.display_window == Window(0, 0, W, H)
    assert frame.data_window == Window(-2, -1, 5, 4)
    assert frame.pixel_window == Window(-2, -1, W + 2, H + 1)
    assert frame.pixels.shape == (H + 1, W + 2, 3)
    expected = np.zeros((H + 1, W + 2, 3), np.float32)
    expected[0:4, 0:5] = data  # rows -1.., columns -2.. are kept, not cropped away
    np.testing.assert_array_equal(frame.pixels, expected)
    display_only = np.zeros((H, W, 3), np.float32)
    display_only[0:3, 0:3] = data[1:4, 2:5]
    np.testing.assert_array_equal(frame.pixels_in(frame.display_window), display_only)


def test_overscan_beyond_the_display_window_is_kept(tmp_path: Path) -> None:
    data = random_pixels(1, seed=9, height=9, width=11)
    spec = oiio.ImageSpec(11, 9, 1, "float")
    spec.channelnames = ("mask.A",)
    spec.x, spec.y = 3, 2
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 1, 1, W, H
    write_with_oiio(tmp_path / "overscan.exr", [(spec, data)])

    frame = read_frame(tmp_path / "overscan.exr")
    assert frame.display_window == Window(1, 1, W, H) and frame.data_window == Window(3, 2, 11, 9)
    assert frame.pixel_window == Window(1, 1, 13, 10)
    expected = np.zeros((10, 13, 1), np.float32)
    expected[1:, 2:] = data
    np.testing.assert_array_equal(frame.pixels, expected)


def overscan_plate(path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Nuke-style render: a 24×16 format with a 32×24 bbox at (-4, -4), float RGBA plus mask.A and
    depth.Z (written by OIIO directly). Returns the data-window pixels and the spec's channel order."""
    data = random_pixels(6, seed=seed, height=24, width=32) * 4 - 1  # HDR and negative values too
    spec = oiio.ImageSpec(32, 24, 6, "float")
    spec.channelnames = ("R", "G", "B", "A", "depth.Z", "mask.A")
    spec.x, spec.y = -4, -4
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 24, 16
    write_with_oiio(path, [(spec, data)])
    return data, np.array(spec.channelnames)


def test_an_overscanned_nuke_render_round_trips_windows_and_every_bit(tmp_path: Path) -> None:
    data, _ = overscan_plate(tmp_path / "plate.exr")
    frame = read_frame(tmp_path / "plate.exr")
    assert frame.pixel_window == frame.data_window == Window(-4, -4, 32, 24)
    assert frame.display_window == Window(0, 0, 24, 16)
    np.testing.assert_array_equal(frame.pixels, data)  # the bbox covers the format: pixels are the data

    write_frame(tmp_path / "copy.exr", frame.pixels, like=frame)
    spec = oiio_spec(tmp_path / "copy.exr")
    assert (spec.x, spec.y, spec.width, spec.height) == (-4, -4, 32, 24)
    assert (spec.full_x, spec.full_y, spec.full_width, spec.full_height) == (0, 0, 24, 16)
    copy = read_frame(tmp_path / "copy.exr")
    assert copy.channels == frame.channels and copy.pixel_type == "float"
    assert copy.pixels.tobytes() == frame.pixels.tobytes()


def test_a_format_without_windows_gets_the_display_window_of_an_overscanned_frame(tmp_path: Path) -> None:
    data, _ = overscan_plate(tmp_path / "plate.exr")
    frame = read_frame(tmp_path / "plate.exr", "rgb")
    write_frame(tmp_path / "a.tif", np.clip(frame.pixels, 0, 1), "rgb", like=frame, pixel_type="float")
    result = read_frame(tmp_path / "a.tif")
    assert result.display_window == result.data_window == Window(0, 0, 24, 16)
    np.testing.assert_array_equal(result.pixels, np.clip(data[4:20, 4:28, :3], 0, 1))


def test_writing_refuses_pixels_that_do_not_cover_both_windows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"do not cover the display window .* and the data window"):
        write_frame(
            tmp_path / "a.exr", random_pixels(3), display_window=Window(0, 0, W, H), data_window=Window(-1, 0, W, H)
        )
    assert not (tmp_path / "a.exr").exists()


def test_a_data_window_inside_a_part_and_another_parts_overscan_are_both_kept(tmp_path: Path) -> None:
    colour = random_pixels(3, seed=20, height=3, width=4)
    matte = random_pixels(1, seed=21, height=H + 2, width=W + 2)
    first, second = oiio.ImageSpec(4, 3, 3, "float"), oiio.ImageSpec(W + 2, H + 2, 1, "float")
    first.x, first.y = 1, 1
    second.channelnames = ("mask.A",)
    second.x, second.y = -1, -1
    for spec, name in ((first, "rgba"), (second, "mask")):
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, W, H
        spec.attribute("name", name)
    write_with_oiio(tmp_path / "parts.exr", [(first, colour), (second, matte)])

    frame = read_frame(tmp_path / "parts.exr", "R,G,B,mask.A")
    assert frame.data_window == frame.pixel_window == Window(-1, -1, W + 2, H + 2)
    np.testing.assert_array_equal(frame.select("mask.A")[..., 0], matte[..., 0])
    np.testing.assert_array_equal(frame.select("rgb")[2:5, 2:6], colour)


def test_window_union_scaling_and_shrinking() -> None:
    a, b = Window(-4, -4, 32, 24), Window(0, 0, 24, 16)
    assert a.union(b) == a and b.union(Window(30, 2, 4, 4)) == Window(0, 0, 34, 16)
    assert a.scaled(2) == Window(-8, -8, 64, 48)
    assert Window(-3, 1, 9, 8).shrunk(2) == Window(-1, 1, 4, 3)  # x -3..6 -> -1..3, y 1..9 -> 1..4
    assert a.scaled(2).shrunk(2) == a


def test_resize_is_bilinear_through_openimageio_and_keeps_a_matte_in_range() -> None:
    matte = (random_pixels(1, seed=22) > 0.5).astype(np.float32)
    big = imageio.resize(matte, 2)
    assert big.shape == (2 * H, 2 * W, 1) and big.min() >= 0 and big.max() <= 1
    # Bilinear with pixel centres at x -> 2x: output pixel 1 is 3/4 of input pixel 0 and 1/4 of pixel 1.
    np.testing.assert_allclose(big[0, 1, 0], 0.75 * matte[0, 0, 0] + 0.25 * matte[0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(big[0, 0, 0], matte[0, 0, 0], atol=1e-6)  # the edge pixel is held


def test_writing_keeps_display_window_and_data_window_and_reads_back_the_same(tmp_path: Path) -> None:
    pixels = np.zeros((H, W, 3), np.float32)
    pixels[1:4, 2:6] = random_pixels(3, seed=10, height=3, width=4)
    display, data = Window(-3, 2, W, H), Window(-1, 3, 4, 3)
    write_frame(tmp_path / "a.exr", pixels, pixel_type="float", display_window=display, data_window=data)

    spec = oiio_spec(tmp_path / "a.exr")
    assert (spec.x, spec.y, spec.width, spec.height) == (-1, 3, 4, 3)
    assert (spec.full_x, spec.full_y, spec.full_width, spec.full_height) == (-3, 2, W, H)
    frame = read_frame(tmp_path / "a.exr")
    assert (frame.display_window, frame.data_window) == (display, data)
    np.testing.assert_array_equal(frame.pixels, pixels)


def test_writing_like_a_source_frame_keeps_its_windows_metadata_and_channels(tmp_path: Path) -> None:
    data = random_pixels(4, seed=11, height=3, width=4)
    spec = oiio.ImageSpec(4, 3, 4, "half")
    spec.x, spec.y = -1, 1
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, W, H
    spec.attribute("compression", "piz")
    spec.attribute("PixelAspectRatio", 2.0)
    spec.attribute("copycat:source", "plate_v003")
    spec.attribute("screenWindowCenter", oiio.TypeFloat2, (0.25, -0.5))
    write_with_oiio(tmp_path / "src.exr", [(spec, data)])
    source = read_frame(tmp_path / "src.exr")

    write_frame(tmp_path / "out.exr", source.pixels * 2, like=source, metadata={"copycat:loss": 0.125})
    written = oiio_spec(tmp_path / "out.exr")
    assert written.get_string_attribute("compression") == "piz"
    assert written.get_float_attribute("PixelAspectRatio") == 2.0
    assert written.get_string_attribute("copycat:source") == "plate_v003"
    assert written.get_float_attribute("copycat:loss") == 0.125
    assert {p.name: str(p.type) for p in written.extra_attribs}["screenWindowCenter"] == "float2"
    assert written.getattribute("oiio:subimages") is None or written.get_int_attribute("oiio:subimages") == 1
    result = read_frame(tmp_path / "out.exr")
    assert result.display_window == source.display_window
    assert result.data_window == source.data_window == Window(-1, 1, 4, 3)  # overscan on the left is kept
    assert result.pixel_type == "half" and result.channels == source.channels
    np.testing.assert_array_equal(result.pixels, source.pixels * 2)


# ----------------------------------------------------------------------------------------------------------
# DPX, TIFF, PNG, JPEG


@pytest.mark.parametrize(("pixel_type", "levels"), [("uint10", 1023), ("uint12", 4095), ("uint16", 65535)])
def test_dpx_round_trips_within_its_quantisation(tmp_path: Path, pixel_type: str, levels: int) -> None:
    pixels = random_pixels(3, seed=12)
    write_frame(tmp_path / "a.dpx", pixels, "rgb", pixel_type=pixel_type)
    frame = read_frame(tmp_path / "a.dpx")
    assert frame.pixel_type == pixel_type
    np.testing.assert_allclose(frame.pixels, pixels, rtol=0, atol=0.5 / levels + 1e-7)


def test_dpx_defaults_to_10_bit(tmp_path: Path) -> None:
    write_frame(tmp_path / "a.dpx", random_pixels(3))
    assert read_frame(tmp_path / "a.dpx").pixel_type == "uint10"


@pytest.mark.parametrize("width", [1, 4, 5, 7, 13])
def test_10_bit_rgba_dpx_reads_the_last_column_alpha_right(tmp_path: Path, width: int) -> None:
    # OIIO 3.2 misreads the lone last sample of a row when width*4 is one more than a multiple of 3.
    pixels = np.round(random_pixels(4, seed=13, width=width) * 1023) / 1023
    write_frame(tmp_path / "a.dpx", pixels, "rgba", pixel_type="uint10")
    np.testing.assert_array_equal(read_image(tmp_path / "a.dpx"), pixels)
    np.testing.assert_array_equal(read_image(tmp_path / "a.dpx", "a"), pixels[..., 3:])


def test_dpx_refuses_two_channels_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match=r"a\.dpx.*2 channels"):
        write_frame(tmp_path / "a.dpx", random_pixels(2), ["Y", "A"])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("pixel_type", "atol"), [("uint8", 0.5 / 255), ("uint16", 0.5 / 65535), ("float", 0.0)])
def test_tiff_round_trips_rgba_at_8_16_bit_and_float(tmp_path: Path, pixel_type: str, atol: float) -> None:
    pixels = random_pixels(4, seed=14)
    pixels[0, :3, 3] = 0.0  # colour under zero alpha survives: no premultiplication either way
    write_frame(tmp_path / "a.tif", pixels, "rgba", pixel_type=pixel_type)
    frame = read_frame(tmp_path / "a.tif")
    assert frame.pixel_type == pixel_type and frame.channels == ("R", "G", "B", "A")
    np.testing.assert_allclose(frame.pixels, pixels, atol=atol + 1e-7)


@pytest.mark.parametrize(("pixel_type", "levels"), [("uint8", 255), ("uint16", 65535)])
def test_png_rgba_round_trip_is_exact_and_zero_alpha_keeps_its_colour(
    tmp_path: Path, pixel_type: str, levels: int
) -> None:
    pixels = np.round(random_pixels(4, seed=15) * levels) / levels
    pixels[0, :4, 3] = 0.0
    pixels[1, :4, 3] = np.round(0.5 * levels) / levels
    write_frame(tmp_path / "a.png", pixels, "rgba", pixel_type=pixel_type)
    frame = read_frame(tmp_path / "a.png")
    assert frame.pixel_type == pixel_type
    np.testing.assert_allclose(frame.pixels, pixels, rtol=0, atol=1e-7)
    assert np.all(frame.pixels[0, :4, :3] > 0), "colour under zero alpha must not be lost"


def test_position_only_formats_store_channels_in_their_order_by_name(tmp_path: Path) -> None:
    pixels = np.round(random_pixels(4, seed=16) * 255) / 255
    write_frame(tmp_path / "a.png", pixels, ["A", "B", "G", "R"])
    frame = read_frame(tmp_path / "a.png")
    assert frame.channels == ("R", "G", "B", "A")
    np.testing.assert_allclose(frame.select("a")[..., 0], pixels[..., 0], atol=1e-7)
    np.testing.assert_allclose(frame.select("r")[..., 0], pixels[..., 3], atol=1e-7)


def test_greyscale_png_answers_for_rgb_as_nukes_read_does(tmp_path: Path) -> None:
    pixels = np.round(random_pixels(1, seed=17) * 255) / 255
    write_frame(tmp_path / "matte.png", pixels[..., 0])
    frame = read_frame(tmp_path / "matte.png")
    assert frame.channels == ("Y",)
    np.testing.assert_allclose(frame.select("rgb"), np.repeat(pixels, 3, axis=2), atol=1e-7)


def test_jpeg_round_trips_a_smooth_image_within_compression_tolerance(tmp_path: Path) -> None:
    pixels = smooth_pixels()
    write_frame(tmp_path / "a.jpg", pixels, "rgb", metadata={"Compression": "jpeg:98"})
    frame = read_frame(tmp_path / "a.jpg")
    assert frame.pixel_type == "uint8" and frame.channels == ("R", "G", "B")
    assert np.abs(frame.pixels - pixels).mean() < 0.01
    np.testing.assert_allclose(frame.pixels, pixels, atol=0.05)


def test_jpeg_refuses_alpha_instead_of_dropping_it(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match=r"a\.jpg.*JPEG holds 1 or 3 channels"):
        write_frame(tmp_path / "a.jpg", smooth_pixels(4), "rgba")


def test_a_pixel_type_the_format_cannot_hold_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match=r"a\.exr as uint8.*half, float"):
        write_frame(tmp_path / "a.exr", random_pixels(3), pixel_type="uint8")
    with pytest.raises(ImageIOError, match=r"a\.png as float.*uint8, uint16"):
        write_frame(tmp_path / "a.png", random_pixels(3), pixel_type="float")


def test_like_picks_the_target_formats_default_when_the_source_type_does_not_fit(tmp_path: Path) -> None:
    write_frame(tmp_path / "src.dpx", random_pixels(3), pixel_type="uint10")
    source = read_frame(tmp_path / "src.dpx")
    write_frame(tmp_path / "out.exr", source.pixels, like=source)
    write_frame(tmp_path / "out.dpx", source.pixels, like=source)
    assert read_frame(tmp_path / "out.exr").pixel_type == "half"
    assert read_frame(tmp_path / "out.dpx").pixel_type == "uint10"


def test_metadata_strings_and_floats_are_written_and_oiio_hints_are_not(tmp_path: Path) -> None:
    metadata = {"copycat:model": "upscale.cat", "copycat:step": 1200, "copycat:loss": 0.03125}
    write_frame(tmp_path / "a.exr", random_pixels(3), metadata={**metadata, "oiio:ColorSpace": "sRGB"})
    frame = read_frame(tmp_path / "a.exr")
    assert {k: frame.metadata[k] for k in metadata} == metadata
    assert "oiio:ColorSpace" not in frame.metadata


# ----------------------------------------------------------------------------------------------------------
# Channel specs


AVAILABLE = ("R", "G", "B", "A", "N.x", "N.y", "N.z", "depth.Z", "mask.A")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rgba", ["R", "G", "B", "A"]),
        ("rgb", ["R", "G", "B"]),
        ("RGB", ["R", "G", "B"]),
        ("alpha", ["A"]),
        ("a", ["A"]),
        ("r", ["R"]),
        ("rgba.red", ["R"]),
        ("rgba.alpha", ["A"]),
        ("mask.a", ["mask.A"]),
        ("mask.alpha", ["mask.A"]),
        ("mask", ["mask.A"]),
        ("N", ["N.x", "N.y", "N.z"]),
        ("depth.z", ["depth.Z"]),
        ("R,G,B", ["R", "G", "B"]),
        ("R, G  B", ["R", "G", "B"]),
        (["B", "G", "R"], ["B", "G", "R"]),
        (["rgb", "mask.a"], ["R", "G", "B", "mask.A"]),
    ],
)
def test_channel_specs_resolve_to_the_files_names(spec: str | list[str], expected: list[str]) -> None:
    assert resolve_channels(spec, AVAILABLE) == expected


def test_exact_case_sensitive_names_win_over_tolerant_matches() -> None:
    available = ("A", "a", "mask.A", "mask.a")
    assert resolve_channels("a", available) == ["a"]
    assert resolve_channels("A", available) == ["A"]
    assert resolve_channels("mask.a", available) == ["mask.a"]
    with pytest.raises(ChannelError, match="ambiguous"):
        resolve_channels("alpha", available)


def test_unknown_channel_error_names_the_file_the_channel_and_what_the_file_has() -> None:
    with pytest.raises(ChannelError) as caught:
        resolve_channels("rgba, mask.b", AVAILABLE, path="/shots/a/plate.1001.exr")
    message = str(caught.value)
    assert "/shots/a/plate.1001.exr" in message and "'mask.b'" in message
    assert "R, G, B, A, N.x, N.y, N.z, depth.Z, mask.A" in message


def test_reading_an_unknown_channel_raises_channel_error_naming_the_file(tmp_path: Path) -> None:
    write_frame(tmp_path / "a.exr", random_pixels(3))
    with pytest.raises(ChannelError, match=r"'alpha' \(part of 'rgba'\) in .*a\.exr\. It has: R, G, B\."):
        read_frame(tmp_path / "a.exr", "rgba")


def test_channel_names_must_fit_the_pixels_when_writing(tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match=r"a\.exr.*3 channel names.*4 channels"):
        write_frame(tmp_path / "a.exr", random_pixels(4), "rgb")
    with pytest.raises(ChannelError, match="repeat"):
        write_frame(tmp_path / "a.exr", random_pixels(2), ["a", "alpha"])


# ----------------------------------------------------------------------------------------------------------
# Frame lists


@pytest.mark.parametrize(
    ("text", "frames"),
    [
        ("1001-1005", [1001, 1002, 1003, 1004, 1005]),
        ("1,5,9", [1, 5, 9]),
        ("1-10x4", [1, 5, 9]),
        ("1-10,20,30-40x5", [*range(1, 11), 20, 30, 35, 40]),
        ("5 3 3 1", [1, 3, 5]),
        ("-3--1,2", [-3, -2, -1, 2]),
        ("-2-2", [-2, -1, 0, 1, 2]),
    ],
)
def test_frame_lists_read_like_nukes(text: str, frames: list[int]) -> None:
    assert parse_frame_list(text) == frames


@pytest.mark.parametrize("text", ["", "  ", "1-", "a-b", "10-1", "1-10x0", "1..5", "1-5y2", "1-10-20"])
def test_bad_frame_lists_raise_sequence_error_quoting_the_text_and_the_right_form(text: str) -> None:
    with pytest.raises(SequenceError) as caught:
        parse_frame_list(text)
    assert repr(text) in str(caught.value) and "1001-1100" in str(caught.value)


def test_format_frame_list_is_compact() -> None:
    assert format_frame_list([*range(1, 11), 20]) == "1-10,20"
    assert format_frame_list([1, 5, 9, 13, 14]) == "1-13x4,14"
    assert format_frame_list([3, 1, 2, 2]) == "1-3"
    assert format_frame_list([1, 3]) == "1,3"
    assert format_frame_list([]) == ""


@given(st.lists(st.integers(min_value=-3000, max_value=3000), min_size=1, max_size=60))
def test_frame_list_format_then_parse_gives_back_the_frames(frames: list[int]) -> None:
    text = format_frame_list(frames)
    assert parse_frame_list(text) == sorted(set(frames))
    assert format_frame_list(parse_frame_list(text)) == text


@given(
    st.lists(
        st.tuples(st.integers(-500, 500), st.integers(0, 60), st.integers(1, 7)).map(
            lambda t: f"{t[0]}-{t[0] + t[1]}x{t[2]}"
        ),
        min_size=1,
        max_size=6,
    )
)
def test_parsed_ranges_are_sorted_unique_and_round_trip(items: list[str]) -> None:
    frames = parse_frame_list(",".join(items))
    assert frames == sorted(set(frames))
    assert parse_frame_list(format_frame_list(frames)) == frames


# ----------------------------------------------------------------------------------------------------------
# Sequences


def touch_frames(directory: Path, name: str, frames: list[int], padding: int = 4) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        write_frame(directory / name.replace("#", f"{frame:0{padding}d}"), random_pixels(3, seed=frame % 7))


@pytest.mark.parametrize("spelling", ["shot.####.exr", "shot.%04d.exr", "shot.@@@@.exr"])
def test_all_three_padding_spellings_mean_the_same_sequence(tmp_path: Path, spelling: str) -> None:
    sequence = ImageSequence.parse(tmp_path / spelling)
    assert sequence.pattern == str(tmp_path / "shot.####.exr")
    assert sequence.path(7) == tmp_path / "shot.0007.exr"
    assert sequence.path(12345) == tmp_path / "shot.12345.exr"  # longer than the padding: written in full
    assert sequence.path(-5) == tmp_path / "shot.-005.exr"  # a sign counts toward the width, as printf's


def test_unpadded_and_short_padding_spellings(tmp_path: Path) -> None:
    assert ImageSequence.parse(tmp_path / "a.%d.png").path(7) == tmp_path / "a.7.png"
    assert ImageSequence.parse(tmp_path / "a.#.png").path(1001) == tmp_path / "a.1001.png"
    assert ImageSequence.parse(tmp_path / "a_@@.png").path(3) == tmp_path / "a_03.png"


@pytest.mark.parametrize("spec", ["shot.##.####.exr", "shot.%4d.exr", "shot.#.@@.exr", ""])
def test_bad_sequence_patterns_raise_sequence_error_with_an_example(spec: str) -> None:
    with pytest.raises(SequenceError, match=r"shot\.####\.exr"):
        ImageSequence.parse(spec)


def test_existing_frames_are_discovered_on_disk(tmp_path: Path) -> None:
    touch_frames(tmp_path, "shot.#.exr", [1, 2, 3, 7, 10000])
    (tmp_path / "shot.12.exr").write_bytes(b"")  # wrong padding: not part of shot.####.exr
    (tmp_path / "other.0004.exr").write_bytes(b"")
    sequence = ImageSequence.parse(tmp_path / "shot.####.exr")
    assert sequence.existing_frames() == [1, 2, 3, 7, 10000]
    assert sequence.frames() == [1, 2, 3, 7, 10000]
    assert sequence.frames("1-3") == [1, 2, 3]
    assert sequence.frames([7, 1, 1]) == [1, 7]


def test_negative_frames_are_discovered_in_a_padded_sequence(tmp_path: Path) -> None:
    for frame in (-2, -1, 0, 1):
        write_frame(ImageSequence.parse(tmp_path / "neg.####.exr").path(frame), random_pixels(1))
    assert sorted(os.listdir(tmp_path))[:2] == ["neg.-001.exr", "neg.-002.exr"]
    assert ImageSequence.parse(tmp_path / "neg.####.exr").existing_frames() == [-2, -1, 0, 1]
    assert ImageSequence.parse(tmp_path).existing_frames() == [-2, -1, 0, 1]


def test_missing_frames_are_listed_compactly_with_the_pattern(tmp_path: Path) -> None:
    touch_frames(tmp_path, "shot.#.exr", [1, 2, 5, 6])
    sequence = ImageSequence.parse(tmp_path / "shot.####.exr")
    with pytest.raises(FrameMissingError) as caught:
        sequence.frames("1-8")
    message = str(caught.value)
    assert "Frames 3-4,7-8 are missing" in message and "shot.####.exr" in message
    assert "shot.0003.exr" in message and "1-2,5-6" in message


def test_an_empty_sequence_raises_frame_missing_error_naming_the_pattern(tmp_path: Path) -> None:
    with pytest.raises(FrameMissingError, match=r"No frames of .*shot\.####\.exr"):
        ImageSequence.parse(tmp_path / "shot.####.exr").frames()


def test_a_directory_means_the_one_sequence_inside_it(tmp_path: Path) -> None:
    touch_frames(tmp_path / "plates", "plate_v002.#.exr", [1001, 1002, 1003])
    (tmp_path / "plates" / "notes.txt").write_text("not an image")
    (tmp_path / "plates" / ".plate_v002.1004.exr.tmp-abcd1234.exr").write_bytes(b"")  # a killed write
    sequence = ImageSequence.parse(tmp_path / "plates")
    assert sequence.pattern == str(tmp_path / "plates" / "plate_v002.####.exr")
    assert sequence.frames() == [1001, 1002, 1003]


def test_a_directory_with_an_unpadded_sequence(tmp_path: Path) -> None:
    touch_frames(tmp_path, "a.#.png", [1, 2, 10], padding=1)
    sequence = ImageSequence.parse(tmp_path)
    assert (sequence.padding, sequence.existing_frames()) == (1, [1, 2, 10])


def test_a_directory_holding_several_sequences_is_a_clear_error(tmp_path: Path) -> None:
    touch_frames(tmp_path, "beauty.#.exr", [1, 2])
    touch_frames(tmp_path, "matte.#.exr", [1, 2, 3])
    with pytest.raises(SequenceError) as caught:
        ImageSequence.parse(tmp_path)
    message = str(caught.value)
    assert "2 sequences" in message and "beauty.####.exr (1-2)" in message and "matte.####.exr (1-3)" in message


def test_an_empty_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SequenceError, match="No image files in the directory"):
        ImageSequence.parse(tmp_path)


def test_an_explicit_file_is_a_still_that_answers_for_every_frame(tmp_path: Path) -> None:
    write_frame(tmp_path / "ref.1001.exr", random_pixels(3))
    still = ImageSequence.parse(tmp_path / "ref.1001.exr")
    assert still.padding is None and still.path(5) == tmp_path / "ref.1001.exr"
    assert still.existing_frames() == [1001]
    assert still.frames("1-3") == [1, 2, 3]
    np.testing.assert_array_equal(still.read(2).pixels, read_image(tmp_path / "ref.1001.exr"))


def test_sequence_read_of_a_missing_frame_names_the_frame_and_the_path(tmp_path: Path) -> None:
    sequence = ImageSequence.parse(tmp_path / "shot.####.exr")
    with pytest.raises(FrameMissingError, match=r"Frame 1004 of .*shot\.####\.exr is missing: .*shot\.1004\.exr"):
        sequence.read(1004)


# ----------------------------------------------------------------------------------------------------------
# Bad input


def test_reading_a_missing_file_names_the_path_and_the_frame(tmp_path: Path) -> None:
    with pytest.raises(FrameMissingError, match=r"Frame 1004 is missing: .*shot\.1004\.exr does not exist"):
        read_frame(tmp_path / "shot.1004.exr")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("suffix", [".exr", ".png", ".jpg", ".tif", ".dpx"])
def test_a_truncated_file_raises_image_io_error_saying_it_may_be_damaged(
    tmp_path: Path, suffix: str, keep: float
) -> None:
    whole = tmp_path / f"whole{suffix}"
    write_frame(whole, smooth_pixels())
    data = whole.read_bytes()
    truncated = tmp_path / f"shot.1001{suffix}"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageIOError, match=r"shot\.1001\..*damaged, partly written"):
        read_frame(truncated)


def test_a_file_that_is_not_an_image_raises_image_io_error(tmp_path: Path) -> None:
    (tmp_path / "a.exr").write_bytes(b"this is not an EXR file")
    with pytest.raises(ImageIOError, match=r"a\.exr.*damaged"):
        read_frame(tmp_path / "a.exr")
    with pytest.raises(ImageIOError, match="is a directory"):
        read_frame(tmp_path)


def test_mismatched_pair_sizes_name_both_files_both_sizes_and_the_fix(tmp_path: Path) -> None:
    write_frame(tmp_path / "in.1001.exr", random_pixels(3))
    write_frame(tmp_path / "gt.1001.exr", random_pixels(3, width=W + 1))
    a, b = read_frame(tmp_path / "in.1001.exr"), read_frame(tmp_path / "gt.1001.exr")
    check_same_size(a, a)
    with pytest.raises(ResolutionMismatchError) as caught:
        check_same_size(a, b, frame=1001)
    message = str(caught.value)
    assert "in.1001.exr" in message and "gt.1001.exr" in message
    assert "7×5" in message and "8×5" in message and "frame 1001" in message and "Reformat" in message


def test_every_error_is_a_copycat_error() -> None:
    for error in (ImageIOError, FrameMissingError, ChannelError, ResolutionMismatchError, SequenceError):
        assert issubclass(error, CopyCatError)


# ----------------------------------------------------------------------------------------------------------
# Atomic writes


def test_an_interrupted_write_leaves_the_previous_file_untouched_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "shot.0001.exr"
    write_frame(target, random_pixels(3, seed=1))
    before = target.read_bytes()
    seen: list[str] = []

    def write_half_then_die(out: oiio.ImageOutput, pixels: np.ndarray) -> bool:
        assert out.write_scanline(0, 0, pixels[0])
        seen.extend(os.listdir(tmp_path))
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio, "_write_pixels", write_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_frame(target, random_pixels(3, seed=2))
    temp = [name for name in seen if name != target.name]
    # a dot first and no image extension last: a wildcard Read (*.exr) never picks a leftover up
    assert len(temp) == 1 and temp[0].startswith(".shot.0001.exr.tmp-") and not temp[0].endswith(".exr")
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == [target.name]


def test_a_rewrite_removes_the_temp_files_a_killed_write_left(tmp_path: Path) -> None:
    target = tmp_path / "shot.0001.exr"
    leftovers = [tmp_path / ".shot.0001.exr.tmp-dead", tmp_path / ".shot.0001.exr.tmp-abcd1234.exr"]
    other = tmp_path / ".shot.0002.exr.tmp-beef"  # another frame's: not this write's to remove
    for path in [*leftovers, other]:
        path.write_bytes(b"half a frame")
    write_frame(target, random_pixels(3, seed=1))
    assert sorted(os.listdir(tmp_path)) == sorted([target.name, other.name])


def test_a_failed_write_raises_image_io_error_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match=r"a\.png.*5-channel"):
        write_frame(tmp_path / "a.png", random_pixels(5), ["R", "G", "B", "A", "mask.A"])
    assert os.listdir(tmp_path) == []


def test_writing_creates_missing_directories_and_replaces_an_old_file(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "a.exr"
    assert write_frame(target, random_pixels(3, seed=1)) == target
    write_frame(target, random_pixels(3, seed=2))
    np.testing.assert_allclose(read_image(target), random_pixels(3, seed=2), rtol=1e-3)
    assert os.listdir(target.parent) == ["a.exr"]


def test_an_unwritable_directory_raises_image_io_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where a directory should be")
    with pytest.raises(ImageIOError, match=r"cannot create the directory .*file"):
        write_frame(tmp_path / "file" / "a.exr", random_pixels(3))


def test_an_unknown_extension_raises_image_io_error(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match=r"a\.xyz.*extension '\.xyz'"):
        write_frame(tmp_path / "a.xyz", random_pixels(3))


def test_frame_select_and_fields_describe_the_file(tmp_path: Path) -> None:
    write_frame(tmp_path / "a.exr", random_pixels(4), "rgba")
    frame = read_frame(tmp_path / "a.exr")
    assert isinstance(frame, Frame) and frame.path == tmp_path / "a.exr"
    assert (frame.width, frame.height) == (W, H)
    assert frame.select("rgb").shape == (H, W, 3)
