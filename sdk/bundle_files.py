"""A bundle folder read safely: regular files only, no symbolic links, every file read whole, once.

    folder = BundleFolder("bundle/")       # holds the folder open: later renames do not redirect it
    folder.listing()                       # {"models/x.onnx": size in bytes, ...}; BundleError on a link
    data = folder.read("models/x.onnx", max_bytes=n)   # the file's bytes
    folder.close()

Every path component is opened relative to the folder's own descriptor with ``O_NOFOLLOW`` (a
symbolic link is refused, inside or outside the bundle), files with ``O_NONBLOCK`` (a FIFO does not
block the open) and then checked with ``fstat`` to be a regular file before a byte is read. What is
read is what the caller hashes and uses: nothing is opened again by path.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from sdk.errors import BundleError

MAX_DEPTH = 3  # folders inside a bundle (models/ is one)
MAX_ENTRIES = 256  # files and folders in a bundle
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class BundleFolder:
    """An open bundle folder. ``path`` may itself be reached through links; nothing inside it may."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise BundleError(f"{self.path} does not exist: it is not a model bundle") from None
        except NotADirectoryError:
            raise BundleError(f"{self.path} is not a folder: a model bundle is a folder") from None
        except OSError as e:
            raise BundleError(f"{self.path} cannot be opened ({e.strerror or e})") from None

    def listing(self) -> dict[str, int]:
        """Every file in the folder, relative POSIX path -> size in bytes. BundleError for a symbolic
        link, a FIFO, socket or device, folders nested deeper than MAX_DEPTH or more than MAX_ENTRIES."""
        found: dict[str, int] = {}
        self._list(self._fd, PurePosixPath(), 0, found)
        return found

    def _list(self, fd: int, prefix: PurePosixPath, depth: int, found: dict[str, int]) -> None:
        with os.scandir(fd) as entries:
            for entry in entries:
                name = prefix / entry.name
                if len(found) >= MAX_ENTRIES:
                    raise BundleError(f"{self.path} holds more than {MAX_ENTRIES} files: not a model bundle")
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    raise BundleError(
                        f"bundle file {name} is a symbolic link: a bundle holds regular files only; copy "
                        "the bundle with links resolved (cp -rL) or again from its source"
                    )
                if stat.S_ISDIR(info.st_mode):
                    if depth + 1 > MAX_DEPTH:
                        raise BundleError(f"bundle folder {name} is nested too deep (limit {MAX_DEPTH})")
                    child = self._open(fd, entry.name, _DIRECTORY_FLAGS, name)
                    try:
                        self._list(child, name, depth + 1, found)
                    finally:
                        os.close(child)
                elif stat.S_ISREG(info.st_mode):
                    found[name.as_posix()] = info.st_size
                else:
                    raise BundleError(f"bundle file {name} is {_kind(info.st_mode)}, not a regular file")

    def read(self, name: str, max_bytes: int) -> bytes:
        """The bytes of regular file ``name`` (relative POSIX path), at most ``max_bytes``; BundleError
        if it is missing, a link, not a regular file, or larger."""
        parts = PurePosixPath(name).parts
        fd = self._fd
        opened = []
        try:
            for part in parts[:-1]:
                fd = self._open(fd, part, _DIRECTORY_FLAGS, name)
                opened.append(fd)
            file = self._open(fd, parts[-1], _FILE_FLAGS, name)
            opened.append(file)
            info = os.fstat(file)
            if not stat.S_ISREG(info.st_mode):
                raise BundleError(f"bundle file {name} is {_kind(info.st_mode)}, not a regular file")
            if info.st_size > max_bytes:
                raise BundleError(
                    f"bundle file {name} is {info.st_size} bytes, more than the {max_bytes} allowed for it: "
                    "it was changed or is not a bundle file; copy the bundle again"
                )
            return _read_whole(file, info.st_size, name)
        finally:
            for each in reversed(opened):
                os.close(each)

    def _open(self, fd: int, part: str, flags: int, name) -> int:
        try:
            return os.open(part, flags, dir_fd=fd)
        except FileNotFoundError:
            raise BundleError(f"bundle file {name} is missing: copy the whole bundle again") from None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
                raise BundleError(
                    f"bundle file {name} is (or lies under) a symbolic link or not a folder: a bundle "
                    "holds regular files only"
                ) from None
            raise BundleError(f"bundle file {name} cannot be opened ({e.strerror or e})") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0:
            self.close()


def _read_whole(fd: int, size: int, name: str) -> bytes:
    """Exactly ``size`` bytes from ``fd`` (one read for a regular file; BundleError if it shrank)."""
    chunks, remaining = [b""], size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            raise BundleError(f"bundle file {name} shrank while it was read: it is being changed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[-1] if len(chunks) <= 2 else b"".join(chunks)


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return kind
    return "not a regular file"
