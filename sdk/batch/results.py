"""The results file of a batch run: one JSON line per scan, only ever appended to.

A scored scan's line::

    {"file", "sha256", "class", "exit_code", ...Diagnosis.to_dict()..., "report" or "report_error"}

A scan that failed (unreadable, not a volume, an internal error)::

    {"file", "sha256" (null when the file could not be read), "class", "exit_code", "error", "bundle_id"}

``class`` and ``exit_code`` are sdk.classify's for that scan alone: "classified" 0, "ungradable"
3, "bad_input" 2, "internal_error" 4. A report that could not be written leaves the scan's class as
it is and says why in "report_error".
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from sdk.classify import (
    EXIT_CLASSES,
    EXIT_OK,
    EXIT_UNGRADABLE,
    OutputFailed,
    describe,
    exit_code_of,
    note,
)
from sdk.errors import FileError
from sdk.files import check_writable

RECORD_START = b'{"file": '  # how every line json.dumps writes for a record begins
SYNC_INTERVAL_S = 1.0  # results reach the disk at least this often (a killed process loses none anyway)


def scan_record(file: str, sha256: str, diagnosis) -> dict:
    """The line of a scan that went through the Classifier (gradable or not)."""
    code = EXIT_OK if diagnosis.gradable else EXIT_UNGRADABLE
    return {
        "file": file,
        "sha256": sha256,
        "class": EXIT_CLASSES[code],
        "exit_code": code,
        **diagnosis.to_dict(),
    }


def error_record(file: str, sha256: str | None, error: BaseException, bundle_id: str | None) -> dict:
    """The line of a scan that failed with ``error`` (its class from sdk.classify.exit_code_of)."""
    code = exit_code_of(error)
    return {
        "file": file,
        "sha256": sha256,
        "class": EXIT_CLASSES[code],
        "exit_code": code,
        "error": describe(error),
        "bundle_id": bundle_id,
    }


class ResultsFile:
    """A results file opened for appending, with what it holds already.

    done : {sha256: exit code} of every line with a sha256 (a rerun skips those scans).

    The file is never truncated, replaced or rewritten, with one exception: a last line cut short
    by a killed run (no newline, not JSON, after at least one whole line) is removed, and that scan
    is scored again. Refused with FileError: a symbolic link, a folder, a file that is not
    sdk.batch's (a line that is not a result record), a file another run is writing (an exclusive
    lock for as long as it is open). A file it made and wrote nothing to is removed on close.
    """

    def __init__(self, path):
        self.path = Path(path)
        check_writable(self.path, overwrite=True)
        self._fd, self._created = _open_for_appending(self.path)
        self._appended = False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise FileError(
                f"another sdk.batch run is writing {self.path}: wait for it to end, or give another --out"
            ) from None
        try:
            self.done, self._bundle_ids = self._read()
        except BaseException:
            self._close()
            raise
        self._synced = time.monotonic()

    def check_bundle(self, bundle_id: str) -> None:
        """FileError if the file holds lines of another bundle (results of two models never mix)."""
        others = sorted(self._bundle_ids - {bundle_id, None})
        if others:
            raise FileError(
                f"{self.path} holds results of bundle {others[0][:12]}, not of this run's bundle "
                f"{bundle_id[:12]}: write this run to another --out"
            )

    def append(self, record: dict) -> None:
        """Add one line (one write call of the whole line); OutputFailed if it cannot be written."""
        line = memoryview((json.dumps(record) + "\n").encode())
        try:
            self._appended = True
            while line:
                line = line[os.write(self._fd, line) :]
            if time.monotonic() - self._synced >= SYNC_INTERVAL_S:
                self._sync()
        except OSError as error:
            raise OutputFailed(f"cannot write {self.path}: {error.strerror or error}") from None

    def close(self) -> None:
        """Flush to disk and close; a file this run made and wrote no line to is removed again."""
        try:
            self._sync()
        except OSError as error:
            raise OutputFailed(f"cannot write {self.path}: {error.strerror or error}") from None
        finally:
            self._close()

    def _close(self) -> None:
        if self._created and not self._appended:
            self.path.unlink(missing_ok=True)  # still ours: the lock is held until the close below
        os.close(self._fd)

    def _sync(self) -> None:
        os.fsync(self._fd)
        self._synced = time.monotonic()

    def _read(self) -> tuple[dict[str, int], set]:
        try:
            data = b"".join(iter(lambda: os.read(self._fd, 1 << 24), b""))
        except OSError as error:
            raise FileError(f"cannot read {self.path}: {error.strerror or error}") from None
        complete = data[: data.rfind(b"\n") + 1]
        done, bundle_ids = {}, set()
        for number, line in enumerate(complete.splitlines(), 1):
            if not line.strip():
                continue
            record = self._record(line, number)
            if record.get("sha256"):
                done[record["sha256"]] = record["exit_code"]
            bundle_ids.add(record.get("bundle_id"))
        if len(complete) < len(data):
            self._end_cut_line(data[len(complete) :], len(complete))
        return done, bundle_ids

    def _record(self, line: bytes, number: int) -> dict:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("exit_code"), int)
            or "class" not in record
        ):
            raise FileError(
                f"{self.path} line {number} is not a result line: it is not an sdk.batch results file; "
                "give another --out"
            )
        return record

    def _end_cut_line(self, tail: bytes, keep: int) -> None:
        """A last line without its newline: one of our records cut short by a killed run is removed
        (that scan is then scored again); anything else, or a file of that line alone, is not ours."""
        if not keep or not tail.startswith(RECORD_START) or _is_json(tail):
            raise FileError(
                f"{self.path} ends without a newline: not an sdk.batch results file; give another --out"
            )
        os.ftruncate(self._fd, keep)
        note(f"{self.path}: removed its last line, cut short by a killed run; that scan is scored again")


def _open_for_appending(path: Path) -> tuple[int, bool]:
    """(descriptor, whether this call made the file): never through a symbolic link."""
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            return os.open(path, flags), False
    except OSError as error:
        raise FileError(f"cannot open {path}: {error.strerror or error}") from None


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True
