"""Mutation fuzzing of the volume readers: every mutated file is read or refused with an sdk.errors.

    python -m benchmarks.fuzz_readers --files 5000            # 5,000 mutated files per format
    python -m benchmarks.fuzz_readers --files 200 --formats dicom topcon --seed 3

Seed files of each format are written by the SDK's writers (npz, npy, DICOM: native, deflated,
RLE, JPEG 2000) and the test-side writers in the real layouts (Topcon .fda/.fds, Heidelberg .vol
and .e2e). Each mutated file gets one to four mutations: bits flipped, boundary integers and
floats written over header fields, truncation, bytes inserted, deleted or duplicated, or a piece
of another seed spliced in. It is read with ``sdk.read_volume(path, max_voxel_bytes=cap)`` under
tracemalloc, and counted as

* ``refused``: an sdk.errors exception (by class);
* ``accepted``: read, with the same shape and voxels as its seed, or with voxels changed only
  where a mutation changed the pixel bytes (or the compressed stream they decode from);
* ``disagreement``: read although its header and pixels disagree: a different voxel count, or
  voxels changed by a mutation outside the pixel bytes (target 0); ``relabelled`` counts files
  whose header was rewritten into another shape of the same voxel count, which no reader can tell
  from the bytes (Rows and Columns swapped, say);
* ``other``: any other exception (target 0; the first ones are printed with their traceback).

Peak memory is tracemalloc's peak over one read (Python objects and numpy arrays, including
buffers allocated for a read, not Pillow's decoder internals), reported against the cap.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import struct
import sys
import tempfile
import time
import traceback
import tracemalloc
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import sdk
from sdk.errors import OCTError
from sdk.io.scans import protocol_from_field

FORMATS = ("npz", "npy", "dicom", "topcon", "vol", "e2e")
SHAPE = (4, 40, 16)  # n_bscans, depth, n_ascans of every seed
SPACING = (0.05, 0.0039, 0.02)
DEFAULT_CAP_BYTES = 2**20  # small, so that any header declaring more is a refusal to count
INTERESTING_INTS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**63 - 1)
INTERESTING_FLOATS = (0.0, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan)
MUTATIONS = ("flip", "integer", "float", "truncate", "insert", "delete", "duplicate", "splice")


@dataclass(frozen=True)
class Seed:
    """A valid file, its voxels, and the byte range [start, end) its voxels are decoded from."""

    name: str
    suffix: str
    content: bytes
    data: np.ndarray
    pixels: tuple[int, int]
    kwargs: dict = field(default_factory=dict)  # what read_volume needs besides the file


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)
    others: list = field(default_factory=list)
    peak_bytes: int = 0
    seconds: float = 0.0


def shape_for(itemsize: int, n_bytes: int | None) -> tuple[int, int, int]:
    """SHAPE, or for ``n_bytes`` a shape of 256 x 256 B-scans that holds at most that many voxel bytes."""
    return SHAPE if n_bytes is None else (max(2, n_bytes // (itemsize * 256 * 256)), 256, 256)


def volume(dtype=np.uint16, seed: int = 0, n_bytes: int | None = None) -> sdk.OCTVolume:
    shape = shape_for(np.dtype(dtype).itemsize, n_bytes)
    data = np.random.default_rng(seed).integers(0, 250, shape).astype(dtype)
    return sdk.OCTVolume(data, SPACING, "OD", "disc")


def _pixel_range(content: bytes, data: np.ndarray, compressed_from: int | None = None) -> tuple[int, int]:
    """Where the voxels are in a seed file: their raw bytes, or from ``compressed_from`` to the end."""
    raw = np.ascontiguousarray(data).tobytes()
    at = content.find(raw)
    if at >= 0:
        return at, at + len(raw)
    if compressed_from is None:
        raise ValueError("the seed's voxels are neither raw in the file nor marked compressed")
    return compressed_from, len(content)


def _written(write) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed"
        write(path)
        return path.read_bytes()


def npz_seeds(n_bytes: int | None = None) -> list[Seed]:
    from sdk.io import write_npz

    stored = volume(n_bytes=n_bytes)
    content = _written(lambda p: write_npz(stored, p.with_suffix(".npz")) and p.with_suffix(".npz").rename(p))
    packed = io.BytesIO()
    arrays = {"spacing_mm": np.array(SPACING), "laterality": np.array("OS"), "protocol": np.array("disc")}
    deflated = volume(np.uint8, 1, n_bytes).data
    np.savez_compressed(packed, data=deflated, **arrays)
    packed_bytes = packed.getvalue()
    return [
        Seed("npz stored", ".npz", content, stored.data, _pixel_range(content, stored.data)),
        Seed("npz deflated", ".npz", packed_bytes, deflated, (0, len(packed_bytes))),
    ]


def npy_seeds(n_bytes: int | None = None) -> list[Seed]:
    seeds = []
    for dtype in (np.uint16, np.float32):
        data = volume(dtype, 2, n_bytes).data
        buffer = io.BytesIO()
        np.save(buffer, data)
        content = buffer.getvalue()
        kwargs = {"spacing_mm": SPACING, "laterality": "OD", "protocol": "disc"}
        seeds.append(
            Seed(f"npy {np.dtype(dtype)}", ".npy", content, data, _pixel_range(content, data), kwargs)
        )
    return seeds


def dicom_seeds(n_bytes: int | None = None) -> list[Seed]:
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

    from sdk.io import write_dicom
    from tests.topcon_writer import j2k_codestream

    native = volume(seed=3, n_bytes=n_bytes)
    content = _written(lambda p: write_dicom(native, p))
    seeds = [Seed("dicom native", ".dcm", content, native.data, _pixel_range(content, native.data))]

    def variant(name, edit):
        ds = pydicom.dcmread(io.BytesIO(content))
        edit(ds)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        start = buffer.getvalue().find(b"\xe0\x7f\x10\x00")  # the Pixel Data tag
        seeds.append(Seed(name, ".dcm", buffer.getvalue(), native.data, (start, len(buffer.getvalue()))))

    def j2k(ds):
        ds.PixelData = encapsulate([j2k_codestream(frame) for frame in native.data])
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless

    variant("dicom RLE", lambda ds: ds.compress(RLELossless))
    variant("dicom JPEG 2000", j2k)
    deflated = pydicom.dcmread(io.BytesIO(content))
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    deflated.save_as(buffer, enforce_file_format=True)
    meta_end = 132 + 12 + struct.unpack_from("<I", buffer.getvalue(), 140)[0]
    seeds.append(
        Seed("dicom deflated", ".dcm", buffer.getvalue(), native.data, (meta_end, len(buffer.getvalue())))
    )
    return seeds


def topcon_seeds(n_bytes: int | None = None) -> list[Seed]:
    from tests.topcon_writer import topcon_chunks, write_topcon

    seeds = []
    for dtype, suffix in ((np.uint8, ".fda"), (np.uint16, ".fds")):
        data = volume(dtype, 4, n_bytes).data
        chunks = topcon_chunks(data, x_mm=0.02 * data.shape[2], y_mm=0.05 * data.shape[0], z_um=3.9, eye=1)
        kind = suffix[1:].upper().encode()
        content = _written(lambda p, c=chunks, k=kind: write_topcon(p, c, k))
        start = content.find(b"@IMG_")
        seeds.append(
            Seed(
                f"topcon {suffix}",
                suffix,
                content,
                data,
                _pixel_range(content, data, start),
                {"protocol": "disc"},
            )
        )
    return seeds


def vol_seeds(n_bytes: int | None = None) -> list[Seed]:
    from tests.vol_writer import write_vol

    data = (volume(np.float32, 5, n_bytes).data / 250.0).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        template = Path(folder) / "template.vol"
        header = bytearray(2048)
        header[:12] = b"HSF-OCT-103\0"
        struct.pack_into("<2i", header, 48, 8, 8)  # an 8 x 8 SLO image
        struct.pack_into("<i", header, 100, 512)  # B-scan header bytes
        bscan_header = b"HSF-BS-103\0\0" + struct.pack("<I", 512) + bytes(512 - 16)
        template.write_bytes(bytes(header) + bytes(64) + bscan_header)
        path = write_vol(
            Path(folder) / "seed.vol", data, template=template, scale_x=0.02, distance=0.05, scale_z=0.0039
        )
        content = path.read_bytes()
    first_bscan = 2048 + 64 + 512  # B-scan headers and data interleave from here
    return [Seed("vol raster", ".vol", content, data, (first_bscan, len(content)), {"protocol": "disc"})]


def e2e_seeds(n_bytes: int | None = None) -> list[Seed]:
    from sdk.io.heidelberg import ufloat16_to_float32
    from tests.e2e_writer import write_e2e

    codes = np.random.default_rng(6).integers(12 << 10, 28 << 10, shape_for(4, n_bytes)).astype(np.uint16)
    content = _written(lambda p: write_e2e(p, codes))
    data = ufloat16_to_float32(codes)
    start = content.find(codes[0].astype("<u2").tobytes())
    kwargs = {"spacing_mm": SPACING, "protocol": "disc"}
    return [Seed("e2e raster", ".e2e", content, data, (start, len(content)), kwargs)]


SEEDS = {"npz": npz_seeds, "npy": npy_seeds, "dicom": dicom_seeds, "topcon": topcon_seeds}
SEEDS |= {"vol": vol_seeds, "e2e": e2e_seeds}


def mutate(content: bytes, mutations, others: list[bytes]) -> tuple[bytes, list[tuple[str, int, int]]]:
    """Apply ``mutations`` [(kind, position in [0, 1], a random integer)] to ``content``.

    Returns the mutated bytes and, per mutation, (kind, start, end) in the seed's byte positions
    of what it changed (end = start for an insertion). Positions are drawn twice as often in the
    first 1 KiB, where the headers are.
    """
    buffer = bytearray(content)
    changed = []
    for kind, where, number in mutations:
        n = len(buffer)
        if n == 0:
            break
        span = min(n, 1024) if number % 2 else n
        at = min(int(where * span), n - 1)
        if kind == "flip":
            buffer[at] ^= 1 + number % 255
            changed.append((kind, at, at + 1))
        elif kind == "integer":
            size = (1, 2, 4, 8)[number % 4]
            value = INTERESTING_INTS[(number >> 2) % len(INTERESTING_INTS)] & ((1 << (8 * size)) - 1)
            if (number >> 8) % 3 == 0:
                value = (number >> 10) & ((1 << (8 * size)) - 1)
            buffer[at : at + size] = value.to_bytes(size, "little")
            changed.append((kind, at, at + size))
        elif kind == "float":
            value = INTERESTING_FLOATS[number % len(INTERESTING_FLOATS)]
            buffer[at : at + 8] = struct.pack("<d", value)
            changed.append((kind, at, at + 8))
        elif kind == "truncate":
            del buffer[at:]
            changed.append((kind, at, n))
        elif kind == "insert":
            buffer[at:at] = number.to_bytes(8, "little")[: 1 + number % 8]
            changed.append((kind, at, at))
        elif kind == "delete":
            length = 1 + number % 64
            del buffer[at : at + length]
            changed.append((kind, at, at + length))
        elif kind == "duplicate":
            length = 1 + number % 256
            buffer[at:at] = buffer[(number >> 8) % n :][:length]
            changed.append((kind, at, at))
        else:  # splice: a piece of another seed of the format
            other = others[number % len(others)]
            start = (number >> 8) % max(len(other), 1)
            piece = other[start : start + 1 + (number >> 16) % 512]
            buffer[at : at + len(piece)] = piece
            changed.append((kind, at, at + len(piece)))
    return bytes(buffer), changed


def touches(changed, pixels: tuple[int, int]) -> bool:
    """Whether any mutation changed bytes inside the seed's pixel range."""
    start, end = pixels
    return any((a < end and b > start) or (a == b and start <= a < end) for _, a, b in changed)


