"""Specification of copycat_nuke.transfer: the linear <-> working-space transfer, sanitize, previews."""

from __future__ import annotations

import inspect
import io
import json
import math
import warnings
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from copycat_nuke import transfer as tr
from copycat_nuke.errors import ConfigError, CopyCatError, ImageIOError
from copycat_nuke.transfer import (
    HALF_MAX,
    SLOG_A,
    SLOG_K,
    SLOG_LOG_MAX,
    TRANSFERS,
    NonFiniteValuesWarning,
    Transfer,
    sanitize,
    slog_from_working_np,
    slog_from_working_torch,
    slog_to_working_np,
    slog_to_working_torch,
    to_display,
)

# Round-trip bounds this suite guarantees (docs/transfer.md quotes them):
F32_RTOL = 4e-6  # float32; measured worst case 7.9e-7 over ±[1e-6, 1e4], 1.5e-6 over every finite half
F64_RTOL = 1e-13  # float64
ATOL = 1e-36  # only matters for float32 subnormals (|x| < 1.2e-38), where precision runs out anyway
BF16_RTOL = 0.04  # bfloat16 in and out (8-bit mantissa); measured worst case 3.0% at 1e4

LIMIT = 1e4
finite_in_range = st.floats(-LIMIT, LIMIT, allow_nan=False, allow_infinity=False)
f32_arrays = hnp.arrays(
    np.float32, st.integers(1, 64), elements=st.floats(-LIMIT, LIMIT, width=32, allow_subnormal=True)
)
hypothesis_settings = settings(max_examples=150, deadline=None)
# torch 2.13 deprecates torch.jit.script/save/load, but Nuke's CatFileCreator takes TorchScript
ignore_jit_deprecation = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")


def assert_round_trip(x: np.ndarray, back: np.ndarray, rtol: float) -> None:
    x64, back64 = x.astype(np.float64), back.astype(np.float64)
    err = np.abs(back64 - x64)
    allowed = rtol * np.abs(x64) + ATOL
    worst = int(np.argmax(err - allowed))
    assert np.all(err <= allowed), f"x={x64[worst]!r} came back as {back64[worst]!r}"


# --- the curve ---------------------------------------------------------------------------------------


@hypothesis_settings
@given(st.lists(finite_in_range, min_size=1, max_size=32))
def test_slog_round_trip_is_exact_in_float64(values: list[float]) -> None:
    x = np.asarray(values, np.float64)
    y = slog_to_working_np(x)
    assert y.dtype == np.float64
    assert_round_trip(x, slog_from_working_np(y), F64_RTOL)


@hypothesis_settings
@given(f32_arrays)
def test_slog_round_trip_in_float32_is_within_4e_6_relative(x: np.ndarray) -> None:
    y = slog_to_working_np(x)
    assert y.dtype == np.float32
    assert_round_trip(x, slog_from_working_np(y), F32_RTOL)


@hypothesis_settings
@given(f32_arrays)
def test_torch_round_trip_in_float32_is_within_4e_6_relative(x: np.ndarray) -> None:
    t = torch.from_numpy(x)
    y = slog_to_working_torch(t)
    assert y.dtype == torch.float32
    assert_round_trip(x, slog_from_working_torch(y).numpy(), F32_RTOL)


def test_round_trip_holds_on_a_dense_grid_from_1e_minus_6_to_1e4_both_signs() -> None:
    mags = np.logspace(-6, 4, 100_001)
    for dtype, rtol in ((np.float32, F32_RTOL), (np.float64, F64_RTOL)):
        x = np.concatenate([-mags[::-1], [0.0], mags]).astype(dtype)
        assert_round_trip(x, slog_from_working_np(slog_to_working_np(x)), rtol)


