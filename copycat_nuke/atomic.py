"""Atomic writes: every file copycat_nuke writes appears whole or not at all, and never as a stray temp file.

The data goes to a hidden temporary file beside the target, named ``.<name>.tmp-<random>`` (a leading dot,
and no image or model extension at the end, so no wildcard Read or sequence scan picks up one a killed
process left), which then replaces the target in one :func:`os.replace`. On any failure the temporary is
removed and the target is left as it was. Files come out with the permissions of any file the user makes
(``0o666`` less the umask): on a farm, other users read configs, loss logs and models.

Standard library only (Python 3.7): the Nuke side writes its records with it too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Union

TEMP_MARK = ".tmp-"


def temporary_name(target: Path) -> Path:
    """A fresh hidden temporary path beside ``target``."""
    return target.with_name(f".{target.name}{TEMP_MARK}{secrets.token_hex(6)}")


@contextlib.contextmanager
def atomic_path(target: Union[str, Path], *, durable: bool = False) -> Iterator[Path]:
    """A temporary path for a writer that wants a file name (OpenImageIO, TorchScript, ONNX): renamed over
    ``target`` when the block succeeds, removed when it fails. ``durable`` also syncs the rename to disk.
    The folder must exist (the caller decides whether a missing one is an error)."""
    final = Path(target)
    temporary = temporary_name(final)
    try:
        yield temporary
        os.replace(str(temporary), str(final))
    finally:
        with contextlib.suppress(OSError):  # gone once renamed; not unlink(missing_ok): Python 3.7
            os.unlink(str(temporary))
    if durable:
        _sync_directory(final.parent)


def write_bytes(target: Union[str, Path], data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically (its folder made if missing); ``durable`` flushes it to the
    disk before the rename."""
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(final, durable=durable) as temporary:
        descriptor = os.open(str(temporary), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
    return final


def write_text(target: Union[str, Path], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    return write_bytes(target, text.encode("utf-8"))


def remove_stale_temps(target: Union[str, Path]) -> list[Path]:
    """Remove the temporaries a killed write of ``target`` left beside it (``.<name>.tmp-*``); return them.
    Call it before writing ``target`` again: a leftover can only be an interrupted earlier write of it."""
    path = Path(target)
    removed = []
    try:
        candidates = list(path.parent.glob(glob.escape(f".{path.name}{TEMP_MARK}") + "*"))
    except OSError:
        return []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # makes the rename itself durable where the platform allows
        descriptor = os.open(str(directory), os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
