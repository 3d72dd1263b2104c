"""copycat_nuke: an open, Python re-creation of Nuke's machine-learning toolset."""

from __future__ import annotations

from copycat_nuke.errors import (
    CatFileError,
    ChannelError,
    ConfigError,
    CopyCatError,
    FrameMissingError,
    ImageIOError,
    ResolutionMismatchError,
    SequenceError,
    TrainingError,
)

__version__ = "0.1.0"

__all__ = [
    "CatFileError",
    "ChannelError",
    "ConfigError",
    "CopyCatError",
    "FrameMissingError",
    "ImageIOError",
    "ResolutionMismatchError",
    "SequenceError",
    "TrainingError",
    "__version__",
]
