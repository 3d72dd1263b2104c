"""Channels by name, as Nuke names them: ``rgba``, ``alpha``, ``mask.a``, ``rgba.red`` or ``R,G,B``, resolved
against a file's channel names (never by position: OpenImageIO reorders EXR channels on read).

:mod:`copycat_nuke.imageio` reads and writes pixels with these names and re-exports :func:`resolve_channels`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Union

from copycat_nuke.errors import ChannelError

__all__ = ["ChannelSpec", "PathLike", "resolve_channels"]

PathLike = Union[str, "os.PathLike[str]"]
ChannelSpec = Union[str, Sequence[str]]

_MAIN_LAYERS = ("", "rgba", "rgb")
_LONG_NAMES = {"red": "r", "green": "g", "blue": "b", "alpha": "a"}
_CANONICAL_ORDERS = (("r", "g", "b", "a"), ("r", "g", "b"), ("y", "a"), ("y",))


def split_spec(spec: ChannelSpec) -> list[str]:
    items = [spec] if isinstance(spec, str) else list(spec)
    tokens: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"channel names must be strings, got {item!r}")
        tokens.extend(t for t in re.split(r"[,\s]+", item) if t)
    if not tokens:
        raise ChannelError(f"No channels asked for in {spec!r}: name some, e.g. 'rgba', 'mask.a' or 'R,G,B'.")
    return tokens


def channel_key(name: str) -> tuple[str, str]:
    """(layer, channel), lower case, with Nuke's long names shortened and rgba/rgb meaning the main layer."""
    layer, _, chan = name.rpartition(".")
    layer, chan = layer.lower(), chan.lower()
    if layer in _MAIN_LAYERS:
        layer = ""
    return layer, _LONG_NAMES.get(chan, chan)


def missing_channel(token: str, available: Sequence[str], path: PathLike | None, why: str = "") -> ChannelError:
    where = f" in {path}" if path is not None else ""
    has = ", ".join(available) if available else "(no channels)"
    return ChannelError(
        f"No channel {token!r}{why}{where}. It has: {has}. "
        "Ask for channels by name, e.g. 'rgba', 'rgb', 'alpha', 'mask.a' or 'R,G,B'."
    )


def resolve_token(token: str, available: Sequence[str], path: PathLike | None) -> list[str]:
    if token in available:  # exact, case-sensitive match always wins
        return [token]
    lowered = token.lower()
    if lowered in ("rgb", "rgba"):
        names = []
        for letter, long_name in zip(lowered, ("red", "green", "blue", "alpha")):
            try:
                names.extend(resolve_token(letter, available, path))
            except ChannelError:
                raise missing_channel(long_name, available, path, f" (part of {token!r})") from None
        return names
    if lowered == "all":
        return list(available)
    key = channel_key(token)
    matches = [c for c in available if channel_key(c) == key]
    if len(matches) > 1:
        raise missing_channel(token, available, path, f" (ambiguous: {', '.join(matches)}; name one exactly)")
    if matches:
        return matches
    # A layer name on its own ("mask", "N", "depth") means every channel of that layer, in file order.
    layer = [c for c in available if "." in c and c.rpartition(".")[0].lower() == lowered]
    if layer:
        return layer
    # A greyscale file (PNG/DPX/TIFF/JPEG "Y") answers for red, green and blue, as Nuke's Read does.
    if key[0] == "" and key[1] in ("r", "g", "b"):
        luma = [c for c in available if channel_key(c) == ("", "y")]
        if len(luma) == 1:
            return luma
    raise missing_channel(token, available, path)


def resolve_channels(spec: ChannelSpec, available: Sequence[str], *, path: PathLike | None = None) -> list[str]:
    """Map an artist's channel spec to names from ``available`` (a file's channels), in the order asked.

    ``spec`` is a string of comma- or space-separated names, or a sequence of them. Each name is matched:

    1. exactly (case-sensitive), e.g. ``"R"``, ``"mask.A"``;
    2. ``rgb``/``rgba`` expand to red, green, blue (and alpha); ``all`` means every channel;
    3. tolerantly: case-insensitive, Nuke's long names (``red``/``alpha``), and ``rgba.``/``rgb.`` meaning
       the main layer, so ``a``, ``alpha``, ``rgba.alpha`` find ``A`` and ``mask.a`` finds ``mask.A``;
    4. a layer name alone (``mask``, ``N``) means all channels of that layer;
    5. ``r``/``g``/``b`` fall back to ``Y`` in a greyscale file.

    Raises:
        ChannelError: naming ``path``, the channel asked for and the channels ``available``.
    """
    return [name for token in split_spec(spec) for name in resolve_token(token, available, path)]


def names_for_writing(spec: ChannelSpec | None, count: int, target: Path) -> list[str]:
    """Channel names to store: main-layer shorthands become R, G, B, A; layered names are kept as given."""
    if spec is None:
        defaults = {1: ["Y"], 2: ["Y", "A"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}
        if count not in defaults:
            raise ChannelError(
                f"Cannot write {target}: a {count}-channel image needs channel names, "
                "e.g. channels=['R', 'G', 'B', 'A', 'mask.A']."
            )
        return defaults[count]
    names: list[str] = []
    for token in split_spec(spec):
        if token.lower() in ("rgb", "rgba"):
            names.extend(c.upper() for c in token.lower())
            continue
        layer, chan = channel_key(token)
        names.append(chan.upper() if layer == "" and chan in ("r", "g", "b", "a") else token)
    if len(set(names)) != len(names):
        raise ChannelError(f"Cannot write {target}: channel names {names} repeat; name each channel once.")
    if len(names) != count:
        raise ChannelError(
            f"Cannot write {target}: {len(names)} channel names ({', '.join(names)}) for an image with "
            f"{count} channels. Give one name per channel."
        )
    return names


def canonical_order(names: Sequence[str]) -> list[int] | None:
    """Index order putting R,G,B(,A) or Y(,A) first, for formats that store channels by position only."""
    keys = [channel_key(n) for n in names]
    for order in _CANONICAL_ORDERS:
        wanted = [("", c) for c in order]
        if sorted(keys) == sorted(wanted):
            return [keys.index(k) for k in wanted]
    return None
