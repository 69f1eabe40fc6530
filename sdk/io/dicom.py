"""DICOM Ophthalmic Tomography (OPT) volumes: reader and writer, with pydicom (the ``dicom`` extra).

pydicom is imported inside the functions, so ``sdk`` imports without it.

How an :class:`~sdk.OCTVolume` maps onto an Ophthalmic Tomography Image Storage instance
(SOP Class UID ``OPT_SOP_CLASS_UID``, Modality ``OPT``):

* ``data`` (n_bscans, depth, n_ascans): Pixel Data as NumberOfFrames x Rows x Columns, one B-scan a
  frame, MONOCHROME2, unsigned, 8 or 16 bits allocated and stored.
* ``spacing_mm`` (bscan, axial, ascan): the Pixel Measures item of the shared functional groups holds
  PixelSpacing = [axial, ascan] (DICOM's [row, column] spacing) and SpacingBetweenSlices =
  SliceThickness = bscan spacing (OCT exporters commonly read SliceThickness as the B-scan spacing).
  Each frame's Plane Position holds ImagePositionPatient = [0, 0, -i * bscan] mm with
  ImageOrientationPatient [1, 0, 0, 0, 1, 0]: A-scans run toward the patient's left (left to right of
  the en-face view seen looking into the eye), depth runs posterior, B-scans run from head to foot.
  The reader takes PixelSpacing, and for the B-scan spacing SpacingBetweenSlices, else SliceThickness,
  else the distance from the first to the last frame position divided by (frames - 1); each attribute
  is looked up in the shared functional groups, then the first frame's, then the top level.
* ``laterality``: ImageLaterality and the Frame Anatomy FrameLaterality are "R" (OD) or "L" (OS);
  the reader takes ImageLaterality, else Laterality, else FrameLaterality.
* ``protocol``: ProtocolName (0018,1030) is "wide", "disc" or "macula". When a file's ProtocolName is
  none of these (a vendor's own name, or absent) the protocol follows the region imaged
  (AnatomicRegionSequence): optic nerve head -> "disc", fovea -> "macula", anything else -> "wide".
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from sdk import __version__
from sdk.errors import InvalidVolume, OCTError, UnsupportedFormat
from sdk.files import write_atomically
from sdk.volume import PROTOCOLS, OCTVolume

OPT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.5.4"  # Ophthalmic Tomography Image Storage
DICOM_SUFFIXES = (".dcm", ".dicom")
DICOM_MAGIC_OFFSET = 128  # 'DICM' follows the 128-byte preamble of a DICOM Part 10 file
_LATERALITY_CODES = {"OD": "R", "OS": "L"}
# Region imaged (SNOMED CT, DICOM CID 4209) per protocol; the reader maps the codes back.
_REGION_CODES = {
    "wide": ("5665001", "Retina"),
    "disc": ("81016008", "Optic nerve head"),
    "macula": ("67046006", "Fovea centralis"),
}
_OCT_SCANNER_CODE = ("392012008", "Optical Coherence Tomography Scanner")  # DICOM CID 4210


def is_dicom(head: bytes) -> bool:
    """True when the first bytes of a file carry the DICOM Part 10 'DICM' marker at byte 128."""
    return head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"


def read_dicom(path: Path) -> tuple[np.ndarray, dict]:
    """Read an OPT file: returns (data (n_bscans, depth, n_ascans), metadata found in the file).

    The metadata dict holds "spacing_mm" ((bscan, axial, ascan) in mm), "laterality" ("OD"/"OS") and
    "protocol" where the file records them (see the module docstring). Raises UnsupportedFormat for
    a file that is not DICOM, not Ophthalmic Tomography, damaged or without pixel data.
    """
    pydicom = _import_pydicom()
    try:
        ds = pydicom.dcmread(path)
        _check_opt(ds, path)
        data = _pixels(ds, path)
        metadata = {"spacing_mm": _spacing_mm(ds), "laterality": _laterality(ds), "protocol": _protocol(ds)}
    except (OCTError, OSError):
        raise
    except Exception as error:  # a damaged file can make pydicom fail in many ways; name the file
        raise UnsupportedFormat(
            f"{path} is not a readable DICOM file, or it is damaged or truncated "
            f"({type(error).__name__}: {error})"
        ) from error
    return data, metadata


def write_dicom(
    volume: OCTVolume,
    path,
    *,
    overwrite: bool = False,
    patient_id: str = "ANONYMOUS",
    patient_name: str = "",
    study_instance_uid: str | None = None,
    acquisition_datetime: datetime | None = None,
) -> Path:
    """Write ``volume`` as a multi-frame DICOM Ophthalmic Tomography Image file, atomically.

    The file is explicit VR little endian with new SOP Instance, Series (and, unless
    ``study_instance_uid`` is given, Study) UIDs; the attribute layout is in the module docstring.
    Voxels must be uint8 or uint16: a float volume raises InvalidVolume (quantise it first). An
    existing file is replaced only with ``overwrite=True`` (else FileError). ``acquisition_datetime``
    defaults to now. Returns the path written.
    """
    if volume.data.dtype not in (np.uint8, np.uint16):
        raise InvalidVolume(
            f"DICOM Ophthalmic Tomography stores unsigned integer voxels, not {volume.data.dtype}: "
            "quantise the volume to uint8 or uint16 first (e.g. np.round(scaled).astype(np.uint16))"
        )
    ds = _opt_dataset(volume, patient_id, patient_name, study_instance_uid, acquisition_datetime)
    return write_atomically(
        path, lambda file: ds.save_as(file, enforce_file_format=True), overwrite=overwrite
    )


def _import_pydicom():
    try:
        import pydicom
    except ImportError as error:
        raise UnsupportedFormat(
            "DICOM files need pydicom, which is not installed: pip install 'octclassify[dicom]'"
        ) from error
    return pydicom


def _check_opt(ds, path: Path) -> None:
    from pydicom.uid import UID

    sop_class = ds.get("SOPClassUID")
    if not sop_class:
        raise UnsupportedFormat(f"{path} has no SOP Class UID: the DICOM file is incomplete or truncated")
    if sop_class != OPT_SOP_CLASS_UID:
        raise UnsupportedFormat(
            f"{path} is not an OCT volume: it is {UID(sop_class).name} ({sop_class}), modality "
            f"{ds.get('Modality') or 'unknown'}; the SDK reads Ophthalmic Tomography Image Storage "
            "(modality OPT)"
        )


def _pixels(ds, path: Path) -> np.ndarray:
    """Voxels (n_bscans, depth, n_ascans) of an OPT dataset."""
    if "PixelData" not in ds:
        raise UnsupportedFormat(f"{path} has no pixel data: the file is incomplete or truncated")
    if ds.get("SamplesPerPixel", 1) != 1 or ds.get("PhotometricInterpretation") != "MONOCHROME2":
        raise UnsupportedFormat(
            f"{path} has {ds.get('PhotometricInterpretation')} pixels with {ds.get('SamplesPerPixel')} "
            "samples; an OCT volume is MONOCHROME2 with 1 sample per pixel"
        )
    data = ds.pixel_array
    return data[np.newaxis] if data.ndim == 2 else data  # a single frame comes back 2-D


def _macro_items(ds, macro: str) -> list:
    """First items of a functional-group macro sequence (e.g. "PixelMeasuresSequence"): the shared
    groups' first, then the first frame's; only those present."""
    items = []
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        sequence = ds[groups][0].get(macro) if ds.get(groups) else None
        if sequence:
            items.append(sequence[0])
    return items


def _lookup(ds, keyword: str):
    """Value of a Pixel Measures attribute from the shared groups, the first frame's, or the top level.

    Returns None when it is absent or empty everywhere.
    """
    for place in [*_macro_items(ds, "PixelMeasuresSequence"), ds]:
        value = place.get(keyword)
        if value not in (None, ""):
            return value
    return None


def _spacing_mm(ds) -> tuple[float, float, float] | None:
    """(bscan, axial, ascan) spacing in mm, or None when the file does not record all three."""
    pixel_spacing = _lookup(ds, "PixelSpacing")
    bscan = _lookup(ds, "SpacingBetweenSlices") or _lookup(ds, "SliceThickness") or _position_step_mm(ds)
    if pixel_spacing is None or len(pixel_spacing) != 2 or not bscan:
        return None
    axial, ascan = pixel_spacing
    return float(bscan), float(axial), float(ascan)


def _position_step_mm(ds) -> float | None:
    """B-scan spacing in mm from the frames' ImagePositionPatient: the distance from the first to the
    last position over (frames - 1); None unless every frame has a position and they differ."""
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    positions = [
        f.PlanePositionSequence[0].get("ImagePositionPatient")
        for f in frames
        if f.get("PlanePositionSequence")
    ]
    if len(positions) < 2 or len(positions) != len(frames) or any(p is None for p in positions):
        return None
    step = np.linalg.norm(np.subtract(positions[-1], positions[0], dtype=float)) / (len(positions) - 1)
    return float(step) or None


def _laterality(ds) -> str | None:
    """Laterality "OD"/"OS" from ImageLaterality, Laterality or FrameLaterality (R/L); else None."""
    anatomy = _macro_items(ds, "FrameAnatomySequence")
    values = [ds.get("ImageLaterality"), ds.get("Laterality"), *(a.get("FrameLaterality") for a in anatomy)]
    for value in values:
        if value in ("R", "L"):
            return "OD" if value == "R" else "OS"
    return None


def _protocol(ds) -> str | None:
    """Protocol from ProtocolName, else from the region imaged; None when neither tells."""
    name = str(ds.get("ProtocolName") or "").strip().lower()
    if name in PROTOCOLS:
        return name
    regions = ds.get("AnatomicRegionSequence") or []
    codes = {str(region.get("CodeValue")) for region in regions}
    for protocol, (code, _) in _REGION_CODES.items():
        if code in codes:
            return protocol
    return None


def _code_item(code: tuple[str, str]):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodeMeaning = code
    item.CodingSchemeDesignator = "SCT"
    return item


def _opt_dataset(volume: OCTVolume, patient_id, patient_name, study_instance_uid, acquisition_datetime):
    """Build the FileDataset of an OPT instance for ``volume`` (layout in the module docstring)."""
    pydicom = _import_pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from pydicom.valuerep import DSfloat

    def ds_number(value: float) -> DSfloat:  # DS holds at most 16 characters
        return DSfloat(value, auto_format=True)

    bscan_mm, axial_mm, ascan_mm = volume.spacing_mm
    n_bscans, depth, n_ascans = volume.shape
    bits = volume.data.dtype.itemsize * 8
    now = datetime.now()
    acquired = acquisition_datetime or now
    laterality_code = _LATERALITY_CODES[volume.laterality]

    ds = pydicom.FileDataset(None, Dataset(), file_meta=FileMetaDataset(), preamble=b"\0" * 128)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    # SOP Common
    ds.SOPClassUID = OPT_SOP_CLASS_UID
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    # Patient
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.StudyDate = acquired.strftime("%Y%m%d")
    ds.StudyTime = acquired.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    # General Series and Ophthalmic Tomography Series
    ds.Modality = "OPT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.ProtocolName = volume.protocol
    # Frame of Reference
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    # General and Enhanced General Equipment
    ds.Manufacturer = "octclassify"
    ds.ManufacturerModelName = "sdk.io.write_dicom"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = __version__
    # Image Pixel and Ophthalmic Tomography Image
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.Rows, ds.Columns = depth, n_ascans
    ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S")
    ds.AcquisitionNumber = 1
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.ConcatenationFrameOffsetNumber = 0  # OPT forbids concatenations: these three are fixed
    ds.InConcatenationNumber = 1
    ds.InConcatenationTotalNumber = 1
    # Ophthalmic Tomography Acquisition Parameters: unknown to the SDK, so empty (type 2)
    ds.AxialLengthOfTheEye = None
    ds.HorizontalFieldOfView = None
    ds.RefractiveStateSequence = []
    ds.EmmetropicMagnification = None
    ds.IntraOcularPressure = None
    ds.PupilDilated = ""
    # Ophthalmic Tomography Parameters
    ds.AcquisitionDeviceTypeCodeSequence = [_code_item(_OCT_SCANNER_CODE)]
    ds.LightPathFilterTypeStackCodeSequence = []
    ds.DetectorType = "INT"  # interferometer
    ds.OphthalmicVolumetricPropertiesFlag = "YES"
    # Ocular Region Imaged
    ds.ImageLaterality = laterality_code
    ds.AnatomicRegionSequence = [_code_item(_REGION_CODES[volume.protocol])]
    ds.OphthalmicAnatomicReferencePointXCoordinate = None  # on a fundus image the SDK does not have
    ds.OphthalmicAnatomicReferencePointYCoordinate = None
    # Acquisition Context
    ds.AcquisitionContextSequence = []
    # Multi-frame Dimension: frames are indexed by their position in the B-scan stack
    dimension_uid = generate_uid()
    ds.DimensionOrganizationSequence = [Dataset()]
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dimension_uid
    ds.DimensionIndexSequence = [Dataset()]
    index = ds.DimensionIndexSequence[0]
    index.DimensionOrganizationUID = dimension_uid
    index.DimensionIndexPointer = pydicom.tag.Tag("InStackPositionNumber")
    index.FunctionalGroupPointer = pydicom.tag.Tag("FrameContentSequence")
    # Multi-frame Functional Groups
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.NumberOfFrames = n_bscans
    shared = Dataset()
    shared.PixelMeasuresSequence = [Dataset()]
    measures = shared.PixelMeasuresSequence[0]
    measures.PixelSpacing = [ds_number(axial_mm), ds_number(ascan_mm)]
    measures.SliceThickness = ds_number(bscan_mm)
    measures.SpacingBetweenSlices = ds_number(bscan_mm)
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.FrameAnatomySequence = [Dataset()]
    shared.FrameAnatomySequence[0].FrameLaterality = laterality_code
    shared.FrameAnatomySequence[0].AnatomicRegionSequence = [_code_item(_REGION_CODES[volume.protocol])]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for i in range(n_bscans):
        frame = Dataset()
        frame.PlanePositionSequence = [Dataset()]
        frame.PlanePositionSequence[0].ImagePositionPatient = [0, 0, ds_number(-i * bscan_mm)]
        frame.FrameContentSequence = [Dataset()]
        content = frame.FrameContentSequence[0]
        content.StackID = "1"
        content.InStackPositionNumber = i + 1
        content.DimensionIndexValues = [i + 1]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.ascontiguousarray(volume.data, dtype=volume.data.dtype.newbyteorder("<")).tobytes()
    return ds
