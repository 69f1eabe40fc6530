"""File helpers shared by the SDK: atomic, no-clobber writes and content hashes."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sdk.errors import FileError


def write_atomically(path, write: Callable[[BinaryIO], None], *, overwrite: bool) -> Path:
    """Write a file through ``write(file)`` so that ``path`` is either untouched or complete.

    The bytes go to a hidden temporary file in the same folder, are flushed to disk, and the
    temporary file is then renamed onto ``path`` (``os.replace``, atomic on one file system).
    An existing ``path`` is replaced only when ``overwrite`` is true; otherwise FileError.
    Returns ``path`` as a Path.
    """
    path = Path(path)
    if path.is_dir():
        raise FileError(f"{path} is a folder: give the path of the file to write")
    if path.exists() and not overwrite:
        raise FileError(f"{path} already exists: pass overwrite=True to replace it")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise FileError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        temporary.unlink(missing_ok=True)
    return path


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
