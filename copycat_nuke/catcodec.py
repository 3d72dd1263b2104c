"""The ``.cat`` container's codecs: safetensors headers checked before any tensor is read, and resume state as
plain YAML data with tagged tensors and tuples. Used by :mod:`copycat_nuke.catfile`, which adds the file's
path to every :class:`Invalid` it raises."""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from safetensors.torch import load as load_safetensors_bytes  # parses tensors only; never pickle

#: Most entries a zip's central directory may list before it is parsed at all.
MAX_MEMBERS = 16
#: Largest uncompressed/compressed ratio for members over :data:`RATIO_CHECK_MIN_BYTES`. Weights barely
#: compress (about 1.1:1) and YAML about 5:1; deflate can reach 1000:1 only on degenerate data (bombs).
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_MIN_BYTES = 1 << 20
#: Largest JSON header of a safetensors member.
MAX_SAFETENSORS_HEADER_BYTES = 8 << 20
#: Deepest nesting of mappings and lists in the YAML members (refuses stack-exhausting documents).
MAX_DEPTH = 32


# Reserved keys that carry what YAML cannot say directly in resume.yaml: tuples (Adam's betas must come
# back as tuples) and tensors (stored in resume.safetensors under the given name).
TUPLE_TAG = "__tuple__"


TENSOR_TAG = "__tensor__"


