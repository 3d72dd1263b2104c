"""The ``.cat`` container: save, load, validate and describe trained networks and checkpoints.

A copycat_nuke ``.cat`` is an ordinary zip archive (documented in ``docs/catfile.md``) holding:

``manifest.yaml``        format version, architecture and its arguments, channels in and out, transfer,
                         scale factor, kind, training summary and the job config that made it
``weights.safetensors``  the network's ``state_dict``
``resume.yaml``          checkpoints only: step, optimizer/scheduler/RNG state (structure, plain data)
``resume.safetensors``   checkpoints only: the tensors that ``resume.yaml`` refers to
``preview.png``          optional: a contact sheet or before/after picture for browsers and panels

Reading never executes anything from the file: there is no pickle anywhere (no ``torch.load``), YAML is
read with a safe loader that also refuses aliases, and every member is checked (names, declared sizes,
compression ratio, manifest fields, tensor names, dtypes and shapes against the network built on the
``meta`` device) before any weights are read. Every problem is a :class:`CatFileError` naming the file.

Writing is atomic: the archive is written to a temporary file beside the target and moved over it with
:func:`os.replace`, so a crash or a full disk never leaves a half-written ``.cat`` behind.

Nuke's own ``.cat`` files (CopyCat, CatFileCreator) are a different, proprietary format; they are
recognised and refused with a message that says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
import yaml
from torch import nn

from copycat_nuke import atomic
from copycat_nuke.catcodec import (
    DTYPE_SIZES,
    FLOAT_DTYPES,
    MAX_COMPRESSION_RATIO,
    MAX_DEPTH,
    MAX_SAFETENSORS_HEADER_BYTES,
    NUKE_CAT_HINT,
    Invalid,
    check_member,
    check_plain,
    dtype_name,
    flatten_optimizer_state,
    numel,
    open_zip,
    read_member,
    read_safetensors,
    read_safetensors_header,
    revive,
    save_safetensors,
    tensor_references,
    to_plain,
    unflatten_optimizer_state,
)
from copycat_nuke.catdescribe import format_description
from copycat_nuke.errors import CatFileError, ConfigError
from copycat_nuke.models import ARCHITECTURES, validate_arguments
from copycat_nuke.transfer import Transfer

#: The format this version writes. It reads every version from 1 up to this one.
FORMAT_VERSION = 1

MANIFEST = "manifest.yaml"
WEIGHTS = "weights.safetensors"
RESUME = "resume.yaml"
RESUME_TENSORS = "resume.safetensors"
PREVIEW = "preview.png"
#: The only member names a version-1 archive may contain; anything else (``../x``, absolute paths,
#: directories, ``data.pkl``) is refused. Members are read by exact name and never extracted to disk.
MEMBERS = frozenset({MANIFEST, WEIGHTS, RESUME, RESUME_TENSORS, PREVIEW})

KINDS = ("model", "checkpoint")

# Safety limits. Declared sizes are checked before anything is decompressed, and zipfile never
# decompresses more than a member's declared size, so a lying header cannot exhaust memory either.
#: Largest ``manifest.yaml`` (uncompressed bytes).
MAX_MANIFEST_BYTES = 1 << 20
#: Largest ``resume.yaml`` (uncompressed bytes); Python's random state alone is about 8 KB.
MAX_RESUME_YAML_BYTES = 8 << 20
#: Largest ``preview.png``.
MAX_PREVIEW_BYTES = 16 << 20
#: Largest sum of all members' uncompressed sizes (a Large MSRN is 62 MB of float32 weights).
MAX_TOTAL_BYTES = 4 << 30
#: Longest channel name.
MAX_CHANNEL_NAME = 64
#: Bytes of resume tensors allowed beyond the optimizer's per-parameter state: RNG states (torch's CPU
#: generator is 5056 bytes; CUDA's 16 per device) and small scalars, with room to spare.
RESUME_EXTRA_BYTES = 1 << 20
#: Optimizer state tensors per parameter: Adam's exp_avg and exp_avg_sq (AMSGrad adds max_exp_avg_sq).
OPTIMIZER_STATES_PER_PARAMETER = 3

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class Manifest:
    """What ``manifest.yaml`` says: everything needed to rebuild and use the network, and its history.

    All values are plain YAML data (``str``, ``int``, ``float``, ``bool``, ``None``, lists and mappings
    with ``str`` keys); tuples, paths and tensors are refused on save.
    """

    architecture: str
    """Key of :data:`copycat_nuke.models.ARCHITECTURES`, e.g. ``"msrn"``."""
    arguments: dict[str, Any]
    """Constructor arguments, checked by :func:`copycat_nuke.models.validate_arguments`. Saving writes
    every argument, defaults included, so a file never depends on this version's defaults."""
    channels_in: list[str]
    """Input channel names as in the training frames (``["R", "G", "B"]``); one per input channel."""
    channels_out: list[str]
    """Output channel names; one per output channel."""
    transfer: dict[str, Any]
    """How linear light maps to network space, e.g. ``{"name": "slog", "params": {...}}``; interpreted
    by ``copycat_nuke.transfer``."""
    scale: int = 1
    """Output size / input size: 1 for same-size jobs, 2 for a ×2 Upscale (1..8)."""
    kind: str = "model"
    """``"model"`` or ``"checkpoint"``; :func:`save_cat` sets it from whether resume state is given."""
    training: dict[str, Any] = field(default_factory=dict)
    """Summary: steps, final_loss, seconds, device, hardware, source_frames, created (ISO 8601),
    copycat_version, ..."""
    config: dict[str, Any] = field(default_factory=dict)
    """The job config that made this file (``copycat train --config`` repeats it)."""
    format_version: int = FORMAT_VERSION


