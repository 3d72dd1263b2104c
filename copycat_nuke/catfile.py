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
import json
import os
import secrets
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
import safetensors
import safetensors.torch
import torch
import yaml
from safetensors.torch import load as load_safetensors_bytes  # parses tensors only; never pickle
from torch import nn

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
#: Most entries a zip's central directory may list before it is parsed at all.
MAX_MEMBERS = 16

# Safety limits. Declared sizes are checked before anything is decompressed, and zipfile never
# decompresses more than a member's declared size, so a lying header cannot exhaust memory either.
#: Largest ``manifest.yaml`` (uncompressed bytes).
MAX_MANIFEST_BYTES = 1 << 20
#: Largest ``resume.yaml`` (uncompressed bytes); Python's random state alone is about 8 KB.
MAX_RESUME_YAML_BYTES = 8 << 20
#: Largest ``preview.png``.
MAX_PREVIEW_BYTES = 16 << 20
#: Largest JSON header of a safetensors member.
MAX_SAFETENSORS_HEADER_BYTES = 8 << 20
#: Largest sum of all members' uncompressed sizes (a Large MSRN is 62 MB of float32 weights).
MAX_TOTAL_BYTES = 4 << 30
#: Largest uncompressed/compressed ratio for members over :data:`RATIO_CHECK_MIN_BYTES`. Weights barely
#: compress (about 1.1:1) and YAML about 5:1; deflate can reach 1000:1 only on degenerate data (bombs).
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_MIN_BYTES = 1 << 20
#: Deepest nesting of mappings and lists in the YAML members (refuses stack-exhausting documents).
MAX_DEPTH = 32
#: Longest channel name.
MAX_CHANNEL_NAME = 64
#: Bytes of resume tensors allowed beyond the optimizer's per-parameter state: RNG states (torch's CPU
#: generator is 5056 bytes; CUDA's 16 per device) and small scalars, with room to spare.
RESUME_EXTRA_BYTES = 1 << 20
#: Optimizer state tensors per parameter: Adam's exp_avg and exp_avg_sq (AMSGrad adds max_exp_avg_sq).
OPTIMIZER_STATES_PER_PARAMETER = 3

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Reserved keys that carry what YAML cannot say directly in resume.yaml: tuples (Adam's betas must come
# back as tuples) and tensors (stored in resume.safetensors under the given name).
_TUPLE = "__tuple__"
_TENSOR = "__tensor__"

# safetensors dtype names and their sizes in bytes.
_DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_FLOAT_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64"}

PathLike = Union[str, "os.PathLike[str]"]


def _dtype_name(tensor: torch.Tensor) -> str:
    """The safetensors name of a tensor's dtype (as its header will say)."""
    names = {**_FLOAT_DTYPES, torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32"}
    names.update({torch.int64: "I64", torch.bool: "BOOL"})
    return names.get(tensor.dtype, str(tensor.dtype))


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


class _Invalid(Exception):
    """A problem with a file's contents; the public functions add the file's path and re-raise."""


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
        raise _Invalid(f"this copycat_nuke writes format version {FORMAT_VERSION} only")
    architecture = manifest.architecture
    if architecture in ARCHITECTURES and isinstance(manifest.arguments, Mapping):
        manifest = dataclasses.replace(manifest, arguments=complete_arguments(architecture, manifest.arguments))
    manifest_data = {f.name: getattr(manifest, f.name) for f in dataclasses.fields(Manifest)}
    order = ["format_version", "kind", "architecture", "arguments", "channels_in", "channels_out"]
    order += ["scale", "transfer", "training", "config"]
    plain = {key: _to_plain(manifest_data[key], key, 0, None) for key in order}
    _manifest_from_data(plain)
    manifest_bytes = _dump_yaml(plain)
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise _Invalid(f"{MANIFEST} would be {len(manifest_bytes)} bytes (limit {MAX_MANIFEST_BYTES})")

    cpu_weights: dict[str, torch.Tensor] = {}
    found: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, tensor in weights.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise _Invalid(f"weights must map str names to tensors, got {name!r}: {type(tensor).__name__}")
        found[name] = (_FLOAT_DTYPES.get(tensor.dtype, str(tensor.dtype)), tuple(tensor.shape))
        cpu_weights[name] = tensor.detach().to("cpu").contiguous()
    _check_weight_entries(manifest, found)
    _check_finite(cpu_weights)
    members = [(MANIFEST, manifest_bytes), (WEIGHTS, _save_safetensors(cpu_weights))]

    if resume is not None:
        tensors: dict[str, torch.Tensor] = {}
        resume_plain = {
            "step": _to_plain(resume.step, "step", 0, tensors),
            "optimizer": _to_plain(resume.optimizer, "optimizer", 0, tensors),
            "scheduler": _to_plain(resume.scheduler, "scheduler", 0, tensors),
            "rng": _to_plain(resume.rng, "rng", 0, tensors),
            "extra": _to_plain(resume.extra, "extra", 0, tensors),
        }
        _check_resume_data(resume_plain)
        _check_resume_entries(manifest, {name: (_dtype_name(t), tuple(t.shape)) for name, t in tensors.items()})
        resume_bytes = _dump_yaml(resume_plain)
        if len(resume_bytes) > MAX_RESUME_YAML_BYTES:
            raise _Invalid(f"{RESUME} would be {len(resume_bytes)} bytes (limit {MAX_RESUME_YAML_BYTES})")
        members += [(RESUME, resume_bytes), (RESUME_TENSORS, _save_safetensors(tensors))]

    if preview is not None:
        if not bytes(preview).startswith(_PNG_SIGNATURE) or len(preview) > MAX_PREVIEW_BYTES:
            raise _Invalid(f"preview must be PNG bytes of at most {MAX_PREVIEW_BYTES} bytes")
        members.append((PREVIEW, bytes(preview)))
    total = sum(len(data) for _, data in members)
    if total > MAX_TOTAL_BYTES:
        raise _Invalid(f"the file would be {total} bytes (limit {MAX_TOTAL_BYTES})")
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


def _save_safetensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
    # safetensors refuses tensors that share storage; clone the (rare) repeats.
    seen: set[int] = set()
    unique: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        pointer = tensor.untyped_storage().data_ptr()
        if tensor.numel() and pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        unique[name] = tensor
    return safetensors.torch.save(unique, metadata={"format": "pt"})


def _dump_yaml(data: Any) -> bytes:
    text = yaml.dump(
        data, Dumper=yaml.SafeDumper, sort_keys=False, allow_unicode=False, default_flow_style=None, width=100
    )
    return text.encode("utf-8")


def _write_atomically(target: Path, members: list[tuple[str, bytes]]) -> None:
    """Write a zip to a temporary file beside ``target``, flush it to disk, then rename it over."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide permissions, as for any file the user writes
    # (tempfile.mkstemp would leave a 0600 file that a render farm's other users cannot read).
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
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
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the platform allows
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


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
        weights = _read_safetensors(archive, infos[WEIGHTS], lambda entries: _check_weight_entries(manifest, entries))
        _check_finite(weights)
        resume = _read_resume(archive, infos, manifest) if manifest.kind == "checkpoint" else None
        preview = None
        if PREVIEW in infos:
            preview = _read_member(archive, infos[PREVIEW])
            if not preview.startswith(_PNG_SIGNATURE):
                raise _Invalid(f"{PREVIEW} is not a PNG image")
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
            entries, data_bytes, _ = _read_safetensors_header(stream, infos[WEIGHTS])
        _check_weight_entries(manifest, entries)
        if manifest.kind == "checkpoint":  # the resume state's headers too: info refuses what loading would
            _, check = _resume_checker(archive, infos, manifest)
            with archive.open(infos[RESUME_TENSORS]) as stream:
                check(_read_safetensors_header(stream, infos[RESUME_TENSORS])[0])
        file_bytes = source.stat().st_size
    parameters = sum(_numel(shape) for _, shape in entries.values())
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


_TRAINING_LABELS = {
    "steps": "steps",
    "final_loss": "final loss",
    "seconds": "time",
    "device": "device",
    "hardware": "hardware",
    "source_frames": "source frames",
    "created": "created",
    "copycat_version": "copycat_nuke",
}


def format_description(info: Mapping[str, Any]) -> str:
    """Multi-line, human-readable text of :func:`describe`'s dict, for ``copycat info``."""
    arguments = ", ".join(f"{key} {value}" for key, value in info["arguments"].items())
    lines = [
        f"{info['file']}",
        f"  copycat_nuke {info['kind']}, format version {info['format_version']}, {info['file_mb']:.2f} MB",
        f"  network        {info['architecture']} ({arguments})",
        f"  parameters     {info['parameters']:,} ({info['weights_mb']:.2f} MB of weights)",
        f"  channels in    {', '.join(info['channels_in'])}",
        f"  channels out   {', '.join(info['channels_out'])}",
        f"  scale          {info['scale']}×",
        f"  transfer       {_describe_transfer(info['transfer'])}",
    ]
    temporal = int(info["arguments"].get("temporal", 0) or 0)
    if temporal:
        lines.insert(-1, f"  temporal       sees {temporal} neighbouring frame(s) on each side")
    training = dict(info.get("training") or {})
    if training:
        lines.append("  training")
        keys = [key for key in _TRAINING_LABELS if key in training]
        keys += [key for key in training if key not in _TRAINING_LABELS]
        for key in keys:
            label = _TRAINING_LABELS.get(key, str(key).replace("_", " "))
            lines.append(f"    {label:<14} {_describe_value(key, training[key])}")
    return "\n".join(lines)


def _describe_transfer(transfer: Mapping[str, Any]) -> str:
    params = transfer.get("params")
    if isinstance(params, Mapping) and params:
        return f"{transfer['name']} ({', '.join(f'{k} {v}' for k, v in params.items())})"
    return str(transfer["name"])


def _describe_value(key: str, value: Any) -> str:
    if key == "seconds" and isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = round(value)
        hours, rest = divmod(seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        if hours:
            return f"{hours} h {minutes:02d} min"
        return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
    if key == "final_loss" and isinstance(value, float):
        return f"{value:.6g}"
    if key == "steps" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        shown = ", ".join(str(item) for item in value[:8])
        return f"{shown}, … ({len(value)} in all)" if len(value) > 8 else shown
    return str(value)


@contextlib.contextmanager
def _open_cat(path: Path) -> Iterator[tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo], Manifest]]:
    """Open the archive and check its member list, every declared size and the manifest."""
    archive = _open_zip(path)
    with archive:
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            if info.filename in infos:
                raise _Invalid(f"the archive holds {info.filename!r} twice")
            infos[info.filename] = info
        if MANIFEST not in infos:
            if any(name.endswith(".pkl") for name in infos):
                raise _Invalid(
                    "this is a PyTorch file (torch.save or TorchScript), not a copycat_nuke .cat; it holds "
                    "pickled Python objects, which copycat_nuke never loads because they can run code"
                )
            raise _Invalid(f"not a copycat_nuke .cat file (the archive has no {MANIFEST}). {_NUKE_CAT_HINT}")
        _check_member(infos[MANIFEST], MAX_MANIFEST_BYTES)
        manifest_data = _load_yaml(_read_member(archive, infos[MANIFEST]), MANIFEST)
        _check_format_version(manifest_data)  # first, so newer files get "upgrade", not "unknown key"
        unexpected = sorted(set(infos) - MEMBERS)
        if unexpected:
            names = ", ".join(repr(name) for name in unexpected[:5])
            raise _Invalid(f"unexpected member(s) {names}; a .cat holds only {', '.join(sorted(MEMBERS))}")
        manifest = _manifest_from_data(manifest_data)
        required = {MANIFEST, WEIGHTS} | ({RESUME, RESUME_TENSORS} if manifest.kind == "checkpoint" else set())
        missing = sorted(required - set(infos))
        if missing:
            raise _Invalid(f"the {manifest.kind} has no {', '.join(missing)}")
        if manifest.kind == "model" and {RESUME, RESUME_TENSORS} & set(infos):
            raise _Invalid(f"a model holds no resume state, but this one has {RESUME} or {RESUME_TENSORS}")
        limits = {
            MANIFEST: MAX_MANIFEST_BYTES,
            WEIGHTS: 8 + MAX_SAFETENSORS_HEADER_BYTES + 8 * _expected_parameter_count(manifest),
            RESUME: MAX_RESUME_YAML_BYTES,
            RESUME_TENSORS: 8 + MAX_SAFETENSORS_HEADER_BYTES + _resume_budget(manifest),
            PREVIEW: MAX_PREVIEW_BYTES,
        }
        for name, info in infos.items():
            _check_member(info, limits[name])
        total = sum(info.file_size for info in infos.values())
        if total > MAX_TOTAL_BYTES:
            raise _Invalid(f"the members add up to {total} bytes uncompressed (limit {MAX_TOTAL_BYTES})")
        yield archive, infos, manifest


def _open_zip(path: Path) -> zipfile.ZipFile:
    with path.open("rb") as stream:
        _check_directory_size(stream)
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        pass
    except (OSError, EOFError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # missing, a directory, no permission: reported as such
        raise _Invalid(f"damaged zip archive ({exc}); copy or save the file again") from None
    with path.open("rb") as stream:
        start = stream.read(8)
    if not start:
        raise _Invalid("the file is empty (0 bytes): an interrupted copy or save?")
    if start.startswith(b"PK"):
        raise _Invalid("the zip archive is damaged or truncated (an interrupted copy?); copy or save it again")
    if start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise _Invalid(
            "this is a Python pickle (an old-style torch.save file), not a copycat_nuke .cat; "
            "copycat_nuke never loads pickles because they can run code"
        )
    raise _Invalid(f"not a copycat_nuke .cat file (it is not a zip archive). {_NUKE_CAT_HINT}")


_NUKE_CAT_HINT = (
    "Nuke's own .cat files, written by CopyCat or CatFileCreator, are a proprietary format that only "
    "Nuke can read: use them in Nuke's Inference node, or train a copycat_nuke model with `copycat train` "
    "(models go the other way with `copycat export`, which writes TorchScript for Nuke's CatFileCreator)"
)


def _check_directory_size(stream: IO[bytes]) -> None:
    """Refuse a central directory listing more entries than a .cat holds, before zipfile parses it (a
    few MB of directory can list millions of entries). Reads the end record as zipfile will find it."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - 22 - 0xFFFF))
    tail = stream.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return  # not a zip: _open_zip explains
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    directory = int.from_bytes(tail[at + 12 : at + 16], "little")
    if at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":  # zip64: the real counts are elsewhere
        stream.seek(int.from_bytes(tail[at - 12 : at - 4], "little"))
        record = stream.read(56)
        if record[:4] == b"PK\x06\x06" and len(record) == 56:
            entries = int.from_bytes(record[32:40], "little")
            directory = int.from_bytes(record[40:48], "little")
    if entries > MAX_MEMBERS or directory > 64 * MAX_MEMBERS * 1024:
        raise _Invalid(
            f"the archive lists {entries} members in {directory} bytes of directory; "
            f"a .cat holds at most {len(MEMBERS)}"
        )


def _check_member(info: zipfile.ZipInfo, limit: int) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise _Invalid(f"{name} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Invalid(f"{name} uses zip compression method {info.compress_type}; only stored and deflated")
    if info.file_size > limit:
        raise _Invalid(f"{name} declares {info.file_size} bytes uncompressed (limit {limit})")
    if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise _Invalid(
            f"{name} would expand {info.file_size / max(info.compress_size, 1):.0f}-fold "
            f"(limit {MAX_COMPRESSION_RATIO}): a zip bomb?"
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes; never more than its (already checked) declared size."""
    with archive.open(info) as stream:
        return _read_exactly(stream, info.file_size, info.filename)


def _read_exactly(stream: IO[bytes], count: int, name: str) -> bytes:
    try:
        data = stream.read(count)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        raise _Invalid(f"{name} is damaged ({exc}); copy or save the file again") from None
    if len(data) != count:
        raise _Invalid(f"{name} is truncated (an interrupted copy?)")
    return data


def _resume_budget(manifest: Manifest) -> int:
    """Most bytes of resume tensors the manifest's network can need: its optimizer's per-parameter state
    (at most :data:`OPTIMIZER_STATES_PER_PARAMETER` copies of every parameter, in float64 at most, and a
    scalar step per parameter tensor) plus :data:`RESUME_EXTRA_BYTES` for RNG states. A checkpoint that
    declares more is refused before any of it is read (a 43 MB file must not make a 1.5 GB allocation)."""
    shapes = _expected_parameter_shapes(manifest)
    elements = sum(_numel(shape) for shape in shapes.values())
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
        size = _numel(shape) * _DTYPE_SIZES[dtype]
        total += size
        if size > budget:
            raise _Invalid(
                f"{RESUME_TENSORS}: tensor {name!r} declares {size} bytes, more than the whole resume state of this "
                f"{manifest.architecture} network can need ({budget}); the checkpoint is damaged or hostile"
            )
        parts = name.split("/")
        if len(parts) == 4 and parts[:2] == ["optimizer", "state"]:
            index = int(parts[2]) if parts[2].isdigit() else -1
            if not 0 <= index < len(shapes):
                raise _Invalid(
                    f"{RESUME_TENSORS}: tensor {name!r} is state of parameter {parts[2]}, which the network lacks"
                )
            wanted = () if parts[3] == "step" else shapes[index]
            if (
                dtype not in _FLOAT_DTYPES.values()
                or (parts[3] != "step" and tuple(shape) != wanted)
                or (parts[3] == "step" and _numel(shape) != 1)
            ):
                raise _Invalid(
                    f"{RESUME_TENSORS}: tensor {name!r} is {dtype} {list(shape)}; the optimizer state of parameter "
                    f"{index} must be floating point, shaped {list(wanted)}"
                )
        elif name == "rng/torch" and (dtype != "U8" or len(shape) != 1):
            raise _Invalid(
                f"{RESUME_TENSORS}: tensor 'rng/torch' is {dtype} {list(shape)}; a torch RNG state is U8, 1-D"
            )
    if total > budget:
        sizes = {name: _numel(shape) * _DTYPE_SIZES[dtype] for name, (dtype, shape) in entries.items()}
        largest = max(sizes, key=lambda name: sizes[name])
        raise _Invalid(
            f"{RESUME_TENSORS} declares {total} bytes of tensors (the largest, {largest!r}, declares "
            f"{sizes[largest]} bytes), more than the resume state of this {manifest.architecture} network can "
            f"need ({budget}); the checkpoint is damaged or hostile"
        )


def _expected_parameter_count(manifest: Manifest) -> int:
    return sum(_numel(shape) for shape in _expected_shapes(manifest).values())


def _expected_shapes(manifest: Manifest) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the network's ``state_dict``, built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = ARCHITECTURES[manifest.architecture](**manifest.arguments)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


# ------------------------------------------------------------------------------------------ manifest

_MANIFEST_KEYS = {f.name for f in dataclasses.fields(Manifest)}


def _check_format_version(data: Any) -> None:
    if not isinstance(data, dict):
        raise _Invalid(f"{MANIFEST} is not a mapping")
    version = data.get("format_version")
    if type(version) is not int or version < 1:
        raise _Invalid(f"{MANIFEST} has no valid format_version (got {version!r})")
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"this .cat was written by format version {version}; this copycat_nuke reads up to "
            f"{FORMAT_VERSION}: upgrade copycat_nuke"
        )


def _manifest_from_data(data: Any) -> Manifest:
    """Check every manifest field (types, ranges, consistency with the architecture); build a Manifest."""
    _check_format_version(data)
    unknown = sorted(str(key) for key in set(data) - _MANIFEST_KEYS)
    missing = sorted({"architecture", "arguments", "channels_in", "channels_out", "transfer"} - set(data))
    if unknown:
        raise _Invalid(f"{MANIFEST} has unknown key(s) {', '.join(unknown)}")
    if missing:
        raise _Invalid(f"{MANIFEST} lacks {', '.join(missing)}")
    for key in ("arguments", "transfer", "training", "config"):
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise _Invalid(f"{key} must be a mapping, got {type(value).__name__}")
        _check_plain(value, key, 0)
    architecture = data["architecture"]
    if not isinstance(architecture, str):
        raise _Invalid(f"architecture must be a name, got {architecture!r}")
    if not all(isinstance(key, str) for key in data["arguments"]):
        raise _Invalid(f"arguments must be named, got {data['arguments']!r}")
    try:
        arguments = validate_arguments(architecture, data["arguments"])
    except ConfigError as exc:
        raise _Invalid(str(exc)) from None
    defaults = complete_arguments(architecture, {})
    for key, expected in (("channels_in", "in_channels"), ("channels_out", "out_channels")):
        channels = data[key]
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(name, str) and 0 < len(name) <= MAX_CHANNEL_NAME for name in channels)
        ):
            raise _Invalid(f"{key} must be a non-empty list of channel names, got {channels!r}")
        if len(set(channels)) != len(channels):
            raise _Invalid(f"{key} names a channel twice: {channels!r}")
        count = arguments.get(expected, defaults.get(expected))
        if len(channels) != count:
            raise _Invalid(f"{key} has {len(channels)} names but the network has {expected}={count}")
    transfer = data["transfer"]
    if not isinstance(transfer.get("name"), str) or not transfer["name"]:
        raise _Invalid(f"transfer must have a name, got {transfer!r}")
    try:  # the same check inference makes, so `copycat info` refuses what `copycat infer` would
        Transfer.from_dict(transfer)
    except ConfigError as exc:
        raise _Invalid(f"{MANIFEST}: {exc}") from None
    scale = data.get("scale", 1)
    if type(scale) is not int or not 1 <= scale <= 8:
        raise _Invalid(f"scale must be an integer from 1 to 8, got {scale!r}")
    kind = data.get("kind", "model")
    if kind not in KINDS:
        raise _Invalid(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
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
        if dtype not in _FLOAT_DTYPES.values():
            problems.append(f"{name} is {dtype}, but weights must be F16, BF16, F32 or F64")
        elif tuple(shape) != expected[name]:
            problems.append(f"{name} has shape {list(shape)}, the network needs {list(expected[name])}")
    if problems:
        raise _Invalid(
            f"the weights do not fit the manifest's {manifest.architecture} network: " + "; ".join(problems[:6])
        )


def _check_finite(weights: Mapping[str, torch.Tensor]) -> None:
    bad = [name for name, tensor in weights.items() if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise _Invalid(f"weights {_some(bad)} hold NaN or infinite values (did training diverge?)")


def _some(names: list[str], shown: int = 5) -> str:
    text = ", ".join(names[:shown])
    return f"{text} and {len(names) - shown} more" if len(names) > shown else text


def _read_safetensors_header(
    stream: IO[bytes], info: zipfile.ZipInfo
) -> tuple[dict[str, tuple[str, tuple[int, ...]]], int, bytes]:
    """Read and check a safetensors header: ``({name: (dtype, shape)}, data byte count, header bytes)``.

    The format: an 8-byte little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape",
    "data_offsets": [begin, end]}, "__metadata__": {str: str}}``, then the data, which the offsets must
    tile exactly.
    """
    name = info.filename
    prefix = _read_exactly(stream, 8, name)
    length = int.from_bytes(prefix, "little")
    if length > min(MAX_SAFETENSORS_HEADER_BYTES, info.file_size - 8):
        raise _Invalid(f"{name} is not a safetensors file (its header would be {length} bytes)")
    try:
        raw = _read_exactly(stream, length, name)
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Invalid(f"{name} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise _Invalid(f"{name} has a malformed header")
    data_bytes = info.file_size - 8 - length
    entries: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans: list[tuple[int, int]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _Invalid(f"{name} has malformed __metadata__")
            continue
        if (
            not isinstance(entry, dict)
            or set(entry) != {"dtype", "shape", "data_offsets"}
            or not isinstance(entry["dtype"], str)
            or entry["dtype"] not in _DTYPE_SIZES
            or not isinstance(entry["shape"], list)
            or len(entry["shape"]) > 8
            or not all(type(size) is int and size >= 0 for size in entry["shape"])
            or not isinstance(entry["data_offsets"], list)
            or len(entry["data_offsets"]) != 2
            or not all(type(offset) is int for offset in entry["data_offsets"])
        ):
            raise _Invalid(f"{name} has a malformed entry for tensor {key!r}")
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if end - begin != _numel(shape) * _DTYPE_SIZES[entry["dtype"]]:
            raise _Invalid(f"{name}: tensor {key!r} has the wrong number of bytes for its shape")
        entries[key] = (entry["dtype"], shape)
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise _Invalid(f"{name} has overlapping or gapped tensor data")
        position = end
    if position != data_bytes:
        raise _Invalid(f"{name} holds {data_bytes} bytes of data but its header describes {position}")
    return entries, data_bytes, prefix + raw


def _read_safetensors(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    check: Callable[[dict[str, tuple[str, tuple[int, ...]]]], None],
) -> dict[str, torch.Tensor]:
    """Check the header with ``check(entries)`` before reading any tensor data, then load the tensors."""
    with archive.open(info) as stream:
        entries, data_bytes, head = _read_safetensors_header(stream, info)
        check(entries)
        data = _read_exactly(stream, data_bytes, info.filename)
    try:
        return dict(load_safetensors_bytes(head + data))
    except safetensors.SafetensorError as exc:
        raise _Invalid(f"{info.filename} is damaged ({exc})") from None


# -------------------------------------------------------------------------------------------- resume


def _resume_checker(
    archive: zipfile.ZipFile, infos: Mapping[str, zipfile.ZipInfo], manifest: Manifest
) -> tuple[Any, Callable[[Mapping[str, tuple[str, tuple[int, ...]]]], None]]:
    """``resume.yaml``'s data, checked, and the check its tensors' safetensors header must pass."""
    data = _load_yaml(_read_member(archive, infos[RESUME]), RESUME)
    _check_resume_data(data)
    references = _tensor_references(data)

    def check(entries: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
        if set(entries) != set(references):
            missing = sorted(set(references) - set(entries))
            extra = sorted(set(entries) - set(references))
            raise _Invalid(
                f"{RESUME_TENSORS} does not match {RESUME}: missing {_some(missing) or 'none'}, "
                f"unreferenced {_some(extra) or 'none'}"
            )
        _check_resume_entries(manifest, entries)

    return data, check


def _read_resume(archive: zipfile.ZipFile, infos: Mapping[str, zipfile.ZipInfo], manifest: Manifest) -> ResumeState:
    data, check = _resume_checker(archive, infos, manifest)
    tensors = _read_safetensors(archive, infos[RESUME_TENSORS], check)
    revived = _revive(data, tensors)
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
        raise _Invalid(f"{RESUME} must be a mapping of exactly {', '.join(sorted(keys))}")
    if type(data["step"]) is not int or data["step"] < 0:
        raise _Invalid(f"{RESUME}: step must be a non-negative integer, got {data['step']!r}")
    for key in ("optimizer", "scheduler", "rng", "extra"):
        if not isinstance(data[key], dict):
            raise _Invalid(f"{RESUME}: {key} must be a mapping")
        _check_plain(data[key], key, 0)
    _tensor_references(data)  # checks the tags' form and that no tensor is named twice


def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` (or any nested state) into tensors and plain YAML data.

    Tensors are replaced by ``{"__tensor__": name}`` (names are the key path, e.g.
    ``optimizer/state/0/exp_avg``) and tuples by ``{"__tuple__": [...]}``, so that
    :func:`unflatten_optimizer_state` restores the exact structure. :func:`save_cat` does this itself for
    :class:`ResumeState`; this is for callers who store state elsewhere.
    """
    tensors: dict[str, torch.Tensor] = {}
    meta = _to_plain(dict(state_dict), "optimizer", 0, tensors)
    return tensors, meta


def unflatten_optimizer_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`; the result feeds ``optimizer.load_state_dict``."""
    try:
        references = _tensor_references(dict(meta))
    except _Invalid as exc:
        raise ValueError(str(exc)) from None
    if set(references) != set(tensors):
        raise ValueError("the tensors do not match the references in the optimizer state")
    revived: dict[str, Any] = _revive(dict(meta), tensors)
    return revived


# ----------------------------------------------------------------------------------------- plain data

_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _to_plain(value: Any, where: str, depth: int, tensors: dict[str, torch.Tensor] | None) -> Any:
    """``value`` as YAML-safe data. With ``tensors`` (resume state), tuples become ``{__tuple__: [...]}``
    and tensors ``{__tensor__: name}`` with the tensor stored in ``tensors``; without, both are refused."""
    if depth > MAX_DEPTH:
        raise _Invalid(f"{where} is nested more than {MAX_DEPTH} deep")
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, np.generic):  # np.float64 losses and the like
        return _to_plain(value.item(), where, depth, tensors)
    if tensors is not None and isinstance(value, torch.Tensor):
        name = where
        while name in tensors:
            name += "+"
        tensors[name] = value.detach().to("cpu").contiguous()
        return {_TENSOR: name}
    if isinstance(value, list) or (tensors is not None and isinstance(value, tuple)):
        items = [_to_plain(item, f"{where}/{index}", depth + 1, tensors) for index, item in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if type(key) not in (str, int) or (tensors is not None and key in (_TUPLE, _TENSOR)):
                raise _Invalid(f"{where} has key {key!r}; keys must be str or int (and not {_TUPLE}/{_TENSOR})")
            plain[key] = _to_plain(item, f"{where}/{key}", depth + 1, tensors)
        return plain
    raise _Invalid(
        f"{where} is a {type(value).__name__}; a .cat holds plain data (str, int, float, bool, None, lists, "
        f"mappings{', tuples and tensors' if tensors is not None else ''})"
    )


def _check_plain(value: Any, where: str, depth: int) -> None:
    """Refuse anything but plain YAML data (as the safe loader can produce it), nested at most MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise _Invalid(f"{where} is nested more than {MAX_DEPTH} deep")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}/{index}", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise _Invalid(f"{where} has key {key!r}; keys must be str or int")
            _check_plain(item, f"{where}/{key}", depth + 1)
    elif not isinstance(value, _PLAIN_SCALARS):
        raise _Invalid(f"{where} is a {type(value).__name__}, not plain data")


def _tensor_references(value: Any) -> list[str]:
    """Names of the tensors ``value`` refers to; checks the form of every tag and that names are unique."""
    names: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, list):
            for element in item:
                walk(element)
        elif isinstance(item, dict):
            if _TENSOR in item:
                if len(item) != 1 or not isinstance(item[_TENSOR], str):
                    raise _Invalid(f"malformed tensor reference {item!r}")
                names.append(item[_TENSOR])
            elif _TUPLE in item:
                if len(item) != 1 or not isinstance(item[_TUPLE], list):
                    raise _Invalid("malformed tuple")
                walk(item[_TUPLE])
            else:
                for element in item.values():
                    walk(element)

    walk(value)
    if len(set(names)) != len(names):
        raise _Invalid("a tensor is referred to twice")
    return names


def _revive(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Undo the tuple and tensor tags of :func:`_to_plain` (the tags' form is already checked)."""
    if isinstance(value, list):
        return [_revive(item, tensors) for item in value]
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _TUPLE in value:
            return tuple(_revive(item, tensors) for item in value[_TUPLE])
        return {key: _revive(item, tensors) for key, item in value.items()}
    return value


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
            raise _Invalid(f"YAML aliases (*name) are not allowed in safe YAML{_where(self.peek_event().start_mark)}")
        event = self.peek_event()
        # docs/catfile.md: readers refuse every tag (even the harmless-looking !!str) and every anchor, so
        # what one reader accepts every other reader accepts too. "!" is what a quoted scalar reports.
        if getattr(event, "anchor", None) is not None:
            raise _Invalid(
                f"YAML anchors and aliases (&name, *name) are not allowed in safe YAML{_where(event.start_mark)}"
            )
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!":
            raise _Invalid(f"YAML tags ({tag}) are not allowed in safe YAML{_where(event.start_mark)}")
        self._depth += 1
        try:
            if self._depth > 2 * MAX_DEPTH + 4:  # tuple tags add a level or two per level of data
                raise _Invalid(f"YAML is nested too deep{_where(self.peek_event().start_mark)}")
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
    except _Invalid as exc:
        raise _Invalid(f"{name}: {exc}") from None
    except UnicodeDecodeError:
        raise _Invalid(f"{name} is not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        problem = f"{exc.context or ''} {exc.problem or ''}".strip()
        if "python/" in problem:
            problem += " (Python tags are never honoured: they would run code)"
        raise _Invalid(f"{name} is not valid, safe YAML: {problem}{_where(exc.problem_mark)}") from None
    except yaml.YAMLError as exc:
        raise _Invalid(f"{name} is not valid, safe YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer literal over Python's digit limit
        raise _Invalid(f"{name} is not valid YAML ({exc})") from None


# --------------------------------------------------------------------------------------------- errors


@contextlib.contextmanager
def _problems_reported(path: Path, verb: str = "") -> Iterator[None]:
    """Turn every expected problem into one :class:`CatFileError` that names ``path``."""
    try:
        yield
    except _Invalid as exc:
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
