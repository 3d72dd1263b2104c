"""Shipped-network recipes: deterministic pairs, sane blur kernels, a build that records its recipe and
installs only when asked, and clear errors when something is missing."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from copycat_nuke import catfile, pretrained
from copycat_nuke.errors import ConfigError, CopyCatError
from copycat_nuke.pretrained import build


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny tensors gain nothing from a second thread on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def textured(height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """Linear float32 H×W×3 with sharp 4-pixel blocks: plenty of detail for a blur to remove."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 4 + 1, width // 4 + 1, 3), dtype=np.float32)
    return np.ascontiguousarray(coarse.repeat(4, 0).repeat(4, 1)[:height, :width])


def gradient_energy(image: np.ndarray) -> float:
    return float(np.mean(np.diff(image, axis=0) ** 2) + np.mean(np.diff(image, axis=1) ** 2))


def quick(recipe: build.Recipe, **train: Any) -> build.Recipe:
    """The recipe with tiny training settings (same name and SHA-256)."""
    return replace(recipe, train={**recipe.train, **train})


# ---------------------------------------------------------------------------------------------- recipes
def test_both_shipped_recipes_load_with_their_kind_scale_and_sha256():
    upscale, deblur = build.load_recipe("upscale"), build.load_recipe("deblur")
    assert (upscale.name, upscale.kind, upscale.scale) == ("upscale", "upscale", 2)
    assert (deblur.name, deblur.kind, deblur.scale) == ("deblur", "deblur", 1)
    for recipe in (upscale, deblur):
        assert recipe.images and recipe.train["steps"] > 0 and "seed" in recipe.train
        assert recipe.sha256 == hashlib.sha256((build.RECIPES / f"{recipe.name}.yaml").read_bytes()).hexdigest()
        # The shipped networks were trained at full resolution with equal level weights and no gradient
        # guard, before any of them was a setting: the recipes must say so to rebuild what ships.
        assert recipe.train["multi_resolution"] is False and recipe.train["level_weights"] == "equal"
        assert recipe.train["gradient_clip"] == 0
        shipped = catfile.load_cat(pretrained.shipped_model(recipe.name)).manifest.config
        # (They predate the settings: a manifest without them was trained the old way.)
        assert shipped.get("multi_resolution", False) is False and shipped.get("level_weights", "equal") == "equal"
        assert shipped.get("gradient_clip", 0) == 0
    assert deblur.blur["variants"] >= 1
    assert set(pretrained.SHIPPED) == {"upscale", "deblur"}


def test_an_unknown_recipe_names_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"'sharpen'.*deblur, upscale"):
        build.load_recipe("sharpen")


def test_a_recipe_without_a_valid_kind_is_refused(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text("name: odd\nkind: denoise\nimages: []\ntrain: {steps: 1}\n")
    with pytest.raises(ConfigError, match="kind 'upscale' or 'deblur'"):
        build.load_recipe(path)


# ------------------------------------------------------------------------------------------------ pairs
def test_upscale_pairs_are_half_size_inputs_of_the_even_cropped_truth_and_deterministic():
    recipe = build.load_recipe("upscale")
    images = [("a", textured(64, 66)), ("odd", textured(65, 67, seed=1))]
    pairs = build.make_pairs(recipe, images)
    assert len(pairs) == 4  # filtered in linear light, and on the sRGB-encoded values
    assert [(p[0].shape, p[1].shape) for p in pairs] == [
        ((32, 33, 3), (64, 66, 3)),
        ((32, 33, 3), (64, 66, 3)),
        ((32, 33, 3), (64, 66, 3)),
        ((32, 33, 3), (64, 66, 3)),
    ]
    assert np.array_equal(pairs[2][1], images[1][1][:64, :66])
    assert not np.array_equal(pairs[0][0], pairs[1][0])
    again = build.make_pairs(recipe, images)
    assert all(np.array_equal(a, b) for pair, other in zip(pairs, again) for a, b in zip(pair, other))


def test_deblur_pairs_are_blurred_copies_of_the_truth_deterministic_for_the_seed():
    recipe = build.load_recipe("deblur")
    image = textured()
    pairs = build.make_pairs(recipe, [("a", image)])
    assert len(pairs) == recipe.blur["variants"]
    for blurred, truth in pairs:
        assert blurred.shape == truth.shape == image.shape and blurred.dtype == np.float32
        assert np.array_equal(truth, image)
        assert gradient_energy(blurred) < 0.8 * gradient_energy(truth)
    again = build.make_pairs(recipe, [("a", image)])
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(pairs, again))
    reseeded = build.make_pairs(quick(recipe, seed=recipe.train["seed"] + 1), [("a", image)])
    assert not np.array_equal(pairs[0][0], reseeded[0][0])


