"""Rebuild a shipped network from its recipe: ``python -m copycat_nuke.pretrained.build upscale|deblur``.

A recipe (``recipes/NAME.yaml``) names the photographs, how the before/after pairs are made from them
and the training settings with a fixed seed. This module turns it into Input/Ground Truth EXR pairs in a
scratch directory, trains them with the ordinary :class:`~copycat_nuke.train.Trainer` (so the shipped
networks are made exactly the CopyCat way, and refine the same way) and, with ``--install``, writes the
result over ``copycat_nuke/pretrained/NAME.cat``. The manifest records the recipe, its SHA-256, the
training time and the hardware.

The photographs are the ones bundled in the scikit-image wheel (``pip install scikit-image``; only their
files are read, scikit-image itself is never imported), so a rebuild needs no download.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from copycat_nuke import catfile, imageio
from copycat_nuke.config import TrainConfig
from copycat_nuke.errors import ConfigError, CopyCatError
from copycat_nuke.pretrained import shipped_model
from copycat_nuke.resample import downscale, srgb_to_linear, to_image, to_tensor
from copycat_nuke.train import Listener, Trainer

RECIPES = Path(__file__).resolve().parent / "recipes"

__all__ = [
    "RECIPES",
    "Recipe",
    "build",
    "defocus_kernel",
    "downscale",
    "load_recipe",
    "make_pairs",
    "motion_kernel",
    "photographs",
    "srgb_to_linear",
]


@dataclass(frozen=True)
class Recipe:
    """One ``recipes/*.yaml``: what to train, on what, how."""

    name: str
    kind: str  #: "upscale" or "deblur"
    images: list[str]
    train: dict[str, Any]
    scale: int = 1
    blur: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  #: of the recipe file's bytes


def load_recipe(name_or_path: Union[str, Path]) -> Recipe:
    """``"upscale"``/``"deblur"`` (a shipped recipe) or a path to a recipe YAML."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
        raise ConfigError(f"no recipe {name_or_path!r} ({path} does not exist); the shipped recipes are: {known}")
    raw = path.read_bytes()
    data = yaml.safe_load(raw)
    if not isinstance(data, dict) or data.get("kind") not in ("upscale", "deblur"):
        raise ConfigError(f"{path}: a recipe is a mapping with kind 'upscale' or 'deblur'")
    try:
        return Recipe(
            name=str(data["name"]),
            kind=str(data["kind"]),
            images=[str(image) for image in data["images"]],
            train=dict(data["train"]),
            scale=int(data.get("scale", 1)),
            blur=dict(data.get("blur") or {}),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: the recipe is missing or mistypes {error}") from None


# ------------------------------------------------------------------------------------------- pixels


def skimage_data_dir() -> Path:
    """The folder of photographs inside the installed scikit-image wheel (found without importing it)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise CopyCatError(
            "rebuilding a shipped network needs scikit-image's bundled photographs: pip install scikit-image"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def photographs(names: Sequence[str], directory: Optional[Path] = None) -> list[tuple[str, np.ndarray]]:
    """The recipe's photographs as linear-light float32 H×W×3 (grey ones repeated to RGB, alpha dropped)."""
    directory = directory or skimage_data_dir()
    images = []
    for name in names:
        path = directory / name
        if not path.is_file():
            raise CopyCatError(f"the recipe's photograph {path} is missing: reinstall scikit-image")
        pixels = imageio.read_image(path)
        if pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        images.append((name, srgb_to_linear(np.ascontiguousarray(pixels[:, :, :3], np.float32))))
    return images


def motion_kernel(rng: np.random.Generator, length: float) -> np.ndarray:
    """A camera-shake kernel: a curving random-walk trajectory of about ``length`` pixels, normalised."""
    points = 256
    angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 2.5 / points, points))
    step = length / points
    path = np.cumsum(np.stack([np.cos(angle), np.sin(angle)], axis=1) * step, axis=0)
    path -= path.mean(axis=0)
    radius = int(np.ceil(np.abs(path).max())) + 1
    size = 2 * radius + 1
    kernel = np.zeros((size, size), np.float64)
    for x, y in path + radius:  # bilinear splat, so the trajectory is sub-pixel smooth
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    return (kernel / kernel.sum()).astype(np.float32)


def defocus_kernel(radius: float) -> np.ndarray:
    """An antialiased disc of ``radius`` pixels (4×4 supersampled), normalised."""
    size = 2 * int(np.ceil(radius)) + 1
    fine = (np.arange(size * 4) + 0.5) / 4 - size / 2
    inside = (fine[None, :] ** 2 + fine[:, None] ** 2 <= radius**2).astype(np.float64)
    kernel = inside.reshape(size, 4, size, 4).sum(axis=(1, 3))
    return (kernel / kernel.sum()).astype(np.float32)


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel of a linear H×W×C image with ``kernel`` (reflected at the edges)."""
    pad = kernel.shape[0] // 2
    x = to_tensor(image).transpose(0, 1)  # C×1×H×W: one channel per batch entry
    x = F.pad(x, [pad, pad, pad, pad], mode="reflect")
    weight = torch.from_numpy(kernel[::-1, ::-1].copy())[None, None]
    return to_image(F.conv2d(x, weight).transpose(0, 1))


def make_pairs(recipe: Recipe, images: Iterable[tuple[str, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The recipe's (Input, Ground Truth) pairs, linear float32, deterministic for its seed."""
    rng = np.random.default_rng(int(recipe.train.get("seed", 0)))
    pairs = []
    for _, image in images:
        if recipe.kind == "upscale":
            s = recipe.scale
            truth = np.ascontiguousarray(image[: image.shape[0] // s * s, : image.shape[1] // s * s])
            pairs.append((downscale(truth, s), truth))
            pairs.append((downscale(truth, s, encoded=True), truth))
            continue
        settings = recipe.blur
        for _ in range(int(settings.get("variants", 4))):
            if rng.random() < float(settings.get("motion_share", 0.75)):
                kernel = motion_kernel(rng, rng.uniform(*settings.get("motion_length", (3, 31))))
            else:
                kernel = defocus_kernel(rng.uniform(*settings.get("defocus_radius", (1, 6))))
            blurred = blur(image, kernel)
            noise = float(settings.get("noise", 0.0))
            if noise:
                blurred = blurred + rng.normal(0, noise, blurred.shape).astype(np.float32)
            pairs.append((blurred, image))
    return pairs


def write_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray]], directory: Path) -> tuple[str, str]:
    """Write the pairs as float EXR sequences (frames 1..N); returns the Input and Ground Truth patterns."""
    for frame, (source, truth) in enumerate(pairs, start=1):
        imageio.write_frame(directory / f"input.{frame:04d}.exr", source, "rgb", pixel_type="float")
        imageio.write_frame(directory / f"truth.{frame:04d}.exr", truth, "rgb", pixel_type="float")
    return str(directory / "input.####.exr"), str(directory / "truth.####.exr")


# -------------------------------------------------------------------------------------------- build
def build(
    recipe: Union[str, Path, Recipe],
    out_dir: Union[str, Path],
    *,
    steps: Optional[int] = None,
    install: bool = False,
    listeners: Iterable[Listener] = (),
    images: Optional[Sequence[tuple[str, np.ndarray]]] = None,
    device: str = "auto",
) -> Path:
    """Train a recipe into ``out_dir`` (the run: checkpoints, contact sheets, loss curve, ``NAME.cat``).

    ``steps`` overrides the recipe's (for quick checks); ``images`` replaces the photographs (tests).
    ``install`` copies the result over the shipped ``copycat_nuke/pretrained/NAME.cat``. Returns the
    ``.cat`` written in ``out_dir``.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    out = Path(out_dir)
    pairs = make_pairs(recipe, images if images is not None else photographs(recipe.images))
    settings = dict(recipe.train)
    allowed = {f.name for f in fields(TrainConfig)} - {"input", "target", "out", "device", "resume", "frames"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ConfigError(
            f"recipe {recipe.name}: train settings {', '.join(unknown)} are not allowed; "
            f"use {', '.join(sorted(allowed))}"
        )
    if steps is not None:
        settings["steps"] = steps
    with tempfile.TemporaryDirectory(prefix=f"copycat-recipe-{recipe.name}-") as scratch:
        source, truth = write_pairs(pairs, Path(scratch))
        config = TrainConfig(
            input=source,
            target=truth,
            out=str(out / "run"),
            checkpoint_interval=max(1, int(settings["steps"]) // 4),
            image_interval=max(1, int(settings["steps"]) // 10),
            device=device,
            **settings,
        )
        result = Trainer(config, listeners).run()
    cat = catfile.load_cat(result.model_path)
    described = f"recipe:{recipe.name} ({len(pairs)} pairs from {len(recipe.images)} photographs)"
    training = dict(cat.manifest.training)
    training.update(
        recipe=recipe.name,
        recipe_sha256=recipe.sha256,
        data=f"scikit-image bundled photographs: {', '.join(recipe.images)}" if images is None else "test images",
        input=described,
        target=described,
    )
    config_record = dict(cat.manifest.config, input=described, target=described, out="")
    manifest = replace(cat.manifest, training=training, config=config_record)
    target = out / f"{recipe.name}.cat"
    catfile.save_cat(target, manifest, cat.weights)
    if install:
        installed = shipped_model(recipe.name)
        partial = installed.with_name(installed.name + ".partial")
        shutil.copyfile(target, partial)
        partial.replace(installed)
    return target


def main(argv: Optional[Sequence[str]] = None) -> int:
    from copycat_nuke.cli import TqdmListener

    parser = argparse.ArgumentParser(prog="python -m copycat_nuke.pretrained.build", description=__doc__)
    parser.add_argument("recipe", help="upscale, deblur, or a recipe YAML")
    parser.add_argument("--out", default="copycat-recipe", help="run directory (default ./copycat-recipe)")
    parser.add_argument("--steps", type=int, help="override the recipe's steps (quick checks)")
    parser.add_argument("--install", action="store_true", help="replace the shipped network with the result")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        path = build(
            args.recipe,
            args.out,
            steps=args.steps,
            install=args.install,
            listeners=[TqdmListener()],
            device=args.device,
        )
    except CopyCatError as error:
        print(f"build: error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
