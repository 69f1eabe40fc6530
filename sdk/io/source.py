"""The file a reader reads: regular files only, reads bounded by the file's size, and the voxel cap.

:func:`sdk.read_volume` opens every file through :func:`open_volume_file` and hands the reader a
:class:`VolumeFile`. Readers check every size a header declares against the file's length and
against ``max_voxel_bytes`` *before* they allocate or decompress anything, so a damaged or hostile
header costs an error message, never memory.
"""

from __future__ import annotations

import io
import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sdk.errors import FileError, InvalidVolume, UnsupportedFormat

DEFAULT_MAX_VOXEL_BYTES = 2 * 2**30  # decoded voxels a reader may allocate unless told otherwise
_FILE_KINDS = {
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def describe_bytes(n_bytes: int) -> str:
    """``n_bytes`` for messages: "512 bytes", "12.0 MiB", "931.3 GiB"."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes} bytes"


class VolumeFile(os.PathLike):
    """An open regular file being read as one volume.

    ``path`` is the file as given; ``file`` a binary file object whose reads never go past
    ``size_bytes`` (the length at opening), so a header that declares gigabytes cannot make a
    read allocate them; ``max_voxel_bytes`` the cap on decoded voxels. A VolumeFile is a path-like
    object, so readers written for a path (``open(source)``, ``f"{source}"``) work unchanged.
    """

    def __init__(self, path: Path, file, size_bytes: int, max_voxel_bytes: int):
        self.path, self.file, self.size_bytes, self.max_voxel_bytes = path, file, size_bytes, max_voxel_bytes

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def read_at(self, offset: int, n_bytes: int, what: str) -> bytes:
        """Exactly ``n_bytes`` from ``offset``; UnsupportedFormat naming ``what`` when the file is shorter."""
        if offset < 0 or n_bytes < 0 or offset + n_bytes > self.size_bytes:
            raise UnsupportedFormat(
                f"{self.path} is truncated or damaged: {what} needs bytes {offset} to {offset + n_bytes} "
                f"but the file has {self.size_bytes}"
            )
        self.file.seek(offset)
        return self.file.read(n_bytes)

    def check_voxels(self, shape, itemsize: int, what: str) -> int:
        """Bytes of a ``shape`` array of ``itemsize``-byte samples; InvalidVolume when over the cap.

        Call it with the sizes a header declares, before allocating or decompressing them.
        """
        n_bytes = math.prod(int(n) for n in shape) * int(itemsize)
        if n_bytes > self.max_voxel_bytes:
            dims = " x ".join(str(int(n)) for n in shape)
            raise InvalidVolume(
                f"{self.path}: {what} declares {dims} samples of {itemsize} byte{'s' * (itemsize != 1)} "
                f"= {describe_bytes(n_bytes)}, "
                f"above the cap of {describe_bytes(self.max_voxel_bytes)} of voxels: if the file is genuine, "
                "pass a larger max_voxel_bytes to read_volume"
            )
        return n_bytes


class _BoundedReader(io.RawIOBase):
    """A seekable binary reader whose reads stop at ``size_bytes``: ``read(n)`` with a huge ``n``
    returns what is there, without first allocating ``n`` bytes as a buffered reader does."""

    def __init__(self, raw, size_bytes: int):
        super().__init__()
        self._raw, self._size_bytes = raw, size_bytes

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _left(self) -> int:
        return max(self._size_bytes - self._raw.tell(), 0)

    def read(self, size: int | None = -1) -> bytes:
        left = self._left()
        return self._raw.read(left if size is None or size < 0 else min(size, left))

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        return self._raw.readinto(view[: min(len(view), self._left())])

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._raw.close()
        super().close()


@contextmanager
def open_volume_file(path, max_voxel_bytes: int = DEFAULT_MAX_VOXEL_BYTES) -> Iterator[VolumeFile]:
    """Open ``path`` for reading if it is a regular file (symbolic links are followed).

    The file is opened non-blocking and checked with ``fstat`` before a byte is read, so a FIFO,
    a device (``/dev/zero``) or a socket is refused at once instead of blocking or streaming
    without end. Raises FileError (missing, a folder, not a regular file, not permitted).
    """
    path = Path(path)
    if not isinstance(max_voxel_bytes, int) or max_voxel_bytes <= 0:
        raise InvalidVolume(f"max_voxel_bytes {max_voxel_bytes!r} must be a positive number of bytes")
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
        )
    except FileNotFoundError:
        raise FileError(f"{path}: no such file") from None
    except OSError as error:
        raise FileError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileError(f"{path} is a folder: give the path of one volume file")
        if not stat.S_ISREG(info.st_mode):
            kind = next(
                (name for test, name in _FILE_KINDS.items() if test(info.st_mode)), "not a regular file"
            )
            raise FileError(
                f"{path} is {kind}, not a regular file: the SDK reads volumes from regular files only"
            )
        raw = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with _BoundedReader(raw, info.st_size) as file:
        yield VolumeFile(path, file, info.st_size, max_voxel_bytes)