@hypothesis_settings
@given(finite_in_range, finite_in_range)
def test_slog_is_monotonic(a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    y64 = slog_to_working_np(np.asarray([lo, hi]))
    y32 = slog_to_working_np(np.asarray([lo, hi], np.float32))
    assert y64[0] <= y64[1] and y32[0] <= y32[1]
    if lo < hi:
        assert y64[0] < y64[1]


def test_slog_is_strictly_increasing_and_odd_on_a_grid() -> None:
    mags = np.logspace(-8, 6, 20_001)
    x = np.concatenate([-mags[::-1], [0.0], mags])
    y = slog_to_working_np(x)
    assert np.all(np.diff(y) > 0)
    np.testing.assert_array_equal(y, -y[::-1])


def test_typical_values_land_where_the_docs_say() -> None:
    y = slog_to_working_np(np.asarray([0.0, 0.18, 1.0, 1e4, -1e4], np.float64))
    assert y[0] == 0.0
    assert y[1] == pytest.approx(0.4206, abs=1e-4)  # mid-grey roughly mid-range
    assert y[2] == pytest.approx(0.6593, abs=1e-4)  # diffuse white
    assert y[3] == pytest.approx(1.9736, abs=1e-4)  # 1e4 stays small
    assert y[4] == -y[3]
    assert (SLOG_A, SLOG_K) == (100.0, 7.0)


def test_signed_zero_and_nan_pass_through() -> None:
    y = slog_to_working_np(np.asarray([-0.0, np.nan], np.float32))
    assert y[0] == 0.0 and math.copysign(1.0, float(y[0])) == -1.0
    assert np.isnan(y[1])
    assert np.isnan(slog_from_working_np(y)[1])


def test_infinities_and_huge_values_saturate_instead_of_overflowing() -> None:
    x = np.asarray([np.inf, -np.inf, 3e38, -1.7e38, 1e30], np.float32)
    y = slog_to_working_np(x)
    assert np.all(np.isfinite(y))
    assert np.abs(y).max() == pytest.approx(SLOG_LOG_MAX / SLOG_K, rel=1e-6)
    back = slog_from_working_np(np.asarray([1e30, -np.inf, 50.0], np.float32))
    assert np.all(np.isfinite(back))
    t = slog_to_working_torch(torch.from_numpy(x))
    assert torch.isfinite(t).all()


def test_integer_and_half_inputs_come_back_as_float32_in_numpy() -> None:
    assert slog_to_working_np(np.asarray([0, 1, 2])).dtype == np.float32
    assert slog_to_working_np(np.asarray([1.0], np.float16)).dtype == np.float32
    assert slog_to_working_torch(torch.tensor([0, 1, 2])).dtype == torch.float32


# --- torch side ---------------------------------------------------------------------------------------


@hypothesis_settings
@given(f32_arrays)
def test_torch_and_numpy_agree_to_one_ulp_or_so(x: np.ndarray) -> None:
    y_np = slog_to_working_np(x)
    y_t = slog_to_working_torch(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y_t, y_np, rtol=1e-6, atol=1e-37)
    np.testing.assert_allclose(
        slog_from_working_torch(torch.from_numpy(y_np)).numpy(),
        slog_from_working_np(y_np),
        rtol=2e-6,
        atol=1e-37,
    )


def test_torch_keeps_shape_dtype_and_device_of_nchw_tensors() -> None:
    x = torch.linspace(-100, 100, 2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    y = slog_to_working_torch(x)
    assert y.shape == x.shape and y.dtype == torch.float64 and y.device == x.device
    torch.testing.assert_close(slog_from_working_torch(y), x, rtol=F64_RTOL, atol=0.0)


@ignore_jit_deprecation
@pytest.mark.parametrize(
    "fn",
    [
        tr.slog_to_working_torch,
        tr.slog_from_working_torch,
        tr.linear_to_working_torch,
        tr.linear_from_working_torch,
        tr.nan_to_num_torch,
    ],
)
def test_torch_functions_script_and_match_eager(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    scripted = torch.jit.script(fn)
    x = torch.tensor([[-1e4, -1.0, -1e-3, 0.0, 0.18, 1.0, 1e4, float("nan"), float("inf")]])
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        torch.testing.assert_close(scripted(x.to(dtype)), fn(x.to(dtype)), rtol=0, atol=0, equal_nan=True)


@ignore_jit_deprecation
@pytest.mark.parametrize("name", sorted(TRANSFERS))
def test_transfer_modules_script_and_round_trip(name: str) -> None:
    transfer = Transfer(name)
    to_working = torch.jit.script(transfer.torch_module())
    from_working = torch.jit.script(transfer.torch_module(inverse=True))
    x = torch.linspace(-1e4, 1e4, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    y = to_working(x)
    torch.testing.assert_close(y, transfer.to_working(x), rtol=0, atol=0)
    torch.testing.assert_close(from_working(y), x, rtol=F32_RTOL, atol=ATOL)


@ignore_jit_deprecation
def test_a_scripted_model_embedding_the_transfer_saves_loads_and_matches_eager() -> None:
    transfer = Transfer()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        transfer.torch_module(), torch.nn.Conv2d(3, 3, 3, padding=1), transfer.torch_module(inverse=True)
    )
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.rand(1, 3, 16, 16) * 100 - 10  # linear values, negative and above 1, as Nuke sends them
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-6, atol=1e-6)


def test_the_literals_torchscript_needs_match_the_module_constants() -> None:
    # TorchScript cannot read module globals, so the torch functions spell the constants out
    source = inspect.getsource(tr.slog_to_working_torch) + inspect.getsource(tr.slog_from_working_torch)
    assert f"max={SLOG_LOG_MAX!r}" in source
    assert repr(HALF_MAX) in inspect.getsource(tr.nan_to_num_torch)
    assert repr(HALF_MAX) in inspect.getsource(tr.slog_from_working_torch)


def test_bfloat16_round_trip_is_within_the_documented_4_percent() -> None:
    mags = torch.logspace(-6, 4, 2001, dtype=torch.float64)
    x = torch.cat([-mags.flip(0), mags]).to(torch.bfloat16)
    y = slog_to_working_torch(x)
    assert y.dtype == torch.bfloat16
    back = slog_from_working_torch(y).double()
    rel = ((back - x.double()).abs() / x.double().abs()).max().item()
    assert rel <= BF16_RTOL
    # and the working values are one bfloat16 rounding away from the float32 ones
    torch.testing.assert_close(y.float(), slog_to_working_torch(x.float()), rtol=2**-8, atol=0)


def test_float16_output_saturates_at_half_max_rather_than_inf() -> None:
    y = torch.tensor([-5.0, 1.9736, 5.0], dtype=torch.float16)
    x = slog_from_working_torch(y)
    assert x.dtype == torch.float16 and torch.isfinite(x).all()
    assert x[0].item() == -HALF_MAX and x[2].item() == HALF_MAX


# --- the registry and the manifest --------------------------------------------------------------------


def test_default_transfer_is_slog_with_its_parameters() -> None:
    transfer = Transfer()
    assert transfer.name == tr.DEFAULT_TRANSFER == "slog"
    assert dict(transfer.params) == {"a": SLOG_A, "k": SLOG_K}


def test_manifest_dict_round_trips_through_json() -> None:
    for transfer in (Transfer(), Transfer("slog", {"a": 50, "k": 6.5}), Transfer("linear")):
        data = json.loads(json.dumps(transfer.to_dict()))
        again = Transfer.from_dict(data)
        assert again == transfer and hash(again) == hash(transfer)
    assert Transfer("slog", {"a": 50}).to_dict() == {"name": "slog", "params": {"a": 50.0, "k": SLOG_K}}


def test_missing_params_take_the_defaults() -> None:
    assert Transfer.from_dict({"name": "slog"}) == Transfer()
    assert Transfer.from_dict({"name": "linear", "params": None}) == Transfer("linear")


def test_unknown_transfer_name_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown transfer 'srgb'; known transfers: linear, slog"):
        Transfer.from_dict({"name": "srgb", "params": {}})
    assert issubclass(ConfigError, CopyCatError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "slog", "params": {"b": 1.0}}, r"has no parameter b; it takes: a, k"),
        ({"name": "linear", "params": {"a": 1.0}}, r"has no parameter a; it takes: none"),
        ({"name": "slog", "params": {"a": float("nan")}}, r"'a' must be a finite number"),
        ({"name": "slog", "params": {"k": "7"}}, r"'k' must be a finite number"),
        ({"name": "slog", "params": {"k": True}}, r"'k' must be a finite number"),
        ({"name": "slog", "params": {"a": -1.0}}, r"'a' = -1.0 is outside \[0.001, 1e\+06\]"),
        ({"name": "slog", "params": [1, 2]}, r"params must be a mapping"),
        ({"params": {}}, r"has no 'name'"),
        ({"name": "slog", "extra": 1}, r"unknown keys extra"),
        ({"name": 3}, r"unknown transfer 3"),
        ("slog", r"must be a mapping"),
    ],
)
def test_bad_manifest_entries_are_rejected_with_a_reason(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Transfer.from_dict(data)  # type: ignore[arg-type]


def test_transfer_params_are_read_only() -> None:
    transfer = Transfer()
    with pytest.raises(TypeError):
        transfer.params["a"] = 1.0  # type: ignore[index]


def test_transfer_object_takes_numpy_or_torch_and_returns_the_same_kind() -> None:
    transfer = Transfer("slog", {"a": 10.0, "k": 4.0})
    x = np.asarray([[[-2.0, 0.0, 0.5]]], np.float32)
    y = transfer.to_working(x)
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, np.sign(x) * np.log1p(10 * np.abs(x)) / 4, rtol=1e-6)
    t = transfer.to_working(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(transfer.from_working(t).numpy(), x, rtol=F32_RTOL)


def test_linear_transfer_is_the_identity_and_copies_numpy_input() -> None:
    transfer = Transfer("linear")
    x = np.asarray([-3.0, 0.0, 1e4], np.float32)
    y = transfer.to_working(x)
    np.testing.assert_array_equal(y, x)
    assert y is not x
    np.testing.assert_array_equal(transfer.from_working(y), x)


# --- NaN / Inf ---------------------------------------------------------------------------------------


def test_sanitize_replaces_and_counts_nan_and_inf() -> None:
    x = np.zeros((4, 4, 3), np.float32)
    x[0, 0, :] = np.nan  # 3 NaN
    x[1, 1, 0] = np.inf
    x[2, 2, 1] = -np.inf
    original = x.copy()
    with pytest.warns(NonFiniteValuesWarning, match=r"replaced 3 NaN and 2 Inf values in frame 1001") as caught:
        clean = sanitize(x, "frame 1001")
    assert "NaN -> 0" in str(caught[0].message)
    assert clean.dtype == np.float32 and np.isfinite(clean).all()
    assert clean[0, 0, 0] == 0.0 and clean[1, 1, 0] == HALF_MAX and clean[2, 2, 1] == -HALF_MAX
    np.testing.assert_array_equal(x, original)  # the caller's array is left alone


def test_sanitize_of_clean_data_is_silent_and_copies_nothing() -> None:
    x = np.ones((2, 2, 3), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sanitize(x, "clean") is x
        ints = np.arange(4)
        assert sanitize(ints, "ints") is ints


def test_sanitize_works_on_tensors_too() -> None:
    t = torch.tensor([float("nan"), float("inf"), 1.0, float("nan")], dtype=torch.bfloat16)
    with pytest.warns(NonFiniteValuesWarning, match=r"replaced 2 NaN and 1 Inf values in batch"):
        clean = sanitize(t, "batch")
    assert clean.dtype == torch.bfloat16 and torch.isfinite(clean).all()
    assert clean[0].item() == 0.0


# --- previews ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1), (4, 5, 2), (4, 5, 3), (4, 5, 4), (4, 5, 7)])
def test_to_display_gives_hxwx3_uint8_for_any_channel_count(shape: tuple[int, ...]) -> None:
    image = np.full(shape, 0.18, np.float32)
    out = to_display(image)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert np.all(out == 118)


def test_to_display_known_srgb_values_and_clipping() -> None:
    values = np.asarray([0.0, 0.18, 1.0, 7.5, -0.3, np.nan, np.inf], np.float32)
    out = to_display(values[None, :, None])
    assert out[0, :, 0].tolist() == [0, 118, 255, 255, 0, 0, 255]


def test_to_display_grey_alpha_shows_grey_and_many_channels_show_the_first_three() -> None:
    grey_alpha = np.stack([np.full((2, 2), 1.0), np.zeros((2, 2))], axis=-1).astype(np.float32)
    assert np.all(to_display(grey_alpha) == 255)
    rgbaz = np.zeros((1, 1, 5), np.float32)
    rgbaz[..., 1] = 1.0
    rgbaz[..., 4] = 1.0  # depth must not show
    assert to_display(rgbaz)[0, 0].tolist() == [0, 255, 0]


@pytest.mark.parametrize(
    ("view", "expected"), [("sRGB", 118), ("srgb", 118), ("rec709", 104), ("Gamma2.2", 117), ("raw", 46)]
)
def test_to_display_views(view: str, expected: int) -> None:
    assert to_display(np.full((1, 1, 3), 0.18, np.float32), view=view)[0, 0, 0] == expected


def test_to_display_unknown_view_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown preview view 'log'; choose one of: sRGB, rec709"):
        to_display(np.zeros((1, 1, 3), np.float32), view="log")


def test_to_display_rejects_arrays_that_are_not_images() -> None:
    with pytest.raises(ImageIOError, match=r"H×W or H×W×C"):
        to_display(np.zeros((2, 2, 2, 3), np.float32))
    with pytest.raises(ImageIOError):
        to_display(np.zeros((2, 2, 0), np.float32))


def test_ocio_path_from_linear_rec709_matches_the_builtin_path() -> None:
    image = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32) * 1.2
    plain = to_display(image).astype(int)
    via_ocio = to_display(image, colorspace_in="lin_rec709").astype(int)
    assert np.abs(plain - via_ocio).max() <= 1


def test_ocio_path_converts_acescg_to_rec709_primaries() -> None:
    image = np.zeros((1, 2, 3), np.float32)
    image[0, 0] = 0.18  # grey is grey in every RGB space with the same white point
    image[0, 1] = (0.5, 0.0, 0.0)  # ACEScg red is more saturated than Rec.709 red: G and B go negative
    out = to_display(image, colorspace_in="ACEScg")
    assert out[0, 0].tolist() == [118, 118, 118]
    assert out[0, 1, 0] > to_display(image[:, 1:])[0, 0, 0]  # ... and R above 0.5
    assert out[0, 1, 1] == 0 and out[0, 1, 2] == 0


def test_ocio_unknown_colourspace_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown colour space 'ACEScg2'.*ACEScg.*Linear Rec.709"):
        to_display(np.zeros((1, 1, 3), np.float32), colorspace_in="ACEScg2")
    assert len(tr.ocio_colorspace_names()) >= 20
