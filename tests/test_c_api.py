"""The C API (bindings/) as a firmware team gets it: CMake build, the C tests, the install, outside
consumers, and the installed folder moved and run by an unprivileged user with an empty environment.

One build per module in a temporary folder (configure and build: liboctclassify.so.0, its runtime
folder, the example and the C tests); the C tests themselves are bindings/tests/*.c, run by ctest
(see CMakeLists.txt). Skipped only when cmake or a C compiler is missing.
"""

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import sdk

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "bindings" / "include" / "octclassify.h"
EXAMPLE = ROOT / "bindings" / "examples" / "classify_volume.c"
COMPILER = os.environ.get("CC", "cc").split()[0]
MISSING = [tool for tool in ("cmake", "ctest", COMPILER) if shutil.which(tool) is None]
RUNTIME_LIMIT_MB = 400
RUNTIME_PACKAGES = {
    "numpy",
    "numpy.libs",
    "scipy",
    "scipy.libs",
    "onnxruntime",
    "pydicom",
    "cryptography",
    "sdk",
}
needs_tools = pytest.mark.skipif(
    bool(MISSING), reason=f"the C API needs cmake and a C compiler; missing: {', '.join(MISSING)}"
)


def _run(command: list, cwd: Path, env: dict | None = None) -> str:
    result = subprocess.run([str(p) for p in command], cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed:\n{result.stdout[-6000:]}{result.stderr[-4000:]}"
    )
    return result.stdout


