"""The Python half of liboctclassify, frozen into the library by build_library.py.

It runs once, on the first call into the library, after octclassify.c has started Python with the
library's python path in front of ``sys.path``. It runs that path's ``.pth`` files (an editable
install of the SDK), imports the SDK and attaches the extern "Python" functions that the exported
``octc_*`` functions call. Each returns a status code; an exception becomes its status and the
calling thread's message (octc_last_error), never a traceback.
"""

# ruff: noqa: E402  (the SDK is importable only once the python path is set up)
import os
import site

from _octclassify import ffi, lib

_PYTHON_PATH = ffi.string(lib._octc_python_path()).decode()
try:
    for _directory in filter(None, _PYTHON_PATH.split(os.pathsep)):  # "" would be the working directory
        site.addsitedir(_directory)
    import itertools
    import math

    import numpy as np

    from sdk.classifier import Classifier
    from sdk.errors import BackendUnavailable, BundleError, FileError
    from sdk.labels import CLASSES
    from sdk.volume import OCTVolume
except Exception as e:
    lib._octc_start_failed(f"the embedded Python could not import the SDK ({type(e).__name__}: {e})".encode())
    raise

_DTYPES = {lib.OCTC_UINT8: np.uint8, lib.OCTC_UINT16: np.uint16, lib.OCTC_FLOAT32: np.float32}
_STATUSES = (  # first match wins
    (BundleError, lib.OCTC_BUNDLE_ERROR),
    (FileError, lib.OCTC_BUNDLE_ERROR),
    (BackendUnavailable, lib.OCTC_BACKEND_UNAVAILABLE),
    (ValueError, lib.OCTC_INVALID_ARGUMENT),  # sdk.errors.InvalidVolume, unknown backend name
)

_classifiers = {}  # handle -> Classifier; a handle is a number, never reused
_closed = set()
_handles = itertools.count(1)


class _StatusError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _extern(function):
    """Attach ``function`` to the extern "Python" function of its name: OCTC_OK if it returns, else
    the status of its exception, with the message set for the calling thread."""

    def call(*args):
        try:
            function(*args)
        except BaseException as e:  # nothing may propagate into C: cffi would print it and return INTERNAL
            status = _status_of(e)
            text = f"{type(e).__name__}: {e}" if status == lib.OCTC_INTERNAL else str(e)
            c_name = function.__name__.replace("_py", "").lstrip("_")
            lib._octc_set_error(f"{c_name}: {text}".encode("utf-8", "replace"))
            return status
        return lib.OCTC_OK

    ffi.def_extern(name=function.__name__, error=lib.OCTC_INTERNAL)(call)
    return function


def _status_of(error: BaseException) -> int:
    if isinstance(error, _StatusError):
        return error.status
    return next((status for cls, status in _STATUSES if isinstance(error, cls)), lib.OCTC_INTERNAL)


def _text(pointer) -> str:
    return ffi.string(pointer).decode("utf-8", "replace")


def _classifier(handle: int, take: bool = False) -> Classifier:
    """The classifier of ``handle`` (removed from the table if ``take``)."""
    classifier = _classifiers.pop(handle, None) if take else _classifiers.get(handle)
    if classifier is not None:
        return classifier
    if handle in _closed:
        raise _StatusError(lib.OCTC_CLOSED_HANDLE, f"handle {handle:#x} was closed by octc_close")
    raise _StatusError(lib.OCTC_INVALID_ARGUMENT, f"{handle:#x} is not a handle from octc_open")


@_extern
def _octc_py_open(bundle_path, backend_name, out_handle):
    classifier = Classifier.load(os.fsdecode(ffi.string(bundle_path)), backend=_text(backend_name))
    handle = next(_handles)
    _classifiers[handle] = classifier
    out_handle[0] = handle


@_extern
def _octc_py_classify(handle, voxels, dtype, n_bscans, depth, n_ascans, spacing_mm, laterality, out):
    classifier = _classifier(handle)
    dtype = np.dtype(_DTYPES[dtype])
    shape = (n_bscans, depth, n_ascans)
    data = np.frombuffer(ffi.buffer(voxels, math.prod(shape) * dtype.itemsize), dtype).reshape(shape)
    dx = classifier.classify(OCTVolume(data, ffi.unpack(spacing_mm, 3), _text(laterality)))
    out.gradable = dx.gradable
    reason = "; ".join(dx.reasons).encode()[: lib.OCTC_REASON_CHARS - 1]
    out.reason = reason.decode("utf-8", "ignore").encode()  # never a cut multi-byte character
    if dx.label is not None:
        out.label = CLASSES.index(dx.label)
        out.label_name = dx.label.encode()
        out.probabilities = [dx.probabilities[name] for name in CLASSES]


@_extern
def _octc_py_close(handle):
    classifier = _classifier(handle, take=True)
    _closed.add(handle)
    classifier.close()
