"""Job settings as dataclasses, read from and written to YAML: the one source of defaults.

A job written next to its outputs (``config.yaml``) repeats with ``copycat train --config config.yaml``.
Every field here is a CLI option, a YAML key and (with Nuke's knob name) a knob on the CopyCat node.

Nuke's Python imports this module on a button press, also in a locked-down Nuke without pyyaml (training
then runs in an external Python): it imports only the standard library at the top, pyyaml when YAML is
read, and writes YAML without pyyaml when it is missing (:func:`flat_yaml`); Python 3.7 compatible.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, TypeVar, Union  # noqa: UP035 (Dict: see InferConfig.extra)

from copycat_nuke import atomic
from copycat_nuke.errors import ConfigError
from copycat_nuke.limits import (
    DEFAULT_CROP_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_OVERLAP,
    MAX_TEMPORAL,
    is_gradient_clip,
)

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MODEL_SIZES = ("small", "medium", "large")
LOSSES = ("charbonnier", "l1", "mse")
#: How the multi-scale loss weighs the pyramid's levels (train.LEVEL_WEIGHTS); auto picks one per job.
LEVEL_WEIGHTINGS = ("auto", "doubling", "equal", "pixels")
#: Seeds run from 0 to this (torch.manual_seed takes at most 64 bits; 63 keep it a signed int everywhere).
MAX_SEED = 2**63 - 1
#: Largest counts (steps, epochs, intervals, sizes) a job may ask for; far beyond any real job, small enough
#: that no arithmetic on them overflows a C integer.
MAX_COUNT = 2**31 - 1
#: Largest job YAML read (a config.yaml is about 1 KB; more is not a job file).
MAX_CONFIG_BYTES = 1 << 20
#: Settings that are paths; in a YAML file, relative ones are relative to the file's folder.
PATH_SETTINGS = ("input", "target", "out", "initial_weights", "model", "output")
#: ``initial_weights`` values that name a shipped network rather than a file.
NAMED_WEIGHTS = ("none", "upscale", "deblur")


def setting(default: Any, help: str, **option: Any) -> Any:
    """A job setting: its default and what it means, which ``copycat train --help`` shows (``option``: the
    command-line option's ``choices`` or ``metavar``). A new setting is one such field plus its use."""
    return field(default=default, metadata={"help": help, **option})


@dataclass
class TrainConfig:
    """Everything that defines one CopyCat training job.

    Lengths: give ``steps`` or ``epochs`` (Nuke counts an epoch as every pair seen once:
    total steps = ceil(epochs × pairs / batch size)); with neither, Nuke's default of 10000 epochs.
    """

    input: str = setting("", "Input sequence: shot.####.exr, shot.%04d.exr, shot.@@@@.exr, a directory or a file")
    target: str = setting("", "Ground Truth sequence (same forms); training pairs are frames where it exists")
    out: str = setting("", "data directory for checkpoints, contact sheets, logs and model.cat")
    frames: Optional[str] = setting(
        None, "training frames, e.g. 1001,1010,1020 or 1001-1100x25 (default: every Ground Truth frame)"
    )
    steps: Optional[int] = setting(None, "training steps (or give --epochs)")
    epochs: Optional[int] = setting(
        None, f"epochs as Nuke counts them: steps = epochs × pairs / batch size (default {DEFAULT_EPOCHS})"
    )
    model_size: str = setting("medium", "network size", choices=MODEL_SIZES)
    batch_size: Optional[int] = setting(
        None,
        "patches per step, or auto (default): from free GPU memory, or what keeps a CPU step ≤ 2 s (at most 2 on "
        "a CPU for an effect finer than every multi-resolution stage); never more than the pairs",
    )
    crop_size: int = setting(DEFAULT_CROP_SIZE, "patch size in pixels, a multiple of 16")
    initial_weights: str = setting(
        "none", "none, upscale or deblur (the shipped networks), or a .cat (model or checkpoint)"
    )
    checkpoint_interval: int = setting(1000, "steps between checkpoints")
    image_interval: int = setting(100, "steps between contact sheets")
    channels_in: str = setting("rgb", "Input channels: rgb, rgba, alpha, mask.a, R,G,B…")
    channels_out: str = setting("rgb", "Ground Truth channels")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", "where to train", choices=DEVICES)
    precision: str = setting(
        "auto", "maths precision; auto: bf16/fp16 autocast where the device has it and it is faster", choices=PRECISIONS
    )
    learning_rate: float = setting(5e-4, "Adam's starting learning rate (cosine decay)")
    difference_share: float = setting(0.5, "share of patches centred where Input and Ground Truth differ")
    lstm: bool = setting(False, "a ConvLSTM at the network's bottleneck")
    multi_resolution: bool = setting(
        True,
        "train the first 20% of steps at 1/4 resolution and the next 20% at 1/2 (small full-resolution crops for "
        "a local effect such as a paint-out), each stage only where the effect allows it; the plan is printed",
    )
    temporal: int = setting(
        0,
        f"the network also sees N Input frames on each side, against flicker (0-{MAX_TEMPORAL}); pairs without "
        "all their neighbours are left out",
        metavar="N",
    )
    loss: str = setting("charbonnier", "the pixel loss (docs/decisions.md)", choices=LOSSES)
    level_weights: str = setting(
        "auto",
        "the loss's pyramid levels, coarse to full resolution: pixels 1:4:16, doubling 1:2:4 or equal 1:1:1; auto: "
        "for an effect finer than every multi-resolution stage, trained from scratch, pixels with up to 2 patches "
        "per step on Small or Medium and doubling with more on Small, else equal (the run records its choice)",
        choices=LEVEL_WEIGHTINGS,
    )
    gradient_clip: float = setting(
        0.0,
        "clip a step's gradients to K times the median norm of the last 100 steps, against a run blowing up "
        "(0: off, by measurement: docs/decisions.md)",
        metavar="K",
    )
    resume: bool = setting(False, "resume from the latest checkpoint in --out")

    def validate(self) -> TrainConfig:
        """Check values that need no files; raise :class:`ConfigError` naming the setting."""
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("give either steps or epochs, not both")
        for name in ("steps", "epochs", "batch_size", "checkpoint_interval", "image_interval", "crop_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (got {value})")
            if value is not None and value > MAX_COUNT:
                raise ConfigError(f"{name} must be at most {MAX_COUNT} (got {value})")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be a whole number from 0 to {MAX_SEED} (got {self.seed})")
        if self.crop_size < 16:
            raise ConfigError(f"crop_size must be at least 16 pixels (got {self.crop_size})")
        _check_choice("model_size", self.model_size.lower(), MODEL_SIZES)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("level_weights", self.level_weights, LEVEL_WEIGHTINGS)
        temporal = self.temporal
        if isinstance(temporal, bool) or not isinstance(temporal, int) or not 0 <= temporal <= MAX_TEMPORAL:
            raise ConfigError(
                "temporal must be a whole number of neighbouring frames on each side, "
                f"0 to {MAX_TEMPORAL} (got {self.temporal!r})"
            )
        if not 0.0 <= self.difference_share <= 1.0:
            raise ConfigError(f"difference_share must be between 0 and 1 (got {self.difference_share})")
        clip = self.gradient_clip
        if not is_gradient_clip(clip):
            raise ConfigError(
                f"gradient_clip must be 0 (off) or at least 1 (times the recent median gradient norm; got {clip!r})"
            )
        if not 0.0 < self.learning_rate < 1.0:
            raise ConfigError(f"learning_rate must be between 0 and 1 (got {self.learning_rate})")
        return self


@dataclass
class InferConfig:
    """One inference job: a ``.cat`` over an image sequence."""

    model: str = ""
    input: str = ""
    output: str = ""
    frames: Optional[str] = None
    device: str = "auto"
    half: bool = False
    tile: Optional[int] = None  #: None: automatic; 0: the whole frame at once
    overlap: int = DEFAULT_OVERLAP  #: pixels neighbouring tiles share (docs/decisions.md)
    #: typing.Dict: from_dict evaluates these annotations (get_type_hints), and dict[...] needs Python 3.9
    extra: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006

    def validate(self) -> InferConfig:
        _check_choice("device", self.device, DEVICES)
        if self.tile is not None and self.tile < 0:
            raise ConfigError(f"tile must be 0 (whole frame) or a size in pixels (got {self.tile})")
        if self.overlap < 0:
            raise ConfigError(f"overlap must not be negative (got {self.overlap})")
        return self


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)} (got {value!r})")


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML-safe values."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "config") -> T:
    """Build a config dataclass from a mapping, checking names and types.

    Unknown keys and wrong types raise :class:`ConfigError` naming ``source`` and the key, so a typo in
    a farm job's YAML fails before hours of queueing rather than silently using a default.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {key: _coerce(value, hints[key], f"{source}: {key}") for key, value in data.items()}
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def _coerce(value: Any, hint: Any, where: str) -> Any:
    # __origin__/__args__ rather than typing.get_origin/get_args (Python 3.8+): Nuke 13 has Python 3.7
    origin = getattr(hint, "__origin__", None)
    if origin is Union:
        options = getattr(hint, "__args__", ())
        if value is None and type(None) in options:
            return None
        (hint,) = [option for option in options if option is not type(None)]
        origin = getattr(hint, "__origin__", None)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping (got {value!r})")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false (got {value!r})")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number (got {value!r})")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number (got {value!r})")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be text (got {value!r})")
        return str(value)
    return value


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read a config dataclass from a YAML file (``yaml.safe_load``: no code runs from it).

    Relative paths in it (:data:`PATH_SETTINGS`) are relative to the file's folder, so
    ``copycat train --config run/config.yaml --resume`` works from any directory (see
    :func:`resolve_paths`). Anything that is not a small UTF-8 YAML mapping (an EXR given by mistake, a
    binary file, a document nested thousands deep) is one :class:`ConfigError` naming the file.
    """
    import yaml  # here, not at the top: Nuke imports this module where pyyaml may be missing

    path = Path(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is over {MAX_CONFIG_BYTES} bytes: not a job YAML (give a config.yaml)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a YAML text file (it is binary, or not UTF-8): give a config.yaml") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    except (RecursionError, ValueError) as error:  # nesting deeper than the stack, a 5000-digit integer
        raise ConfigError(f"{path} is not a usable YAML file ({type(error).__name__}): give a config.yaml") from None
    if isinstance(data, Mapping):
        data = resolve_paths(data, path.parent)
    return from_dict(cls, data or {}, source=str(path))


def resolve_paths(data: Mapping[str, Any], base: str | Path) -> dict[str, Any]:
    """``data`` with its relative path settings made absolute against ``base`` (a YAML file's folder).

    ``copycat train`` writes absolute paths into a run's ``config.yaml``; a relative path is one a person
    wrote, relative to the file, as in most tools. Files written by earlier versions held paths relative
    to where training started; where a path exists only that way (or ``out`` names the run the file sits
    in), that reading is kept so old runs still resume.
    """
    folder = Path(os.path.abspath(base))
    resolved = dict(data)
    for key in PATH_SETTINGS:
        value = resolved.get(key)
        if not isinstance(value, str) or not value or os.path.isabs(os.path.expanduser(value)):
            continue
        if key == "initial_weights" and value.lower() in NAMED_WEIGHTS:
            continue
        beside = Path(os.path.normpath(folder / os.path.expanduser(value)))
        legacy = Path(os.path.abspath(os.path.expanduser(value)))
        if key == "out" and not beside.exists() and Path(value).name == folder.name and _is_run(folder):
            resolved[key] = str(folder)  # an old run's own config.yaml, read from elsewhere
        elif not _exists(beside) and _exists(legacy):
            resolved[key] = str(legacy)
        else:
            resolved[key] = str(beside)
    return resolved


def _exists(path: Path) -> bool:
    """Whether a path, or a sequence pattern's folder (``shot.####.exr``: its frames are not checked), exists."""
    pattern = "#" in path.name or "%" in path.name or "@" in path.name
    return path.exists() or (pattern and path.parent.is_dir())


def _is_run(folder: Path) -> bool:
    return (folder / "loss.csv").is_file() or (folder / "checkpoints").is_dir()


def save_yaml(config: Any, path: str | Path) -> Path:
    """Write a config dataclass as YAML, atomically (with the standard library where pyyaml is missing)."""
    if importlib.util.find_spec("yaml") is None:  # a locked-down Nuke: looked up, never attempted
        return write_text_atomic(path, flat_yaml(to_dict(config)))
    import yaml

    return write_text_atomic(path, yaml.safe_dump(to_dict(config), sort_keys=False))


_YAML_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?")


def _yaml_scalar(value: Any, key: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if not _YAML_FLOAT.fullmatch(text):  # YAML 1.1 (pyyaml) reads 1e-05 as text: write 1.0e-05
            mantissa, _, exponent = text.partition("e")
            text = mantissa + ".0" + ("e" + exponent if exponent else "")
        return text
    if isinstance(value, str):
        # a JSON string is a YAML double-quoted scalar with the same escapes (ASCII only: \uXXXX for the rest)
        return json.dumps(value, ensure_ascii=True)
    raise ConfigError(f"cannot write {key}={value!r} as YAML without pyyaml: install pyyaml")


def flat_yaml(data: Mapping[str, Any]) -> str:
    """YAML for a mapping of scalars (None, bools, numbers, text), written with the standard library.

    What a config dataclass holds; ``yaml.safe_load`` reads it back to equal values (tests check it). Nested
    values raise :class:`ConfigError`.
    """
    return "".join(f"{key}: {_yaml_scalar(value, key)}\n" for key, value in data.items())


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text to ``path`` atomically (:mod:`copycat_nuke.atomic`)."""
    return atomic.write_text(path, text)
