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


class TrainingDivergedError(TrainingError):
    """The loss blew up (NaN, or far above its best): the network has lost what it learnt."""


class TrainingInputError(TrainingError):
    """The job's frames cannot make training pairs (none found, Ground Truth or neighbours missing)."""


class RunInUseError(TrainingError):
    """A run directory already holds a run, or another process is training into it."""


class NonFiniteOutputError(CatFileError):
    """A model produced NaN or infinite pixels: its weights cannot make an image (nothing was written)."""


# Exit statuses of the ``copycat`` command, defined once so a farm manager can act on them: retry a crash
# (1), fix the command (2), fix or replace a file (3), retrain with other settings (4), requeue (130).
EXIT_OK = 0
EXIT_ERROR = 1  #: anything else, including a bug (the message says how to get its traceback)
EXIT_USAGE = 2  #: a bad option or setting (argparse's own status for usage errors)
EXIT_BAD_INPUT = 3  #: a file is missing, damaged, hostile or does not fit the job (.cat, frames, sequences)
EXIT_DIVERGED = 4  #: training diverged, or a model produced NaN/Inf pixels
EXIT_INTERRUPTED = 130  #: stopped by Ctrl-C, SIGTERM or --stop-on-eof (128 + SIGINT, as shells report it)

#: Environment variable that makes the CLI print the full traceback of an unexpected error.
DEBUG_ENV = "COPYCAT_DEBUG"


def exit_status(error: BaseException) -> int:
    """The ``copycat`` exit status for an error (see the ``EXIT_*`` constants)."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, (TrainingDivergedError, NonFiniteOutputError)):
        return EXIT_DIVERGED
    if isinstance(error, (ConfigError, RunInUseError)):  # the command must say --resume or --new-run
        return EXIT_USAGE
    if isinstance(error, (CatFileError, ImageIOError, SequenceError, TrainingInputError)):
        return EXIT_BAD_INPUT
    return EXIT_ERROR
