"""A model bundle: what the converters write and the instrument loads, checked before anything runs.

::

    bundle = Bundle.load("bundle/")        # BundleError naming the file and the problem, or a whole bundle
    bundle.bundle_id, bundle.input_hw, bundle.models, bundle.stacker, bundle.normative
    features = bundle.stacking_features(stage1, stage2)   # (..., 4, 2), (..., 4, 4) -> (..., 20)
    probabilities = bundle.final_probabilities(features)  # (n, 20) -> (n, 5) in CLASSES order

Layout (schema version 1)::

    manifest.json
    models/<map>.stage<k>.onnx        FP32, static batch 1: (1, 3, H, W) float32 -> (1, C) probabilities
    models/<map>.stage<k>.fp16.onnx   FP16 weights and compute, same float32 inputs and outputs
    stacker.npz                       sdk.stacking.SVMStacker arrays
    normative.npz                     sdk.maps.Normative arrays
    golden.npz                        phantom eyes' network inputs and reference outputs (see below)

manifest.json (every sha256 is the hex digest of the file's bytes)::

    format            "octclassify-bundle"
    schema_version    1
    bundle_id         sha256 of the canonical JSON of the manifest without bundle_id (a content hash:
                      the manifest holds the sha256 of every other file)
    classes           the five answers, in probability order (sdk.labels.CLASSES)
    map_names         the four maps, in network-input order (sdk.maps.MAP_NAMES)
    preprocessing     sdk.maps.preprocessing_constants(input_hw): every constant between maps and networks
    network           the checkpoint's network settings (arch, width, input_hw, head, dropout, ...)
    models            [{name "<map>.stage<k>", map, stage, classes, file, sha256, file_fp16, sha256_fp16,
                        opset, input {name, shape, dtype}, output {name, shape, dtype}}], maps x stages
    stacker           {file, sha256, estimator, classes (the stacker's own order), features (20 names
                       "<map>.stage<k>.<class>", the stacker's input order)}
    normative         {file, sha256, n_eyes}
    golden            {file, sha256, eyes [{kind, seed, laterality}]}
    tolerances        {"fp32"|"fp16": {max_abs_probability, min_top1_agreement}}: the verification gate
    provenance        {checkpoint: its metadata (training metrics, seeds, versions) and sha256,
                       converter: library versions and settings, checks: agreement measured at conversion}

golden.npz (n phantom eyes; probabilities are PyTorch's, in float32, and the numpy stacker's)::

    inputs         (n, 4, 3, H, W) float32   network inputs, maps in map_names order
    stage1         (n, 4, 2) float32         stage-1 probabilities per map (normal, glaucoma)
    stage2         (n, 4, 4) float32         stage-2 probabilities per map (FI, GE, MY, SS)
    features       (n, 20) float64           stacker input, in stacker.features order
    probabilities  (n, 5) float64            final probabilities, in classes order
    kinds, seeds, lateralities  (n,)         the phantom eyes (make_eye arguments)

A bundle holds no pickle: every .npz is read with ``allow_pickle=False`` and a file that needs
pickle (.pkl, .pt, .npz with object arrays, ...) is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from sdk.errors import BundleError
from sdk.files import file_sha256
from sdk.labels import CLASSES, STAGE1_CLASSES, STAGE2_CLASSES
from sdk.maps import MAP_NAMES, Normative, preprocessing_constants
from sdk.stacking import SVMStacker

FORMAT = "octclassify-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16")
TOLERANCE_KEYS = ("max_abs_probability", "min_top1_agreement")
STAGE_CLASSES = {1: STAGE1_CLASSES, 2: STAGE2_CLASSES}
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".joblib")


@dataclass(frozen=True)
class ModelSpec:
    """One network of a bundle, as its manifest entry describes it.

    ``files`` maps precision ("fp32", "fp16") to the ONNX path; shapes are (1, 3, H, W) in and
    (1, len(classes)) out, float32 both.
    """

    name: str
    map_name: str
    stage: int
    classes: tuple[str, ...]
    files: dict[str, Path]
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class MergedSpec:
    """A map's two stages in one ONNX model that computes their identical leading layers once.

    ``files`` maps precision to the ONNX path; input (1, 3, H, W) float32, outputs "stage1" (1, 2)
    and "stage2" (1, 4) float32. ``shared_conv_layers`` is how many of the 13 convolutions run once.
    """

    map_name: str
    files: dict[str, Path]
    shared_conv_layers: int
    input_name: str
    input_shape: tuple[int, ...]


class Bundle:
    """A verified bundle. Make one with :meth:`load`; the constructor trusts its arguments.

    Attributes
    ----------
    path : the bundle folder.
    manifest : manifest.json as a dict.
    bundle_id : the manifest's content hash (64 hex digits).
    models : the 8 :class:`ModelSpec`, maps in MAP_NAMES order, stage 1 then stage 2 for each.
    merged : the 4 :class:`MergedSpec`, one per map in MAP_NAMES order.
    stacker : :class:`sdk.stacking.SVMStacker`.
    normative : :class:`sdk.maps.Normative`.
    input_hw : (height, width) of the networks' input, px.
    preprocessing : the manifest's preprocessing constants (equal to this SDK's).
    """

    def __init__(
        self,
        path: Path,
        manifest: dict,
        models: tuple[ModelSpec, ...],
        merged: tuple[MergedSpec, ...],
        stacker: SVMStacker,
        normative: Normative,
    ):
        self.path = path
        self.manifest = manifest
        self.bundle_id = manifest["bundle_id"]
        self.models = models
        self.merged = merged
        self.stacker = stacker
        self.normative = normative
        self.preprocessing = manifest["preprocessing"]
        self.input_hw = tuple(self.preprocessing["input_hw"])

    @classmethod
    def load(cls, path: str | os.PathLike) -> Bundle:
        """Check a bundle folder completely, then load it.

        Checked, in order: manifest.json present and parseable, known format and schema version,
        bundle id, no pickle files, no missing or extra files, every sha256, no object arrays in
        the .npz files, classes, maps and preprocessing equal to this SDK's, every ONNX file's
        input and output names, shapes and types equal to the manifest's, the stacker's classes
        and feature count. Raises :class:`~sdk.errors.BundleError` naming the file and the
        problem; nothing is returned half-loaded.
        """
        root = Path(path)
        manifest = read_manifest(root)
        files = listed_files(manifest)
        _check_files(root, files)
        models = _check_contents(root, manifest)
        merged = _check_merged(root, manifest, models)
        stacker = SVMStacker.load(root / manifest["stacker"]["file"])
        normative = Normative.load(root / manifest["normative"]["file"])
        _check_stacker(manifest, stacker)
        return cls(root, manifest, models, merged, stacker, normative)

    def tolerances(self, precision: str) -> dict:
        """``{"max_abs_probability": float, "min_top1_agreement": float}`` for "fp32" or "fp16"."""
        return self.manifest["tolerances"][precision]

    def stacking_features(self, stage1: np.ndarray, stage2: np.ndarray) -> np.ndarray:
        """:func:`stacking_features` in this bundle's feature order: (..., 4, 2), (..., 4, 4) -> (..., 20)."""
        return stacking_features(self.manifest["stacker"]["features"], stage1, stage2)

    def final_probabilities(self, features: np.ndarray) -> np.ndarray:
        """:func:`final_probabilities` of this bundle's stacker: (n, 20) -> (n, 5) in CLASSES order."""
        return final_probabilities(self.stacker, features)

    def golden(self) -> dict[str, np.ndarray]:
        """golden.npz's arrays (see the module docstring)."""
        with np.load(self.path / self.manifest["golden"]["file"], allow_pickle=False) as z:
            return {key: z[key] for key in z.files}

    def __repr__(self) -> str:
        return f"Bundle({os.fspath(self.path)!r}, id {self.bundle_id[:12]}, input {self.input_hw})"


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


