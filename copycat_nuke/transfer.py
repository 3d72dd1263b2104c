"""Scene-linear light <-> the network's working space, NaN/Inf clean-up, and 8-bit preview encodings.

Nuke hands CopyCat scene-linear values: negative (out-of-gamut colours, over-shooting filters), above 1
(highlights, light sources; up to the half-float maximum 65504 and beyond in float EXRs) and sometimes NaN
or Inf. A network learns best on values of order one whose L1 error means the same thing in the shadows as
in the highlights, so every image goes through an exactly invertible *transfer* on its way into the
network and back out of it.

The default transfer, ``"slog"`` (sign-preserving log), was chosen by measurement on real HDR EXRs
(``benchmarks/transfer_choice.py``, reasoning and numbers in ``docs/transfer.md``)::

    to_working(x)   = sign(x) * log1p(a * |x|) / k
    from_working(y) = sign(y) * expm1(k * |y|) / a          a = SLOG_A, k = SLOG_K

It is linear (slope ``a / k``) around zero, so noise and negatives stay well behaved, and logarithmic above
``1 / a``, so a working-space error of ``e`` is a *relative* linear error of about ``k * e`` from the
shadows up to 1e4. With the defaults (a = 100, k = 7) 0.18 lands at 0.42, 1.0 at 0.66 and 1e4 at 1.97.
Both directions saturate at ``log1p(a * |x|) = 80`` (``|x|`` ≈ 5.5e34 / a), so no finite or infinite
input turns into a non-finite output; NaN stays NaN (call :func:`sanitize` first). Round trips are exact to
4e-6 relative in float32 (measured worst case 1.5e-6) and 1e-13 in float64.

Every transfer comes as pure functions for numpy (I/O side, ``H×W×C`` float32) and for torch (``N×C×H×W``,
any floating dtype and device, ``torch.jit.script``-able because exported models embed the transfer in
their ``forward``), gathered in the tiny :data:`TRANSFERS` table that a ``.cat`` manifest names through
:class:`Transfer`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import torch

from copycat_nuke.errors import ConfigError, ImageIOError

HALF_MAX = 65504.0
"""Largest finite half-float value: what ±Inf becomes in :func:`sanitize` (EXR Infs are half overflows)."""

SLOG_A = 100.0
"""Default ``a`` of ``"slog"``: the curve turns from linear to logarithmic around ``|x| = 1 / a``."""

SLOG_K = 7.0
"""Default ``k`` of ``"slog"``: 0.18 lands at 0.42, 1.0 at ``log1p(a) / k`` = 0.66, 1e4 at 1.97."""

SLOG_LOG_MAX = 80.0
"""Both directions of ``"slog"`` saturate at ``log1p(a * |x|) = 80``: finite in float32 for any a ≤ 1e6."""

DEFAULT_TRANSFER = "slog"

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


# ---------------------------------------------------------------------------------------------------------
# numpy: float32 in -> float32 out (float64 stays float64; other dtypes are computed as float32)


def _as_float_array(x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return arr
    return arr.astype(np.float32)


def slog_to_working_np(x: np.ndarray, a: float = SLOG_A, k: float = SLOG_K) -> np.ndarray:
    """Scene-linear -> working space: ``sign(x) * log1p(a*|x|) / k``, any shape, float32 (or float64)."""
    arr = _as_float_array(x)
    with np.errstate(over="ignore", invalid="ignore"):  # a*|x| may overflow to inf: saturated just below
        magnitude = np.minimum(np.log1p(np.abs(arr) * a), SLOG_LOG_MAX) / k
    return np.copysign(magnitude, arr).astype(arr.dtype, copy=False)


def slog_from_working_np(y: np.ndarray, a: float = SLOG_A, k: float = SLOG_K) -> np.ndarray:
    """Working space -> scene-linear: ``sign(y) * expm1(k*|y|) / a``, the exact inverse of the above."""
    arr = _as_float_array(y)
    with np.errstate(over="ignore", invalid="ignore"):
        magnitude = np.expm1(np.minimum(np.abs(arr) * k, SLOG_LOG_MAX)) / a
    return np.copysign(magnitude, arr).astype(arr.dtype, copy=False)


def linear_to_working_np(x: np.ndarray) -> np.ndarray:
    """Identity transfer (a copy as float32/float64): for data already in a perceptual encoding."""
    return np.array(_as_float_array(x), copy=True)


def linear_from_working_np(y: np.ndarray) -> np.ndarray:
    """Identity transfer, inverse direction (a copy as float32/float64)."""
    return np.array(_as_float_array(y), copy=True)


# ---------------------------------------------------------------------------------------------------------
# torch: N×C×H×W (any shape), output dtype = input dtype. float16/bfloat16 are computed in float32 because
# log1p/expm1 in 8- or 11-bit mantissas would add an error of their own; integers come back as float32.
# All are TorchScript functions: keep to the TorchScript subset (TorchScript cannot read module globals,
# hence the literal 80.0 and 65504.0, which must equal SLOG_LOG_MAX and HALF_MAX; a test checks).


def slog_to_working_torch(x: torch.Tensor, a: float = SLOG_A, k: float = SLOG_K) -> torch.Tensor:
    """Scene-linear -> working space on tensors: ``sign(x) * log1p(a*|x|) / k``. Scriptable."""
    work = x
    if x.dtype == torch.float16 or x.dtype == torch.bfloat16 or not x.is_floating_point():
        work = x.to(torch.float32)
    magnitude = torch.clamp(torch.log1p(work.abs() * a), max=80.0) / k  # 80.0 = SLOG_LOG_MAX
    y = torch.copysign(magnitude, work)
    if x.is_floating_point():
        return y.to(x.dtype)
    return y


def slog_from_working_torch(y: torch.Tensor, a: float = SLOG_A, k: float = SLOG_K) -> torch.Tensor:
    """Working space -> scene-linear on tensors: ``sign(y) * expm1(k*|y|) / a``. Scriptable.

    float16 results are clamped to ±65504 so an over-driven network output never becomes Inf in Nuke.
    """
    work = y
    if y.dtype == torch.float16 or y.dtype == torch.bfloat16 or not y.is_floating_point():
        work = y.to(torch.float32)
    magnitude = torch.expm1(torch.clamp(work.abs() * k, max=80.0)) / a  # 80.0 = SLOG_LOG_MAX
    x = torch.copysign(magnitude, work)
    if y.dtype == torch.float16:
        x = torch.clamp(x, min=-65504.0, max=65504.0)  # HALF_MAX
    if y.is_floating_point():
        return x.to(y.dtype)
    return x


def linear_to_working_torch(x: torch.Tensor) -> torch.Tensor:
    """Identity transfer on tensors (integers become float32). Scriptable."""
    if x.is_floating_point():
        return x
    return x.to(torch.float32)


def linear_from_working_torch(y: torch.Tensor) -> torch.Tensor:
    """Identity transfer on tensors, inverse direction. Scriptable."""
    if y.is_floating_point():
        return y
    return y.to(torch.float32)


def nan_to_num_torch(x: torch.Tensor) -> torch.Tensor:
    """NaN -> 0, ±Inf -> ±65504, silently: the scriptable twin of :func:`sanitize` for exported models."""
    return torch.nan_to_num(x, nan=0.0, posinf=65504.0, neginf=-65504.0)  # ±HALF_MAX


# ---------------------------------------------------------------------------------------------------------
# The registry a .cat manifest refers to by name


@dataclass(frozen=True)
class TransferSpec:
    """One entry of :data:`TRANSFERS`: the four pure functions and the parameters they take."""

    description: str
    defaults: Mapping[str, float]
    limits: Mapping[str, tuple[float, float]]  # inclusive (low, high) for every parameter
    to_working_np: Callable[..., np.ndarray]
    from_working_np: Callable[..., np.ndarray]
    to_working_torch: Callable[..., torch.Tensor]
    from_working_torch: Callable[..., torch.Tensor]


TRANSFERS: Mapping[str, TransferSpec] = MappingProxyType(
    {
        "slog": TransferSpec(
            description="sign(x)*log1p(a*|x|)/k: linear near 0, log above 1/a (scene-linear HDR, default)",
            defaults=MappingProxyType({"a": SLOG_A, "k": SLOG_K}),
            limits=MappingProxyType({"a": (1e-3, 1e6), "k": (1e-3, 1e3)}),
            to_working_np=slog_to_working_np,
            from_working_np=slog_from_working_np,
            to_working_torch=slog_to_working_torch,
            from_working_torch=slog_from_working_torch,
        ),
        "linear": TransferSpec(
            description="identity: for data that is already display-encoded (sRGB PNGs) or not colour",
            defaults=MappingProxyType({}),
            limits=MappingProxyType({}),
            to_working_np=linear_to_working_np,
            from_working_np=linear_from_working_np,
            to_working_torch=linear_to_working_torch,
            from_working_torch=linear_from_working_torch,
        ),
    }
)
"""Every transfer a ``.cat`` manifest may name. Plain data: add an entry, not a decorator."""


def _spec(name: object) -> TransferSpec:
    if not isinstance(name, str) or name not in TRANSFERS:
        raise ConfigError(
            f"unknown transfer {name!r}; known transfers: {', '.join(sorted(TRANSFERS))}. "
            "A .cat file naming another transfer was made by a newer or different tool."
        )
    return TRANSFERS[name]


def _validated_params(name: str, spec: TransferSpec, params: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(params, Mapping):
        raise ConfigError(f"transfer {name!r}: params must be a mapping of name to number, got {params!r}")
    unknown = sorted(str(key) for key in params if key not in spec.defaults)
    if unknown:
        allowed = ", ".join(sorted(spec.defaults)) or "none"
        raise ConfigError(f"transfer {name!r} has no parameter {', '.join(unknown)}; it takes: {allowed}")
    values = dict(spec.defaults)
    for key, value in params.items():
        # bool is an int subclass; "True" as a knee would be a typo, not a number
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"transfer {name!r}: parameter {key!r} must be a finite number, got {value!r}")
        low, high = spec.limits[key]
        if not low <= value <= high:
            raise ConfigError(f"transfer {name!r}: parameter {key!r} = {value!r} is outside [{low:g}, {high:g}]")
        values[key] = float(value)
    return values


@dataclass(frozen=True)
class Transfer:
    """A named, parameterised transfer, as stored in a ``.cat`` manifest.

    ``Transfer()`` is the default (``"slog"`` with :data:`SLOG_A`, :data:`SLOG_K`). Missing parameters take
    their defaults; unknown names, unknown parameters and out-of-range values raise :class:`ConfigError`.
    ``to_working``/``from_working`` accept numpy arrays (``H×W×C`` float32 at the I/O edge) and torch
    tensors (``N×C×H×W``, any dtype/device) and return the same kind.
    """

    name: str = DEFAULT_TRANSFER
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = _spec(self.name)
        object.__setattr__(self, "params", MappingProxyType(_validated_params(self.name, spec, self.params)))

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))

    @property
    def spec(self) -> TransferSpec:
        return TRANSFERS[self.name]

    def to_working(self, x: ArrayOrTensor) -> ArrayOrTensor:
        """Scene-linear -> working space (numpy array or torch tensor in, same kind out)."""
        if isinstance(x, torch.Tensor):
            return self.spec.to_working_torch(x, **self.params)
        return self.spec.to_working_np(x, **self.params)

    def from_working(self, y: ArrayOrTensor) -> ArrayOrTensor:
        """Working space -> scene-linear (numpy array or torch tensor in, same kind out)."""
        if isinstance(y, torch.Tensor):
            return self.spec.from_working_torch(y, **self.params)
        return self.spec.from_working_np(y, **self.params)

    def torch_module(self, inverse: bool = False) -> TransferModule:
        """A scriptable ``nn.Module`` applying this transfer (``inverse=True``: working -> linear)."""
        return TransferModule(self, inverse=inverse)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}`` with every parameter spelled out, for the manifest."""
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transfer:
        """Validate and rebuild a transfer from :meth:`to_dict` output (a manifest or YAML entry)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a transfer must be a mapping with 'name' and 'params', got {data!r}")
        unknown = sorted(str(key) for key in data if key not in ("name", "params"))
        if unknown:
            raise ConfigError(f"transfer entry has unknown keys {', '.join(unknown)}; expected name, params")
        if "name" not in data:
            raise ConfigError(f"transfer entry has no 'name'; known transfers: {', '.join(sorted(TRANSFERS))}")
        params = data.get("params")
        return cls(name=data["name"], params={} if params is None else params)


class TransferModule(torch.nn.Module):
    """One direction of a :class:`Transfer` as a module, so exported models can embed it in ``forward``.

    ``torch.jit.script(TransferModule(Transfer()))`` works; the parameters are plain float attributes.
    """

    def __init__(self, transfer: Transfer, inverse: bool = False) -> None:
        super().__init__()
        self.transfer_name: str = transfer.name
        self.inverse: bool = inverse
        self.a: float = float(transfer.params.get("a", 0.0))
        self.k: float = float(transfer.params.get("k", 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transfer_name == "slog":
            if self.inverse:
                return slog_from_working_torch(x, self.a, self.k)
            return slog_to_working_torch(x, self.a, self.k)
        if self.transfer_name == "linear":
            if self.inverse:
                return linear_from_working_torch(x)
            return linear_to_working_torch(x)
        raise RuntimeError("TransferModule: unknown transfer " + self.transfer_name)


# ---------------------------------------------------------------------------------------------------------
# NaN / Inf


class NonFiniteValuesWarning(UserWarning):
    """An image had NaN or Inf values, which were replaced (the message says how many and where)."""


def sanitize(x: ArrayOrTensor, where: str) -> ArrayOrTensor:
    """Replace NaN with 0 and ±Inf with ±65504 (:data:`HALF_MAX`), warning with the counts.

    Why these values: NaN carries no information, so it becomes the neutral 0. +Inf is nearly always a
    blown highlight or a half-float overflow (anything above 65504 written as half), so it stays bright
    and keeps its sign, at a value every EXR can store and every transfer maps to a finite working value
    (slog: ±2.24); replacing it with 0 would punch black holes into the brightest areas.

    ``where`` names the frame or tensor for the message, e.g. ``"input frame 1001 (plate.1001.exr)"``.
    Returns ``x`` itself when everything is finite (no copy), otherwise a new array/tensor of the same
    dtype. Integer arrays are returned unchanged.
    """
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            return x
        n_nan = int(torch.isnan(x).sum().item())
        n_inf = int(torch.isinf(x).sum().item())
        if n_nan or n_inf:
            _warn_non_finite(n_nan, n_inf, where)
            return nan_to_num_torch(x)
        return x
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating) or np.isfinite(arr).all():
        return arr
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    n_inf = int(np.count_nonzero(np.isinf(arr)))
    _warn_non_finite(n_nan, n_inf, where)
    return np.nan_to_num(arr, copy=True, nan=0.0, posinf=HALF_MAX, neginf=-HALF_MAX)


def _warn_non_finite(n_nan: int, n_inf: int, where: str) -> None:
    warnings.warn(
        f"replaced {n_nan} NaN and {n_inf} Inf values in {where} "
        f"(NaN -> 0, ±Inf -> ±{HALF_MAX:g}, the largest half-float value)",
        NonFiniteValuesWarning,
        stacklevel=3,
    )


# ---------------------------------------------------------------------------------------------------------
# 8-bit previews (contact sheets, the training panel)


def _srgb_encode(v: np.ndarray) -> np.ndarray:
    # IEC 61966-2-1 piecewise curve; v is already clipped to [0, 1]
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1.0 / 2.4) - 0.055)


def _rec709_encode(v: np.ndarray) -> np.ndarray:
    # ITU-R BT.709 OETF, what Nuke's "rec709" viewer LUT applies
    return np.where(v < 0.018, 4.5 * v, 1.099 * np.power(v, 0.45) - 0.099)


def _gamma22_encode(v: np.ndarray) -> np.ndarray:
    return np.power(v, 1.0 / 2.2)


def _raw_encode(v: np.ndarray) -> np.ndarray:
    return v


VIEWS: Mapping[str, Callable[[np.ndarray], np.ndarray]] = MappingProxyType(
    {"sRGB": _srgb_encode, "rec709": _rec709_encode, "Gamma2.2": _gamma22_encode, "raw": _raw_encode}
)
"""Display encodings :func:`to_display` knows, named like Nuke's viewer LUTs (matched case-insensitively)."""

