"""Build ``liboctclassify.so``, the C API of ``include/octclassify.h``, with cffi's embedding mode.

    python bindings/build_library.py OUT_DIR      # CMakeLists.txt runs this with the venv's python

Writes into OUT_DIR:

* ``liboctclassify.so``: ``src/octclassify.c`` (the exported functions) and ``src/embedded.py`` (the
  Python half, frozen in) compiled against this Python's libpython; runpath ``$ORIGIN`` and
  libpython's folder, so neither it nor libpython needs LD_LIBRARY_PATH; this Python's home
  (``sys.base_prefix``, its standard library) built in.
* ``liboctclassify.pythonpath``: the folders the embedded Python searches first, one per line: this
  Python's site-packages folders and the project root. The library reads it from its own folder at start.
"""

from __future__ import annotations

import argparse
import json
import re
import site
import sys
import sysconfig
from pathlib import Path

import cffi

import sdk

HERE = Path(__file__).resolve().parent
HEADER = HERE / "include" / "octclassify.h"
NAME = "liboctclassify"
PYTHON_HALF = """
extern "Python" int _octc_py_open(const char *bundle_path, const char *backend_name, uint64_t *out_handle);
extern "Python" int _octc_py_classify(uint64_t handle, const char *voxels, int dtype, int64_t n_bscans,
                                      int64_t depth, int64_t n_ascans, const double *spacing_mm,
                                      const char *laterality, octc_result *out);
extern "Python" int _octc_py_close(uint64_t handle);
void _octc_set_error(const char *message);
void _octc_start_failed(const char *message);
const char *_octc_python_path(void);
"""


def build(out_dir: str | Path) -> Path:
    """Compile the library into ``out_dir`` (created if needed), write its python path file next to
    it and return the library's path."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ffibuilder = cffi.FFI()
    types = re.search(r"/\* cffi: begin.*?\*/(.*)/\* cffi: end \*/", HEADER.read_text(), re.S).group(1)
    ffibuilder.cdef(types + PYTHON_HALF)
    ffibuilder.embedding_init_code((HERE / "src" / "embedded.py").read_text())
    ffibuilder.set_source(
        "_octclassify",
        (HERE / "src" / "octclassify.c").read_text(),
        include_dirs=[str(HEADER.parent)],
        define_macros=[
            ("OCTC_SDK_VERSION", json.dumps(sdk.__version__)),
            ("OCTC_PYTHON_HOME", json.dumps(sys.base_prefix)),  # its standard library, unless $PYTHONHOME
            ("OCTC_LIBPYTHON", json.dumps(sysconfig.get_config_var("INSTSONAME"))),
        ],
        extra_link_args=[
            f"-Wl,-soname,{NAME}.so",
            f"-Wl,-rpath,$ORIGIN:{sysconfig.get_config_var('LIBDIR')}",
        ],
    )
    library = Path(ffibuilder.compile(tmpdir=str(out_dir), target=f"{NAME}.*"))
    paths = [p for p in site.getsitepackages() if Path(p).is_dir()] + [str(HERE.parent)]
    (out_dir / f"{NAME}.pythonpath").write_text(
        "# Folders the embedded Python of liboctclassify.so searches first, one per line; a relative\n"
        "# line is relative to this folder. OCTC_PYTHONPATH (':'-separated) replaces this file.\n"
        + "".join(f"{path}\n" for path in paths)
    )
    return library


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", metavar="OUT_DIR")
    print(build(parser.parse_args(argv).out_dir))


if __name__ == "__main__":
    main()
