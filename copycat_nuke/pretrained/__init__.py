"""The networks that ship inside the package: ``upscale.cat`` (×2) and ``deblur.cat``.

They are ordinary ``.cat`` files, made by the recipes in :mod:`copycat_nuke.pretrained.recipes` (data
generated from images that ship inside a PyPI package, a fixed seed, a fixed number of steps); each
manifest records how long training took and on what hardware. Training accepts their names as initial
weights (``copycat train --initial-weights upscale``) to refine them on a shot's own pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from copycat_nuke.errors import CopyCatError

__all__ = ["SHIPPED", "require_shipped_model", "resolve_initial_weights", "shipped_model"]

#: The shipped networks, by name, and what each does.
SHIPPED: dict[str, str] = {
    "upscale": "×2 upscale (×4 by running it twice)",
    "deblur": "removes motion and defocus blur",
}


def shipped_model(name: str) -> Path:
    """Where the shipped network ``name`` (``"upscale"``, ``"deblur"``) lives, installed or not."""
    return Path(__file__).resolve().parent / f"{name.lower()}.cat"


def require_shipped_model(name: str, *, instead: str = "") -> Path:
    """The shipped network ``name``, or a :class:`CopyCatError` saying what is missing and what to do instead."""
    key = name.lower()
    if key not in SHIPPED:
        raise CopyCatError(f"there is no shipped network called {name!r}: choose one of {', '.join(SHIPPED)}")
    path = shipped_model(key)
    if not path.is_file():
        advice = instead or "reinstall copycat_nuke, or rebuild it with its recipe (docs/pretrained.md)"
        raise CopyCatError(f"The shipped {key.capitalize()} network is not installed ({path} is missing): {advice}")
    return path


def resolve_initial_weights(value: Union[str, Path, None]) -> Optional[Path]:
    """Initial weights as given to training → the ``.cat`` to start from, or None to start fresh.

    ``"none"``/empty: None. ``"upscale"``/``"deblur"``: the shipped network. Anything else: a path.
    """
    text = str(value or "").strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() in SHIPPED:
        return require_shipped_model(text)
    return Path(text)
