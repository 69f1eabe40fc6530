"""ONNX Runtime backend: the embedded default, on the CPU or on the GPU through execution providers.

Each network is one ``InferenceSession`` with full graph optimisation (``ORT_ENABLE_ALL``: constant
folding, Conv+ReLU fusion, NCHWc layouts on x86), sequential execution, an explicit intra-op thread
count and no inter-op parallelism. Intra-op threads do not spin-wait between runs: the eight
sessions run one after the other, and the idle pools of the other seven spinning made a run of
eight width-0.125 VGG16s at 224 x 224 six times slower on 2 cores (0.39 s instead of 0.064 s).

Execution providers: TensorRT and CUDA come first when this ONNX Runtime build has them, then the
CPU. ONNX Runtime silently runs on the CPU when a GPU provider cannot start (missing CUDA
libraries, no GPU), so the providers that actually attached are read back from every session and
reported in ``details["providers"]``; the ones that did not are logged and listed in
``details["providers_not_attached"]``.

Optimised models are cached on disk only where a cache folder is configured
(:mod:`sdk.backends.onnxruntime_cache`: on the CPU provider alone, keyed by the bundle file's sha256,
this CPU and this ONNX Runtime build; a hit makes the session from the saved optimised model, with
its own sha256 checked, and does not read the bundle's model file). Otherwise the bundle's own bytes
are what runs: each session is made from the bytes :meth:`sdk.bundle.Bundle.read` hashed (the next
model is read and hashed in a second thread while ONNX Runtime builds the current session). On
2026-11-26 (2-core Xeon) a cache measured not worth its trust questions (0.1-0.2 s per model once per
process); on the AMD EPYC of 2026-12-03 the four full-width sessions took 2.4-4.1 s in a fresh
process without it and 0.7-1.2 s from saved optimised models.

Once every session is built, the heap that parsing and optimising freed is handed back to the OS
(:func:`_return_freed_heap`). Not after each one: the next session then faulted the same pages in
again. Whole ``python -m sdk.classify`` processes on the full-width cpu bundle, 10 alternating pairs
on the 2-core AMD EPYC with AVX-512 (2026-12-02): 2.63-3.04 s (median 2.80) with one trim at the end
against 2.83-3.64 s (median 3.12) with a trim per session, kernel time 1.36-1.57 s against 1.62-2.56
s, at a higher peak resident memory (1.48-1.76 GB against 1.30-1.39 GB; the limit is 2 GB).

Measured and not adopted (2-core Xeon with AMX, 2026-12-04, full-width cpu bundle, fresh processes
alternating with today's code): building two sessions at once in threads (``InferenceSession``
releases the GIL) gave ``Classifier.load`` 1.07-1.17 s against 1.19-1.22 s (4 pairs) but no gain
for a whole process (2.22-2.61 s against 2.15-2.53 s, 5 pairs) at 1.87-1.89 GB peak resident memory
against 1.46-1.76 GB; transparent huge pages for glibc's heap (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``)
cut the load's page faults from about 520,000 to 20,000 but raised its kernel time (1.4-2.9 s against
0.8-1.1 s in quiet runs: zeroing and compacting 2 MB pages).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from functools import partial

import numpy as np

from sdk.backends import Backend
from sdk.backends.onnxruntime_cache import cached_session, cpu_cache_folder
from sdk.bundle import FLOAT_PRECISIONS, QUANTISED, Bundle
from sdk.cpu import int8_unsupported
from sdk.errors import BackendUnavailable

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
MERGED_OUTPUTS = ("stage1", "stage2")
CPU_PROVIDER = "CPUExecutionProvider"

TELEMETRY_OFF = ("ORT_DISABLE_TELEMETRY", "1")
# logging levels of ONNX Runtime's severities 0 verbose, 1 info, 2 warning, 3 error, 4 fatal
ORT_LOG_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
ORT_LOG_WARNING = 2

_LOG = logging.getLogger(__name__)
_ORT_LOG = logging.getLogger("onnxruntime")


class OnnxRuntimeBackend(Backend):
    """The bundle's FP32, FP16 or int8 ONNX models in ONNX Runtime: the four merged stage models when
    the bundle ships them in that precision, else the eight per-stage models (int8: merged only, on
    the CPU provider only, and only on a CPU with the instructions :func:`sdk.cpu.int8_unsupported`
    checks).

    Parameters
    ----------
    bundle : a loaded :class:`~sdk.bundle.Bundle`.
    precision : "fp32", "fp16" (float16 weights, float32 inputs and outputs) or "int8" (QDQ models:
        int8 weights and uint8 activations, float32 inputs and outputs).
    cache_dir : engine cache folder for ONNX Runtime's TensorRT provider (a subfolder
        "onnxruntime-trt"); see :func:`sdk.engines.cache.resolve_cache_dir`. On the CPU provider
        alone, where given (or ``$OCTC_ENGINE_CACHE`` is set), also the folder of the optimised
        models (a subfolder "onnxruntime-cpu", :mod:`sdk.backends.onnxruntime_cache`).
    threads : intra-op threads per session (default: every core).
    providers : execution providers to ask for, in order (default: the GPU ones this build has,
        then the CPU); BackendUnavailable if one is not in this build.

    ``InferenceSession.run`` is thread-safe, so one backend serves several threads at once.
    """

    name = "onnxruntime"
    precisions = (*FLOAT_PRECISIONS, QUANTISED)

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        *,
        cache_dir=None,
        threads: int | None = None,
        providers: list[str] | None = None,
    ):
        super().__init__(bundle, precision)
        try:
            ort = import_onnxruntime()
        except ImportError as e:
            raise BackendUnavailable(f"onnxruntime is not installed ({e}): pip install onnxruntime") from None
        available = ort.get_available_providers()
        if precision == QUANTISED:
            _check_int8(bundle, providers)
        gpus = [] if precision == QUANTISED else [p for p in GPU_PROVIDERS if p in available]
        requested = list(providers or [*gpus, CPU_PROVIDER])
        missing = [p for p in requested if p not in available]
        if missing:
            raise BackendUnavailable(
                f"ONNX Runtime {ort.__version__} here has no {', '.join(missing)}; "
                f"it has {', '.join(available)}"
            )
        intra_op_threads = threads or os.cpu_count() or 1

        def options_of(level):
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.intra_op_num_threads = intra_op_threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return options

        provider_options = [_provider_options(p, precision, cache_dir) for p in requested]
        # one session per map when the bundle ships merged models (both stages, their shared trunk
        # once), else one per network; each from the bytes the bundle checked, none for other precisions
        self._merged = precision in bundle.merged_precisions()
        if not self._merged and precision not in bundle.model_precisions():
            raise BackendUnavailable(
                f"bundle {bundle.bundle_id[:12]} (target {bundle.target}) ships no {precision} models ONNX "
                f"Runtime can run (merged: {list(bundle.merged_precisions())}, per stage: "
                f"{list(bundle.model_precisions())}): choose another --precision, or a bundle made with "
                "--target all"
            )
        specs = bundle.merged if self._merged else bundle.models
        files = [spec.files[precision] for spec in specs]
        folder, cache = cpu_cache_folder(cache_dir) if requested == [CPU_PROVIDER] else (None, "off: GPU")
        self._sessions = []
        if folder is None:
            options = options_of(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
            for data in bundle.read_many(files):
                session = ort.InferenceSession(
                    data, options, providers=requested, provider_options=provider_options
                )
                self._sessions.append(session)
                del data
        else:
            found = []
            for file in files:
                sha256 = bundle.files[file.as_posix()].sha256
                session, how = cached_session(
                    ort, folder, partial(bundle.read, file), sha256, precision, options_of
                )
                self._sessions.append(session)
                found.append(how)
            cache = f"{folder}: " + ", ".join(f"{found.count(h)} {h}" for h in dict.fromkeys(found))
        _return_freed_heap()
        self._inputs = [s.get_inputs()[0].name for s in self._sessions]
        attached = [p for p in requested if all(p in s.get_providers() for s in self._sessions)]
        not_attached = [p for p in requested if p not in attached]
        if not_attached:
            _LOG.warning(
                "ONNX Runtime did not attach %s; running on %s", ", ".join(not_attached), ", ".join(attached)
            )
        self.device = "cuda" if any(p in GPU_PROVIDERS for p in attached) else "cpu"
        self.details = {
            "onnxruntime": ort.__version__,
            "providers": attached,
            "providers_not_attached": not_attached,
            "intra_op_threads": intra_op_threads,
            "graph_optimization": "ORT_ENABLE_ALL",
            "optimised_model_cache": cache,
            "models": "merged stages" if self._merged else "per stage",
        }

    @property
    def warm_up_runs(self) -> int:
        """None on the CPU: in fresh processes the first pass of the four merged full-width models
        took 0.83-1.19x the next ones (median 1.08, about 0.1 s), against 1.2 s for a warm-up pass at
        every start (benchmarks/test_load_bench.py, 2-core Xeon, 2026-12-01). One on a GPU provider."""
        return 0 if self.device == "cpu" else 1

    def _infer_map(self, index: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._merged:
            return super()._infer_map(index, x)
        stage1, stage2 = self._sessions[index].run(list(MERGED_OUTPUTS), {self._inputs[index]: x})
        return stage1[0], stage2[0]

    def _infer(self, index: int, x: np.ndarray) -> np.ndarray:
        return self._sessions[index].run(None, {self._inputs[index]: x})[0]

    def _release(self) -> None:
        self._sessions = []


def _check_int8(bundle: Bundle, providers: list[str] | None) -> None:
    """BackendUnavailable unless int8 can run here: merged int8 models in the bundle, the CPU
    provider alone, a CPU with the instructions they need."""
    if QUANTISED not in bundle.merged_precisions():
        raise BackendUnavailable(
            f"bundle {bundle.bundle_id[:12]} ships no int8 models (merged: "
            f"{list(bundle.merged_precisions())}): convert it with python -m converters bundle --int8, "
            "or choose --precision fp32"
        )
    if providers and list(providers) != [CPU_PROVIDER]:
        raise BackendUnavailable(f"int8 models run on {CPU_PROVIDER} alone, not {', '.join(providers)}")
    reason = int8_unsupported()
    if reason:
        raise BackendUnavailable(f"{reason}: choose --precision fp32")


def import_onnxruntime():
    """``onnxruntime``, imported with its telemetry off and its messages sent to Python logging.

    The Linux wheels collect telemetry (1.32 here): the import writes a device id and an event
    store under ``$XDG_CACHE_HOME`` or ``~/.cache/Microsoft/DeveloperTools/.onnxruntime``, warns in
    colour on stderr when that is not writable, and uploads events. ONNX Runtime reads
    ``ORT_DISABLE_TELEMETRY`` once, when the import creates its environment, so the variable is set
    for the first import only and the process environment is restored right after (a value the
    caller set is left alone); ``disable_telemetry_events()`` stops the events of builds that do
    not know the variable, or of a process that imported onnxruntime before. Messages of its
    default logger (WARNING and above) go to the ``onnxruntime`` logger instead of stderr.
    """
    name, value = TELEMETRY_OFF
    set_here = "onnxruntime" not in sys.modules and name not in os.environ
    if set_here:
        os.environ[name] = value
    try:
        import onnxruntime as ort
    finally:
        if set_here:
            del os.environ[name]
    ort.disable_telemetry_events()
    if hasattr(ort, "set_default_logger_callback"):
        ort.set_default_logger_callback(_log_onnxruntime_message, ORT_LOG_WARNING)
    else:  # builds without it print to stderr: errors only
        ort.set_default_logger_severity(ORT_LOG_WARNING + 1)
    return ort


def _log_onnxruntime_message(severity: int, category: str, logid: str, location: str, message: str) -> None:
    _ORT_LOG.log(ORT_LOG_LEVELS[min(severity, len(ORT_LOG_LEVELS) - 1)], "%s", message)


def _return_freed_heap() -> None:
    """Hand the heap freed while building the sessions back to the OS (glibc's ``malloc_trim``; nothing
    elsewhere). Parsing and optimising a model leaves about twice its weights' size free but kept by
    glibc: for the four full-width models, about 0.8 GB of a classify process's resident memory."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _provider_options(provider: str, precision: str, cache_dir) -> dict:
    """Options of one execution provider: the TensorRT provider keeps its engines in the cache folder."""
    if provider != "TensorrtExecutionProvider":
        return {}
    from sdk.engines.cache import resolve_cache_dir

    folder = resolve_cache_dir(cache_dir) / "onnxruntime-trt"
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "trt_fp16_enable": precision == "fp16",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": os.fspath(folder),
    }