def read_one(path: Path, seed: Seed, cap_bytes: int):
    """(outcome, detail, peak bytes) of reading one mutated file."""
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read = sdk.read_volume(path, max_voxel_bytes=cap_bytes, **seed.kwargs)
        outcome, detail = "accepted", read
    except OCTError as error:
        outcome, detail = "refused", error
    except Exception as error:  # noqa: BLE001 - counted and shown: these are the bugs fuzzing finds
        outcome, detail = "other", error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, detail, peak


def classify(read: sdk.OCTVolume, seed: Seed, changed) -> str:
    """accepted, relabelled or disagreement (see the module docstring)."""
    if read.shape != seed.data.shape:
        return "relabelled" if math.prod(read.shape) == seed.data.size else "disagreement"
    if np.array_equal(np.asarray(read.data, dtype=np.float64), seed.data.astype(np.float64), equal_nan=True):
        return "accepted"
    return "accepted" if touches(changed, seed.pixels) else "disagreement"


def warm_up(name: str, seeds: list[Seed], folder: Path, cap_bytes: int) -> None:
    """Read every seed (each must read back as written), so that the libraries a reader imports
    (eyepy, Pillow, sdk.maps for a protocol from the field of view) are imported before measuring."""
    protocol_from_field(SHAPE, SPACING)
    for seed in seeds:
        path = folder / f"{name}-seed{seed.suffix}"
        path.write_bytes(seed.content)
        outcome, detail, _ = read_one(path, seed, cap_bytes)
        if outcome != "accepted" or classify(detail, seed, []) != "accepted":
            raise RuntimeError(f"the {seed.name} seed does not read back: {detail!r}")