def bundle_id(manifest: dict) -> str:
    """Content hash of a manifest: sha256 of its canonical JSON without the ``bundle_id`` field."""
    content = {key: value for key, value in manifest.items() if key != "bundle_id"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_manifest(root: Path) -> dict:
    """manifest.json of ``root``, checked for format, schema version and bundle id."""
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{path} does not exist: {os.fspath(root)} is not a model bundle (or is incomplete)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{path} cannot be read as JSON ({e}): copy the bundle again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{path} is not a bundle manifest (format {found!r}, expected {FORMAT!r})")
    version = manifest.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise BundleError(
            f"{path} has schema version {version}, newer than this SDK reads ({SCHEMA_VERSION}): "
            "upgrade the SDK to load this bundle"
        )
    if version != SCHEMA_VERSION:
        raise BundleError(f"{path} has unknown schema version {version!r}; this SDK reads {SCHEMA_VERSION}")
    if manifest.get("bundle_id") != bundle_id(manifest):
        raise BundleError(
            f"{path}: bundle_id does not match the manifest's content: manifest.json was changed after "
            "the bundle was made; copy the bundle again"
        )
    return manifest


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def listed_files(manifest: dict) -> dict[str, str]:
    """Every file the manifest lists, relative POSIX path -> sha256 (manifest.json not included)."""
    try:
        entries = [(m["file"], m["sha256"]) for m in manifest["models"]]
        entries += [(m["file_fp16"], m["sha256_fp16"]) for m in manifest["models"]]
        entries += [(m[f"file{k}"], m[f"sha256{k}"]) for m in manifest["merged"] for k in ("", "_fp16")]
        entries += [
            (manifest[part]["file"], manifest[part]["sha256"]) for part in ("stacker", "normative", "golden")
        ]
    except (KeyError, TypeError) as e:
        raise BundleError(f"{MANIFEST} is malformed: a file entry lacks {e}") from None
    files = {}
    for name, sha256 in entries:
        relative = PurePosixPath(str(name))
        if relative.is_absolute() or ".." in relative.parts or str(relative) in (".", MANIFEST):
            raise BundleError(f"{MANIFEST} lists the file {name!r}, which is not a path inside the bundle")
        files[str(relative)] = str(sha256).lower()
    return files


def _check_files(root: Path, files: dict[str, str]) -> None:
    """No pickle files, none missing, none extra, every sha256 as listed."""
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()} - {MANIFEST}
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
    for name, expected in files.items():
        if file_sha256(root / name) != expected:
            raise BundleError(
                f"bundle file {name} does not match its sha256 in {MANIFEST}: it is damaged or was changed; "
                "copy the bundle again"
            )
    for name in files:
        if name.endswith(".npz"):
            _check_plain_npz(root / name, name)


