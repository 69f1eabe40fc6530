"""A model bundle: what the converters write and the instrument loads. The one manifest parser.

::

    bundle = Bundle.load("bundle/", trusted_keys=None)   # BundleError naming the file and the problem
    bundle.bundle_id, bundle.signer, bundle.target, bundle.input_hw, bundle.models, bundle.merged
    data = bundle.read(spec.files["fp32"])               # a model's bytes: read once, hashed, IO-checked
    features = bundle.stacking_features(stage1, stage2)  # (..., 4, 2), (..., 4, 4) -> (..., 20)
    probabilities = bundle.final_probabilities(features) # (n, 20) -> (n, 5) in CLASSES order

The format, the signature and the keys a device trusts are described in docs/BUNDLE.md; the
manifest's fields, in short (schema version 2)::

    format, schema_version   "octclassify-bundle", 2
    bundle_id                sha256 of the canonical JSON of the manifest without bundle_id
    target                   "cpu" | "tensorrt" | "all": which model files it ships (TARGETS)
    classes, map_names       the five answers and the four maps, in order (checked against this SDK)
    preprocessing            sdk.maps.preprocessing_constants(input_hw) (checked against this SDK)
    network                  the checkpoint's network settings (arch, width, input_hw, ...)
    files                    {relative path: {sha256, bytes}}: every file but manifest.json/manifest.sig
    models                   8 x {name "<map>.stage<k>", map, stage, classes, onnx {precision: path},
                              opset, input {name, shape, dtype}, output {name, shape, dtype}}
    merged                   4 x {map, onnx {precision: path}, shared_conv_layers, input, outputs}, or [];
                             onnx may add "int8" (static quantisation, converters.int8) to a target's fp32
    stacker                  {file, classes (the stacker's own order), features (20 names)}
    normative                {file, n_eyes}
    golden                   {file, eyes [{kind, seed, laterality}], phantom_shape}
    tolerances               {"fp32"|"fp16"[|"int8"][|"bf16"]: {max_abs_probability, min_top1_agreement}},
                             no looser than TOLERANCE_LIMITS; "int8" exactly when the merged models ship
                             it; "bf16" (no files of its own: the fp32 weights rounded at load) where
                             conversion's bf16 gate passed (converters.bf16)
    provenance               checkpoint metadata, converter versions, checks measured at conversion

golden.npz (n phantom eyes; probabilities are PyTorch's, in float32, and the numpy stacker's)::

    maps           (n, 4, 224, 224) float32  the maps in MAP_NAMES order, NaN = masked; deviations
                                             from normative.npz
    inputs         (n, 4, 3, H, W) float32   sdk.maps.to_network_input of the maps
    stage1         (n, 4, 2) float32         stage-1 probabilities per map (normal, glaucoma)
    stage2         (n, 4, 4) float32         stage-2 probabilities per map (FI, GE, MY, SS)
    features       (n, 20) float64           stacker input, in stacker.features order
    probabilities  (n, 5) float64            final probabilities, in classes order
    kinds, seeds, lateralities  (n,)         the phantom eyes (make_eye arguments)

How it is read: the folder is opened once and every file through its descriptor, never following a
link, regular files only (:mod:`sdk.bundle_files`). :meth:`Bundle.load` reads manifest.json (and
manifest.sig), checks the signature against the trusted keys *before* parsing, then the manifest
(size, depth, every value's type and range), the listing (nothing missing, extra, a link, a FIFO, a
pickle), and reads, hashes and checks the stacker and normative database. Model files are read when
a backend asks (:meth:`Bundle.read`): once, hashed, their inputs and outputs checked, and those same
bytes are what the backend runs. No path is opened twice for one use, so a file swapped on disk after
its check is never what runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from sdk import signing
from sdk.bundle_files import BundleFolder
from sdk.errors import BundleError
from sdk.labels import CLASSES, STAGE1_CLASSES, STAGE2_CLASSES
from sdk.maps import MAP_NAMES, Normative, preprocessing_constants
from sdk.maps.geometry import GCC_FIELD_MM, MAP_SIZE_PX, RNFL_FIELD_MM
from sdk.maps.normative import FORMAT_VERSION as NORMATIVE_FORMAT
from sdk.maps.normative import MIN_SD_UM
from sdk.onnx_io import ELEMENT_TYPES, onnx_io
from sdk.stacking import SVMStacker

FORMAT = "octclassify-bundle"
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
SIGNATURE = signing.SIGNATURE_FILE
FLOAT_PRECISIONS = ("fp32", "fp16")
QUANTISED = "int8"  # merged models only, shipped when asked for at conversion and its gate passed
DERIVED = "bf16"  # no files: the fp32 weights rounded to bfloat16 at load; declared where its gate passed
PRECISIONS = (*FLOAT_PRECISIONS, QUANTISED, DERIVED)
# which precisions a target ships, of the per-stage models and of the merged models
TARGETS: dict[str, dict[str, tuple[str, ...]]] = {
    "cpu": {"models": (), "merged": ("fp32",)},
    "tensorrt": {"models": FLOAT_PRECISIONS, "merged": ()},
    "all": {"models": FLOAT_PRECISIONS, "merged": FLOAT_PRECISIONS},
}
TOLERANCE_KEYS = ("max_abs_probability", "min_top1_agreement")
TOLERANCE_LIMITS = {  # the loosest gate a manifest may set: max_abs in [0, limit], top-1 in [limit, 1]
    "fp32": {"max_abs_probability": 1e-3, "min_top1_agreement": 0.95},
    "fp16": {"max_abs_probability": 2e-2, "min_top1_agreement": 0.95},
    "int8": {"max_abs_probability": 1e-1, "min_top1_agreement": 0.95},
    "bf16": {"max_abs_probability": 1e-1, "min_top1_agreement": 0.95},
}
STAGE_CLASSES = {1: STAGE1_CLASSES, 2: STAGE2_CLASSES}
MERGED_OUTPUTS = ("stage1", "stage2")
MERGED_STAGE2_PREFIX = "stage2/"  # stage 2's own tensors and nodes in a merged model (shared_trunk)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".joblib")
MAX_MANIFEST_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
MAX_FILE_BYTES = 4 << 30
MAX_NPZ_BYTES = 1 << 30  # unpacked arrays of one .npz
NORMATIVE_MEAN_RANGE_UM = (0.0, 1000.0)  # a retinal layer's mean thickness lies inside
MIN_MEASURED_SHARE = 0.5  # of a normative map's pixels that hold a mean and sd
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class FileEntry:
    """A bundle file as the manifest lists it: hex sha256 and size in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class ModelSpec:
    """One network of a bundle, as its manifest entry describes it.

    ``files`` maps precision ("fp32", "fp16") to the ONNX file (relative path) for the precisions
    this bundle ships (none for a cpu bundle); shapes are (1, 3, H, W) in and (1, len(classes))
    out, float32 both.
    """

    name: str
    map_name: str
    stage: int
    classes: tuple[str, ...]
    files: dict[str, PurePosixPath]
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class MergedSpec:
    """A map's two stages in one ONNX model that computes their identical leading layers once.

    ``files`` maps precision to the ONNX file (relative path); input (1, 3, H, W) float32, outputs
    "stage1" (1, 2) and "stage2" (1, 4) float32. ``shared_conv_layers`` of the 13 convolutions run once.
    """

    map_name: str
    files: dict[str, PurePosixPath]
    shared_conv_layers: int
    input_name: str
    input_shape: tuple[int, ...]


