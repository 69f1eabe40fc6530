"""``Classifier``: what the instrument calls. One bundle, one backend, loaded once, warmed up where
the backend's first run is slower than the next (``Backend.warm_up_runs``).

    clf = sdk.Classifier.load("bundle/", backend="auto")
    dx = clf.classify(volume)                      # wide-field cube with disc and macula
    dx = clf.classify_exam(disc=vol_disc, macula=vol_mac)
    dx.label, dx.probabilities, dx.gradable, dx.to_dict()

A Classifier may be called from several threads at once: the front end is pure functions, the
stacker is read-only and every backend serialises or parallelises its own model calls safely.
"""

from __future__ import annotations

import platform
import time
from dataclasses import replace

import numpy as np
import scipy

import sdk
from sdk import maps as sdk_maps
from sdk import ndimage
from sdk.backends import Backend, make_backend
from sdk.bundle import Bundle
from sdk.diagnosis import Diagnosis
from sdk.labels import CLASSES, STAGE1_CLASSES, STAGE2_CLASSES
from sdk.maps import MAP_NAMES
from sdk.volume import OCTVolume


class Classifier:
    """A verified bundle and an inference backend, ready to classify volumes.

    ``close()`` closes the backend, and the bundle only when the Classifier opened it itself
    (:meth:`load`): a Bundle the caller passed in stays the caller's, usable for other backends."""

    def __init__(self, bundle: Bundle, backend: Backend):
        self.bundle = bundle
        self.backend = backend
        self._owns_bundle = False
        self.versions = _versions(backend)
        for _ in range(backend.warm_up_runs):
            backend.run(np.zeros((len(MAP_NAMES), 3, *bundle.input_hw), np.float32))

    @classmethod
    def load(
        cls,
        bundle_dir,
        backend: str = "auto",
        precision: str | None = None,
        cache_dir=None,
        *,
        trusted_keys=None,
    ) -> Classifier:
        """Check the bundle at ``bundle_dir``, load the networks that will run, and warm them up (as
        many passes on zeros as ``Backend.warm_up_runs``: one on a GPU, none on ONNX Runtime's CPU).

        backend : "auto" (tensorrt if usable, else onnxruntime), "onnxruntime", "tensorrt" or "torch".
        precision : "fp32", "fp16", "int8" (onnxruntime on the CPU, a bundle converted with --int8) or
            "bf16" (torch on a CPU with bfloat16 instructions, a bundle converted with --bf16);
            default is the backend's natural one (fp16 for tensorrt, else fp32).
        cache_dir : writable folder for TensorRT engines.
        trusted_keys : public keys the bundle must be signed by: a key file, a folder of ``*.pem``
            keys, or a sequence of those; None: ``$OCTC_TRUSTED_KEYS`` (paths separated by
            os.pathsep), and when that is unset too, any bundle loads and Diagnosis.signer is None.
            With keys configured an unsigned or wrongly signed bundle raises BundleError.
        """
        bundle = Bundle.load(bundle_dir, trusted_keys=trusted_keys)
        return cls.of_bundle(bundle, backend, precision, cache_dir)

    @classmethod
    def of_bundle(
        cls,
        bundle: Bundle,
        backend: str = "auto",
        precision: str | None = None,
        cache_dir=None,
        threads: int | None = None,
    ) -> Classifier:
        """The second half of :meth:`load`: the networks of a ``Bundle.load``-ed bundle loaded and
        warmed up (``threads``: CPU threads per network, as make_backend takes). The Classifier owns
        ``bundle`` from then on: it closes it, also when this raises."""
        ndimage.preload()  # the front end's scipy import, beside building the networks (sdk/ndimage.py)
        try:
            made = make_backend(bundle, backend, precision=precision, cache_dir=cache_dir, threads=threads)
            classifier = cls(bundle, made)
        except BaseException:
            bundle.close()
            raise
        classifier._owns_bundle = True
        return classifier

    def classify(self, volume, spacing_mm=None, laterality=None, protocol: str = "wide") -> Diagnosis:
        """Classify one wide-field cube (disc and macula in one scan).

        volume : sdk.OCTVolume, or an array (n_bscans, depth, n_ascans) with ``spacing_mm`` and
        ``laterality``.
        """
        if not isinstance(volume, OCTVolume):
            volume = OCTVolume(volume, spacing_mm, laterality, protocol)
        start = time.perf_counter()
        maps = sdk_maps.extract(volume, self.bundle.normative)
        return self.classify_maps(maps, volume.protocol, {"scan": volume.provenance}, start)

    def classify_maps(
        self, maps: sdk_maps.Maps, protocol: str, provenance: dict, started: float | None = None
    ) -> Diagnosis:
        """The second half of :meth:`classify`: the Diagnosis of maps made by ``sdk.maps.extract``
        with this bundle's normative database (``sdk.batch`` runs the front end elsewhere).

        provenance : {cube: OCTVolume.provenance}; started : time.perf_counter() when the front end
        began (its time goes into the timings), default now."""
        start = time.perf_counter() if started is None else started
        return replace(self._diagnose(maps, protocol, start), provenance=provenance)

    def classify_exam(self, disc: OCTVolume, macula: OCTVolume) -> Diagnosis:
        """Classify a two-cube exam: RNFL maps from the disc cube, GCC maps from the macular cube."""
        start = time.perf_counter()
        maps = sdk_maps.extract_exam(disc, macula, self.bundle.normative)
        return self.classify_maps(
            maps, "disc+macula", {"disc": disc.provenance, "macula": macula.provenance}, start
        )

    def close(self) -> None:
        self.backend.close()
        if self._owns_bundle:
            self.bundle.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _diagnose(self, maps: sdk_maps.Maps, protocol: str, start: float) -> Diagnosis:
        front_end = time.perf_counter()
        timings = {"front_end": 1000.0 * (front_end - start)}
        label = probabilities = per_map = None
        if maps.quality.gradable:
            inputs = sdk_maps.to_network_input(maps.stack(), self.bundle.input_hw)
            stage1, stage2 = self.backend.run(inputs)
            networks = time.perf_counter()
            final = self.bundle.final_probabilities(self.bundle.stacking_features(stage1, stage2)[None])[0]
            timings["networks"] = 1000.0 * (networks - front_end)
            timings["stacking"] = 1000.0 * (time.perf_counter() - networks)
            probabilities = {c: float(p) for c, p in zip(CLASSES, final, strict=True)}
            label = CLASSES[int(np.argmax(final))]
            per_map = {
                name: {
                    "stage1": dict(zip(STAGE1_CLASSES, map(float, stage1[i]), strict=True)),
                    "stage2": dict(zip(STAGE2_CLASSES, map(float, stage2[i]), strict=True)),
                }
                for i, name in enumerate(MAP_NAMES)
            }
        timings["total"] = 1000.0 * (time.perf_counter() - start)
        return Diagnosis(
            label=label,
            probabilities=probabilities,
            per_map=per_map,
            gradable=maps.quality.gradable,
            reasons=maps.quality.reasons,
            quality=maps.quality.to_dict(),
            laterality=maps.laterality,
            protocol=protocol,
            backend=self.backend.name,
            precision=self.backend.precision,
            device=self.backend.device,
            backend_details=self.backend.details,
            bundle_id=self.bundle.bundle_id,
            signer=self.bundle.signer,
            versions=self.versions,
            timings_ms={k: round(v, 2) for k, v in timings.items()},
            maps=maps,
        )


def _versions(backend: Backend) -> dict[str, str]:
    versions = {
        "sdk": sdk.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    for library in ("onnxruntime", "torch", "tensorrt"):
        if library in backend.details:
            versions[library] = str(backend.details[library])
    return versions