@dataclass
class ResumeState:
    """What a checkpoint adds so that training resumes exactly where it stopped.

    Values may be plain YAML data, tuples and ``torch.Tensor`` s at any depth: pass
    ``optimizer.state_dict()`` and e.g. ``{"torch": torch.get_rng_state(), "numpy":
    rng.bit_generator.state, "python": random.getstate()}`` as they are. Tuples come back as tuples and
    tensors as CPU tensors, so ``optimizer.load_state_dict`` and ``random.setstate`` restore exactly.

    ``scheduler`` must be plain data: torch's ``LambdaLR`` saves ``None`` for plain functions (the lambda
    itself is code and is never stored); rebuild the schedule from the config and restore the step.
    """

    step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CatFile:
    """A loaded ``.cat``: its manifest, weights (on ``map_location``) and, for checkpoints, resume state."""

    manifest: Manifest
    weights: dict[str, torch.Tensor]
    resume: ResumeState | None = None
    path: Path | None = None
    preview: bytes | None = None
    """PNG bytes of ``preview.png``, if the file has one."""

    def build_model(self) -> nn.Module:
        """Build the network on the weights' device, load the weights strictly; returned in eval mode."""
        cls = ARCHITECTURES[self.manifest.architecture]
        device = next(iter(self.weights.values())).device if self.weights else torch.device("cpu")
        with torch.device(device):
            model = cls(**self.manifest.arguments)
        model.load_state_dict(self.weights, strict=True)
        return model.eval()


# --------------------------------------------------------------------------------------------- saving


def save_cat(
    path: PathLike,
    manifest: Manifest,
    weights: Mapping[str, torch.Tensor],
    resume: ResumeState | None = None,
    *,
    preview: bytes | None = None,
) -> Path:
    """Validate and atomically write a ``.cat``; return its path.

    ``weights`` is the network's ``state_dict()``: names and shapes must match ``manifest``'s
    architecture, dtypes be floating point and values finite (a file with NaN weights would only ever
    produce NaN frames). With ``resume`` the file is a checkpoint (``manifest.kind`` is set to
    ``"checkpoint"``), without it a model. ``preview`` is optional PNG bytes.

    Raises :class:`CatFileError` naming ``path`` when anything would make an unreadable file; the
    target is then left as it was.
    """
    target = Path(path)
    with _problems_reported(target, "cannot write "):
        manifest = dataclasses.replace(manifest, kind="checkpoint" if resume is not None else "model")
        members = _encode_members(manifest, weights, resume, preview)
        _write_atomically(target, members)
    return target