def fuzz_format(name: str, n_files: int, rng: np.random.Generator, cap_bytes: int, folder: Path) -> Tally:
    seeds = SEEDS[name]()
    others = [s.content for s in seeds]
    warm_up(name, seeds, folder, cap_bytes)
    tally = Tally()
    start = time.perf_counter()
    for i in range(n_files):
        seed = seeds[i % len(seeds)]
        mutations = [
            (MUTATIONS[int(rng.integers(len(MUTATIONS)))], float(rng.random()), int(rng.integers(2**62)))
            for _ in range(int(rng.integers(1, 5)))
        ]
        content, changed = mutate(seed.content, mutations, others)
        path = folder / f"{name}-{i}{seed.suffix}"
        path.write_bytes(content)
        outcome, detail, peak = read_one(path, seed, cap_bytes)
        tally.peak_bytes = max(tally.peak_bytes, peak)
        if outcome == "accepted":
            outcome = classify(detail, seed, changed)
        elif outcome == "refused":
            tally.refusals[type(detail).__name__] += 1
        else:
            tally.others.append((seed.name, mutations, "".join(traceback.format_exception(detail))))
        tally.counts[outcome] += 1
        path.unlink()
    tally.seconds = time.perf_counter() - start
    return tally


def peak_at_cap(name: str, cap_bytes: int, folder: Path) -> tuple[int, int]:
    """(largest tracemalloc peak, largest voxel bytes) reading each seed of ``name`` made as large as
    ``cap_bytes`` allows, with that cap."""
    seeds = SEEDS[name](cap_bytes)
    warm_up(name, seeds, folder, cap_bytes)
    peaks = []
    for seed in seeds:
        path = folder / f"{name}-at-cap{seed.suffix}"
        path.write_bytes(seed.content)
        outcome, detail, peak = read_one(path, seed, cap_bytes)
        if outcome != "accepted":
            raise RuntimeError(f"the {seed.name} seed at the cap does not read: {detail!r}")
        peaks.append((peak, seed.data.nbytes))
    return max(p for p, _ in peaks), max(n for _, n in peaks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000, help="mutated files per format")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument(
        "--cap-bytes", type=int, default=DEFAULT_CAP_BYTES, help="max_voxel_bytes for every read"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--at-cap-bytes",
        type=int,
        default=16 * 2**20,
        help="also read seeds this large with this cap (0: skip)",
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    results, failed = {}, False
    columns = ("accepted", "refused", "relabel", "disagree", "other", "peak/cap", "s")
    print(f"{'format':8} {'files':>6} " + " ".join(f"{c:>9}" for c in columns))
    with tempfile.TemporaryDirectory() as folder:
        for name in args.formats:
            tally = fuzz_format(name, args.files, rng, args.cap_bytes, Path(folder))
            c = tally.counts
            ratio = tally.peak_bytes / args.cap_bytes
            counts = (c["accepted"], c["refused"], c["relabelled"], c["disagreement"], c["other"])
            print(
                f"{name:8} {args.files:6d} "
                + " ".join(f"{n:9d}" for n in counts)
                + f" {ratio:9.2f} {tally.seconds:9.1f}"
            )
            results[name] = {
                **{k: c[k] for k in ("accepted", "refused", "relabelled", "disagreement", "other")},
                "refusals": dict(tally.refusals),
                "peak_bytes": tally.peak_bytes,
                "seconds": round(tally.seconds, 1),
            }
            for seed_name, mutations, text in tally.others[:3]:
                print(f"\n{name} ({seed_name}) {mutations}:\n{text}", file=sys.stderr)
            failed = failed or c["other"] > 0 or c["disagreement"] > 0 or ratio > 2
        if args.at_cap_bytes:
            print(f"\npeak memory reading seeds as large as a cap of {args.at_cap_bytes} bytes:")
            for name in args.formats:
                peak, n_bytes = peak_at_cap(name, args.at_cap_bytes, Path(folder))
                cap = args.at_cap_bytes
                print(f"{name:8} voxels {n_bytes / cap:.2f} x cap, peak {peak / cap:.2f} x cap")
                results[name]["at_cap"] = {"voxel_bytes": n_bytes, "peak_bytes": peak}
                failed = failed or peak > 2 * cap
    summary = {"files_per_format": args.files, "cap_bytes": args.cap_bytes, "seed": args.seed}
    summary |= {"at_cap_bytes": args.at_cap_bytes, "formats": results}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
