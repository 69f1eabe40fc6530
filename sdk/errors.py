"""Exceptions raised by the SDK.

Every error the SDK raises on purpose derives from :class:`OCTError`, and its message names the
problem and what to do about it. A scan too poor to grade is *not* an error: the Diagnosis says
``gradable=False`` and why.
"""


class OCTError(Exception):
    """Base class of every error the SDK raises on purpose."""


class InvalidVolume(OCTError, ValueError):
    """The voxel data or its metadata (spacing, laterality, protocol, field of view) is unusable."""


class UnsupportedFormat(OCTError, ValueError):
    """A file is not an OCT volume the SDK can read (unknown extension, non-OCT DICOM, truncated file)."""


class BundleError(OCTError):
    """A model bundle is missing, incomplete, tampered with, or from an unknown schema version."""


class BackendUnavailable(OCTError):
    """The requested inference backend cannot run on this machine (library or device missing)."""


class CohortError(OCTError, ValueError):
    """A training cohort is unusable (missing file, unknown label, a class absent from a split)."""


class FileError(OCTError, OSError):
    """A file or folder cannot be read or written: missing, not permitted, or it exists and would be
    overwritten."""
