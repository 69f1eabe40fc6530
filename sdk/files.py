"""File helpers shared by the SDK: atomic, no-clobber writes and content hashes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sdk.errors import FileError

TEMPORARY_NAME_CHARS = 40  # of the target's name kept in the temporary file's, so both fit NAME_MAX
NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK)  # os.link where the file system has none


def write_atomically(path, write: Callable[[BinaryIO], None], *, overwrite: bool) -> Path:
    """Write a file through ``write(file)`` so that ``path`` is either untouched or complete.

    The bytes go to a new hidden temporary file in the same folder (created exclusively, never
    through a symbolic link), are flushed to disk, and the file is then published as ``path``:
    without ``overwrite`` by a hard link that fails if ``path`` exists (no race with another
    writer; on file systems without hard links, FAT say, a last check and ``os.replace``), with
    ``overwrite`` by ``os.replace`` (atomic on one file system). The temporary file never outlives
    the call. Refused with FileError before anything is written: a ``path`` that is a symbolic link
    (even with ``overwrite``), a folder or not a regular file; an existing ``path`` without
    ``overwrite``; a missing parent folder. Any OS error while writing becomes FileError naming
    ``path`` and the problem. Returns ``path`` as a Path.
    """
    path = Path(path)
    check_writable(path, overwrite=overwrite)
    temporary = path.with_name(f".{path.name[:TEMPORARY_NAME_CHARS]}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        descriptor = os.open(temporary, flags, 0o666)
    except OSError as error:
        raise FileError(_problem(path, error)) from error
    try:
        with open(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        _publish(temporary, path, overwrite)
        _sync_folder(path.parent)
    except FileError:
        raise
    except OSError as error:
        raise FileError(_problem(path, error)) from error
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
    return path


def check_writable(path, *, overwrite: bool) -> Path:
    """Raise FileError unless :func:`write_atomically` could write ``path`` now; return it as a Path.

    Lets a caller refuse a bad output path before doing the work whose result it would hold.
    """
    path = Path(path)
    try:
        folder = os.stat(path.parent)
    except FileNotFoundError:
        raise FileError(f"cannot write {path}: the folder {path.parent} does not exist") from None
    except OSError as error:
        raise FileError(_problem(path, error)) from None
    if not stat.S_ISDIR(folder.st_mode):
        raise FileError(f"cannot write {path}: {path.parent} is not a folder")
    try:
        target = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as error:
        raise FileError(_problem(path, error)) from None
    if stat.S_ISLNK(target.st_mode):
        raise FileError(f"{path} is a symbolic link: refusing to write through it; give the real path")
    if stat.S_ISDIR(target.st_mode):
        raise FileError(f"{path} is a folder: give the path of the file to write")
    if not stat.S_ISREG(target.st_mode):
        raise FileError(f"{path} is not a regular file (a device, pipe or socket): refusing to replace it")
    if not overwrite:
        raise _exists(path)
    return path


def _publish(temporary: Path, path: Path, overwrite: bool) -> None:
    """Give the complete temporary file the name ``path``."""
    if not overwrite:
        try:
            os.link(temporary, path)
            return
        except FileExistsError:
            raise _exists(path) from None
        except OSError as error:
            if error.errno not in NO_HARD_LINKS:
                raise
    check_writable(path, overwrite=overwrite)  # again: a file, link or folder may have appeared meanwhile
    os.replace(temporary, path)


def _exists(path: Path) -> FileError:
    return FileError(f"{path} already exists: pass overwrite=True (--overwrite) to replace it")


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry of the new name to disk (where the file system allows it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a folder; the file itself is on disk
    finally:
        os.close(descriptor)


def _problem(path: Path, error: OSError) -> str:
    """``cannot write PATH: <the OS's reason>`` (never the temporary file's name)."""
    return f"cannot write {path}: {error.strerror or error}"


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
