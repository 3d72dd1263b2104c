"""copycat_nuke: an open, Python re-creation of Nuke's machine-learning toolset.

The public surface, for the Nuke Script Editor, pipeline scripts and the ``copycat`` command::

    import copycat_nuke

    result = copycat_nuke.train_model(input="plate.####.exr", target="clean.####.exr", out="/tmp/run", steps=2000)
    job = copycat_nuke.train_in_background(config)     # job.stop(), job.wait(), job.events
    copycat_nuke.infer_sequence(result.model_path, "plate.####.exr", "out/clean.####.exr", frames="1001-1100")
    copycat_nuke.upscale_sequence("plate.####.exr", "out/plate_x2.####.exr", scale=2)   # shipped ×2 network
    copycat_nuke.deblur_sequence("plate.####.exr", "out/sharp.####.exr")                # shipped Deblur network
    refined = copycat_nuke.refine_on_shot("plate.####.exr", "/tmp/refine", steps=300)   # no Ground Truth needed
    print(copycat_nuke.format_description(copycat_nuke.describe(result.model_path)))

Importing the package is cheap: torch and OpenImageIO load on first use of a function that needs them,
so Nuke starts quickly (and with a clear message, not a crash, where they are missing). The functions
are named apart from the submodules (``train_model`` in ``copycat_nuke.train``) so that importing a
submodule never hides a function or the other way round.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

# name -> module that defines it; loaded on first access (PEP 562)
_LAZY = {
    "TrainConfig": "copycat_nuke.config",
    "InferConfig": "copycat_nuke.config",
    "train_model": "copycat_nuke.train",
    "train_in_background": "copycat_nuke.train",
    "Trainer": "copycat_nuke.train",
    "TrainingJob": "copycat_nuke.train",
    "TrainResult": "copycat_nuke.train",
    "infer_sequence": "copycat_nuke.infer",
    "load_model": "copycat_nuke.infer",
    "apply_model": "copycat_nuke.infer",
    "upscale_sequence": "copycat_nuke.upscale",
    "deblur_sequence": "copycat_nuke.upscale",
    "refine_on_shot": "copycat_nuke.upscale",
    "load_cat": "copycat_nuke.catfile",
    "describe": "copycat_nuke.catfile",
    "format_description": "copycat_nuke.catfile",
}

if TYPE_CHECKING:
    from copycat_nuke.catfile import describe, format_description, load_cat
    from copycat_nuke.config import InferConfig, TrainConfig
    from copycat_nuke.infer import apply_model, infer_sequence, load_model
    from copycat_nuke.train import Trainer, TrainingJob, TrainResult, train_in_background, train_model
    from copycat_nuke.upscale import deblur_sequence, refine_on_shot, upscale_sequence


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'copycat_nuke' has no attribute {name!r}")


__all__ = [
    "CatFileError",
    "ChannelError",
    "ConfigError",
    "CopyCatError",
    "FrameMissingError",
    "ImageIOError",
    "InferConfig",
    "ResolutionMismatchError",
    "SequenceError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingJob",
    "__version__",
    "apply_model",
    "deblur_sequence",
    "describe",
    "format_description",
    "infer_sequence",
    "load_cat",
    "load_model",
    "refine_on_shot",
    "train_in_background",
    "train_model",
    "upscale_sequence",
]
