"""The Python half of liboctclassify: what the exported ``octc_*`` functions call.

octclassify.c starts an isolated interpreter whose ``sys.path`` is the runtime folder only (its
site-packages and standard library), imports this module, which imports the SDK, and calls
:func:`open`, :func:`classify` and :func:`close` with arguments it has already checked (no NULL,
no empty string, dimensions and buffer size consistent). Each returns ``(status, message,
value)``: ``status`` is an ``OCTC_*`` code of octclassify.h, which the C half hands over as the
builtin module ``_octclassify`` together with the header's other constants and ``log``; no
exception leaves these functions.

Nothing reaches the process's stdout or stderr: ``sys.stdout`` and ``sys.stderr`` (and their
``__stdout__`` / ``__stderr__``) become streams into :mod:`logging`, warnings are logged, and every
record of INFO and above goes to the logger callback of the handle whose call runs on this thread
(``octc_options.logger``), or nowhere.
"""

import gc
import itertools
import logging
import os
import sys
import threading
from dataclasses import dataclass

import _octclassify as c  # the C half: header constants and log(function, user_data, level, text)

_LOG = logging.getLogger("octclassify")
_calls = threading.local()  # .logger: (function address, user data) of the handle in this thread's call


class _LogStream:
    """A text stream that logs each complete line at ``level`` (stands in for stdout and stderr)."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, level: int):
        self._level = level
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in filter(None, lines):
            _LOG.log(self._level, line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _ToCallLogger(logging.Handler):
    """Sends a record to the logger callback of the call running on this thread, if it has one."""

    def emit(self, record: logging.LogRecord) -> None:
        target = getattr(_calls, "logger", None)
        if target is not None:
            c.log(*target, record.levelno, f"{record.name}: {record.getMessage()}")


def _route_output() -> None:
    sys.stdout = sys.__stdout__ = _LogStream(logging.INFO)
    sys.stderr = sys.__stderr__ = _LogStream(logging.WARNING)
    logging.raiseExceptions = False  # a failing handler must not print a traceback
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(_ToCallLogger())


_route_output()

# ruff: noqa: E402  (output is routed before anything that might print is imported)
import numpy as np

from sdk import ndimage
from sdk.bundle import Bundle
from sdk.classifier import Classifier
from sdk.errors import BackendUnavailable, BundleError, FileError
from sdk.labels import CLASSES
from sdk.volume import OCTVolume

_DTYPES = {c.OCTC_UINT8: np.uint8, c.OCTC_UINT16: np.uint16, c.OCTC_FLOAT32: np.float32}
_STATUSES = (  # first match wins
    (MemoryError, c.OCTC_OUT_OF_MEMORY),
    (BundleError, c.OCTC_BUNDLE_ERROR),
    (BackendUnavailable, c.OCTC_BACKEND_UNAVAILABLE),
    (FileError, c.OCTC_FILE_ERROR),
    (ValueError, c.OCTC_INVALID_ARGUMENT),  # sdk.errors.InvalidVolume, unknown backend or precision
)


@dataclass(frozen=True)
class _Handle:
    classifier: Classifier
    logger: tuple[int, int] | None  # (function address, user data), or None


_handles: dict[int, _Handle] = {}  # a handle is a number, never reused
_closed: set[int] = set()
_numbers = itertools.count(1)


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _run(function_name: str, logger, work):
    """``(OCTC_OK, "", work())``, or the status and message of what it raised; ``logger`` gets the
    records logged meanwhile on this thread."""
    _calls.logger = logger
    try:
        return c.OCTC_OK, "", work()
    except BaseException as e:  # nothing may propagate into C
        status = e.status if isinstance(e, _Refused) else _status_of(e)
        text = f"{type(e).__name__}: {e}" if status == c.OCTC_INTERNAL else str(e)
        _LOG.log(logging.ERROR if status == c.OCTC_INTERNAL else logging.INFO, "%s: %s", function_name, text)
        return status, f"{function_name}: {text}", None
    finally:
        _calls.logger = None


def _status_of(error: BaseException) -> int:
    return next((status for cls, status in _STATUSES if isinstance(error, cls)), c.OCTC_INTERNAL)


def _handle(number: int) -> _Handle:
    if number in _handles:
        return _handles[number]
    if number in _closed:
        raise _Refused(c.OCTC_CLOSED_HANDLE, f"handle {number:#x} was closed by octc_close")
    raise _Refused(c.OCTC_INVALID_ARGUMENT, f"{number:#x} is not a handle from octc_open")


def _fit(text: str, size: int) -> bytes:
    """``text`` as UTF-8 in at most ``size - 1`` bytes (room for the NUL), never cutting a character."""
    return text.encode()[: size - 1].decode("utf-8", "ignore").encode()


def _load(bundle_path: str, backend: str, precision, cache_dir, trusted_keys, threads: int) -> Classifier:
    """Classifier.load with the number of threads (Bundle.load, then Classifier.of_bundle, which
    closes the bundle if it fails). of_bundle starts the front end's scipy import beside building the
    networks; it is waited for here, so that no thread of the SDK outlives octc_open (the host counts
    its threads) and the first octc_classify does not pay for it."""
    bundle = Bundle.load(bundle_path, trusted_keys=trusted_keys)
    try:
        return Classifier.of_bundle(bundle, backend, precision, cache_dir, threads=threads or None)
    finally:
        ndimage.preload().join()


def open(
    bundle_path, backend, precision, cache_dir, trusted_keys, threads, logger_function, logger_user_data
):
    """Load a classifier; the value is its handle. Strings are bytes, None for the default; the
    logger is a function address (0: none) and its user data."""
    logger = (logger_function, logger_user_data) if logger_function else None

    def work():
        path, name, precision_name, cache, keys = map(
            _text, (bundle_path, backend, precision, cache_dir, trusted_keys)
        )
        classifier = _load(path, name or "auto", precision_name, cache, keys, threads)
        number = next(_numbers)
        _handles[number] = _Handle(classifier, logger)
        return number

    return _run("octc_open", logger, work)


def _text(value: bytes | None) -> str | None:
    return None if value is None else os.fsdecode(value)


def classify(number, voxels, dtype, shape, spacing_mm, laterality):
    """Classify the volume in ``voxels`` (a memoryview of the caller's buffer, released before this
    returns); the value is the result tuple octclassify.c copies into octc_result."""
    handle = _handles.get(number)
    answer = _run(
        "octc_classify",
        handle and handle.logger,
        lambda: _classify(_handle(number).classifier, voxels, dtype, shape, spacing_mm, laterality),
    )
    if not _released(voxels):
        return c.OCTC_INTERNAL, "octc_classify: the SDK kept a reference to the caller's voxels", None
    return answer


def _classify(classifier: Classifier, voxels, dtype, shape, spacing_mm, laterality):
    data = np.frombuffer(voxels, _DTYPES[dtype]).reshape(shape)
    dx = classifier.classify(OCTVolume(data, spacing_mm, laterality.decode("utf-8", "replace")))
    nan = float("nan")
    return (
        int(dx.gradable),
        CLASSES.index(dx.label) if dx.label is not None else c.OCTC_CLASS_NONE,
        _fit(dx.label or "", c.OCTC_LABEL_CHARS),
        tuple(dx.probabilities[name] for name in CLASSES) if dx.label is not None else (nan,) * len(CLASSES),
        _fit("; ".join(dx.reasons), c.OCTC_REASON_CHARS),
        _fit(dx.bundle_id, c.OCTC_BUNDLE_ID_CHARS),
        _fit(dx.signer or "", c.OCTC_SIGNER_CHARS),
        _fit(dx.backend, c.OCTC_NAME_CHARS),
        _fit(dx.precision, c.OCTC_NAME_CHARS),
        _fit(dx.versions["sdk"], c.OCTC_NAME_CHARS),
    )


def _released(view: memoryview) -> bool:
    """Release ``view``; False if something still holds the caller's buffer (after a collection)."""
    for attempt in range(2):
        try:
            view.release()
            return True
        except BufferError:
            if attempt == 0:
                gc.collect()
    return False


def close(number):
    """Release the classifier of handle ``number``; the value is None."""
    handle = _handles.get(number)

    def work():
        _handle(number)
        _closed.add(number)
        _handles.pop(number).classifier.close()

    return _run("octc_close", handle and handle.logger, work)
