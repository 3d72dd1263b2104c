"""Network architectures, described by data: a ``.cat`` manifest names one and gives its arguments.

``ARCHITECTURES`` is a plain dict from the manifest's architecture name to its class, and
:func:`validate_arguments` checks a manifest's arguments before anything is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from copycat_nuke.errors import ConfigError
from copycat_nuke.limits import MAX_TEMPORAL
from copycat_nuke.models.msrn import MSRN, pad_to_multiple

ARCHITECTURES: dict[str, type[nn.Module]] = {"msrn": MSRN}

#: The three sizes offered on the CopyCat node, as MSRN base widths.
MODEL_SIZES: dict[str, int] = {"small": 16, "medium": 32, "large": 48}

# Every argument an architecture accepts: (type, smallest, largest). Bounds keep a hostile or damaged
# manifest from asking for a network that cannot fit in memory.
_ARGUMENTS: dict[str, dict[str, tuple[type[Any], int, int]]] = {
    "msrn": {
        "in_channels": (int, 1, 64),
        "out_channels": (int, 1, 64),
        "width": (int, 1, 256),
        "levels": (int, 1, 5),
        "blocks": (int, 0, 8),
        "lstm": (bool, 0, 1),
        "scale": (int, 1, 2),  # ×4 is ×2 twice (copycat_nuke.upscale)
        "temporal": (int, 0, MAX_TEMPORAL),
    }
}


def validate_arguments(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Check an architecture name and its constructor arguments; return them as a plain dict.

    Raises :class:`ConfigError` naming the architecture and the argument at fault.
    """
    if name not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ConfigError(f"unknown network architecture {name!r}; this version knows: {known}")
    spec = _ARGUMENTS[name]
    unknown = sorted(set(arguments) - set(spec))
    if unknown:
        raise ConfigError(f"architecture {name!r} has no argument(s) {', '.join(unknown)}")
    clean: dict[str, Any] = {}
    for key, value in arguments.items():
        kind, low, high = spec[key]
        # bool is a subclass of int: an int argument must not accept True, nor a bool argument 1.
        if type(value) is not kind:
            raise ConfigError(f"architecture {name!r}: {key} must be {kind.__name__}, got {value!r}")
        if kind is int and not low <= value <= high:
            raise ConfigError(f"architecture {name!r}: {key}={value} is outside {low}..{high}")
        clean[key] = value
    return clean


def build_model(name: str, arguments: Mapping[str, Any]) -> nn.Module:
    """Validate ``arguments`` and build the named architecture (weights freshly initialised)."""
    return ARCHITECTURES[name](**validate_arguments(name, arguments))


def msrn_arguments(
    size: str, in_channels: int = 3, out_channels: int = 3, lstm: bool = False, scale: int = 1, temporal: int = 0
) -> dict[str, Any]:
    """MSRN arguments for a CopyCat model size.

    small: width 16, 1.72 M weights; medium (default): width 32, 6.88 M weights, 42 conv layers;
    large: width 48, ~15.5 M weights (figures for rgb→rgb without the LSTM). ``scale`` 2 makes an
    upscaler; ``temporal`` N a network that also sees N neighbouring frames on each side.
    """
    key = size.lower()
    if key not in MODEL_SIZES:
        raise ConfigError(f"model size {size!r} is not one of {', '.join(MODEL_SIZES)}")
    return {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "width": MODEL_SIZES[key],
        "levels": 3,
        "blocks": 3,
        "lstm": lstm,
        "scale": scale,
        "temporal": temporal,
    }


__all__ = [
    "ARCHITECTURES",
    "MODEL_SIZES",
    "MSRN",
    "build_model",
    "msrn_arguments",
    "pad_to_multiple",
    "validate_arguments",
]
