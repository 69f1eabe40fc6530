"""Assemble the runtime folder of liboctclassify: its Python and the SDK's scan-time packages.

    python bindings/deploy.py RUNTIME_DIR [--sdk SDK_DIR]   # CMake's deploy target runs this with OCTC_PYTHON

RUNTIME_DIR (replaced) is what the library loads, found next to it as ``octclassify/``; every path
in it is relative, so the folder may be moved or copied with the library::

    libpython3.X.so.1.0    the shared library of the Python running this script, debug info stripped
    lib/python3.X/         its standard library and lib-dynload, without tests, IDLE, Tk, curses,
                           sqlite, ssl, distutils, ensurepip and the static library
    site-packages/         numpy, scipy, onnxruntime, pydicom, cryptography (signed bundles; when
                           installed) with their wheels' own libraries, without their tests; the
                           SDK (sdk/, scan-time code only) and octclassify_embedded.py

Every ``.py`` is compiled to unchecked-hash bytecode (PEP 552): the embedded interpreter neither
writes bytecode nor compares timestamps, so a moved, copied or read-only folder starts as fast.
The Python running this script must be the one the library was built against (same version).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EMBEDDED = HERE / "src" / "octclassify_embedded.py"
PACKAGES = ("numpy", "scipy", "onnxruntime", "pydicom")
OPTIONAL_PACKAGES = ("cryptography",)  # sdk.signing imports it only to check a signed bundle
EXTRA_MODULES = {"cryptography": ("_cffi_backend",)}  # top-level modules a package imports
# Never needed at scan time: names skipped anywhere, and standard-library files by prefix.
SKIPPED_NAMES = {
    "__pycache__",
    "tests",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "distutils",
    "sqlite3",
    "curses",
    "pydoc_data",
    "site-packages",
    "dist-packages",
}
SKIPPED_SUFFIXES = (".pyc", ".pyi", ".pxd", ".pyx", ".a", ".exe", ".c")  # .c: sources of built modules
SKIPPED_STDLIB_PREFIXES = (
    "config-",
    "_tkinter",
    "_test",
    "xx",
    "_xx",
    "_ctypes_test",
    "_curses",
    "_sqlite3",
    "_ssl",
    "readline",
    "nis.",
    "ossaudiodev",
    "spwd",
    "_crypt",
)


def deploy(runtime_dir: str | os.PathLike, sdk_dir: str | os.PathLike = ROOT / "sdk") -> Path:
    """Write the runtime folder (replacing it) with the SDK package at ``sdk_dir``; return its path."""
    runtime = Path(runtime_dir).resolve()
    shutil.rmtree(runtime, ignore_errors=True)
    runtime.mkdir(parents=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    _copy_libpython(runtime)
    _copy_tree(Path(sysconfig.get_path("stdlib")), runtime / "lib" / version, SKIPPED_STDLIB_PREFIXES)
    site_packages = runtime / "site-packages"
    for name in PACKAGES + tuple(p for p in OPTIONAL_PACKAGES if importlib.util.find_spec(p)):
        _copy_package(name, site_packages)
    _copy_tree(Path(sdk_dir), site_packages / "sdk")
    shutil.copy2(EMBEDDED, site_packages / EMBEDDED.name)
    if not compileall.compile_dir(
        runtime, quiet=1, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    ):
        raise SystemExit(f"deploy: compiling the Python files in {runtime} failed")
    return runtime


def _copy_libpython(runtime: Path) -> None:
    name = sysconfig.get_config_var("INSTSONAME")
    source = Path(sysconfig.get_config_var("LIBDIR")) / name
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not source.is_file():
        raise SystemExit(
            f"deploy: {sys.executable} has no shared libpython ({source}): liboctclassify needs a Python "
            "built with --enable-shared (distribution packages and pyenv with "
            "PYTHON_CONFIGURE_OPTS=--enable-shared are)"
        )
    strip = shutil.which("strip")
    if strip is None:
        shutil.copy2(source, runtime / name)
    else:
        subprocess.run([strip, "--strip-debug", "-o", str(runtime / name), str(source)], check=True)


def _copy_tree(source: Path, destination: Path, skipped_prefixes: tuple[str, ...] = ()) -> None:
    def skipped(folder: str, names: list[str]) -> set[str]:
        return {
            n
            for n in names
            if n in SKIPPED_NAMES
            or n.endswith(SKIPPED_SUFFIXES)
            or (skipped_prefixes and n.startswith(skipped_prefixes))
        }

    shutil.copytree(source, destination, ignore=skipped)


def _copy_package(name: str, site_packages: Path) -> None:
    """Copy package ``name``, its wheel's bundled libraries (``<name>.libs``), its metadata and the
    top-level modules it imports into ``site_packages``."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"deploy: package {name} is not installed in {sys.executable}: pip install {name}")
    package = Path(spec.submodule_search_locations[0])
    _copy_tree(package, site_packages / name)
    for companion in package.parent.glob(f"{name}.libs"):
        _copy_tree(companion, site_packages / companion.name)
    for metadata in package.parent.glob(f"{name}-*.dist-info"):
        _copy_tree(metadata, site_packages / metadata.name)
    for module in EXTRA_MODULES.get(name, ()):
        origin = Path(importlib.util.find_spec(module).origin)
        shutil.copy2(origin, site_packages / origin.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime_dir", metavar="RUNTIME_DIR")
    parser.add_argument(
        "--sdk", dest="sdk_dir", default=ROOT / "sdk", help="the SDK package to ship (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    print(deploy(args.runtime_dir, args.sdk_dir))


if __name__ == "__main__":
    main()