def _encode_members(
    manifest: Manifest,
    weights: Mapping[str, torch.Tensor],
    resume: ResumeState | None,
    preview: bytes | None,
) -> list[tuple[str, bytes]]:
    """Every member's bytes, checked by the same functions that check them on load."""
    if manifest.format_version != FORMAT_VERSION:
        raise Invalid(f"this copycat_nuke writes format version {FORMAT_VERSION} only")
    architecture = manifest.architecture
    if architecture in ARCHITECTURES and isinstance(manifest.arguments, Mapping):
        manifest = dataclasses.replace(manifest, arguments=complete_arguments(architecture, manifest.arguments))
    manifest_data = {f.name: getattr(manifest, f.name) for f in dataclasses.fields(Manifest)}
    order = ["format_version", "kind", "architecture", "arguments", "channels_in", "channels_out"]
    order += ["scale", "transfer", "training", "config"]
    plain = {key: to_plain(manifest_data[key], key, 0, None) for key in order}
    _manifest_from_data(plain)
    manifest_bytes = _dump_yaml(plain)
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise Invalid(f"{MANIFEST} would be {len(manifest_bytes)} bytes (limit {MAX_MANIFEST_BYTES})")

    cpu_weights: dict[str, torch.Tensor] = {}
    found: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, tensor in weights.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise Invalid(f"weights must map str names to tensors, got {name!r}: {type(tensor).__name__}")
        found[name] = (FLOAT_DTYPES.get(tensor.dtype, str(tensor.dtype)), tuple(tensor.shape))
        cpu_weights[name] = tensor.detach().to("cpu").contiguous()
    _check_weight_entries(manifest, found)
    _check_finite(cpu_weights)
    members = [(MANIFEST, manifest_bytes), (WEIGHTS, save_safetensors(cpu_weights))]

    if resume is not None:
        tensors: dict[str, torch.Tensor] = {}
        resume_plain = {
            "step": to_plain(resume.step, "step", 0, tensors),
            "optimizer": to_plain(resume.optimizer, "optimizer", 0, tensors),
            "scheduler": to_plain(resume.scheduler, "scheduler", 0, tensors),
            "rng": to_plain(resume.rng, "rng", 0, tensors),
            "extra": to_plain(resume.extra, "extra", 0, tensors),
        }
        _check_resume_data(resume_plain)
        _check_resume_entries(manifest, {name: (dtype_name(t), tuple(t.shape)) for name, t in tensors.items()})
        resume_bytes = _dump_yaml(resume_plain)
        if len(resume_bytes) > MAX_RESUME_YAML_BYTES:
            raise Invalid(f"{RESUME} would be {len(resume_bytes)} bytes (limit {MAX_RESUME_YAML_BYTES})")
        members += [(RESUME, resume_bytes), (RESUME_TENSORS, save_safetensors(tensors))]

    if preview is not None:
        if not bytes(preview).startswith(_PNG_SIGNATURE) or len(preview) > MAX_PREVIEW_BYTES:
            raise Invalid(f"preview must be PNG bytes of at most {MAX_PREVIEW_BYTES} bytes")
        members.append((PREVIEW, bytes(preview)))
    total = sum(len(data) for _, data in members)
    if total > MAX_TOTAL_BYTES:
        raise Invalid(f"the file would be {total} bytes (limit {MAX_TOTAL_BYTES})")
    return members