@pytest.mark.parametrize("length", [3.0, 12.5, 31.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_motion_kernels_are_odd_sized_non_negative_and_normalised(length, seed):
    kernel = build.motion_kernel(np.random.default_rng(seed), length)
    assert kernel.ndim == 2 and kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.min() >= 0 and abs(float(kernel.sum()) - 1) < 1e-5
    assert kernel.shape[0] <= length + 5  # the trajectory is about ``length`` pixels long


@pytest.mark.parametrize("radius", [1.0, 2.5, 6.0])
def test_defocus_kernels_are_odd_symmetric_discs_and_normalised(radius):
    kernel = build.defocus_kernel(radius)
    assert kernel.shape == (2 * int(np.ceil(radius)) + 1,) * 2
    assert abs(float(kernel.sum()) - 1) < 1e-5 and kernel.min() >= 0
    assert np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1]) and np.allclose(kernel, kernel[:, ::-1])
    assert kernel[kernel.shape[0] // 2, kernel.shape[1] // 2] == kernel.max()


def test_blur_keeps_flat_colour_and_a_unit_kernel_keeps_the_image():
    flat = np.full((20, 24, 3), 0.3, np.float32)
    assert np.allclose(build.blur(flat, build.defocus_kernel(3.0)), flat, atol=1e-6)
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    image = textured(20, 24)
    assert np.allclose(build.blur(image, delta), image, atol=1e-6)


def test_downscale_halves_the_frame_and_keeps_flat_colour_in_either_convention():
    flat = np.full((16, 20, 3), 0.18, np.float32)
    for encoded in (False, True):
        small = build.downscale(flat, 2, encoded=encoded)
        assert small.shape == (8, 10, 3) and np.allclose(small, 0.18, atol=1e-5)


# ------------------------------------------------------------------------------------------------ build
@pytest.fixture
def fake_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ``install`` writes, redirected into tmp_path; the real shipped files are never touched."""
    target_dir = tmp_path / "installed"
    target_dir.mkdir()
    monkeypatch.setattr(build, "shipped_model", lambda name: target_dir / f"{name}.cat")
    return target_dir


def _state(path: Path) -> tuple[bool, int]:
    return (path.is_file(), path.stat().st_mtime_ns if path.is_file() else 0)


@pytest.mark.parametrize(("name", "crop"), [("upscale", 16), ("deblur", 32)])
def test_build_writes_a_cat_that_records_its_recipe_and_leaves_the_shipped_file_alone(
    tmp_path, fake_shipped, name, crop
):
    real = pretrained.shipped_model(name)
    before = _state(real)
    recipe = quick(build.load_recipe(name), batch_size=2, crop_size=crop)
    path = build.build(recipe, tmp_path / "out", steps=2, images=[("a", textured())], device="cpu")
    assert path == tmp_path / "out" / f"{name}.cat"
    manifest = catfile.read_manifest(path)
    assert manifest.kind == "model" and manifest.scale == recipe.scale
    assert manifest.training["recipe"] == name and manifest.training["recipe_sha256"] == recipe.sha256
    assert manifest.training["steps"] == 2 and manifest.training["data"] == "test images"
    assert manifest.training["seconds"] > 0 and manifest.training["hardware"]
    assert manifest.config["out"] == "" and manifest.config["input"].startswith(f"recipe:{name}")
    assert not (fake_shipped / f"{name}.cat").exists()
    assert _state(real) == before


def test_build_with_install_replaces_the_shipped_file(tmp_path, fake_shipped):
    recipe = quick(build.load_recipe("upscale"), batch_size=2, crop_size=16)
    path = build.build(recipe, tmp_path / "out", steps=1, images=[("a", textured())], install=True, device="cpu")
    installed = fake_shipped / "upscale.cat"
    assert installed.read_bytes() == path.read_bytes()
    assert not list(fake_shipped.glob("*.partial"))


# ------------------------------------------------------------------------------------------ photographs
@pytest.fixture
def no_skimage(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "skimage" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_without_scikit_image_the_photographs_are_a_clear_error(no_skimage, tmp_path):
    with pytest.raises(CopyCatError, match="pip install scikit-image"):
        build.photographs(["astronaut.png"])
    with pytest.raises(CopyCatError, match="pip install scikit-image"):
        build.build("upscale", tmp_path / "out", steps=1)
    assert not (tmp_path / "out").exists()


def test_the_command_line_reports_a_missing_scikit_image_and_exits_2(no_skimage, tmp_path, capsys):
    assert build.main(["deblur", "--out", str(tmp_path / "out"), "--steps", "1"]) == 2
    assert "pip install scikit-image" in capsys.readouterr().err


def test_a_missing_photograph_is_named(tmp_path):
    with pytest.raises(CopyCatError, match=r"nothere\.png is missing"):
        build.photographs(["nothere.png"], directory=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image is not installed")
def test_grey_photographs_come_back_as_linear_rgb():
    [(name, pixels)] = build.photographs(["camera.png"])
    assert name == "camera.png" and pixels.dtype == np.float32
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and np.array_equal(pixels[..., 0], pixels[..., 2])
    assert pixels.min() >= 0 and pixels.max() <= 1 and float(pixels.mean()) < 0.5  # linear light is darker


def test_a_recipe_cannot_set_paths_or_unknown_settings(tmp_path):
    recipe = quick(build.load_recipe("deblur"), batch_size=2, crop_size=32, out="/elsewhere", colour="red")
    with pytest.raises(ConfigError, match=r"train settings colour, out are not allowed"):
        build.build(recipe, tmp_path / "out", steps=1, images=[("a", textured())], device="cpu")
    assert not (tmp_path / "out").exists()