def _check_plain_npz(path: Path, name: str) -> None:
    """Every array of an .npz reads without pickle (an object array raises ValueError)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                z[key]  # reads the array
    except ValueError as e:
        raise BundleError(
            f"bundle file {name} is not an .npz of plain arrays ({e}): a bundle holds no pickle"
        ) from None
    except (OSError, EOFError) as e:
        raise BundleError(f"bundle file {name} is not a readable .npz ({e})") from None


def _check_contents(root: Path, manifest: dict) -> tuple[ModelSpec, ...]:
    """Classes, maps and preprocessing against this SDK; the models against their ONNX files."""
    if manifest.get("classes") != list(CLASSES) or manifest.get("map_names") != list(MAP_NAMES):
        raise BundleError(
            f"{MANIFEST}: the bundle classifies {manifest.get('classes')} from maps "
            f"{manifest.get('map_names')}, this SDK {list(CLASSES)} from {list(MAP_NAMES)}: use a bundle "
            "made for this SDK"
        )
    try:
        input_hw = manifest["preprocessing"]["input_hw"]
        ours = json.loads(json.dumps(preprocessing_constants(input_hw)))
        models = tuple(_model_spec(root, entry) for entry in manifest["models"])
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(
            f"{MANIFEST} is malformed: a preprocessing or model entry lacks or mistypes {e}"
        ) from None
    differing = sorted(
        k
        for k in ours.keys() | manifest["preprocessing"].keys()
        if ours.get(k) != manifest["preprocessing"].get(k)
    )
    if differing:
        raise BundleError(
            f"{MANIFEST}: preprocessing {differing} differs from this SDK's: convert the checkpoint again "
            "with this SDK version"
        )
    tolerances = manifest.get("tolerances")
    if not isinstance(tolerances, dict) or any(
        not isinstance(tolerances.get(p), dict)
        or not all(isinstance(tolerances[p].get(k), (int, float)) for k in TOLERANCE_KEYS)
        for p in PRECISIONS
    ):
        raise BundleError(
            f"{MANIFEST}: tolerances need {list(TOLERANCE_KEYS)} numbers for each of {list(PRECISIONS)}"
        )
    expected = [(f"{m}.stage{s}", m, s) for m in MAP_NAMES for s in (1, 2)]
    if [(spec.name, spec.map_name, spec.stage) for spec in models] != expected:
        raise BundleError(
            f"{MANIFEST}: models must be every map's stage 1 and 2 networks, named '<map>.stage<k>', "
            f"in {list(MAP_NAMES)} order"
        )
    for spec in models:
        shapes = ((1, 3, *input_hw), (1, len(STAGE_CLASSES[spec.stage])))
        if spec.classes != STAGE_CLASSES[spec.stage] or (spec.input_shape, spec.output_shape) != shapes:
            raise BundleError(
                f"{MANIFEST}: model {spec.name} has classes {list(spec.classes)} and shapes "
                f"{spec.input_shape} -> {spec.output_shape}; stage {spec.stage} needs "
                f"{list(STAGE_CLASSES[spec.stage])}, {shapes[0]} -> {shapes[1]}"
            )
        for precision in PRECISIONS:
            _check_onnx_io(root, spec, precision)
    return models


def _model_spec(root: Path, entry: dict) -> ModelSpec:
    return ModelSpec(
        name=str(entry["name"]),
        map_name=str(entry["map"]),
        stage=int(entry["stage"]),
        classes=tuple(entry["classes"]),
        files={"fp32": root / entry["file"], "fp16": root / entry["file_fp16"]},
        input_name=str(entry["input"]["name"]),
        input_shape=tuple(int(d) for d in entry["input"]["shape"]),
        output_name=str(entry["output"]["name"]),
        output_shape=tuple(int(d) for d in entry["output"]["shape"]),
    )


def _check_merged(root: Path, manifest: dict, models: tuple[ModelSpec, ...]) -> tuple[MergedSpec, ...]:
    """The merged stage models: one per map, each taking the models' input and giving both stages."""
    try:
        merged = tuple(
            MergedSpec(
                map_name=str(entry["map"]),
                files={"fp32": root / entry["file"], "fp16": root / entry["file_fp16"]},
                shared_conv_layers=int(entry["shared_conv_layers"]),
                input_name=str(entry["input"]["name"]),
                input_shape=tuple(int(d) for d in entry["input"]["shape"]),
            )
            for entry in manifest["merged"]
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{MANIFEST} is malformed: a merged-model entry lacks or mistypes {e}") from None
    if [spec.map_name for spec in merged] != list(MAP_NAMES):
        raise BundleError(f"{MANIFEST}: merged models must be one per map, in {list(MAP_NAMES)} order")
    for spec in merged:
        wanted = [(spec.input_name, models[0].input_shape, "tensor(float)")] + [
            (name, (1, len(STAGE_CLASSES[stage])), "tensor(float)")
            for stage, name in ((1, "stage1"), (2, "stage2"))
        ]
        for precision in PRECISIONS:
            _check_io(root, spec.files[precision], wanted)
    return merged


def _check_onnx_io(root: Path, spec: ModelSpec, precision: str) -> None:
    """The ONNX file's one input and one output: names, static shapes and float32 as in the manifest."""
    _check_io(
        root,
        spec.files[precision],
        [
            (spec.input_name, spec.input_shape, "tensor(float)"),
            (spec.output_name, spec.output_shape, "tensor(float)"),
        ],
    )


def _check_io(root: Path, path: Path, wanted: list) -> None:
    """An ONNX file's inputs and outputs, (name, shape, type) each, must be ``wanted``."""
    import onnxruntime as ort

    name = path.relative_to(root).as_posix()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ONNX Runtime raises its own exception types for unreadable models
        raise BundleError(f"bundle file {name} is not a model ONNX Runtime can load ({e})") from None
    found = [(t.name, tuple(t.shape), t.type) for t in (*session.get_inputs(), *session.get_outputs())]
    if found != wanted:
        raise BundleError(
            f"bundle file {name} has input and output {found} (name, shape, type) but {MANIFEST} says "
            f"{wanted}: the model does not fit its manifest; convert the checkpoint again"
        )


def _check_stacker(manifest: dict, stacker: SVMStacker) -> None:
    entry = manifest["stacker"]
    labels = [str(c) for c in stacker.classes_]
    if sorted(labels) != sorted(CLASSES) or labels != entry.get("classes"):
        raise BundleError(
            f"{entry['file']} predicts classes {labels}, {MANIFEST} says {entry.get('classes')}; "
            f"the stacker must predict exactly {list(CLASSES)}"
        )
    if stacker.n_features_in_ != len(entry.get("features", ())):
        raise BundleError(
            f"{entry['file']} takes {stacker.n_features_in_} features but {MANIFEST} lists "
            f"{len(entry.get('features', ()))}"
        )
    _feature_index(entry["features"])


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