def complete_arguments(architecture: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` with every constructor default filled in, so the file never relies on defaults."""
    complete = {
        name: parameter.default
        for name, parameter in inspect.signature(ARCHITECTURES[architecture]).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    complete.update(arguments)
    return complete


def _dump_yaml(data: Any) -> bytes:
    text = yaml.dump(
        data, Dumper=yaml.SafeDumper, sort_keys=False, allow_unicode=False, default_flow_style=None, width=100
    )
    return text.encode("utf-8")


def _write_atomically(target: Path, members: list[tuple[str, bytes]]) -> None:
    """Write a zip to a temporary file beside ``target``, flush it to disk, then rename it over
    (:mod:`copycat_nuke.atomic`: whole or not at all, readable by other users)."""
    with atomic.atomic_path(target, durable=True) as temporary:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as stream:
            with zipfile.ZipFile(stream, "w") as archive:
                for name, data in members:
                    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
                    info.external_attr = 0o644 << 16
                    # Weights are dense floats that deflate barely shrinks: store them, deflate YAML.
                    info.compress_type = zipfile.ZIP_DEFLATED if name.endswith(".yaml") else zipfile.ZIP_STORED
                    archive.writestr(info, data)
            stream.flush()
            os.fsync(stream.fileno())


# -------------------------------------------------------------------------------------------- loading


def load_cat(path: PathLike, *, map_location: str | torch.device = "cpu") -> CatFile:
    """Read and fully validate a ``.cat``; weights are moved to ``map_location``.

    Resume tensors stay on the CPU (``torch.set_rng_state`` needs a CPU tensor;
    ``optimizer.load_state_dict`` moves optimizer state to the parameters' device itself).

    Raises :class:`CatFileError` naming the file if it is missing, not a copycat_nuke ``.cat``, damaged,
    hostile, written by a newer version, or does not fit its own manifest.
    """
    source = Path(path)
    with _problems_reported(source), _open_cat(source) as (archive, infos, manifest):
        weights = read_safetensors(archive, infos[WEIGHTS], lambda entries: _check_weight_entries(manifest, entries))
        _check_finite(weights)
        resume = _read_resume(archive, infos, manifest) if manifest.kind == "checkpoint" else None
        preview = None
        if PREVIEW in infos:
            preview = read_member(archive, infos[PREVIEW])
            if not preview.startswith(_PNG_SIGNATURE):
                raise Invalid(f"{PREVIEW} is not a PNG image")
    weights = {name: tensor.to(map_location) for name, tensor in weights.items()}
    return CatFile(manifest=manifest, weights=weights, resume=resume, path=source, preview=preview)


def read_manifest(path: PathLike) -> Manifest:
    """Read and validate only the manifest (no weights are read): cheap, for ``copycat info`` and the
    Inference node's channelsIn/channelsOut."""
    source = Path(path)
    with _problems_reported(source), _open_cat(source) as (_, _, manifest):
        return manifest


def describe(path: PathLike) -> dict[str, Any]:
    """What a compositor wants to know about a ``.cat``, read without loading the weights.

    Keys: ``file``, ``file_mb``, ``format_version``, ``kind``, ``architecture``, ``arguments``,
    ``parameters`` (count), ``weights_mb``, ``channels_in``, ``channels_out``, ``scale``, ``transfer``,
    ``training`` (the manifest's summary: steps, final_loss, seconds, device, source_frames, created...).
    Sizes are in MB of 10**6 bytes.
    """
    source = Path(path)
    with _problems_reported(source), _open_cat(source) as (archive, infos, manifest):
        with archive.open(infos[WEIGHTS]) as stream:
            entries, data_bytes, _ = read_safetensors_header(stream, infos[WEIGHTS])
        _check_weight_entries(manifest, entries)
        if manifest.kind == "checkpoint":  # the resume state's headers too: info refuses what loading would
            _, check = _resume_checker(archive, infos, manifest)
            with archive.open(infos[RESUME_TENSORS]) as stream:
                check(read_safetensors_header(stream, infos[RESUME_TENSORS])[0])
        file_bytes = source.stat().st_size
    parameters = sum(numel(shape) for _, shape in entries.values())
    return {
        "file": str(source),
        "file_mb": round(file_bytes / 1e6, 3),
        "format_version": manifest.format_version,
        "kind": manifest.kind,
        "architecture": manifest.architecture,
        "arguments": dict(manifest.arguments),
        "parameters": parameters,
        "weights_mb": round(data_bytes / 1e6, 3),
        "channels_in": list(manifest.channels_in),
        "channels_out": list(manifest.channels_out),
        "scale": manifest.scale,
        "transfer": dict(manifest.transfer),
        "training": dict(manifest.training),
    }


@contextlib.contextmanager
def _open_cat(path: Path) -> Iterator[tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo], Manifest]]:
    """Open the archive and check its member list, every declared size and the manifest."""
    archive = open_zip(path)
    with archive:
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            if info.filename in infos:
                raise Invalid(f"the archive holds {info.filename!r} twice")
            infos[info.filename] = info
        if MANIFEST not in infos:
            if any(name.endswith(".pkl") for name in infos):
                raise Invalid(
                    "this is a PyTorch file (torch.save or TorchScript), not a copycat_nuke .cat; it holds "
                    "pickled Python objects, which copycat_nuke never loads because they can run code"
                )
            raise Invalid(f"not a copycat_nuke .cat file (the archive has no {MANIFEST}). {NUKE_CAT_HINT}")
        check_member(infos[MANIFEST], MAX_MANIFEST_BYTES)
        manifest_data = _load_yaml(read_member(archive, infos[MANIFEST]), MANIFEST)
        _check_format_version(manifest_data)  # first, so newer files get "upgrade", not "unknown key"
        unexpected = sorted(set(infos) - MEMBERS)
        if unexpected:
            names = ", ".join(repr(name) for name in unexpected[:5])
            raise Invalid(f"unexpected member(s) {names}; a .cat holds only {', '.join(sorted(MEMBERS))}")
        manifest = _manifest_from_data(manifest_data)
        required = {MANIFEST, WEIGHTS} | ({RESUME, RESUME_TENSORS} if manifest.kind == "checkpoint" else set())
        missing = sorted(required - set(infos))
        if missing:
            raise Invalid(f"the {manifest.kind} has no {', '.join(missing)}")
        if manifest.kind == "model" and {RESUME, RESUME_TENSORS} & set(infos):
            raise Invalid(f"a model holds no resume state, but this one has {RESUME} or {RESUME_TENSORS}")
        limits = {
            MANIFEST: MAX_MANIFEST_BYTES,
            WEIGHTS: 8 + MAX_SAFETENSORS_HEADER_BYTES + 8 * _expected_parameter_count(manifest),
            RESUME: MAX_RESUME_YAML_BYTES,
            RESUME_TENSORS: 8 + MAX_SAFETENSORS_HEADER_BYTES + _resume_budget(manifest),
            PREVIEW: MAX_PREVIEW_BYTES,
        }
        for name, info in infos.items():
            check_member(info, limits[name])
        total = sum(info.file_size for info in infos.values())
        if total > MAX_TOTAL_BYTES:
            raise Invalid(f"the members add up to {total} bytes uncompressed (limit {MAX_TOTAL_BYTES})")
        yield archive, infos, manifest


def _resume_budget(manifest: Manifest) -> int:
    """Most bytes of resume tensors the manifest's network can need: its optimizer's per-parameter state
    (at most :data:`OPTIMIZER_STATES_PER_PARAMETER` copies of every parameter, in float64 at most, and a
    scalar step per parameter tensor) plus :data:`RESUME_EXTRA_BYTES` for RNG states. A checkpoint that
    declares more is refused before any of it is read (a 43 MB file must not make a 1.5 GB allocation)."""
    shapes = _expected_parameter_shapes(manifest)
    elements = sum(numel(shape) for shape in shapes.values())
    return 8 * (OPTIMIZER_STATES_PER_PARAMETER * elements + len(shapes)) + RESUME_EXTRA_BYTES


def _expected_parameter_shapes(manifest: Manifest) -> dict[str, tuple[int, ...]]:
    """The network's parameters in ``model.parameters()`` order (the optimizer's numbering), on ``meta``."""
    with torch.device("meta"):
        model = ARCHITECTURES[manifest.architecture](**manifest.arguments)
    return {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}


def _check_resume_entries(manifest: Manifest, entries: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
    """Resume tensors must fit the network: the total within :func:`_resume_budget`, and optimizer state
    ``optimizer/state/<i>/<key>`` shaped like parameter ``i`` (``step`` a scalar), floating point."""
    budget = _resume_budget(manifest)
    shapes = list(_expected_parameter_shapes(manifest).values())
    total = 0
    for name, (dtype, shape) in sorted(entries.items()):
        size = numel(shape) * DTYPE_SIZES[dtype]
        total += size
        if size > budget:
            raise Invalid(
                f"{RESUME_TENSORS}: tensor {name!r} declares {size} bytes, more than the whole resume state of this "
                f"{manifest.architecture} network can need ({budget}); the checkpoint is damaged or hostile"
            )
        parts = name.split("/")
        if len(parts) == 4 and parts[:2] == ["optimizer", "state"]:
            index = int(parts[2]) if parts[2].isdigit() else -1
            if not 0 <= index < len(shapes):
                raise Invalid(
                    f"{RESUME_TENSORS}: tensor {name!r} is state of parameter {parts[2]}, which the network lacks"
                )
            wanted = () if parts[3] == "step" else shapes[index]
            if (
                dtype not in FLOAT_DTYPES.values()
                or (parts[3] != "step" and tuple(shape) != wanted)
                or (parts[3] == "step" and numel(shape) != 1)
            ):
                raise Invalid(
                    f"{RESUME_TENSORS}: tensor {name!r} is {dtype} {list(shape)}; the optimizer state of parameter "
                    f"{index} must be floating point, shaped {list(wanted)}"
                )
        elif name == "rng/torch" and (dtype != "U8" or len(shape) != 1):
            raise Invalid(
                f"{RESUME_TENSORS}: tensor 'rng/torch' is {dtype} {list(shape)}; a torch RNG state is U8, 1-D"
            )
    if total > budget:
        sizes = {name: numel(shape) * DTYPE_SIZES[dtype] for name, (dtype, shape) in entries.items()}
        largest = max(sizes, key=lambda name: sizes[name])
        raise Invalid(
            f"{RESUME_TENSORS} declares {total} bytes of tensors (the largest, {largest!r}, declares "
            f"{sizes[largest]} bytes), more than the resume state of this {manifest.architecture} network can "
            f"need ({budget}); the checkpoint is damaged or hostile"
        )


def _expected_parameter_count(manifest: Manifest) -> int:
    return sum(numel(shape) for shape in _expected_shapes(manifest).values())


def _expected_shapes(manifest: Manifest) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the network's ``state_dict``, built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = ARCHITECTURES[manifest.architecture](**manifest.arguments)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


# ------------------------------------------------------------------------------------------ manifest

_MANIFEST_KEYS = {f.name for f in dataclasses.fields(Manifest)}


def _check_format_version(data: Any) -> None:
    if not isinstance(data, dict):
        raise Invalid(f"{MANIFEST} is not a mapping")
    version = data.get("format_version")
    if type(version) is not int or version < 1:
        raise Invalid(f"{MANIFEST} has no valid format_version (got {version!r})")
    if version > FORMAT_VERSION:
        raise Invalid(
            f"this .cat was written by format version {version}; this copycat_nuke reads up to "
            f"{FORMAT_VERSION}: upgrade copycat_nuke"
        )


def _manifest_from_data(data: Any) -> Manifest:
    """Check every manifest field (types, ranges, consistency with the architecture); build a Manifest."""
    _check_format_version(data)
    unknown = sorted(str(key) for key in set(data) - _MANIFEST_KEYS)
    missing = sorted({"architecture", "arguments", "channels_in", "channels_out", "transfer"} - set(data))
    if unknown:
        raise Invalid(f"{MANIFEST} has unknown key(s) {', '.join(unknown)}")
    if missing:
        raise Invalid(f"{MANIFEST} lacks {', '.join(missing)}")
    for key in ("arguments", "transfer", "training", "config"):
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise Invalid(f"{key} must be a mapping, got {type(value).__name__}")
        check_plain(value, key, 0)
    architecture = data["architecture"]
    if not isinstance(architecture, str):
        raise Invalid(f"architecture must be a name, got {architecture!r}")
    if not all(isinstance(key, str) for key in data["arguments"]):
        raise Invalid(f"arguments must be named, got {data['arguments']!r}")
    try:
        arguments = validate_arguments(architecture, data["arguments"])
    except ConfigError as exc:
        raise Invalid(str(exc)) from None
    defaults = complete_arguments(architecture, {})
    for key, expected in (("channels_in", "in_channels"), ("channels_out", "out_channels")):
        channels = data[key]
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(name, str) and 0 < len(name) <= MAX_CHANNEL_NAME for name in channels)
        ):
            raise Invalid(f"{key} must be a non-empty list of channel names, got {channels!r}")
        if len(set(channels)) != len(channels):
            raise Invalid(f"{key} names a channel twice: {channels!r}")
        count = arguments.get(expected, defaults.get(expected))
        if len(channels) != count:
            raise Invalid(f"{key} has {len(channels)} names but the network has {expected}={count}")
    transfer = data["transfer"]
    if not isinstance(transfer.get("name"), str) or not transfer["name"]:
        raise Invalid(f"transfer must have a name, got {transfer!r}")
    try:  # the same check inference makes, so `copycat info` refuses what `copycat infer` would
        Transfer.from_dict(transfer)
    except ConfigError as exc:
        raise Invalid(f"{MANIFEST}: {exc}") from None
    scale = data.get("scale", 1)
    if type(scale) is not int or not 1 <= scale <= 8:
        raise Invalid(f"scale must be an integer from 1 to 8, got {scale!r}")
    kind = data.get("kind", "model")
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return Manifest(
        architecture=architecture,
        arguments=arguments,
        channels_in=list(data["channels_in"]),
        channels_out=list(data["channels_out"]),
        transfer=transfer,
        scale=scale,
        kind=kind,
        training=data.get("training", {}),
        config=data.get("config", {}),
        format_version=data["format_version"],
    )


# ------------------------------------------------------------------------------------------- weights


def _check_weight_entries(manifest: Manifest, found: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
    """Tensor names, dtypes (safetensors names) and shapes must be exactly the network's state_dict."""
    expected = _expected_shapes(manifest)
    problems = []
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        problems.append(f"missing tensor(s) {_some(missing)}")
    if extra:
        problems.append(f"unexpected tensor(s) {_some(extra)}")
    for name in sorted(set(expected) & set(found)):
        dtype, shape = found[name]
        if dtype not in FLOAT_DTYPES.values():
            problems.append(f"{name} is {dtype}, but weights must be F16, BF16, F32 or F64")
        elif tuple(shape) != expected[name]:
            problems.append(f"{name} has shape {list(shape)}, the network needs {list(expected[name])}")
    if problems:
        raise Invalid(
            f"the weights do not fit the manifest's {manifest.architecture} network: " + "; ".join(problems[:6])
        )


def _check_finite(weights: Mapping[str, torch.Tensor]) -> None:
    bad = [name for name, tensor in weights.items() if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise Invalid(f"weights {_some(bad)} hold NaN or infinite values (did training diverge?)")


def _some(names: list[str], shown: int = 5) -> str:
    text = ", ".join(names[:shown])
    return f"{text} and {len(names) - shown} more" if len(names) > shown else text


# -------------------------------------------------------------------------------------------- resume


def _resume_checker(
    archive: zipfile.ZipFile, infos: Mapping[str, zipfile.ZipInfo], manifest: Manifest
) -> tuple[Any, Callable[[Mapping[str, tuple[str, tuple[int, ...]]]], None]]:
    """``resume.yaml``'s data, checked, and the check its tensors' safetensors header must pass."""
    data = _load_yaml(read_member(archive, infos[RESUME]), RESUME)
    _check_resume_data(data)
    references = tensor_references(data)

    def check(entries: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
        if set(entries) != set(references):
            missing = sorted(set(references) - set(entries))
            extra = sorted(set(entries) - set(references))
            raise Invalid(
                f"{RESUME_TENSORS} does not match {RESUME}: missing {_some(missing) or 'none'}, "
                f"unreferenced {_some(extra) or 'none'}"
            )
        _check_resume_entries(manifest, entries)

    return data, check


def _read_resume(archive: zipfile.ZipFile, infos: Mapping[str, zipfile.ZipInfo], manifest: Manifest) -> ResumeState:
    data, check = _resume_checker(archive, infos, manifest)
    tensors = read_safetensors(archive, infos[RESUME_TENSORS], check)
    revived = revive(data, tensors)
    return ResumeState(
        step=revived["step"],
        optimizer=revived["optimizer"],
        scheduler=revived["scheduler"],
        rng=revived["rng"],
        extra=revived["extra"],
    )


def _check_resume_data(data: Any) -> None:
    keys = {"step", "optimizer", "scheduler", "rng", "extra"}
    if not isinstance(data, dict) or set(data) != keys:
        raise Invalid(f"{RESUME} must be a mapping of exactly {', '.join(sorted(keys))}")
    if type(data["step"]) is not int or data["step"] < 0:
        raise Invalid(f"{RESUME}: step must be a non-negative integer, got {data['step']!r}")
    for key in ("optimizer", "scheduler", "rng", "extra"):
        if not isinstance(data[key], dict):
            raise Invalid(f"{RESUME}: {key} must be a mapping")
        check_plain(data[key], key, 0)
    tensor_references(data)  # checks the tags' form and that no tensor is named twice


# ----------------------------------------------------------------------------------------- plain data


# ----------------------------------------------------------------------------------------------- YAML


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python tags, ever) that also refuses aliases and deep nesting, and keeps
    unquoted dates as strings.

    Aliases are how "billion laughs" documents expand a few KB into billions of nodes; nothing in a
    ``.cat`` needs them. Depth is bounded so a ``[[[[...]]]]`` document cannot exhaust the stack.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise Invalid(f"YAML aliases (*name) are not allowed in safe YAML{_where(self.peek_event().start_mark)}")
        event = self.peek_event()
        # docs/catfile.md: readers refuse every tag (even the harmless-looking !!str) and every anchor, so
        # what one reader accepts every other reader accepts too. "!" is what a quoted scalar reports.
        if getattr(event, "anchor", None) is not None:
            raise Invalid(
                f"YAML anchors and aliases (&name, *name) are not allowed in safe YAML{_where(event.start_mark)}"
            )
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!":
            raise Invalid(f"YAML tags ({tag}) are not allowed in safe YAML{_where(event.start_mark)}")
        self._depth += 1
        try:
            if self._depth > 2 * MAX_DEPTH + 4:  # tuple tags add a level or two per level of data
                raise Invalid(f"YAML is nested too deep{_where(self.peek_event().start_mark)}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Unquoted dates stay strings: YAML 1.1 would make them datetimes, which are not plain data here.
_StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _where(mark: yaml.Mark | None) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _load_yaml(data: bytes, name: str) -> Any:
    try:
        text = data.decode("utf-8")
        loader = _StrictSafeLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except Invalid as exc:
        raise Invalid(f"{name}: {exc}") from None
    except UnicodeDecodeError:
        raise Invalid(f"{name} is not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        problem = f"{exc.context or ''} {exc.problem or ''}".strip()
        if "python/" in problem:
            problem += " (Python tags are never honoured: they would run code)"
        raise Invalid(f"{name} is not valid, safe YAML: {problem}{_where(exc.problem_mark)}") from None
    except yaml.YAMLError as exc:
        raise Invalid(f"{name} is not valid, safe YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer literal over Python's digit limit
        raise Invalid(f"{name} is not valid YAML ({exc})") from None


# --------------------------------------------------------------------------------------------- errors


@contextlib.contextmanager
def _problems_reported(path: Path, verb: str = "") -> Iterator[None]:
    """Turn every expected problem into one :class:`CatFileError` that names ``path``."""
    try:
        yield
    except Invalid as exc:
        raise CatFileError(f"{verb}{path}: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CatFileError(f"{verb}{path}: the file is damaged ({exc}); copy or save it again") from None
    except FileNotFoundError:
        where = "its folder does not exist" if verb else "no such file"
        raise CatFileError(f"{verb}{path}: {where}") from None
    except OSError as exc:
        raise CatFileError(f"{verb}{path}: {exc.strerror or exc}") from None


__all__ = [
    "FORMAT_VERSION",
    "MAX_COMPRESSION_RATIO",
    "MAX_MANIFEST_BYTES",
    "MAX_TOTAL_BYTES",
    "MEMBERS",
    "CatFile",
    "Manifest",
    "ResumeState",
    "complete_arguments",
    "describe",
    "flatten_optimizer_state",
    "format_description",
    "load_cat",
    "read_manifest",
    "save_cat",
    "unflatten_optimizer_state",
]
