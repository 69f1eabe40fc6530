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
  is looked up in the shared functional groups, then the first frame's, then the top level. Every
  frame's PixelSpacing must agree, and so must SpacingBetweenSlices with the frame positions.
* ``laterality``: ImageLaterality and the Frame Anatomy FrameLaterality are "R" (OD) or "L" (OS);
  the reader collects ImageLaterality, Laterality and every FrameLaterality (shared and per frame)
  and refuses a file in which they disagree.
* ``protocol``: ProtocolName (0018,1030) is "wide", "disc" or "macula". When a file's ProtocolName is
  none of these (a vendor's own name, or absent) the protocol follows the region imaged
  (AnatomicRegionSequence): optic nerve head -> "disc", fovea -> "macula"; otherwise the protocol is
  not recorded (:func:`sdk.read_volume` then takes it from the field of view or the caller).
* Geometry and pixel data are cross-checked before use (:mod:`sdk.io.dicom_pixels`); a file of
  one frame is a single B-scan and is refused with UnsupportedScan.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdk import __version__
from sdk.errors import InvalidVolume, OCTError, UnsupportedFormat
from sdk.files import write_atomically
from sdk.io import dicom_pixels
from sdk.io.scans import unsupported_scan
from sdk.io.source import VolumeFile
from sdk.volume import PROTOCOLS, OCTVolume

if TYPE_CHECKING:  # pydicom is the dicom extra, imported when a DICOM file is read
    from pydicom.dataset import Dataset

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


def read_dicom(source: VolumeFile) -> tuple[np.ndarray, dict]:
    """Read an OPT file: returns (data (n_bscans, depth, n_ascans), metadata found in the file).

    The metadata dict holds "spacing_mm" ((bscan, axial, ascan) in mm), "laterality" ("OD"/"OS") and
    "protocol" where the file records them (see the module docstring), and their "provenance".
    Raises UnsupportedFormat for a file that is not DICOM, not Ophthalmic Tomography, damaged,
    without pixel data or whose header disagrees with its pixels or with itself; UnsupportedScan
    for a single frame; InvalidVolume for one that declares more voxels than the cap.
    """
    _import_pydicom()  # UnsupportedFormat naming the extra when pydicom is missing
    path = source.path
    try:
        ds = dicom_pixels.read_data_set(source)
        _check_opt(ds, path)
        geometry = dicom_pixels.geometry(ds, path)
        spacing, spacing_from = _spacing_mm(ds, path)
        laterality, laterality_from = _laterality(ds, path)
        if geometry[0] == 1:
            single = (None, *spacing[1:]) if spacing else None
            raise unsupported_scan(
                path, "single B-scan", shape=geometry[:3], spacing_mm=single, laterality=laterality
            )
        data, compression = dicom_pixels.voxels(ds, source, geometry)
        protocol, protocol_from = _protocol(ds)
    except (OCTError, OSError):
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file can make pydicom fail in many ways
        raise UnsupportedFormat(
            f"{path} is not a readable DICOM file, or it is damaged or truncated "
            f"({type(error).__name__}: {error})"
        ) from error
    provenance = {"spacing_mm": spacing_from, "laterality": laterality_from, "protocol": protocol_from}
    provenance = {key: value for key, value in provenance.items() if value is not None}
    metadata = {"spacing_mm": spacing, "laterality": laterality, "protocol": protocol}
    return data, {**metadata, "provenance": {**provenance, "compression": compression}}


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


_PLACES = ("shared functional groups", "per-frame functional groups", "top level")


def _macro_items(ds, macro: str) -> list[tuple[str, Dataset]]:
    """(place, item) of a functional-group macro (e.g. "PixelMeasuresSequence"): the shared groups'
    item, then every frame's; only those present."""
    items = []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for place, groups in (
        (_PLACES[0], shared[:1]),
        (_PLACES[1], ds.get("PerFrameFunctionalGroupsSequence") or []),
    ):
        for group in groups:
            sequence = group.get(macro)
            if sequence:
                items.append((place, sequence[0]))
    return items


def _lookup(ds, keyword: str, path) -> tuple[Any, str] | tuple[None, None]:
    """(value, place) of a Pixel Measures attribute from the shared groups, the frames or the top
    level, or (None, None) when it is absent or empty everywhere. Frames that disagree are refused."""
    found = [(place, item.get(keyword)) for place, item in _macro_items(ds, "PixelMeasuresSequence")]
    found = [(place, value) for place, value in found if value not in (None, "")]
    values = {tuple(np.atleast_1d(np.asarray(value, dtype=float)).tolist()) for _, value in found}
    if len(values) > 1:
        raise UnsupportedFormat(
            f"{path}: its frames give {len(values)} different values of {keyword} ({sorted(values)[:3]}...): "
            "the SDK reads volumes with one sample spacing"
        )
    if found:
        return found[0][1], f"{keyword} ({found[0][0]})"
    value = ds.get(keyword)
    return (value, f"{keyword} ({_PLACES[2]})") if value not in (None, "") else (None, None)


def _spacing_mm(ds, path) -> tuple[tuple[float, float, float] | None, str | None]:
    """((bscan, axial, ascan) spacing in mm, where it came from), or (None, None) when the file does
    not record all three."""
    pixel_spacing, pixel_from = _lookup(ds, "PixelSpacing", path)
    step_mm = _position_step_mm(ds)
    bscan, bscan_from = _lookup(ds, "SpacingBetweenSlices", path)
    if bscan and step_mm and not np.isclose(float(bscan), step_mm, rtol=0.01, atol=1e-6):
        raise UnsupportedFormat(
            f"{path}: SpacingBetweenSlices is {float(bscan):g} mm but the frame positions are "
            f"{step_mm:g} mm apart: the header disagrees with itself"
        )
    if not bscan:
        bscan, bscan_from = _lookup(ds, "SliceThickness", path)
    if not bscan and step_mm:
        bscan, bscan_from = step_mm, "ImagePositionPatient of the frames (first to last / (frames - 1))"
    if pixel_spacing is None or len(pixel_spacing) != 2 or not bscan:
        return None, None
    axial, ascan = pixel_spacing
    return (float(bscan), float(axial), float(ascan)), f"{pixel_from} and {bscan_from}"


def _position_step_mm(ds) -> float | None:
    """B-scan spacing in mm from the frames' ImagePositionPatient: the distance from the first to the
    last position over (frames - 1); None unless every frame has a position and they differ."""
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    positions = [
        f.PlanePositionSequence[0].get("ImagePositionPatient")
        for f in frames
        if f.get("PlanePositionSequence")
    ]
    if (
        len(positions) < 2
        or len(positions) != len(frames)
        or any(p is None or len(p) != 3 for p in positions)
    ):
        return None
    step = np.linalg.norm(np.subtract(positions[-1], positions[0], dtype=float)) / (len(positions) - 1)
    return float(step) if np.isfinite(step) and step > 0 else None


def _laterality(ds, path) -> tuple[str | None, str | None]:
    """("OD"/"OS", where it came from) from ImageLaterality, Laterality and every FrameLaterality
    (R/L); (None, None) when none is recorded; UnsupportedFormat when they disagree."""
    sources = [("ImageLaterality", ds.get("ImageLaterality")), ("Laterality", ds.get("Laterality"))]
    sources += [
        (f"FrameLaterality ({place})", item.get("FrameLaterality"))
        for place, item in _macro_items(ds, "FrameAnatomySequence")
    ]
    found: dict[str, str] = {}
    for name, value in sources:
        if value in ("R", "L"):
            found.setdefault(value, name)
    if len(found) > 1:
        raise UnsupportedFormat(
            f"{path} records both eyes: {found['R']} is R (right) but {found['L']} is L (left); "
            "the SDK will not guess which eye was scanned"
        )
    if not found:
        return None, None
    ((value, name),) = found.items()
    return ("OD" if value == "R" else "OS"), name


def _protocol(ds) -> tuple[str | None, str | None]:
    """(protocol, where it came from) from ProtocolName, else from the region imaged; (None, None)
    when neither tells."""
    name = str(ds.get("ProtocolName") or "").strip().lower()
    if name in PROTOCOLS:
        return name, "ProtocolName"
    regions = ds.get("AnatomicRegionSequence") or []
    codes = {str(region.get("CodeValue")) for region in regions}
    for protocol, (code, meaning) in _REGION_CODES.items():
        if code in codes and protocol != "wide":
            return protocol, f"AnatomicRegionSequence ({meaning}, SNOMED CT {code})"
    return None, None


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
