#!/usr/bin/env bash
# The project's own C under AddressSanitizer and UndefinedBehaviorSanitizer: the front end's kernels
# (sdk/retina/_*.c) and the C library (bindings/). A copy of the tracked tree in a temporary folder
# gets sanitized builds (the checkout's own builds are left as they are); there the front-end tests
# (kernels against their numpy references, the robustness fuzz, the real B-scans, the maps) and the
# C library's ctest suite run. Any out-of-bounds access, use after free or undefined behaviour stops
# the run with the sanitizer's report (exit status non-zero). About 3 minutes on 2 cores.
# Needs the environment of scripts/setup.sh dev (.venv) and gcc with libasan and libubsan.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python="$root/.venv/bin/python"
flags=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1)
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
for lib in "$asan" "$ubsan"; do
  [[ -f "$lib" ]] || { echo "sanitize.sh: gcc has no ${lib} (install libasan / libubsan)" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tree"
git ls-files -z | tar --null -cf - -T - | tar -xf - -C "$work/tree"
ln -s "$root/.venv" "$work/tree/.venv"
[[ -d "$root/../shared" ]] && ln -s "$(cd "$root/../shared" && pwd)" "$work/shared"  # tests read ../shared

include=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
numpy_include=$("$python" -c "import numpy; print(numpy.get_include())")
suffix=$("$python" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
cd "$work/tree"
for source in sdk/retina/_*.c; do
  gcc -shared -fPIC "${flags[@]}" -ffp-contract=off -I"$include" -I"$numpy_include" -Isdk/retina \
    "$source" -o "${source%.c}$suffix"
done

export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1  # CPython keeps its allocations to exit: no leak check
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
preload="$asan:$ubsan"
LD_PRELOAD="$preload" PYTHONPATH="$work/tree" "$python" -c "
import importlib
for name in ('_band', '_paths', '_binning', '_median'):  # the sanitized builds, not the checkout's
    module = importlib.import_module('sdk.retina.' + name)
    assert module.__file__.startswith('$work/tree/'), module.__file__
"
# --capture=sys: a sanitizer writes its report to file descriptor 2, which pytest then leaves alone
LD_PRELOAD="$preload" PYTHONPATH="$work/tree" "$python" -m pytest -q -p no:cacheprovider --capture=sys \
  tests/test_retina_kernels.py tests/test_frontend_robustness.py tests/test_real_oct.py tests/test_maps.py

# the C library and its C tests, built with the sanitizers (they link libasan first themselves)
# (c_api_init_failure_foreign_python preloads another libpython: the sanitizers' runtimes go ahead of it)
cmake -S . -B "$work/build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="${flags[*]}" -DOCTC_TEST_PRELOAD="$preload" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" > "$work/cmake.log" \
  || { cat "$work/cmake.log"; exit 1; }
cmake --build "$work/build" -j2 >> "$work/cmake.log" || { cat "$work/cmake.log"; exit 1; }
ctest --test-dir "$work/build" --output-on-failure
echo "sanitize.sh: no sanitizer report"
