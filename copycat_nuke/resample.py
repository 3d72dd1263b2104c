"""Resampling images the way the shipped networks' recipes and Upscale's refinement degrade them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["downscale", "linear_to_srgb", "srgb_to_linear", "to_image", "to_tensor"]


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, None)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055).astype(np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def to_image(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor[0].permute(1, 2, 0).numpy(), dtype=np.float32)


def downscale(image: np.ndarray, factor: int, *, encoded: bool = False) -> np.ndarray:
    """Antialiased bicubic (Keys, a = −0.5) ÷``factor`` of a linear H×W×C image whose sides divide by it.

    ``encoded``: filter the sRGB-encoded values (as most still-image tools do) rather than linear light.
    """
    source = linear_to_srgb(image) if encoded else image
    small = F.interpolate(to_tensor(source), scale_factor=1 / factor, mode="bicubic", antialias=True)
    result = to_image(small)
    return srgb_to_linear(np.clip(result, 0.0, 1.0)) if encoded else result