_OCIO_WORKING = "lin_rec709"  # OCIO converts gamut into this; the view then encodes it


@functools.lru_cache(maxsize=1)
def _color_config() -> Any:
    import OpenImageIO as oiio  # only the OCIO preview path needs it

    return oiio.ColorConfig()


def ocio_colorspace_names() -> tuple[str, ...]:
    """Colour spaces of OpenImageIO's OCIO config (the built-in one unless ``$OCIO`` is set)."""
    return tuple(_color_config().getColorSpaceNames())


def _ocio_to_rec709(rgb: np.ndarray, colorspace_in: str) -> np.ndarray:
    import OpenImageIO as oiio

    config = _color_config()
    if config.getColorSpaceIndex(colorspace_in) < 0:
        raise ConfigError(
            f"unknown colour space {colorspace_in!r} for the preview; OCIO knows: "
            f"{', '.join(ocio_colorspace_names())} (and their aliases, e.g. lin_rec709, ACEScg)"
        )
    buf = oiio.ImageBuf(np.ascontiguousarray(rgb, dtype=np.float32))
    out = oiio.ImageBufAlgo.colorconvert(buf, colorspace_in, _OCIO_WORKING)  # OIIO's default config
    if out.has_error:
        raise ConfigError(f"OCIO could not convert {colorspace_in!r} to {_OCIO_WORKING}: {out.geterror()}")
    return np.asarray(out.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(rgb.shape)


def to_display(linear: np.ndarray, view: str = "sRGB", colorspace_in: Optional[str] = None) -> np.ndarray:
    """Scene-linear image -> display-encoded 8-bit RGB preview, ``H×W×3`` uint8.

    ``linear`` is ``H×W`` or ``H×W×C`` (float, linear light): one or two channels (grey, grey+alpha) show
    the first channel as grey, three or more show the first three. Values are clipped to [0, 1] (NaN
    shows black) and encoded with ``view``: one of :data:`VIEWS` (``"sRGB"``, ``"rec709"``, ``"Gamma2.2"``,
    ``"raw"``). With ``colorspace_in`` (an OCIO name or alias such as ``"ACEScg"``, ``"lin_rec709"``,
    ``"ACES2065-1"``), the pixels first go through OCIO from that space to linear Rec.709/sRGB primaries.
    Linear 0 -> 0, 0.18 -> 118, 1 -> 255 in the sRGB view.
    """
    encode = _view(view)
    arr = np.asarray(linear)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] == 0:
        raise ImageIOError(f"a preview needs an H×W or H×W×C image, got an array of shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    rgb = np.repeat(arr[:, :, :1], 3, axis=2) if arr.shape[2] < 3 else arr[:, :, :3]
    if colorspace_in is not None:
        rgb = _ocio_to_rec709(rgb, colorspace_in)
    clipped = np.clip(np.nan_to_num(rgb, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return np.clip(np.rint(encode(clipped) * 255.0), 0, 255).astype(np.uint8)


def _view(view: str) -> Callable[[np.ndarray], np.ndarray]:
    for name, encode in VIEWS.items():
        if isinstance(view, str) and name.lower() == view.lower():
            return encode
    raise ConfigError(f"unknown preview view {view!r}; choose one of: {', '.join(VIEWS)}")
