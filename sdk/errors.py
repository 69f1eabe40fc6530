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


class UnsupportedScan(UnsupportedFormat, InvalidVolume):
    """A readable file holds a scan pattern the method cannot use: a single line or circle B-scan,
    radial or cross lines. The method needs a raster cube of the optic disc, of the macula, or of
    both in one wide cube.

    ``pattern`` names the scan pattern; ``spacing_mm`` ((bscan, axial, ascan) in mm, None where the
    file does not tell), ``laterality`` and ``shape`` report what the file records.
    """

    def __init__(self, message: str, *, pattern: str, spacing_mm=None, laterality=None, shape=None):
        super().__init__(message)
        self.pattern, self.spacing_mm, self.laterality, self.shape = pattern, spacing_mm, laterality, shape

    def __reduce__(self):  # keyword-only fields survive pickling (process pools, Ray)
        fields = {"pattern": self.pattern, "spacing_mm": self.spacing_mm}
        fields.update(laterality=self.laterality, shape=self.shape)
        return _rebuild_unsupported_scan, (str(self), fields)


def _rebuild_unsupported_scan(message: str, fields: dict) -> UnsupportedScan:
    return UnsupportedScan(message, **fields)


class BundleError(OCTError):
    """A model bundle is missing, incomplete, tampered with, or from an unknown schema version."""


class BackendUnavailable(OCTError):
    """The requested inference backend cannot run on this machine (library or device missing)."""


class CohortError(OCTError, ValueError):
    """A training cohort is unusable (missing file, unknown label, a class absent from a split)."""


class FileError(OCTError, OSError):
    """A file or folder cannot be read or written: missing, not permitted, or it exists and would be
    overwritten."""