# safetensors dtype names and their sizes in bytes.
DTYPE_SIZES = {
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


FLOAT_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64"}


def dtype_name(tensor: torch.Tensor) -> str:
    """The safetensors name of a tensor's dtype (as its header will say)."""
    names = {**FLOAT_DTYPES, torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32"}
    names.update({torch.int64: "I64", torch.bool: "BOOL"})
    return names.get(tensor.dtype, str(tensor.dtype))


class Invalid(Exception):
    """A problem with a file's contents; the public functions add the file's path and re-raise."""


def save_safetensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
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


def read_exactly(stream: IO[bytes], count: int, name: str) -> bytes:
    try:
        data = stream.read(count)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        raise Invalid(f"{name} is damaged ({exc}); copy or save the file again") from None
    if len(data) != count:
        raise Invalid(f"{name} is truncated (an interrupted copy?)")
    return data


def numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def read_safetensors_header(
    stream: IO[bytes], info: zipfile.ZipInfo
) -> tuple[dict[str, tuple[str, tuple[int, ...]]], int, bytes]:
    """Read and check a safetensors header: ``({name: (dtype, shape)}, data byte count, header bytes)``.

    The format: an 8-byte little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape",
    "data_offsets": [begin, end]}, "__metadata__": {str: str}}``, then the data, which the offsets must
    tile exactly.
    """
    name = info.filename
    prefix = read_exactly(stream, 8, name)
    length = int.from_bytes(prefix, "little")
    if length > min(MAX_SAFETENSORS_HEADER_BYTES, info.file_size - 8):
        raise Invalid(f"{name} is not a safetensors file (its header would be {length} bytes)")
    try:
        raw = read_exactly(stream, length, name)
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Invalid(f"{name} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise Invalid(f"{name} has a malformed header")
    data_bytes = info.file_size - 8 - length
    entries: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans: list[tuple[int, int]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise Invalid(f"{name} has malformed __metadata__")
            continue
        if (
            not isinstance(entry, dict)
            or set(entry) != {"dtype", "shape", "data_offsets"}
            or not isinstance(entry["dtype"], str)
            or entry["dtype"] not in DTYPE_SIZES
            or not isinstance(entry["shape"], list)
            or len(entry["shape"]) > 8
            or not all(type(size) is int and size >= 0 for size in entry["shape"])
            or not isinstance(entry["data_offsets"], list)
            or len(entry["data_offsets"]) != 2
            or not all(type(offset) is int for offset in entry["data_offsets"])
        ):
            raise Invalid(f"{name} has a malformed entry for tensor {key!r}")
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if end - begin != numel(shape) * DTYPE_SIZES[entry["dtype"]]:
            raise Invalid(f"{name}: tensor {key!r} has the wrong number of bytes for its shape")
        entries[key] = (entry["dtype"], shape)
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise Invalid(f"{name} has overlapping or gapped tensor data")
        position = end
    if position != data_bytes:
        raise Invalid(f"{name} holds {data_bytes} bytes of data but its header describes {position}")
    return entries, data_bytes, prefix + raw


def read_safetensors(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    check: Callable[[dict[str, tuple[str, tuple[int, ...]]]], None],
) -> dict[str, torch.Tensor]:
    """Check the header with ``check(entries)`` before reading any tensor data, then load the tensors."""
    with archive.open(info) as stream:
        entries, data_bytes, head = read_safetensors_header(stream, info)
        check(entries)
        data = read_exactly(stream, data_bytes, info.filename)
    try:
        return dict(load_safetensors_bytes(head + data))
    except safetensors.SafetensorError as exc:
        raise Invalid(f"{info.filename} is damaged ({exc})") from None


def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` (or any nested state) into tensors and plain YAML data.

    Tensors are replaced by ``{"__tensor__": name}`` (names are the key path, e.g.
    ``optimizer/state/0/exp_avg``) and tuples by ``{"__tuple__": [...]}``, so that
    :func:`unflatten_optimizer_state` restores the exact structure. :func:`save_cat` does this itself for
    :class:`ResumeState`; this is for callers who store state elsewhere.
    """
    tensors: dict[str, torch.Tensor] = {}
    meta = to_plain(dict(state_dict), "optimizer", 0, tensors)
    return tensors, meta


def unflatten_optimizer_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`; the result feeds ``optimizer.load_state_dict``."""
    try:
        references = tensor_references(dict(meta))
    except Invalid as exc:
        raise ValueError(str(exc)) from None
    if set(references) != set(tensors):
        raise ValueError("the tensors do not match the references in the optimizer state")
    revived: dict[str, Any] = revive(dict(meta), tensors)
    return revived


PLAIN_SCALARS = (str, int, float, bool, type(None))


def to_plain(value: Any, where: str, depth: int, tensors: dict[str, torch.Tensor] | None) -> Any:
    """``value`` as YAML-safe data. With ``tensors`` (resume state), tuples become ``{__tuple__: [...]}``
    and tensors ``{__tensor__: name}`` with the tensor stored in ``tensors``; without, both are refused."""
    if depth > MAX_DEPTH:
        raise Invalid(f"{where} is nested more than {MAX_DEPTH} deep")
    if isinstance(value, PLAIN_SCALARS):
        return value
    if isinstance(value, np.generic):  # np.float64 losses and the like
        return to_plain(value.item(), where, depth, tensors)
    if tensors is not None and isinstance(value, torch.Tensor):
        name = where
        while name in tensors:
            name += "+"
        tensors[name] = value.detach().to("cpu").contiguous()
        return {TENSOR_TAG: name}
    if isinstance(value, list) or (tensors is not None and isinstance(value, tuple)):
        items = [to_plain(item, f"{where}/{index}", depth + 1, tensors) for index, item in enumerate(value)]
        return {TUPLE_TAG: items} if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if type(key) not in (str, int) or (tensors is not None and key in (TUPLE_TAG, TENSOR_TAG)):
                raise Invalid(f"{where} has key {key!r}; keys must be str or int (and not {TUPLE_TAG}/{TENSOR_TAG})")
            plain[key] = to_plain(item, f"{where}/{key}", depth + 1, tensors)
        return plain
    raise Invalid(
        f"{where} is a {type(value).__name__}; a .cat holds plain data (str, int, float, bool, None, lists, "
        f"mappings{', tuples and tensors' if tensors is not None else ''})"
    )


def check_plain(value: Any, where: str, depth: int) -> None:
    """Refuse anything but plain YAML data (as the safe loader can produce it), nested at most MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise Invalid(f"{where} is nested more than {MAX_DEPTH} deep")
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_plain(item, f"{where}/{index}", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise Invalid(f"{where} has key {key!r}; keys must be str or int")
            check_plain(item, f"{where}/{key}", depth + 1)
    elif not isinstance(value, PLAIN_SCALARS):
        raise Invalid(f"{where} is a {type(value).__name__}, not plain data")


def tensor_references(value: Any) -> list[str]:
    """Names of the tensors ``value`` refers to; checks the form of every tag and that names are unique."""
    names: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, list):
            for element in item:
                walk(element)
        elif isinstance(item, dict):
            if TENSOR_TAG in item:
                if len(item) != 1 or not isinstance(item[TENSOR_TAG], str):
                    raise Invalid(f"malformed tensor reference {item!r}")
                names.append(item[TENSOR_TAG])
            elif TUPLE_TAG in item:
                if len(item) != 1 or not isinstance(item[TUPLE_TAG], list):
                    raise Invalid("malformed tuple")
                walk(item[TUPLE_TAG])
            else:
                for element in item.values():
                    walk(element)

    walk(value)
    if len(set(names)) != len(names):
        raise Invalid("a tensor is referred to twice")
    return names


def revive(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Undo the tuple and tensor tags of :func:`to_plain` (the tags' form is already checked)."""
    if isinstance(value, list):
        return [revive(item, tensors) for item in value]
    if isinstance(value, dict):
        if TENSOR_TAG in value:
            return tensors[value[TENSOR_TAG]]
        if TUPLE_TAG in value:
            return tuple(revive(item, tensors) for item in value[TUPLE_TAG])
        return {key: revive(item, tensors) for key, item in value.items()}
    return value


# ---------------------------------------------------------------------------------------- zip safety
NUKE_CAT_HINT = (
    "Nuke's own .cat files, written by CopyCat or CatFileCreator, are a proprietary format that only "
    "Nuke can read: use them in Nuke's Inference node, or train a copycat_nuke model with `copycat train` "
    "(models go the other way with `copycat export`, which writes TorchScript for Nuke's CatFileCreator)"
)


def open_zip(path: Path) -> zipfile.ZipFile:
    with path.open("rb") as stream:
        check_directory_size(stream)
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        pass
    except (OSError, EOFError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # missing, a directory, no permission: reported as such
        raise Invalid(f"damaged zip archive ({exc}); copy or save the file again") from None
    with path.open("rb") as stream:
        start = stream.read(8)
    if not start:
        raise Invalid("the file is empty (0 bytes): an interrupted copy or save?")
    if start.startswith(b"PK"):
        raise Invalid("the zip archive is damaged or truncated (an interrupted copy?); copy or save it again")
    if start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise Invalid(
            "this is a Python pickle (an old-style torch.save file), not a copycat_nuke .cat; "
            "copycat_nuke never loads pickles because they can run code"
        )
    raise Invalid(f"not a copycat_nuke .cat file (it is not a zip archive). {NUKE_CAT_HINT}")


def check_directory_size(stream: IO[bytes]) -> None:
    """Refuse a central directory listing more entries than a .cat holds, before zipfile parses it (a
    few MB of directory can list millions of entries). Reads the end record as zipfile will find it."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - 22 - 0xFFFF))
    tail = stream.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return  # not a zip: open_zip explains
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    directory = int.from_bytes(tail[at + 12 : at + 16], "little")
    if at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":  # zip64: the real counts are elsewhere
        stream.seek(int.from_bytes(tail[at - 12 : at - 4], "little"))
        record = stream.read(56)
        if record[:4] == b"PK\x06\x06" and len(record) == 56:
            entries = int.from_bytes(record[32:40], "little")
            directory = int.from_bytes(record[40:48], "little")
    if entries > MAX_MEMBERS or directory > 64 * MAX_MEMBERS * 1024:
        raise Invalid(
            f"the archive lists {entries} members in {directory} bytes of directory; a .cat holds at most {MAX_MEMBERS}"
        )


def check_member(info: zipfile.ZipInfo, limit: int) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise Invalid(f"{name} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise Invalid(f"{name} uses zip compression method {info.compress_type}; only stored and deflated")
    if info.file_size > limit:
        raise Invalid(f"{name} declares {info.file_size} bytes uncompressed (limit {limit})")
    if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise Invalid(
            f"{name} would expand {info.file_size / max(info.compress_size, 1):.0f}-fold "
            f"(limit {MAX_COMPRESSION_RATIO}): a zip bomb?"
        )


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes; never more than its (already checked) declared size."""
    with archive.open(info) as stream:
        return read_exactly(stream, info.file_size, info.filename)
