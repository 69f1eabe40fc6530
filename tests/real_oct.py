"""Real OCT B-scans of ../shared/real-oct/ with the devices' own layer boundaries (test side only).

A small parser of its own, independent of the SDK's readers, so that tests can compare the SDK with
what the device found. Cubes are made from one real B-scan repeated with independent noise at the
B-scan's own background level (the boundaries are the same on every repeat).

    fixture = load("heidelberg-circle-OD.vol")      # .bscan (depth, n_ascans), .boundaries_px, ...
    volume = fixture.cube(n_bscans=16, seed=0)       # sdk.OCTVolume
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.volume import OCTVolume

REAL_OCT = Path(__file__).resolve().parents[2] / "shared" / "real-oct"
HEIDELBERG_INVALID = 3.0e38  # .vol marks missing samples and boundary points with 3.4028235e38
CUBE_BSCAN_MM = 0.1  # B-scan spacing of the cubes made from one B-scan

# Heidelberg .vol: boundary lines in the order the B-scan header stores them (HEYEX export spec)
VOL_BOUNDARIES = ("ILM", "BM", "RNFL_GCL")
# Topcon .fda @CONTOUR_INFO ids, counted in px up from the bottom of the B-scan (retimat's read_fda)
FDA_BOUNDARIES = {"RETINA_1": "ILM", "RETINA_2": "RPE_TOP", "RETINA_3": "RPE_MID", "RETINA_4": "BM"}
# the .fda keeps one B-scan of a 128-B-scan cube; its contours are row FDA_CONTOUR_ROW of each
# 128 x 512 contour (the first B-scan: the file was cut down to the cube's first slice)
FDA_CONTOUR_ROW = 0

# the targets of issue 11 against the device's boundaries, px: mean absolute error per surface and
# the ILM's 95th percentile (tests/test_real_oct.py checks them, benchmarks.real_oct_accuracy marks them)
TARGETS_PX = {"ILM": 1.5, "ILM p95": 4.0, "BM": 2.0, "RNFL_GCL": 3.0}

FIXTURES = (
    "heidelberg-circle-OD.vol",
    "heidelberg-circle-2-OD.vol",
    "heidelberg-circle-myopic-OD.vol",
    "topcon-3doct1000-macula-OS-1bscan.fda",
)


@dataclass(frozen=True)
class RealBscan:
    """One real B-scan and the device's boundaries on it.

    ``bscan`` is (depth, n_ascans) in the file's own units (Heidelberg: float32 0..1 reflectance;
    Topcon: uint8 display grey); ``boundaries_px`` maps boundary names to (n_ascans,) float64 axial
    positions in px in the SDK's convention (a boundary at z lies between voxel z-1 and voxel z),
    NaN where the device gives none.
    """

    name: str
    bscan: np.ndarray
    boundaries_px: dict[str, np.ndarray]
    ascan_mm: float
    axial_mm: float
    laterality: str
    protocol: str  # the cube's protocol: "disc" for peripapillary circles, "macula" for the macular cube

    def comparable(self) -> np.ndarray:
        """(n_ascans,) bool: A-scans where the device found the ILM with vitreous above it.

        Where the retina is folded by the top of the depth window (the mirror artefact of a myopic
        eye) tissue lies above the device's ILM too, and neither its boundaries nor ours mean
        anything. Vitreous above = the median of the 100 um above the device's ILM is darker than
        halfway between the B-scan's typical levels above and below its ILM."""
        image = self.bscan.astype(np.float64)
        if self.bscan.dtype != np.uint8:
            image = 10.0 * np.log10(np.maximum(image, 1e-7))  # reflectance -> dB
        ilm = self.boundaries_px["ILM"]
        window = int(round(0.1 / self.axial_mm))
        above = np.full(ilm.shape, np.nan)
        below = np.full(ilm.shape, np.nan)
        for a, z in enumerate(ilm):
            if np.isfinite(z) and z >= window:
                top = int(z)
                above[a] = np.median(image[top - window : top - window // 10, a])
                below[a] = np.median(image[top + window // 20 : top + 3 * window // 5, a])
        halfway = (np.nanmedian(above) + np.nanmedian(below)) / 2
        return np.isfinite(above) & (above < halfway)

    def cube(self, n_bscans: int = 16, seed: int = 0) -> OCTVolume:
        """The B-scan repeated ``n_bscans`` times, each repeat with independent noise."""
        rng = np.random.default_rng(seed)
        sd = background_sd(self.bscan)
        base = self.bscan.astype(np.float32)
        repeats = base[None] + rng.normal(0.0, sd, (n_bscans, *base.shape)).astype(np.float32)
        if self.bscan.dtype == np.uint8:
            data = np.clip(np.round(repeats), 0, 255).astype(np.uint8)
        else:
            data = np.abs(repeats)  # reflectance stays positive
        spacing = (CUBE_BSCAN_MM, self.axial_mm, self.ascan_mm)
        return OCTVolume(data, spacing, self.laterality, self.protocol)


def errors(name: str, n_bscans: int = 16, seed: int = 0):
    """Our boundaries minus the device's on fixture ``name``, segmented as a cube of ``n_bscans``
    noisy repeats: (fixture, segmentation, {surface: errors in px}), each errors array flat over
    the comparable A-scans (:meth:`RealBscan.comparable`) of every B-scan, for the ILM, BM and
    RNFL_GCL where the device gives them."""
    from sdk import retina

    fixture = load(name)
    seg = retina.segment(fixture.cube(n_bscans=n_bscans, seed=seed))
    comparable = fixture.comparable()
    out = {}
    for surface in ("ILM", "BM", "RNFL_GCL"):
        if surface not in fixture.boundaries_px:
            continue
        device = fixture.boundaries_px[surface]
        ours = seg.surfaces[surface]
        use = comparable & np.isfinite(device)
        assert np.isfinite(ours[:, use]).all(), (name, surface)
        out[surface] = (ours[:, use] - device[use]).ravel()
    return fixture, seg, out


def available() -> bool:
    return all((REAL_OCT / name).is_file() for name in FIXTURES)


def background_sd(bscan: np.ndarray) -> float:
    """Spread of the darkest third of the B-scan's samples (vitreous and deep noise), native units."""
    values = np.sort(bscan[np.isfinite(bscan)].astype(np.float64).ravel())
    dark = values[: max(values.size // 3, 1)]
    return float(max(dark.std(), 1e-12))


def load(name: str) -> RealBscan:
    path = REAL_OCT / name
    if name.endswith(".vol"):
        return _read_vol(path)
    if name.endswith(".fda"):
        return _read_fda(path)
    raise ValueError(f"no test-side reader for {name}")


def _read_vol(path: Path) -> RealBscan:
    raw = path.read_bytes()
    size_x, n_bscans, size_z = struct.unpack_from("<3i", raw, 12)
    scale_x, _, scale_z = struct.unpack_from("<3d", raw, 24)
    slo_x, slo_y = struct.unpack_from("<2i", raw, 48)
    laterality = raw[84:88].split(b"\0")[0].decode("ascii")
    header_size = struct.unpack_from("<i", raw, 100)[0]
    if n_bscans != 1:
        raise ValueError(f"{path.name}: expected one B-scan, found {n_bscans}")
    start = 2048 + slo_x * slo_y
    n_lines, lines_at = struct.unpack_from("<2i", raw, start + 48)
    lines = np.frombuffer(raw, "<f4", n_lines * size_x, start + lines_at).reshape(n_lines, size_x)
    bscan = np.frombuffer(raw, "<f4", size_x * size_z, start + header_size).reshape(size_z, size_x)
    bscan = np.where(bscan > HEIDELBERG_INVALID, 0.0, bscan).astype(np.float32)
    # HEYEX gives the boundary at the centre of a sample row; the SDK's boundary z is the edge
    # between rows z-1 and z, so a centre-of-row position y is the edge y + 0.5
    boundaries = {
        name: np.where(line > HEIDELBERG_INVALID, np.nan, line.astype(np.float64) + 0.5)
        for name, line in zip(VOL_BOUNDARIES, lines, strict=False)
    }
    return RealBscan(path.name, bscan, boundaries, scale_x, scale_z, laterality, "disc")


def _fda_chunks(raw: bytes) -> list[tuple[str, bytes]]:
    if raw[:4] != b"FOCT":
        raise ValueError("not a Topcon file")
    offset, chunks = 15, []  # FOCT, FDA/FDS, two u32
    while offset + 5 <= len(raw) and raw[offset] > 0:
        n = raw[offset]
        name = raw[offset + 1 : offset + 1 + n].decode("ascii")
        (size,) = struct.unpack_from("<I", raw, offset + 1 + n)
        begin = offset + 5 + n
        chunks.append((name, raw[begin : begin + size]))
        offset = begin + size
    return chunks


def _read_fda(path: Path) -> RealBscan:
    from PIL import Image

    chunks = _fda_chunks(path.read_bytes())
    found = dict(chunks)
    jpeg = found["@IMG_JPEG"]
    width, height, n_slices = struct.unpack_from("<3I", jpeg, 9)
    if n_slices != 1:
        raise ValueError(f"{path.name}: expected one B-scan, found {n_slices}")
    (size,) = struct.unpack_from("<I", jpeg, 25)
    bscan = np.asarray(Image.open(io.BytesIO(jpeg[29 : 29 + size])))
    x_mm, _, z_um = struct.unpack_from("<3d", found["@PARAM_SCAN_04"], 12)
    laterality = "OS" if found["@CAPTURE_INFO_02"][0] == 1 else "OD"
    boundaries = {}
    for name, payload in chunks:
        if name != "@CONTOUR_INFO":
            continue
        contour_id = payload[:20].split(b"\0")[0].decode("ascii")
        kind, n_a, n_b, _ = struct.unpack_from("<HIII", payload, 20)
        if kind != 0 or contour_id not in FDA_BOUNDARIES:
            continue
        rows = np.frombuffer(payload, "<u2", n_a * n_b, 34).reshape(n_b, n_a)
        # counted up from the bottom row's centre; as an SDK edge: height - value + 0.5
        boundaries[FDA_BOUNDARIES[contour_id]] = height - rows[FDA_CONTOUR_ROW].astype(np.float64) + 0.5
    return RealBscan(path.name, bscan, boundaries, x_mm / width, z_um / 1000.0, laterality, "macula")
