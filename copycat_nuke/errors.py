"""Typed errors, written for the artist or TD who reads them.

Every error the package raises on bad input is a :class:`CopyCatError`. The message names the file,
frame, knob or option at fault and says what to do about it; the CLI prints it without a traceback.
"""

from __future__ import annotations


class CopyCatError(Exception):
    """Base class of every error copycat_nuke raises on bad input or a bad environment."""


class ImageIOError(CopyCatError):
    """A frame could not be read or written (missing, unreadable, truncated, wrong channels)."""


class FrameMissingError(ImageIOError):
    """A frame the job needs does not exist on disk."""


class ChannelError(ImageIOError):
    """A channel name was asked for that the image does not have."""


class ResolutionMismatchError(ImageIOError):
    """Two frames that must match in size (an Input and its Ground Truth) do not."""


class SequenceError(CopyCatError):
    """A sequence pattern or frame list could not be understood."""


class CatFileError(CopyCatError):
    """A ``.cat`` file is missing, damaged, hostile, from a newer version, or does not fit the job."""


class ConfigError(CopyCatError):
    """A job setting (knob, CLI option or YAML key) has a value that cannot work."""


class TrainingError(CopyCatError):
    """Training cannot start or cannot go on (bad pairs, NaN loss, unwritable output)."""
