"""Specification of copycat_nuke.plots: loss curves and contact sheets as PNGs a compositor can read."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from copycat_nuke import contact_sheets, drawing, plots
from copycat_nuke.errors import CopyCatError
from copycat_nuke.plots import (
    contact_sheet,
    difference_image,
    render_loss_curve,
    save_contact_sheet,
    save_loss_curve,
    smooth,
    write_png_atomic,
)

BACKGROUND = np.array([0x26, 0x26, 0x26], dtype=np.uint8)
CURVE_ORANGE = np.array([0xF0, 0xA0, 0x30])


def decaying_loss(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1)
    return steps, (0.004 + 0.25 * np.exp(-steps / (n / 10))) * np.exp(rng.normal(0, 0.25, n))


def orange_pixels(image: np.ndarray) -> int:
    return int(np.sum(np.abs(image.astype(int) - CURVE_ORANGE).max(axis=2) <= 12))


def read_png(path: Path) -> np.ndarray:
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)  # compare straight RGBA as written
    buf = oiio.ImageBuf(str(path), 0, 0, config)
    assert not buf.has_error, buf.geterror()
    return np.asarray(buf.get_pixels(oiio.UINT8))


def tile(h: int, w: int, value: int) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


# --- smooth -------------------------------------------------------------------------------------


def test_smoothness_zero_returns_the_input() -> None:
    values = [0.5, 0.1, 0.9, 0.3]
    np.testing.assert_array_equal(smooth(values, 0.0), values)


@pytest.mark.parametrize("smoothness", [0.0, 0.3, 0.6, 0.99, 1.0])
def test_constant_series_stays_constant(smoothness: float) -> None:
    np.testing.assert_allclose(smooth([0.25] * 50, smoothness), 0.25, rtol=1e-12)


@pytest.mark.parametrize("smoothness", [0.1, 0.6, 0.999])
def test_debiasing_keeps_the_first_value(smoothness: float) -> None:
    assert smooth([3.0, 1.0, 2.0], smoothness)[0] == pytest.approx(3.0)


def test_smooth_matches_hand_computed_debiased_ema() -> None:
    # w = 0.5: running means 0.5, 0.25, 0.125 over debias weights 0.5, 0.75, 0.875.
    np.testing.assert_allclose(smooth([1.0, 0.0, 0.0], 0.5), [1.0, 1 / 3, 1 / 7])


def test_smoothness_one_is_the_running_mean() -> None:
    np.testing.assert_allclose(smooth([1.0, 3.0, 5.0], 1.0), [1.0, 2.0, 3.0])


def test_smooth_of_nothing_is_empty() -> None:
    result = smooth([], 0.6)
    assert result.shape == (0,) and result.dtype == np.float64


@pytest.mark.parametrize("smoothness", [-0.1, 1.5])
def test_smoothness_outside_zero_to_one_is_refused(smoothness: float) -> None:
    with pytest.raises(CopyCatError, match="smoothness"):
        smooth([1.0], smoothness)


# --- loss curve -----------------------------------------------------------------------------------


def test_loss_curve_is_uint8_rgb_of_the_asked_size_with_an_orange_curve() -> None:
    steps, losses = decaying_loss(300)
    image = render_loss_curve(steps, losses, width=640, height=360)
    assert image.shape == (360, 640, 3) and image.dtype == np.uint8
    assert orange_pixels(image) > 200


@pytest.mark.parametrize("log_scale", [True, False])
def test_loss_spanning_many_decades_draws_on_both_scales(log_scale: bool) -> None:
    steps = np.arange(2000)
    losses = np.logspace(1, -5, steps.size)  # 10 down to 1e-5
    image = render_loss_curve(steps, losses, log_scale=log_scale)
    assert orange_pixels(image) > 300


def test_log_axis_labels_every_decade_it_spans() -> None:
    ticks = plots.log_ticks(-5.1, 1.1, length_px=420, min_spacing_px=38)
    assert ticks.labels == ["1e-5", "1e-4", "1e-3", "0.01", "0.1", "1", "10"]
    assert ticks.minor, "2..9 × each decade as unlabelled minor grid lines"


def test_linear_ticks_follow_the_one_two_five_rule() -> None:
    values, step = plots.linear_ticks(0.0, 0.43, 9)
    assert step == pytest.approx(0.05)
    assert plots.linear_labels(values, step)[:3] == ["0", "0.05", "0.10"]


def test_step_labels_are_compact() -> None:
    assert [plots.format_step(v) for v in (0, 500, 1000, 2500, 100000)] == ["0", "500", "1k", "2.5k", "100k"]


@pytest.mark.parametrize(
    ("steps", "losses"),
    [([], []), ([0], [0.5]), ([100, 200], [0.5, 0.2]), (np.arange(50), np.full(50, 0.05))],
    ids=["empty", "one point", "two points", "constant"],
)
@pytest.mark.parametrize("log_scale", [True, False])
def test_degenerate_curves_render(steps: list[float], losses: list[float], log_scale: bool) -> None:
    image = render_loss_curve(steps, losses, log_scale=log_scale, width=480, height=270)
    assert image.shape == (270, 480, 3)
    if len(steps):
        assert orange_pixels(image) > 3  # a single point is still a visible dot


@pytest.mark.parametrize("log_scale", [True, False])
def test_nothing_is_drawn_in_the_outer_margin(log_scale: bool) -> None:
    """Labels are clamped inside the image: the outermost pixels stay plain background."""
    steps = np.arange(0, 123457, 7)
    image = render_loss_curve(steps, np.logspace(1, -5, steps.size), log_scale=log_scale, width=480, height=270)
    for edge in (image[:4], image[-4:], image[:, :4], image[:, -4:]):
        assert np.all(edge == BACKGROUND)


def test_fifty_thousand_points_render_quickly() -> None:
    steps, losses = decaying_loss(50_000)
    start = time.perf_counter()
    image = render_loss_curve(steps, losses, smoothness=0.99)
    assert time.perf_counter() - start < 2.0
    assert orange_pixels(image) > 300


def test_extra_series_get_their_own_colour() -> None:
    steps, losses = decaying_loss(500)
    alone = render_loss_curve(steps, losses)
    compared = render_loss_curve(steps, losses, series={"run B": (steps, losses * 2)})
    blue = np.array([0x4F, 0xB3, 0xE8])
    assert np.sum(np.abs(compared.astype(int) - blue).max(axis=2) <= 12) > 100
    assert np.sum(np.abs(alone.astype(int) - blue).max(axis=2) <= 12) == 0


def test_log_scale_falls_back_to_linear_when_no_loss_is_positive() -> None:
    image = render_loss_curve([0, 1, 2], [0.0, 0.0, 0.0], log_scale=True)
    assert orange_pixels(image) > 50


def test_nan_losses_are_skipped() -> None:
    image = render_loss_curve([0, 1, 2, 3], [0.5, float("nan"), 0.3, 0.2])
    assert orange_pixels(image) > 50


def test_mismatched_steps_and_losses_are_refused() -> None:
    with pytest.raises(CopyCatError, match="3 steps but 2 loss values"):
        render_loss_curve([0, 1, 2], [0.5, 0.4])


def test_too_small_an_image_is_refused() -> None:
    with pytest.raises(CopyCatError, match="at least 240×160"):
        render_loss_curve([0, 1], [0.5, 0.4], width=100, height=60)


def test_saved_loss_curve_reads_back_at_its_size(tmp_path: Path) -> None:
    steps, losses = decaying_loss(200)
    path = save_loss_curve(tmp_path / "plots" / "loss.png", steps, losses, width=480, height=270)
    assert path == tmp_path / "plots" / "loss.png"
    assert read_png(path).shape == (270, 480, 3)
    assert [p.name for p in path.parent.iterdir()] == ["loss.png"], "no temporary file left behind"


# --- atomic writes --------------------------------------------------------------------------------


def test_failed_write_leaves_neither_target_nor_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_written(path: Path, image: np.ndarray) -> None:
        path.write_bytes(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr(drawing, "_write_png", half_written)
    with pytest.raises(CopyCatError, match="disk full"):
        write_png_atomic(tmp_path / "loss.png", tile(4, 4, 0))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_png_atomic(tmp_path / "loss.png", tile(4, 6, 200))

    def refuse(src: object, dst: object) -> None:
        raise OSError("read-only")

    monkeypatch.setattr(drawing.os, "replace", refuse)
    with pytest.raises(CopyCatError, match="read-only"):
        write_png_atomic(path, tile(8, 8, 0))
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]
    assert read_png(path).shape == (4, 6, 3)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)])
def test_png_round_trips_pixels(tmp_path: Path, shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    back = read_png(write_png_atomic(tmp_path / "x.png", image))
    np.testing.assert_array_equal(back.reshape(shape), image)


def test_only_uint8_images_are_written(tmp_path: Path) -> None:
    with pytest.raises(CopyCatError, match="uint8"):
        write_png_atomic(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))


# --- contact sheet --------------------------------------------------------------------------------


def test_contact_sheet_without_titles_is_tiles_gaps_and_margins() -> None:
    rows = [[tile(20, 30, 10), tile(20, 30, 20), tile(20, 30, 30)]] * 2
    sheet = contact_sheet(rows, column_titles=(), gap=4)
    margin = 8
    assert sheet.shape == (margin + 20 + 4 + 20 + margin, margin + 3 * 30 + 2 * 4 + margin, 3)
    assert sheet.dtype == np.uint8
    np.testing.assert_array_equal(sheet[margin : margin + 20, margin + 34 : margin + 64], 20)  # row 1, col 2
    np.testing.assert_array_equal(sheet[margin + 24 : margin + 44, margin + 68 : margin + 98], 30)  # row 2, col 3


def test_titles_add_a_header_strip_and_a_row_label_column() -> None:
    rows = [[tile(20, 40, 10)] * 4, [tile(24, 40, 10)] * 4]
    plain = contact_sheet(rows, column_titles=())
    titled = contact_sheet(rows, row_titles=["frame 1001", "frame 1050"])
    assert titled.shape[0] > plain.shape[0] and titled.shape[1] > plain.shape[1]
    header = titled[: titled.shape[0] - plain.shape[0] + 8]
    assert header.max() > 120, "column titles are drawn in light grey on the header strip"
    assert np.all(titled[-8:] == BACKGROUND)


def test_rows_of_different_width_are_padded_with_background() -> None:
    sheet = contact_sheet([[tile(16, 64, 255)], [tile(16, 32, 255)]], column_titles=(), gap=4)
    assert sheet.shape == (8 + 16 + 4 + 16 + 8, 8 + 64 + 8, 3)
    np.testing.assert_array_equal(sheet[28:44, 40:72], np.broadcast_to(BACKGROUND, (16, 32, 3)))


def test_long_column_titles_are_shortened_to_their_column() -> None:
    assert contact_sheets._fit_text("a very long column title", 12, 60).endswith("...")
    assert plots._text_width(contact_sheets._fit_text("a very long column title", 12, 60), 12) <= 60
    contact_sheet([[tile(16, 60, 0)]], column_titles=["a very long column title"])


def test_tiles_in_a_row_must_share_a_height() -> None:
    with pytest.raises(CopyCatError, match="share a height"):
        contact_sheet([[tile(16, 16, 0), tile(20, 16, 0)]])


def test_float_tiles_are_refused_with_advice() -> None:
    with pytest.raises(CopyCatError, match="display space"):
        contact_sheet([[np.zeros((8, 8, 3), np.float32)]])


def test_saved_contact_sheet_reads_back(tmp_path: Path) -> None:
    rows = [[tile(32, 48, v) for v in (40, 80, 120, 160)]] * 2
    sheet = contact_sheet(rows, row_titles=["frame 1", "frame 2"])
    path = save_contact_sheet(tmp_path / "sheet.png", rows, row_titles=["frame 1", "frame 2"])
    np.testing.assert_array_equal(read_png(path), sheet)


# --- difference image -----------------------------------------------------------------------------


def test_identical_images_have_a_black_difference() -> None:
    a = np.random.default_rng(0).random((6, 5, 3), dtype=np.float32)
    diff = difference_image(a, a)
    assert diff.shape == (6, 5, 3) and diff.dtype == np.uint8 and diff.max() == 0


def test_difference_of_one_over_gain_is_full_scale() -> None:
    a = np.zeros((2, 2, 3), np.float32)
    np.testing.assert_array_equal(difference_image(a, a + 0.25, gain=4.0, heat=False), 255)
    assert difference_image(a, a + 0.25, gain=4.0).min() >= 230  # the heat ramp ends near white


def test_heat_colouring_is_red_for_small_errors() -> None:
    a = np.zeros((1, 1, 3), np.float32)
    r, g, b = difference_image(a, a + 0.05, gain=4.0)[0, 0].astype(int)
    assert r > g and r > b


def test_difference_needs_matching_shapes() -> None:
    with pytest.raises(CopyCatError, match="same shape"):
        difference_image(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