def test_header_version_is_the_sdks():
    text = HEADER.read_text()
    version = ".".join(
        re.search(rf"#define OCTC_VERSION_{part} (\d+)", text).group(1)
        for part in ("MAJOR", "MINOR", "PATCH")
    )
    project = re.search(r'(?m)^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert version == sdk.__version__ == project


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    if MISSING:
        pytest.skip(f"the C API needs cmake and a C compiler; missing: {', '.join(MISSING)}")
    build = tmp_path_factory.mktemp("c-api") / "build"
    _run(["cmake", "-S", ROOT, "-B", build, f"-DOCTC_PYTHON={sys.executable}"], ROOT)
    _run(["cmake", "--build", build, "--parallel", "2"], ROOT)
    _run(["ctest", "-R", "c_api_fixtures", "--output-on-failure"], build)  # bundle, volumes, answers
    return build


@pytest.mark.slow
@needs_tools
def test_ctest(build):
    _run(["ctest", "-E", "c_api_fixtures", "--fixture-exclude-any", "c_api", "--output-on-failure"], build)


@needs_tools
def test_the_library_exports_octc_functions_only_with_a_versioned_soname(build):
    library = build / "runtime" / "liboctclassify.so.0"
    symbols = _run(["nm", "-D", "--defined-only", library], build).split()
    exported = sorted(s.split("@")[0] for s in symbols if "@@" in s)
    assert exported == sorted(
        f"octc_{name}"
        for name in (
            "api_version",
            "classify",
            "close",
            "last_error",
            "open",
            "open_with_options",
            "options_init",
            "status_name",
            "version",
        )
    )
    dynamic = _run(["readelf", "-d", library], build)
    assert "Library soname: [liboctclassify.so.0]" in dynamic
    assert "Library rpath: [$ORIGIN/octclassify]" in dynamic and "RUNPATH" not in dynamic


@needs_tools
def test_the_runtime_folder_holds_python_and_the_runtime_packages_only(build):
    runtime = build / "runtime" / "octclassify"
    size_mb = sum(p.stat().st_size for p in runtime.rglob("*") if p.is_file()) / 2**20
    packages = {
        p.name
        for p in (runtime / "site-packages").iterdir()
        if p.is_dir() and not p.name.endswith(".dist-info") and p.name != "__pycache__"
    }
    print(f"runtime folder {size_mb:.0f} MB, packages {sorted(packages)}")
    assert size_mb <= RUNTIME_LIMIT_MB
    assert packages <= RUNTIME_PACKAGES and {"numpy", "scipy", "onnxruntime", "pydicom", "sdk"} <= packages
    assert not list((runtime / "site-packages").glob("torch*")) and not list(runtime.rglob("tests"))
    assert not (runtime / "site-packages" / "phantom").exists() and not list(runtime.rglob("*.egg-link"))
    sources = list(runtime.rglob("*.py"))
    compiled = list(runtime.rglob("*.cpython-*.pyc"))
    assert len(compiled) >= len(sources) > 1000  # compiled at deploy time
    assert str(ROOT) not in (runtime / "site-packages" / "octclassify_embedded.py").read_text()


@needs_tools
def test_a_python_process_is_refused_without_hanging(build):
    """cffi-style start-up locks spun for ever in a Python host; this library refuses one at once."""
    library = build / "runtime" / "liboctclassify.so.0"
    code = (
        "import ctypes, sys\n"
        f"lib = ctypes.CDLL({str(library)!r})\n"
        "lib.octc_last_error.restype = ctypes.c_char_p\n"
        "handle = ctypes.c_void_p()\n"
        "status = lib.octc_open(b'/any/bundle', None, ctypes.byref(handle))\n"
        "print(status, lib.octc_last_error().decode())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (
        out.stdout.startswith("7 ") and "already runs Python" in out.stdout and "sdk.Classifier" in out.stdout
    )
    assert out.stderr == ""


CONSUMER_CMAKE = """cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(octclassify 0.1 REQUIRED)
add_executable(consumer_cmake classify_volume.c)
target_link_libraries(consumer_cmake PRIVATE octclassify::octclassify)
set_target_properties(consumer_cmake PROPERTIES BUILD_WITH_INSTALL_RPATH ON INSTALL_RPATH "$ORIGIN/../lib")
"""


@pytest.fixture(scope="module")
def shared_folder():
    """A folder every user can read (pytest's own are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="octc-install-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _as_other_user(command: list) -> tuple[list, str]:
    """``command`` run as user nobody with an empty environment when this is root, else with an empty
    environment as this user; and which of the two."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return ["env", "-i", *command], "this user (not root: no other user to become)"
    nobody = pwd.getpwnam("nobody")
    switch = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    return [*switch, "env", "-i", *command], "user nobody"


@dataclass(frozen=True)
class Installed:
    """The installed prefix, moved after the consumers were built against it, and their input."""

    moved: Path
    consumers: dict  # program name -> path in moved/bin, or why it was not built
    bundle: Path
    volume_args: list  # classify_volume's arguments after BUNDLE
    expected_label: str


@pytest.fixture(scope="module")
def installed(build, shared_folder) -> Installed:
    """cmake --install into a prefix; an outside project built with find_package, and one with a
    plain compiler call and pkg-config, their binaries put in prefix/bin with rpath $ORIGIN/../lib;
    then the prefix moved elsewhere; a fixture bundle and volume every user can read."""
    prefix = shared_folder / "prefix"
    _run(["cmake", "--install", build, "--prefix", prefix], ROOT)
    consumer = shared_folder / "consumer"
    consumer.mkdir()
    shutil.copy(EXAMPLE, consumer / "classify_volume.c")
    (consumer / "CMakeLists.txt").write_text(CONSUMER_CMAKE)
    _run(["cmake", "-S", consumer, "-B", consumer / "build", f"-DCMAKE_PREFIX_PATH={prefix}"], consumer)
    _run(["cmake", "--build", consumer / "build"], consumer)
    (prefix / "bin").mkdir()
    shutil.copy(consumer / "build" / "consumer_cmake", prefix / "bin")
    consumers = {"consumer_cmake": "built", "consumer_pkgconfig": "no pkg-config or pkgconf on PATH"}
    pkg_config = shutil.which("pkg-config") or shutil.which("pkgconf")
    if pkg_config is not None:
        flags = _run(
            [pkg_config, "--cflags", "--libs", "octclassify"],
            consumer,
            env={**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig")},
        ).split()
        assert f"-I{prefix}/lib/pkgconfig/../../include" in flags
        output = prefix / "bin" / "consumer_pkgconfig"
        _run(
            [COMPILER, consumer / "classify_volume.c", *flags, "-Wl,-rpath,$ORIGIN/../lib", "-o", output],
            consumer,
        )
        consumers["consumer_pkgconfig"] = "built"
    moved = shared_folder / "moved" / "opt-oct"
    moved.parent.mkdir()
    prefix.rename(moved)
    data = shared_folder / "data"
    shutil.copytree(build / "fixtures" / "bundle", data / "bundle")
    shutil.copy(build / "fixtures" / "normal_od.raw", data / "normal_od.raw")
    for path in (data, *data.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    first = (build / "fixtures" / "fixtures.txt").read_text().split()  # make_fixtures.py's first volume
    volume_args = [data / first[0], first[1], *first[2:8], first[8], "onnxruntime"]
    return Installed(moved, consumers, data / "bundle", volume_args, first[10])


@pytest.mark.slow
@needs_tools
def test_install_puts_library_header_pkg_config_and_cmake_config_in_the_prefix(installed):
    files = {str(p.relative_to(installed.moved)) for p in installed.moved.rglob("*")}
    libpython = f"lib/octclassify/libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    for expected in (
        "include/octclassify.h",
        "lib/liboctclassify.so",
        "lib/liboctclassify.so.0",
        "lib/liboctclassify.so.0.1.0",
        "lib/pkgconfig/octclassify.pc",
        "lib/cmake/octclassify/octclassify-config.cmake",
        "lib/cmake/octclassify/octclassify-config-version.cmake",
        libpython,
    ):
        assert expected in files


@pytest.mark.slow
@needs_tools
@pytest.mark.parametrize("program", ["consumer_cmake", "consumer_pkgconfig"])
def test_moved_install_runs_as_another_user_with_an_empty_environment(installed, program):
    if installed.consumers[program] != "built":
        pytest.skip(f"{program} not built: {installed.consumers[program]}")
    command, who = _as_other_user(
        [installed.moved / "bin" / program, installed.bundle, *installed.volume_args]
    )
    out = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300)
    print(f"{program} as {who}:\n{out.stdout}{out.stderr}")
    assert out.returncode == 0, out.stderr
    label = installed.expected_label
    assert f"label: {label}" in out.stdout if label != "-" else "ungradable" in out.stdout
    assert out.stderr == ""


@pytest.mark.slow
@needs_tools
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run as another user who cannot read the bundle")
def test_a_bundle_the_user_cannot_read_is_a_bundle_error(installed, shared_folder):
    unreadable = shared_folder / "unreadable-bundle"
    shutil.copytree(installed.bundle, unreadable)
    (unreadable / "manifest.json").chmod(0o600)
    command, _ = _as_other_user(
        [installed.moved / "bin" / "consumer_cmake", unreadable, *installed.volume_args]
    )
    out = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "OCTC_BUNDLE_ERROR" in out.stderr and "manifest.json" in out.stderr, (
        out.stderr
    )
