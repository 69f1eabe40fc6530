"""What the CLI, batch and report tests share (no tests here): a tiny bundle made once per session,
small wide-field phantom scans, a snapshot of a folder tree to prove no user file changed, and
commands run as a real process, optionally without root's permission override.

Root (CI runs as root) reads and writes every file whatever its mode. The unprivileged runs drop
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the child's capability bounding set before it
executes Python, so that mode bits apply to it as to any user, while it still owns the test's files.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import phantom
import sdk
from converters.__main__ import main as converters_main

REPO = Path(__file__).resolve().parents[1]
SMALL_SHAPE = (32, 248, 128)  # wide-field phantoms (9 x 12 mm) at a coarse sampling: ~0.2 s each to classify
BUNDLE_ARGS = ["--width", "0.0625", "--input-px", "64", "--seed", "2", "--phantom-shape", "32", "248", "128"]
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
PROCESS_TIMEOUT_S = 300


@functools.cache
def tiny_bundle() -> Path:
    """A bundle of width-1/16, 64-px random networks (fast to load and run), made once per session."""
    folder = Path(tempfile.mkdtemp(prefix="octc-test-bundle-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    assert converters_main(["random-checkpoint", str(folder / "checkpoint"), *BUNDLE_ARGS]) == 0
    bundle = folder / "bundle"
    assert (
        converters_main(
            ["bundle", str(folder / "checkpoint"), str(bundle), "--phantom-shape", *BUNDLE_ARGS[-3:]]
        )
        == 0
    )
    return bundle


def write_scans(folder: Path, n: int, seed: int = 100) -> list[Path]:
    """``n`` small wide-field phantom scans of every class in turn, as .npz files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        eye = phantom.make_eye(phantom.KINDS[i % len(phantom.KINDS)], seed=seed + i, shape=SMALL_SHAPE)
        paths.append(sdk.io.write_npz(eye.volume, folder / f"scan{i:02d}.npz"))
    return paths


def write_weak_scan(path: Path) -> Path:
    """A scan too poor to grade (12 dB signal)."""
    return sdk.io.write_npz(phantom.make_eye("normal", seed=3, shape=SMALL_SHAPE, signal_db=12).volume, path)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: its type and mode, and its bytes' sha256 or its link's target."""
    entries = {}
    for folder, subfolders, files in os.walk(root):
        for name in subfolders + files:
            path = Path(folder) / name
            info = os.lstat(path)
            kind = stat.S_IFMT(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = _sha256(path)
            else:
                content = None
            entries[str(path.relative_to(root))] = (kind, stat.S_IMODE(info.st_mode), content)
    return entries


def changes(before: dict, after: dict) -> dict[str, str]:
    """{relative path: "added" | "removed" | "changed"} between two snapshots."""
    found = {p: "removed" for p in before.keys() - after.keys()}
    found.update({p: "added" for p in after.keys() - before.keys()})
    found.update({p: "changed" for p in before.keys() & after.keys() if before[p] != after[p]})
    return found


def run_module(
    module: str, args, *, unprivileged=False, file_size_limit=None, close_stdout=False, stdout=subprocess.PIPE
):
    """``python -m module args`` as a real process; returns the CompletedProcess (text output).

    unprivileged : run without root's permission override (see the module docstring).
    file_size_limit : RLIMIT_FSIZE in bytes: a longer write fails with EFBIG (Python ignores SIGXFSZ).
    close_stdout : start it with file descriptor 1 closed.
    """

    def before_exec() -> None:
        if unprivileged and os.geteuid() == 0:
            libc = ctypes.CDLL(None, use_errno=True)
            for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
                if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                    os._exit(97)
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        if close_stdout:
            os.close(1)

    process = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        preexec_fn=before_exec,
    )
    assert process.returncode != 97, "could not drop root's permission override (prctl PR_CAPBSET_DROP)"
    return process


def can_drop_root_override() -> bool:
    """True if mode bits can be made to apply to the unprivileged runs (not root, or root that may
    shrink its bounding set)."""
    if os.geteuid() != 0:
        return True
    probe = subprocess.run(
        [sys.executable, "-c", "pass"],
        preexec_fn=lambda: (
            os._exit(97)
            if ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0)
            else None
        ),
    )
    return probe.returncode == 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