class Bundle:
    """A checked bundle. Make one with :meth:`load`.

    Attributes
    ----------
    path : the bundle folder (held open: reads go to the folder that was checked).
    manifest : manifest.json as a dict; manifest_bytes : the bytes it was parsed from (and signed over).
    bundle_id : the manifest's content hash (64 hex digits).
    signer : key id of the trusted key whose signature was verified, or None (no keys configured).
    target : "cpu", "tensorrt" or "all".
    files : {relative path: FileEntry} of every file but manifest.json and manifest.sig.
    models : the 8 :class:`ModelSpec`, maps in MAP_NAMES order, stage 1 then stage 2 for each.
    merged : the 4 :class:`MergedSpec` (one per map), or () when the target ships none.
    stacker : :class:`sdk.stacking.SVMStacker`.
    normative : :class:`sdk.maps.Normative`.
    input_hw : (height, width) of the networks' input, px.
    preprocessing : the manifest's preprocessing constants (equal to this SDK's).
    """

    def __init__(self, folder: BundleFolder, manifest: dict, signer: str | None, manifest_bytes: bytes):
        self._folder = folder
        self.path = folder.path
        self.manifest = manifest
        self.manifest_bytes = manifest_bytes
        self.bundle_id = manifest["bundle_id"]
        self.signer = signer
        self.target = manifest["target"]
        self.files = {
            name: FileEntry(entry["sha256"], entry["bytes"]) for name, entry in manifest["files"].items()
        }
        self.preprocessing = manifest["preprocessing"]
        self.input_hw = tuple(self.preprocessing["input_hw"])
        self.models = tuple(_model_spec(entry) for entry in manifest["models"])
        self.merged = tuple(_merged_spec(entry) for entry in manifest["merged"])
        self._expected_io = _expected_io(self.models, self.merged)
        stacker, normative = (self._npz(manifest[part]["file"]) for part in ("stacker", "normative"))
        self.stacker = SVMStacker(stacker)
        _check_stacker(manifest, self.stacker)
        self.normative = _normative(normative, manifest["normative"])

    @classmethod
    def load(cls, path: str | os.PathLike, *, trusted_keys=None) -> Bundle:
        """Check a bundle folder and load its manifest, stacker and normative database.

        trusted_keys : see :func:`sdk.signing.trusted_keys` (None: ``$OCTC_TRUSTED_KEYS``). When
            keys are configured, a bundle that is unsigned or not signed by one of them is refused
            before its manifest is parsed.

        Raises :class:`~sdk.errors.BundleError` naming the file and the problem.
        """
        keys = signing.trusted_keys(trusted_keys)
        folder = BundleFolder(path)
        try:
            listing = folder.listing()
            if MANIFEST not in listing:
                raise BundleError(
                    f"{folder.path / MANIFEST} does not exist: {os.fspath(path)} is not a model bundle "
                    "(or is incomplete)"
                )
            data = folder.read(MANIFEST, MAX_MANIFEST_BYTES)
            signature = (
                folder.read(SIGNATURE, signing.MAX_SIGNATURE_FILE_BYTES) if SIGNATURE in listing else None
            )
            signer = signing.verify_manifest(data, signature, keys, where=os.fspath(path))
            manifest = parse_manifest(data)
            _check_listing(listing, manifest["files"])
            return cls(folder, manifest, signer, data)
        except BaseException:
            folder.close()
            raise

    def read(self, name: str | PurePosixPath) -> bytes:
        """The bytes of bundle file ``name``: read once, their sha256 checked against the manifest
        and, for an ONNX model, its inputs and outputs against its manifest entry. Hand these bytes
        to whatever uses the file; never open it by path."""
        name = PurePosixPath(name).as_posix()
        entry = self.files.get(name)
        if entry is None:
            raise BundleError(f"{name} is not a file of bundle {self.bundle_id[:12]} (target {self.target})")
        data = self._folder.read(name, entry.size)
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise BundleError(
                f"bundle file {name} does not match its sha256 in {MANIFEST}: it is damaged or was changed; "
                "copy the bundle again"
            )
        if name in self._expected_io:
            _check_onnx_io(name, data, self._expected_io[name])
        return data

    def read_many(self, names: Sequence[str | PurePosixPath]) -> Iterator[bytes]:
        """:meth:`read` of each name in order, the next file read and hashed in a second thread while
        the caller uses the current one (a backend building its session)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.read, names[0]) if names else None
            i = 0
            while pending is not None:
                data = pending.result()
                i += 1
                pending = pool.submit(self.read, names[i]) if i < len(names) else None
                yield data
                del data  # at most two files' bytes alive: the one in use and the next

    def model_precisions(self) -> tuple[str, ...]:
        """Precisions every per-stage model ships in (empty for a cpu bundle)."""
        return tuple(p for p in FLOAT_PRECISIONS if all(p in spec.files for spec in self.models))

    def merged_precisions(self) -> tuple[str, ...]:
        """Precisions every merged model ships in (empty for a tensorrt bundle; int8 where converted so)."""
        shipped = (*FLOAT_PRECISIONS, QUANTISED)
        return tuple(p for p in shipped if self.merged and all(p in s.files for s in self.merged))

    def derived_precisions(self) -> tuple[str, ...]:
        """Precisions computed at load from the fp32 weights that conversion gated and declared
        ("bf16" where ``converters bundle --bf16`` passed its gate), else ()."""
        return tuple(p for p in (DERIVED,) if p in self.manifest["tolerances"])

    def tolerances(self, precision: str) -> dict:
        """``{"max_abs_probability": float, "min_top1_agreement": float}`` for a shipped precision."""
        return self.manifest["tolerances"][precision]

    def stacking_features(self, stage1: np.ndarray, stage2: np.ndarray) -> np.ndarray:
        """:func:`stacking_features` in this bundle's feature order: (..., 4, 2), (..., 4, 4) -> (..., 20)."""
        return stacking_features(self.manifest["stacker"]["features"], stage1, stage2)

    def final_probabilities(self, features: np.ndarray) -> np.ndarray:
        """:func:`final_probabilities` of this bundle's stacker: (n, 20) -> (n, 5) in CLASSES order."""
        return final_probabilities(self.stacker, features)

    def golden(self) -> dict[str, np.ndarray]:
        """golden.npz's arrays (see the module docstring), their shapes and types checked."""
        name = self.manifest["golden"]["file"]
        arrays = self._npz(name)
        n = len(arrays["inputs"]) if "inputs" in arrays else 0
        expected = {
            "maps": ((n, len(MAP_NAMES), MAP_SIZE_PX, MAP_SIZE_PX), "f"),
            "inputs": ((n, len(MAP_NAMES), 3, *self.input_hw), "f"),
            "stage1": ((n, len(MAP_NAMES), len(STAGE1_CLASSES)), "f"),
            "stage2": ((n, len(MAP_NAMES), len(STAGE2_CLASSES)), "f"),
            "features": ((n, len(self.manifest["stacker"]["features"])), "f"),
            "probabilities": ((n, len(CLASSES)), "f"),
        }
        for key, (shape, kind) in expected.items():
            array = arrays.get(key)
            if array is None or array.shape != shape or array.dtype.kind != kind or n == 0:
                found = None if array is None else (array.shape, str(array.dtype))
                raise BundleError(f"bundle file {name}: {key} is {found}, expected float {shape} with n > 0")
            if key != "maps" and not np.all(np.isfinite(array)):
                raise BundleError(f"bundle file {name}: {key} holds NaN or infinite values")
        return arrays

    def close(self) -> None:
        """Close the bundle folder; :meth:`read` fails afterwards."""
        self._folder.close()

    def _npz(self, name: str) -> dict[str, np.ndarray]:
        return npz_arrays(self.read(name), name)

    def __repr__(self) -> str:
        signer = self.signer or "unsigned"
        return f"Bundle({os.fspath(self.path)!r}, id {self.bundle_id[:12]}, {self.target}, {signer})"


