"""Engine cache, FP16 strategy, bundle checks and CLI of sdk.engines: all on CPU, no TensorRT.

The last part runs the build and runtime code against small stand-ins for the ``tensorrt`` and
``cuda.bindings.runtime`` modules (same call names and return conventions as NVIDIA's samples;
"device" memory is host memory and the "engine" runs the ONNX in ONNX Runtime). They check the
call sequence, flags and buffer handling, not TensorRT itself: tests/test_tensorrt_gpu.py does
that on a GPU.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.bundle import Bundle
from sdk.engines import build, runtime
from sdk.engines.build import build_bundle_engines, build_engine, fp16_strategy
from sdk.engines.cache import ENV_VAR, EngineCache, engine_key, key_material
from sdk.engines.runtime import TensorRTModel
from sdk.errors import BackendUnavailable, BundleError, FileError, InvalidVolume
from sdk.files import file_sha256
from tests.bundle_helpers import FIXTURE, copy_fixture, manifest_of, rewrite_manifest, tensorrt_bundle

REPO = Path(__file__).resolve().parents[1]
INPUT_SHAPE = (1, 3, 8, 8)
DEVICE = {"gpu_name": "Orin", "compute_capability": [8, 7], "sm_count": 16, "tensorrt_version": "10.3.0.30"}


def write_classifier_onnx(
    path: Path, *, seed: int = 0, fp16: bool = False, n_classes: int = 2, input_shape=INPUT_SHAPE
) -> Path:
    """Tiny classifier (N, 3, H, W) float32 -> softmax (N, n_classes) float32.

    GlobalAveragePool -> Flatten -> Gemm -> Softmax; with ``fp16`` the pooling and Gemm run in
    float16 between Cast nodes (the layout of the bundle's FP16 variants). A string in
    ``input_shape`` (e.g. "N") makes that dimension dynamic.
    """
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(3, n_classes)).astype(np.float32)
    bias = rng.normal(size=n_classes).astype(np.float32)
    wtype = np.float16 if fp16 else np.float32
    inits = [
        numpy_helper.from_array(weight.astype(wtype), "W"),
        numpy_helper.from_array(bias.astype(wtype), "B"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits_f32"], ["probabilities"], axis=1),
    ]
    if fp16:
        nodes.insert(0, helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT16))
        nodes.insert(4, helper.make_node("Cast", ["logits"], ["logits_f32"], to=TensorProto.FLOAT))
    else:
        nodes.insert(0, helper.make_node("Identity", ["input"], ["x"]))
        nodes.insert(4, helper.make_node("Identity", ["logits"], ["logits_f32"]))
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, (input_shape[0], n_classes))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def write_bundle(folder: Path) -> Path:
    """A target-tensorrt bundle of tiny models (bundle_helpers.tensorrt_bundle) in ``folder``."""
    return tensorrt_bundle(copy_fixture(folder.parent, folder.name))


def ort_probabilities(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def make_material(onnx_sha256: str, **changes) -> dict:
    args = {
        "onnx_sha256": onnx_sha256,
        "device": dict(DEVICE),
        "precision": "fp16",
        "input_shapes": {"input": INPUT_SHAPE},
        "workspace_bytes": 1 << 30,
        "strategy": "builder_flag",
    }
    device_changes = {k: changes.pop(k) for k in list(changes) if k in DEVICE}
    args["device"].update(device_changes)
    args.update(changes)
    return key_material(**args)


@pytest.fixture
def onnx_file(tmp_path):
    return write_classifier_onnx(tmp_path / "model.onnx")


@pytest.fixture
def material(onnx_file):
    return make_material(file_sha256(onnx_file))


@pytest.fixture
def cache(tmp_path):
    return EngineCache(tmp_path / "engines")


def leftovers(cache: EngineCache) -> list[str]:
    """Files in the cache folder other than lock files."""
    return sorted(p.name for p in cache.directory.iterdir() if not p.name.endswith(".lock"))


# ---------------------------------------------------------------- the key


@pytest.mark.parametrize(
    "change",
    [
        {"tensorrt_version": "10.3.0.26"},
        {"gpu_name": "Xavier"},
        {"compute_capability": [7, 2]},
        {"sm_count": 8},
        {"precision": "fp32"},
        {"input_shapes": {"input": (2, 3, 8, 8)}},
        {"workspace_bytes": 1 << 28},
        {"strategy": "strongly_typed"},
        {"sdk_version": "9.9.9"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_key_changes_with_each_component(material, onnx_file, change):
    changed = make_material(file_sha256(onnx_file), **change)
    assert engine_key(changed) != engine_key(material)


def test_key_changes_with_onnx_content_not_name(tmp_path, material, onnx_file):
    retrained = write_classifier_onnx(tmp_path / "retrained.onnx", seed=1)  # same graph, other weights
    assert engine_key(make_material(file_sha256(retrained))) != engine_key(material)
    renamed = tmp_path / "renamed.onnx"
    renamed.write_bytes(onnx_file.read_bytes())
    assert engine_key(make_material(file_sha256(renamed))) == engine_key(material)


def test_key_is_stable_and_canonical(onnx_file, material):
    key = engine_key(material)
    assert len(key) == 64 and int(key, 16) >= 0
    same = make_material(file_sha256(onnx_file).upper(), input_shapes={"input": list(INPUT_SHAPE)})
    assert engine_key(same) == key
    assert json.loads(json.dumps(material)) == material  # plain JSON values only


# ---------------------------------------------------------------- store and lookup


def test_lookup_after_store_hits(cache, material):
    assert cache.lookup(material) is None
    path = cache.store(material, b"engine bytes")
    assert cache.lookup(material) == path and path.read_bytes() == b"engine bytes"
    sidecar = json.loads(cache.paths(engine_key(material))[1].read_text())
    assert sidecar["key_material"] == material and sidecar["engine_size_bytes"] == 12
    assert sidecar["engine_sha256"] == file_sha256(path)
    assert leftovers(cache) == sorted(p.name for p in cache.paths(engine_key(material)))


def _other_material(sidecar):
    record = json.loads(sidecar.read_text())
    record["key_material"]["gpu_name"] = "another GPU"
    sidecar.write_text(json.dumps(record))


def _flip_byte(engine):
    data = bytearray(engine.read_bytes())
    data[3] ^= 0x01
    engine.write_bytes(bytes(data))


DAMAGE = {
    "sidecar_other_material": lambda engine, sidecar: _other_material(sidecar),
    "truncated_engine": lambda engine, sidecar: engine.write_bytes(engine.read_bytes()[:5]),
    "empty_engine": lambda engine, sidecar: engine.write_bytes(b""),
    "flipped_byte": lambda engine, sidecar: _flip_byte(engine),
    "missing_sidecar": lambda engine, sidecar: sidecar.unlink(),
    "missing_engine": lambda engine, sidecar: engine.unlink(),
    "corrupt_sidecar": lambda engine, sidecar: sidecar.write_text("{not json"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_entry_is_a_miss_and_removed(cache, material, damage):
    cache.store(material, b"0123456789" * 10)
    engine, sidecar = cache.paths(engine_key(material))
    DAMAGE[damage](engine, sidecar)
    assert cache.lookup(material) is None
    assert leftovers(cache) == []


def test_leftover_temp_file_is_a_miss_and_removed(cache, material):
    key = engine_key(material)
    (cache.directory / f".{key}.engine.x1y2.tmp").write_bytes(b"half an eng")  # killed mid-write
    assert cache.lookup(material) is None
    assert leftovers(cache) == []
    cache.store(material, b"whole engine")
    (cache.directory / f".{key}.json.z3.tmp").write_bytes(b"{")
    assert cache.lookup(material) is not None
    assert not list(cache.directory.glob("*.tmp"))


def test_damaged_engine_is_rebuilt_by_get_or_build(cache, material):
    calls = []

    def builder():
        calls.append(1)
        return b"fresh engine"

    path = cache.get_or_build(material, builder)
    assert cache.get_or_build(material, builder) == path and len(calls) == 1
    _flip_byte(path)
    assert cache.get_or_build(material, builder).read_bytes() == b"fresh engine" and len(calls) == 2
    assert cache.get_or_build(material, builder, force=True) == path and len(calls) == 3


@pytest.mark.parametrize("failing_call", [1, 2], ids=["engine_write", "sidecar_write"])
def test_exception_during_store_leaves_nothing(cache, material, monkeypatch, failing_call):
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == failing_call:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr("sdk.engines.cache.os.replace", replace)
    with pytest.raises(OSError, match="No space"):
        cache.store(material, b"engine bytes")
    assert leftovers(cache) == []
    monkeypatch.undo()
    assert cache.lookup(material) is None


def test_failing_builder_stores_nothing(cache, material):
    def builder():
        raise BackendUnavailable("build failed")

    with pytest.raises(BackendUnavailable):
        cache.get_or_build(material, builder)
    assert leftovers(cache) == []


def test_threads_building_one_key_build_once(cache, material):
    calls, results = [], []

    def builder():
        calls.append(1)
        time.sleep(0.2)
        return b"engine built once"

    def worker():
        results.append(cache.get_or_build(material, builder))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1
    assert cache.lookup(material).read_bytes() == b"engine built once"


def test_threads_storing_one_key_leave_one_valid_entry(cache, material):
    payloads = [bytes([i]) * 100_000 for i in range(4)]
    threads = [threading.Thread(target=cache.store, args=(material, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = cache.lookup(material)
    assert path is not None and path.read_bytes() in payloads
    assert len(leftovers(cache)) == 2


def _process_worker(cache_dir: str, onnx_sha256: str, marker: str) -> None:
    def builder():
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return b"engine from one process"

    EngineCache(cache_dir).get_or_build(make_material(onnx_sha256), builder)


def test_processes_building_one_key_build_once(tmp_path, onnx_file):
    marker = tmp_path / "builds.txt"
    context = multiprocessing.get_context("spawn")
    args = (str(tmp_path / "engines"), file_sha256(onnx_file), str(marker))
    processes = [context.Process(target=_process_worker, args=args) for _ in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [p.exitcode for p in processes] == [0, 0]
    assert len(marker.read_text().splitlines()) == 1
    found = EngineCache(tmp_path / "engines").lookup(make_material(file_sha256(onnx_file)))
    assert found.read_bytes() == b"engine from one process"


# ---------------------------------------------------------------- the cache folder


def test_unwritable_cache_dir_raises_file_error(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(FileError, match="--cache-dir") as info:
        EngineCache(not_a_folder / "engines")
    assert str(not_a_folder / "engines") in str(info.value) and ENV_VAR in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_cache_dir_raises_file_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(FileError, match="not writable"):
            EngineCache(folder)
    finally:
        folder.chmod(0o755)


def test_cache_dir_argument_then_env_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert EngineCache().directory == tmp_path / "home/.cache/octclassify/engines"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from_env"))
    assert EngineCache().directory == tmp_path / "from_env"
    assert EngineCache(tmp_path / "from_arg").directory == tmp_path / "from_arg"


# ---------------------------------------------------------------- FP16 strategy


@pytest.mark.parametrize(
    ("version", "strategy"),
    [
        ("8.6.1", "builder_flag"),
        ("10.3.0", "builder_flag"),
        ("10.11.0", "builder_flag"),
        ("10.12.0", "strongly_typed"),
        ("10.13.2", "strongly_typed"),
        ("11.0.0", "strongly_typed"),
        ("11.1.0.106", "strongly_typed"),
    ],
)
def test_fp16_strategy(version, strategy):
    assert fp16_strategy(version) == strategy


# ---------------------------------------------------------------- the bundle, without TensorRT


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` and cuda-python fail, as on a machine without them."""
    for name in ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    runtime.trt_logger.cache_clear()


def test_good_bundle_without_tensorrt_is_backend_unavailable(tmp_path, no_tensorrt):
    bundle = write_bundle(tmp_path / "bundle")
    with pytest.raises(BackendUnavailable, match="TensorRT is not usable"):
        build_bundle_engines(Bundle.load(bundle), cache_dir=tmp_path / "engines")


def test_a_path_is_loaded_by_the_one_manifest_parser(tmp_path, no_tensorrt):
    with pytest.raises(BundleError, match="manifest.json does not exist"):
        build_bundle_engines(tmp_path, cache_dir=tmp_path / "engines")
    bundle = write_bundle(tmp_path / "bundle")
    (bundle / "models/gcc_thickness.stage1.onnx").unlink()
    with pytest.raises(BundleError, match="models/gcc_thickness.stage1.onnx is missing"):
        build_bundle_engines(bundle, cache_dir=tmp_path / "engines")
    manifest = manifest_of(bundle)
    manifest["schema_version"] = 1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema version 1, from an older converter"):
        build_bundle_engines(bundle, cache_dir=tmp_path / "engines")


# ---------------------------------------------------------------- the CLI


def run_cli(*args: str, block_tensorrt: bool = True) -> subprocess.CompletedProcess:
    block = "sys.modules['tensorrt'] = None; " if block_tensorrt else ""
    code = f"import sys; {block}from sdk.build_engines import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_cli_without_tensorrt_exits_2_with_one_line_reason(tmp_path):
    bundle = write_bundle(tmp_path / "bundle")
    result = run_cli(str(bundle), "--cache-dir", str(tmp_path / "engines"))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "TensorRT is not usable" in errors[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_user_mistakes_exit_without_traceback(tmp_path):
    result = run_cli(str(tmp_path / "no_bundle"))
    assert result.returncode == 1 and "no_bundle does not exist: it is not a model bundle" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(str(tmp_path), "--workspace-mb", "0")
    assert result.returncode == 2 and "--workspace-mb must be" in result.stderr


@pytest.mark.parametrize("module", ["sdk.build_engines", "converters.tensorrt"])
def test_cli_modules_run(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert (
        result.returncode == 0
        and f"python -m {module}" in result.stdout
        and "--workspace-mb" in result.stdout
    )


def test_sdk_imports_without_tensorrt():
    code = (
        "import sys, sdk.engines, sdk.build_engines; print(sorted({'tensorrt', 'cuda'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


# ---------------------------------------------------------------- build and runtime on stand-ins


def fake_tensorrt(version: str) -> types.ModuleType:
    """Stand-in ``tensorrt`` module: the calls sdk.engines makes, with TensorRT's return conventions."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = runtime.version_tuple(version)[0]
    trt.builds = []  # one dict per build_serialized_network call
    trt.fail_build = False
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity: None})
    creation = {"STRONGLY_TYPED": 0} if major >= 11 else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {"TF32": 6} if major >= 11 else {"FP16": 0, "TF32": 6})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"INPUT": 1, "OUTPUT": 2})
    trt.DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1})
    trt.nptype = lambda dtype: {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16}[dtype]

    class HostMemory(bytes):
        nbytes = property(len)

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs, self.onnx_bytes = flags, [], None

        num_inputs = property(lambda self: len(self.inputs))

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse_from_file(self, path):
            return self.parse(Path(path).read_bytes(), path)

        def parse(self, model_bytes, path=None):
            try:
                model = onnx.load_from_string(bytes(model_bytes))
            except Exception as e:
                self.errors = [
                    f"ModelImporter: cannot read {path or 'the model bytes'}: {type(e).__name__}",
                    "ModelImporter: no graph",
                ]
                return False
            self.network.onnx_bytes = bytes(model_bytes)
            for value in model.graph.input:
                dims = tuple(d.dim_value or -1 for d in value.type.tensor_type.shape.dim)
                self.network.inputs.append(types.SimpleNamespace(name=value.name, shape=dims))
            return True

    class TimingCache:
        def __init__(self, data):
            if data and not data.startswith(b"TC"):
                raise RuntimeError("bad timing cache")
            self.data = bytes(data) or b"TC"

        def serialize(self):
            return HostMemory(self.data)

        def combine(self, other, ignore_mismatch):
            self.data += other.data[2:]
            return True

    class Config:
        def __init__(self):
            self.flags, self.pools, self.timing_cache, self.profiles = set(), {}, None, []

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            loaded = config.timing_cache and config.timing_cache.data
            if config.timing_cache:
                config.timing_cache.data += b"+entry"
            trt.builds.append(
                {
                    "network_flags": network.flags,
                    "config": config,
                    "onnx_sha256": hashlib.sha256(network.onnx_bytes).hexdigest(),
                    "loaded": loaded,
                }
            )
            return None if trt.fail_build else HostMemory(b"FAKE" + network.onnx_bytes)

    class Engine:
        def __init__(self, onnx_bytes):
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            io = self.session.get_inputs() + self.session.get_outputs()
            self.names = [t.name for t in io]
            self.shapes = {t.name: tuple(t.shape) for t in io}
            self.input = self.names[0]

        num_io_tensors = property(lambda self: len(self.names))

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == self.input else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            return self.shapes[name]

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses = engine, {}

        def get_tensor_shape(self, name):
            return self.engine.shapes[name]

        def set_tensor_address(self, name, address):
            self.addresses[name] = address
            return True

        def execute_async_v3(self, stream_handle):
            def view(name):
                shape = self.engine.shapes[name]
                pointer = ctypes.cast(self.addresses[name], ctypes.POINTER(ctypes.c_float))
                return np.ctypeslib.as_array(pointer, shape)

            inp, out = self.engine.names
            view(out)[...] = self.engine.session.run(None, {inp: view(inp).copy()})[0]
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine(bytes(data[4:])) if bytes(data[:4]) == b"FAKE" else None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def fake_cudart() -> types.ModuleType:
    """Stand-in ``cuda.bindings.runtime``: (status, value) tuples; memory is ctypes host memory."""
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaError_t = enum.IntEnum("cudaError_t", {"cudaSuccess": 0, "cudaErrorNoDevice": 100})
    rt.cudaMemcpyKind = enum.IntEnum(
        "cudaMemcpyKind", {"cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2}
    )
    ok = rt.cudaError_t.cudaSuccess
    rt.live, rt.device_count = {}, 1

    def malloc(nbytes):
        buffer = ctypes.create_string_buffer(nbytes)
        rt.live[ctypes.addressof(buffer)] = buffer
        return ok, ctypes.addressof(buffer)

    def memcpy_async(dst, src, nbytes, kind, stream):
        ctypes.memmove(dst, src, nbytes)
        return (ok,)

    rt.cudaMalloc = rt.cudaMallocHost = malloc
    rt.cudaFree = rt.cudaFreeHost = lambda pointer: (rt.live.pop(pointer) and ok,)
    rt.cudaMemcpyAsync = memcpy_async
    rt.cudaStreamCreate = lambda: (ok, 7)
    rt.cudaStreamSynchronize = rt.cudaStreamDestroy = lambda stream: (ok,)
    rt.cudaGetErrorName = lambda status: (ok, status.name.encode())
    rt.cudaGetDeviceCount = lambda: (ok, rt.device_count)
    rt.cudaGetDevice = lambda: (ok, 0)
    props = types.SimpleNamespace(name=b"Fake Orin\0\0\0", major=8, minor=7, multiProcessorCount=16)
    rt.cudaGetDeviceProperties = lambda device: (ok, props)
    return rt


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install the stand-ins; returns a function version -> fake tensorrt module."""
    cudart = fake_cudart()
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, module)

    def install(version: str) -> types.ModuleType:
        trt = fake_tensorrt(version)
        trt.cudart = cudart
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        runtime.trt_logger.cache_clear()
        return trt

    yield install
    runtime.trt_logger.cache_clear()


@pytest.mark.parametrize(
    ("version", "onnx_suffix", "network_flags", "builder_flags"),
    [
        ("8.6.1", ".stage1.onnx", 1 << 0, {"FP16"}),  # EXPLICIT_BATCH
        ("10.3.0.30", ".stage1.onnx", 0, {"FP16"}),
        ("10.13.2", ".stage1.fp16.onnx", 1 << 1, set()),  # STRONGLY_TYPED
        ("11.1.0.106", ".stage1.fp16.onnx", 0, set()),  # always strongly typed
    ],
)
def test_bundle_build_per_tensorrt_version(
    tmp_path, fake_gpu, version, onnx_suffix, network_flags, builder_flags
):
    trt = fake_gpu(version)
    folder = write_bundle(tmp_path / "bundle")
    bundle = Bundle.load(folder)
    engines = build_bundle_engines(bundle, cache_dir=tmp_path / "engines", workspace_bytes=1 << 26)
    assert list(engines) == [spec.name for spec in bundle.models]
    precision = "fp16" if onnx_suffix.endswith(".fp16.onnx") else "fp32"
    assert [b["onnx_sha256"] for b in trt.builds] == [
        bundle.files[spec.files[precision].as_posix()].sha256 for spec in bundle.models
    ]
    for built in trt.builds:
        assert built["network_flags"] == network_flags
        assert {flag.name for flag in built["config"].flags} == builder_flags
        assert built["config"].pools == {trt.MemoryPoolType.WORKSPACE: 1 << 26}
    sidecar = json.loads(engines["rnfl_thickness.stage1"].with_suffix(".json").read_text())
    assert sidecar["key_material"]["tensorrt_version"] == version
    assert sidecar["key_material"]["gpu_name"] == "Fake Orin"
    assert sidecar["key_material"]["builder"]["strategy"] == fp16_strategy(version)

    x = np.random.default_rng(0).normal(size=bundle.models[0].input_shape).astype(np.float32)
    with TensorRTModel(engines["gcc_thickness.stage2"]) as model:
        expected = ort_probabilities(folder / f"models/gcc_thickness.stage2{onnx_suffix[7:]}", x)
        np.testing.assert_allclose(model.infer(x), expected, rtol=1e-6)

    assert build_bundle_engines(bundle, cache_dir=tmp_path / "engines", workspace_bytes=1 << 26) == engines
    assert len(trt.builds) == 8  # the second run found all eight in the cache


def test_a_changed_onnx_is_refused_when_an_engine_is_built(tmp_path, fake_gpu):
    fake_gpu("10.3.0")
    folder = write_bundle(tmp_path / "bundle")
    bundle = Bundle.load(folder)
    write_classifier_onnx(
        folder / "models/rnfl_deviation.stage2.onnx", seed=99, n_classes=4, input_shape=(1, 3, 32, 32)
    )
    with pytest.raises(BundleError, match="models/rnfl_deviation.stage2.onnx does not match its sha256"):
        build_bundle_engines(bundle, cache_dir=tmp_path / "engines")


def test_timing_cache_saved_merged_and_reloaded(tmp_path, fake_gpu):
    trt = fake_gpu("10.3.0")
    bundle = Bundle.load(write_bundle(tmp_path / "bundle"))
    build_bundle_engines(bundle, cache_dir=tmp_path / "engines")
    (timing,) = (tmp_path / "engines").glob("timing-*.cache")
    saved = timing.read_bytes()
    assert trt.builds[0]["loaded"] == b"TC" and saved.startswith(b"TC+entry")
    build_bundle_engines(bundle, cache_dir=tmp_path / "engines", force=True)
    assert trt.builds[8]["loaded"] == saved
    timing.write_bytes(b"garbage")  # a damaged timing cache does not stop the build
    build_bundle_engines(bundle, cache_dir=tmp_path / "engines", force=True)
    assert trt.builds[16]["loaded"] == b"TC" and timing.read_bytes().startswith(b"TC+entry")


def test_a_cpu_bundle_has_nothing_for_tensorrt(tmp_path, fake_gpu):
    fake_gpu("10.13.2")
    with pytest.raises(
        BackendUnavailable, match=r"per-stage fp16 ONNX models, which bundle .* \(target cpu\)"
    ):
        build_bundle_engines(Bundle.load(FIXTURE), cache_dir=tmp_path / "engines")


def test_parser_errors_are_all_reported(tmp_path, fake_gpu):
    fake_gpu("10.3.0")
    not_onnx = tmp_path / "broken.onnx"
    not_onnx.write_bytes(b"\x00garbage")
    with pytest.raises(BundleError, match="cannot parse") as info:
        build_engine(not_onnx, strategy="builder_flag")
    assert "cannot read" in str(info.value) and "no graph" in str(info.value)


def test_failed_build_is_a_clear_error_and_caches_nothing(tmp_path, fake_gpu):
    trt = fake_gpu("10.3.0")
    trt.fail_build = True
    bundle = write_bundle(tmp_path / "bundle")
    with pytest.raises(BackendUnavailable, match="could not build an engine.*--workspace-mb"):
        build_bundle_engines(bundle, cache_dir=tmp_path / "engines")
    assert not list((tmp_path / "engines").glob("*.engine"))


def test_builder_flag_on_tensorrt_11_is_refused(onnx_file, fake_gpu):
    fake_gpu("11.1.0.106")
    with pytest.raises(BackendUnavailable, match="no FP16 builder flag"):
        build_engine(onnx_file, strategy="builder_flag")


def test_an_onnx_that_does_not_fit_its_manifest_is_refused(tmp_path, fake_gpu):
    fake_gpu("10.3.0")
    folder = write_bundle(tmp_path / "bundle")
    write_classifier_onnx(folder / "models/gcc_deviation.stage1.onnx", input_shape=(1, 3, 16, 16))
    rewrite_manifest(folder)
    with pytest.raises(
        BundleError, match=r"gcc_deviation.stage1.onnx has inputs and outputs .*\(1, 3, 16, 16\)"
    ):
        build_bundle_engines(folder, cache_dir=tmp_path / "engines")


def test_device_identity_and_usability(fake_gpu):
    trt = fake_gpu("10.3.0.30")
    assert build.device_identity() == {
        "gpu_name": "Fake Orin",
        "compute_capability": [8, 7],
        "sm_count": 16,
        "tensorrt_version": "10.3.0.30",
    }
    assert build.tensorrt_usable() == (True, "TensorRT 10.3.0.30, 1 GPU(s)")
    trt.cudart.device_count = 0
    usable, reason = build.tensorrt_usable()
    assert not usable and "no NVIDIA GPU" in reason
    fake_gpu("8.4.3")
    usable, reason = build.tensorrt_usable()
    assert not usable and "too old" in reason


def test_runtime_buffers_shape_check_threads_and_close(tmp_path, onnx_file, fake_gpu):
    trt = fake_gpu("10.3.0")
    engine_bytes = build_engine(onnx_file, strategy="builder_flag")
    model = TensorRTModel(engine_bytes)
    assert (model.input_shape, model.output_shape) == (INPUT_SHAPE, (1, 2))
    assert len(trt.cudart.live) == 4  # pinned host + device, for input and output, allocated once

    rng = np.random.default_rng(1)
    batches = [rng.normal(size=INPUT_SHAPE).astype(np.float32) for _ in range(8)]
    expected = [ort_probabilities(onnx_file, x) for x in batches]
    results = [None] * len(batches)

    def worker(i):
        for _ in range(5):
            results[i] = model.infer(batches[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert len(trt.cudart.live) == 4

    with pytest.raises(InvalidVolume, match=r"runs \(1, 3, 8, 8\)"):
        model.infer(np.zeros((2, 3, 8, 8), np.float32))
    model.close()
    model.close()
    assert trt.cudart.live == {}
    with pytest.raises(BackendUnavailable, match="closed"):
        model.infer(batches[0])


def test_runtime_rejects_an_engine_it_cannot_deserialize(tmp_path, fake_gpu):
    fake_gpu("10.3.0")
    path = tmp_path / "other.engine"
    path.write_bytes(b"an engine of another TensorRT version")
    with pytest.raises(BackendUnavailable, match="could not deserialize.*sdk.build_engines"):
        TensorRTModel(path)


def test_load_hands_over_the_bytes_it_checked(cache, material):
    built = []
    path, data = cache.load(material, lambda: built.append(1) or b"engine bytes")
    assert data == b"engine bytes" == path.read_bytes() and built == [1]
    path_again, data_again = cache.load(material, lambda: built.append(2) or b"other")
    assert (path_again, data_again, built) == (path, b"engine bytes", [1])  # a hit: the checked bytes
    path.write_bytes(b"engine bytez")  # same size, another sha256: rebuilt, never handed over
    assert cache.load(material, lambda: b"rebuilt")[1] == b"rebuilt"
