"""The C API (bindings/): CMake configure, build and the C tests (ctest) in a temporary build folder.

The C tests themselves are in bindings/tests/*.c; see CMakeLists.txt.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPILER = os.environ.get("CC", "cc").split()[0]
MISSING = [tool for tool in ("cmake", "ctest", COMPILER) if shutil.which(tool) is None]


def _run(command: list, cwd: Path) -> None:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed:\n{result.stdout[-6000:]}{result.stderr[-4000:]}"
    )


@pytest.mark.slow
@pytest.mark.skipif(
    bool(MISSING), reason=f"the C API needs cmake and a C compiler; missing: {', '.join(MISSING)}"
)
def test_c_api_builds_and_passes_ctest(tmp_path):
    build = tmp_path / "build"
    _run(["cmake", "-S", ROOT, "-B", build, f"-DOCTC_PYTHON={sys.executable}"], ROOT)
    _run(["cmake", "--build", build, "--parallel", "2"], ROOT)
    _run(["ctest", "--output-on-failure"], build)