def npz_arrays(data: bytes, name: str) -> dict[str, np.ndarray]:
    """Every array of an .npz given as bytes, read without pickle; BundleError if it is not one."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_NPZ_BYTES:
            raise BundleError(
                f"bundle file {name} unpacks to {unpacked} bytes: more than an .npz of a bundle"
            )
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise BundleError(
            f"bundle file {name} is not an .npz of plain arrays ({e}): a bundle holds no pickle"
        ) from None


# --- the manifest ---------------------------------------------------------------------------------


def bundle_id(manifest: dict) -> str:
    """Content hash of a manifest: sha256 of its canonical JSON without the ``bundle_id`` field."""
    content = {key: value for key, value in manifest.items() if key != "bundle_id"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def parse_json(data: bytes, name: str, max_depth: int = MAX_JSON_DEPTH) -> object:
    """JSON from bytes, strictly: UTF-8, nesting at most ``max_depth``, finite numbers only, no NaN or
    Infinity, no duplicate keys. Every failure is a BundleError naming ``name``."""
    try:
        text = data.decode("utf-8")
        depth = np.cumsum(_nesting_steps(text)) if text else np.zeros(1)
        if depth.size and depth.max() > max_depth:
            raise BundleError(f"{name} nests deeper than {max_depth} levels: it is not a bundle manifest")
        return json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BundleError(f"{name} cannot be read as JSON ({str(e)[:200]}): copy the bundle again") from None


def _nesting_steps(text: str) -> np.ndarray:
    """+1 per opening and -1 per closing bracket outside JSON strings, in order (int32)."""
    codes = np.frombuffer(_STRING.sub('""', text).encode("utf-8"), np.uint8)
    opens = (codes == ord("[")) | (codes == ord("{"))
    closes = (codes == ord("]")) | (codes == ord("}"))
    return opens.astype(np.int32) - closes.astype(np.int32)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is beyond the range of a float")
    return value


def _unique_keys(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return result


def parse_manifest(data: bytes) -> dict:
    """manifest.json's bytes -> the manifest, every field checked against the schema and this SDK."""
    manifest = parse_json(data, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{MANIFEST} is not a bundle manifest (format {found!r}, expected {FORMAT!r})")
    version = manifest.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise BundleError(
            f"{MANIFEST} has schema version {version}, newer than this SDK reads ({SCHEMA_VERSION}): "
            "upgrade the SDK to load this bundle"
        )
    if isinstance(version, int) and not isinstance(version, bool) and 1 <= version < SCHEMA_VERSION:
        raise BundleError(
            f"{MANIFEST} has schema version {version}, from an older converter; this SDK reads "
            f"{SCHEMA_VERSION}: convert the checkpoint again (python -m converters bundle)"
        )
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BundleError(
            f"{MANIFEST} has unknown schema version {version!r}; this SDK reads {SCHEMA_VERSION}"
        )
    if manifest.get("bundle_id") != bundle_id(manifest):
        raise BundleError(
            f"{MANIFEST}: bundle_id does not match the manifest's content: manifest.json was changed after "
            "the bundle was made; copy the bundle again"
        )
    _check_schema(manifest)
    return manifest


def _field(obj, key: str, kind, where: str):
    """``obj[key]`` if ``obj`` is a dict holding a ``kind`` there, else BundleError naming ``where.key``.

    kind : str, int, float (a finite number), bool, dict or list."""
    if not isinstance(obj, dict) or key not in obj:
        raise BundleError(f"{MANIFEST}: {where} lacks {key!r}")
    value = obj[key]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise BundleError(f"{MANIFEST}: {where}.{key} is {str(value)[:60]!r}, not {kind.__name__}")
    return value


def _relative_path(value, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BundleError(f"{MANIFEST}: {where} is {value!r}, not a file name")
    relative = PurePosixPath(value)
    if relative.is_absolute() or ".." in relative.parts or "\\" in value or relative.as_posix() != value:
        raise BundleError(f"{MANIFEST} lists the file {value!r}, which is not a plain path inside the bundle")
    if value in (MANIFEST, SIGNATURE):
        raise BundleError(f"{MANIFEST} lists {value} as one of its files")
    return value


def _check_schema(manifest: dict) -> None:
    """Every field the SDK uses: types, ranges, and equality with this SDK's classes, maps and
    preprocessing. BundleError for the first that is wrong."""
    target = _field(manifest, "target", str, "manifest")
    if target not in TARGETS:
        raise BundleError(f"{MANIFEST}: target {target!r} is unknown; this SDK reads {sorted(TARGETS)}")
    classes, map_names = (
        _field(manifest, "classes", list, "manifest"),
        _field(manifest, "map_names", list, "manifest"),
    )
    if classes != list(CLASSES) or map_names != list(MAP_NAMES):
        raise BundleError(
            f"{MANIFEST}: the bundle classifies {classes} from maps {map_names}, this SDK "
            f"{list(CLASSES)} from {list(MAP_NAMES)}: use a bundle made for this SDK"
        )
    preprocessing = _field(manifest, "preprocessing", dict, "manifest")
    input_hw = _field(preprocessing, "input_hw", list, "preprocessing")
    if len(input_hw) != 2 or not all(
        isinstance(d, int) and not isinstance(d, bool) and 32 <= d <= 4096 for d in input_hw
    ):
        raise BundleError(f"{MANIFEST}: preprocessing.input_hw is {input_hw}, not two sides of 32-4096 px")
    ours = json.loads(json.dumps(preprocessing_constants(input_hw)))
    differing = sorted(k for k in ours.keys() | preprocessing.keys() if ours.get(k) != preprocessing.get(k))
    if differing:
        raise BundleError(
            f"{MANIFEST}: preprocessing {differing} differs from this SDK's: convert the checkpoint again "
            "with this SDK version"
        )
    _field(manifest, "network", dict, "manifest")
    _field(manifest, "provenance", dict, "manifest")
    files = _field(manifest, "files", dict, "manifest")
    for name, entry in files.items():
        _relative_path(name, "a files key")
        sha256 = _field(entry, "sha256", str, f"files[{name!r}]")
        size = _field(entry, "bytes", int, f"files[{name!r}]")
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or not 0 <= size <= MAX_FILE_BYTES:
            raise BundleError(
                f"{MANIFEST}: files[{name!r}] needs a lower-case hex sha256 and 0-{MAX_FILE_BYTES} bytes"
            )
    referenced, quantised = _check_models(manifest, target, input_hw)
    _check_tolerances(_field(manifest, "tolerances", dict, "manifest"), quantised)
    for part in ("stacker", "normative", "golden"):
        referenced.append(
            _relative_path(
                _field(_field(manifest, part, dict, "manifest"), "file", str, part), f"{part}.file"
            )
        )
    _field(manifest["stacker"], "classes", list, "stacker")
    _feature_index(_field(manifest["stacker"], "features", list, "stacker"))
    _field(manifest["normative"], "n_eyes", int, "normative")
    _field(manifest["golden"], "eyes", list, "golden")
    unlisted = sorted(set(referenced) - set(files))
    if unlisted or len(set(referenced)) != len(referenced) or set(files) != set(referenced):
        problem = (
            f"refers to {unlisted[0]}, which files does not list"
            if unlisted
            else "lists a file twice, or a file no model or part uses"
        )
        raise BundleError(f"{MANIFEST} {problem}")


def _check_tolerances(tolerances: dict, quantised: bool) -> None:
    """Gates for the float precisions, for int8 exactly when ``quantised`` (its models ship), and
    for bf16 where declared."""
    precisions = (*FLOAT_PRECISIONS, *([QUANTISED] if quantised else []))
    if set(tolerances) - {DERIVED} != set(precisions):
        raise BundleError(
            f"{MANIFEST}: tolerances must be given for exactly {list(precisions)}, and may add {DERIVED}"
        )
    precisions += tuple(p for p in (DERIVED,) if p in tolerances)
    for precision in precisions:
        limits = TOLERANCE_LIMITS[precision]
        gate = _field(tolerances, precision, dict, "tolerances")
        max_abs = _field(gate, "max_abs_probability", float, f"tolerances.{precision}")
        top1 = _field(gate, "min_top1_agreement", float, f"tolerances.{precision}")
        if (
            not 0.0 <= max_abs <= limits["max_abs_probability"]
            or not limits["min_top1_agreement"] <= top1 <= 1.0
        ):
            raise BundleError(
                f"{MANIFEST}: tolerances.{precision} {{max_abs_probability {max_abs}, min_top1_agreement "
                f"{top1}}} is looser than the schema allows (max_abs_probability 0-"
                f"{limits['max_abs_probability']}, min_top1_agreement {limits['min_top1_agreement']}-1): "
                "a verification gate cannot be loosened"
            )


def _io_entry(entry, key: str, where: str, shape: tuple[int, ...], name: str | None = None) -> None:
    io_entry = _field(entry, key, dict, where)
    if name is not None:
        _field(io_entry, "name", str, f"{where}.{key}")
    found = (_field(io_entry, "shape", list, f"{where}.{key}"), io_entry.get("dtype"))
    if found != (list(shape), "float32"):
        raise BundleError(f"{MANIFEST}: {where}.{key} is {found}, this SDK needs float32 {list(shape)}")


def _check_models(manifest: dict, target: str, input_hw: list) -> tuple[list[str], bool]:
    """The models and merged entries; returns the files they refer to, and whether every merged
    model ships int8 (then all do: a bundle has one set of precisions)."""
    referenced = []
    models = _field(manifest, "models", list, "manifest")
    expected = [(f"{m}.stage{s}", m, s) for m in MAP_NAMES for s in (1, 2)]
    found = [
        (
            _field(e, "name", str, "a model"),
            _field(e, "map", str, "a model"),
            _field(e, "stage", int, "a model"),
        )
        for e in models
    ]
    if found != expected:
        raise BundleError(
            f"{MANIFEST}: models must be every map's stage 1 and 2 networks, named '<map>.stage<k>', "
            f"in {list(MAP_NAMES)} order"
        )
    input_shape = (1, 3, *input_hw)
    for entry, (name, _, stage) in zip(models, expected, strict=True):
        classes = _field(entry, "classes", list, name)
        if classes != list(STAGE_CLASSES[stage]):
            raise BundleError(
                f"{MANIFEST}: model {name} has classes {classes}; stage {stage} needs "
                f"{list(STAGE_CLASSES[stage])}"
            )
        _io_entry(entry, "input", name, input_shape, name="input")
        _io_entry(entry, "output", name, (1, len(STAGE_CLASSES[stage])), name="output")
        referenced += _onnx_files(entry, name, TARGETS[target]["models"])
    merged = _field(manifest, "merged", list, "manifest")
    wanted_maps = list(MAP_NAMES) if TARGETS[target]["merged"] else []
    if [_field(e, "map", str, "a merged model") for e in merged] != wanted_maps:
        raise BundleError(
            f"{MANIFEST}: merged models must be one per map in {list(MAP_NAMES)} order for target {target}"
        )
    for entry in merged:
        where = f"merged {entry['map']}"
        shared = _field(entry, "shared_conv_layers", int, where)
        if not 0 <= shared <= 13:
            raise BundleError(f"{MANIFEST}: {where}.shared_conv_layers is {shared}, not 0-13")
        _io_entry(entry, "input", where, input_shape, name="input")
        outputs = _field(entry, "outputs", dict, where)
        if list(outputs) != list(MERGED_OUTPUTS):
            raise BundleError(f"{MANIFEST}: {where}.outputs must be {list(MERGED_OUTPUTS)}")
        for stage, output in zip((1, 2), MERGED_OUTPUTS, strict=True):
            _io_entry(outputs, output, f"{where}.outputs", (1, len(STAGE_CLASSES[stage])))
    shipped = TARGETS[target]["merged"]
    quantised = [QUANTISED in _field(e, "onnx", dict, f"merged {e['map']}") for e in merged]
    if any(quantised) and (not all(quantised) or "fp32" not in shipped):
        raise BundleError(
            f"{MANIFEST}: {QUANTISED} models must come with every map's fp32 merged model, for all four maps"
        )
    for entry, extra in zip(merged, quantised, strict=True):
        precisions = (*shipped, QUANTISED) if extra else shipped
        referenced += _onnx_files(entry, f"merged {entry['map']}", precisions)
    return referenced, all(quantised) and bool(quantised)


def _onnx_files(entry: dict, where: str, precisions: tuple[str, ...]) -> list[str]:
    onnx = _field(entry, "onnx", dict, where)
    if sorted(onnx) != sorted(precisions):
        raise BundleError(
            f"{MANIFEST}: {where}.onnx ships {sorted(onnx)}; its target ships {sorted(precisions)}"
        )
    return [_relative_path(onnx[p], f"{where}.onnx.{p}") for p in precisions]


def _check_listing(listing: dict[str, int], files: dict) -> None:
    """No pickle files, none missing, none extra, every size as listed."""
    present = set(listing) - {MANIFEST, SIGNATURE}
    for name in sorted(present):
        if name.lower().endswith(PICKLE_SUFFIXES):
            raise BundleError(f"bundle file {name} is a pickle file: a bundle holds no pickle; remove it")
    missing = sorted(set(files) - present)
    if missing:
        raise BundleError(
            f"bundle file {missing[0]} is missing ({len(missing)} missing): copy the whole bundle again"
        )
    extra = sorted(present - set(files))
    if extra:
        raise BundleError(
            f"bundle file {extra[0]} is not listed in {MANIFEST} ({len(extra)} extra): remove it, or copy "
            "the bundle again"
        )
    for name in sorted(files):
        if listing[name] != files[name]["bytes"]:
            raise BundleError(
                f"bundle file {name} is {listing[name]} bytes, {MANIFEST} says {files[name]['bytes']}: it is "
                "damaged or was changed; copy the bundle again"
            )


def _model_spec(entry: dict) -> ModelSpec:
    return ModelSpec(
        name=entry["name"],
        map_name=entry["map"],
        stage=entry["stage"],
        classes=tuple(entry["classes"]),
        files={p: PurePosixPath(f) for p, f in entry["onnx"].items()},
        input_name=entry["input"]["name"],
        input_shape=tuple(entry["input"]["shape"]),
        output_name=entry["output"]["name"],
        output_shape=tuple(entry["output"]["shape"]),
    )


def _merged_spec(entry: dict) -> MergedSpec:
    return MergedSpec(
        map_name=entry["map"],
        files={p: PurePosixPath(f) for p, f in entry["onnx"].items()},
        shared_conv_layers=entry["shared_conv_layers"],
        input_name=entry["input"]["name"],
        input_shape=tuple(entry["input"]["shape"]),
    )


def _expected_io(models, merged) -> dict[str, tuple[list, list]]:
    """Per ONNX file: its (inputs, outputs) as :func:`sdk.onnx_io.onnx_io` must read them."""
    float32 = ELEMENT_TYPES["float32"]
    expected = {}
    for spec in models:
        for file in spec.files.values():
            expected[file.as_posix()] = (
                [(spec.input_name, spec.input_shape, float32)],
                [(spec.output_name, spec.output_shape, float32)],
            )
    for spec in merged:
        outputs = [
            (name, (1, len(STAGE_CLASSES[s])), float32)
            for s, name in zip((1, 2), MERGED_OUTPUTS, strict=True)
        ]
        for file in spec.files.values():
            expected[file.as_posix()] = ([(spec.input_name, spec.input_shape, float32)], outputs)
    return expected


def _check_onnx_io(name: str, data: bytes, wanted: tuple[list, list]) -> None:
    try:
        found = onnx_io(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"bundle file {name} is not an ONNX model ({e})") from None
    if [list(x) for x in found] != [list(x) for x in wanted]:
        raise BundleError(
            f"bundle file {name} has inputs and outputs {found} (name, shape, element type) but {MANIFEST} "
            f"says {wanted}: the model does not fit its manifest; convert the checkpoint again"
        )


# --- stacker and normative database --------------------------------------------------------------


def _check_stacker(manifest: dict, stacker: SVMStacker) -> None:
    entry = manifest["stacker"]
    labels = [str(c) for c in stacker.classes_]
    if sorted(labels) != sorted(CLASSES) or labels != entry["classes"]:
        raise BundleError(
            f"{entry['file']} predicts classes {labels}, {MANIFEST} says {entry['classes']}; "
            f"the stacker must predict exactly {list(CLASSES)}"
        )
    if stacker.n_features_in_ != len(entry["features"]):
        raise BundleError(
            f"{entry['file']} takes {stacker.n_features_in_} features but {MANIFEST} lists "
            f"{len(entry['features'])}"
        )


def _normative(arrays: dict[str, np.ndarray], entry: dict) -> Normative:
    """The normative database from normative.npz's arrays, every value checked: per map, mean and sd
    measured (finite) on the same pixels, at least MIN_MEASURED_SHARE of them, means inside
    NORMATIVE_MEAN_RANGE_UM, sds at least MIN_SD_UM (the floor Normative.fit applies), NaN elsewhere."""
    name = entry["file"]
    keys = ("rnfl_mean_um", "rnfl_sd_um", "gcc_mean_um", "gcc_sd_um")
    scalars = ("format_version", "n_eyes", "map_size_px", "rnfl_field_mm", "gcc_field_mm")
    missing = [k for k in (*keys, *scalars) if k not in arrays]
    if missing:
        raise BundleError(f"bundle file {name} lacks {', '.join(missing)}")
    try:
        made = [float(arrays[k]) for k in scalars]
    except (TypeError, ValueError):
        raise BundleError(f"bundle file {name}: {', '.join(scalars)} must be numbers") from None
    if made[0] != NORMATIVE_FORMAT or made[2:] != [MAP_SIZE_PX, RNFL_FIELD_MM, GCC_FIELD_MM]:
        raise BundleError(
            f"bundle file {name} has format {made[0]:g} for maps (size px, RNFL mm, GCC mm) "
            f"{tuple(made[2:])}; "
            f"this SDK reads format {NORMATIVE_FORMAT} for {(MAP_SIZE_PX, RNFL_FIELD_MM, GCC_FIELD_MM)}"
        )
    if made[1] != entry["n_eyes"] or made[1] < 2:
        raise BundleError(
            f"bundle file {name} holds {made[1]:g} normal eyes, {MANIFEST} says {entry['n_eyes']} (>= 2)"
        )
    low, high = NORMATIVE_MEAN_RANGE_UM
    for layer in ("rnfl", "gcc"):
        mean, sd = arrays[f"{layer}_mean_um"], arrays[f"{layer}_sd_um"]
        if (
            mean.shape != (MAP_SIZE_PX, MAP_SIZE_PX)
            or sd.shape != mean.shape
            or mean.dtype.kind != "f"
            or sd.dtype.kind != "f"
        ):
            raise BundleError(
                f"bundle file {name}: {layer} mean and sd must be float {(MAP_SIZE_PX, MAP_SIZE_PX)}"
            )
        measured = np.isfinite(mean)
        unmeasured_ok = np.all(np.isnan(mean[~measured])) and np.all(np.isnan(sd[~measured]))
        if not np.array_equal(measured, np.isfinite(sd)) or not unmeasured_ok:
            raise BundleError(
                f"bundle file {name}: {layer} mean and sd are not measured on the same pixels (or hold "
                "infinities)"
            )
        share = float(measured.mean())
        if share < MIN_MEASURED_SHARE:
            raise BundleError(
                f"bundle file {name}: {layer} has a mean and sd on {share:.0%} of its pixels, fewer than "
                f"{MIN_MEASURED_SHARE:.0%}: the normative database is empty or damaged"
            )
        if np.any(mean[measured] <= low) or np.any(mean[measured] > high):
            raise BundleError(f"bundle file {name}: {layer} mean thickness outside ({low:g}, {high:g}] um")
        if np.any(sd[measured] < MIN_SD_UM * (1 - 1e-6)):
            raise BundleError(
                f"bundle file {name}: {layer} sd below {MIN_SD_UM:g} um (the floor of every normative "
                f"database; smallest {float(np.min(sd[measured])):.3g}): deviation maps would be meaningless"
            )
    rnfl_mean, rnfl_sd, gcc_mean, gcc_sd = (arrays[k].astype(np.float32) for k in keys)
    return Normative(rnfl_mean, rnfl_sd, gcc_mean, gcc_sd, n_eyes=int(made[1]))


# --- stacking features ----------------------------------------------------------------------------


def stacking_features(names: list[str], stage1: np.ndarray, stage2: np.ndarray) -> np.ndarray:
    """Stacker input from the networks' probabilities.

    names : feature names "<map>.stage<k>.<class>", the stacker's input order.
    stage1 : (..., 4, 2) and stage2 : (..., 4, 4) probabilities, maps in MAP_NAMES order.
    Returns float64 (..., len(names)).
    """
    stages = {1: np.asarray(stage1, np.float64), 2: np.asarray(stage2, np.float64)}
    return np.stack([stages[s][..., m, c] for s, m, c in _feature_index(names)], axis=-1)


def final_probabilities(stacker: SVMStacker, features: np.ndarray) -> np.ndarray:
    """The stacker's probabilities (n, 5) for features (n, 20), columns in CLASSES order (the
    stacker's own order is scikit-learn's sorted ``classes_``)."""
    order = [[str(c) for c in stacker.classes_].index(c) for c in CLASSES]
    return stacker.predict_proba(features)[:, order]


def _feature_index(features: list[str]) -> list[tuple[int, int, int]]:
    """(stage, map index, class index) of each stacker feature "<map>.stage<k>.<class>"."""
    index = []
    for feature in features:
        map_name, _, rest = str(feature).partition(".stage")
        stage_text, _, class_name = rest.partition(".")
        stage = int(stage_text) if stage_text in ("1", "2") else None
        if map_name not in MAP_NAMES or stage is None or class_name not in STAGE_CLASSES[stage]:
            raise BundleError(
                f"{MANIFEST}: stacker feature {feature!r} is not '<map>.stage<1|2>.<class>' of this SDK's "
                "maps and stage classes"
            )
        index.append((stage, MAP_NAMES.index(map_name), STAGE_CLASSES[stage].index(class_name)))
    return index
