"""sdk.files.write_atomically and the PNG report written through it: real files, links, folders,
pipes, a write failing half-way (a file-size limit), and a file or link appearing mid-write."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import phantom
import sdk
from sdk.errors import FileError
from sdk.files import check_writable, write_atomically
from tests.test_cli_harness import REPO, SMALL_SHAPE, changes, snapshot, tiny_bundle

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def writer(data: bytes):
    return lambda file: file.write(data)


@pytest.fixture
def user_tree(tmp_path):
    """A folder of a user's files; each test checks afterwards what changed in it."""
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "folder").mkdir()
    (tmp_path / "old.png").write_bytes(b"old report")
    (tmp_path / ".out.png.tmp.png").write_text("a file named like the old fixed temporary name")
    os.symlink(tmp_path / "notes.txt", tmp_path / "link.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    os.mkfifo(tmp_path / "pipe.png")
    return tmp_path


def test_writes_a_new_file_and_leaves_nothing_else(user_tree):
    before = snapshot(user_tree)
    assert write_atomically(user_tree / "out.png", writer(b"new"), overwrite=False) == user_tree / "out.png"
    assert (user_tree / "out.png").read_bytes() == b"new"
    assert changes(before, snapshot(user_tree)) == {"out.png": "added"}


def test_replaces_only_with_overwrite(user_tree):
    before = snapshot(user_tree)
    with pytest.raises(FileError, match=r"old\.png already exists: pass overwrite=True"):
        write_atomically(user_tree / "old.png", writer(b"new"), overwrite=False)
    assert changes(before, snapshot(user_tree)) == {}
    write_atomically(user_tree / "old.png", writer(b"new"), overwrite=True)
    assert (user_tree / "old.png").read_bytes() == b"new"
    assert changes(before, snapshot(user_tree)) == {"old.png": "changed"}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("link.png", "is a symbolic link: refusing to write through it"),
        ("dangling.png", "is a symbolic link"),
        ("folder", "is a folder"),
        ("pipe.png", "is not a regular file"),
        ("missing/out.png", "the folder .*missing does not exist"),
        ("notes.txt/out.png", "notes.txt is not a folder"),
        ("x" * 300 + ".png", "File name too long"),
    ],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_refuses_paths_it_must_not_write_and_changes_nothing(user_tree, name, problem, overwrite):
    before = snapshot(user_tree)
    with pytest.raises(FileError, match=problem):
        write_atomically(user_tree / name, writer(b"new"), overwrite=overwrite)
    with pytest.raises(FileError, match=problem):
        check_writable(user_tree / name, overwrite=overwrite)
    assert changes(before, snapshot(user_tree)) == {}
    assert (user_tree / "notes.txt").read_text() == "my notes"  # the link's target


def test_a_long_name_that_fits_is_written(tmp_path):
    name = "r" * 250 + ".png"  # the temporary name keeps only part of it, so both fit NAME_MAX
    write_atomically(tmp_path / name, writer(b"x"), overwrite=False)
    assert os.listdir(tmp_path) == [name]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(user_tree):
    before = snapshot(user_tree)

    def fails(file):
        file.write(b"half")
        raise RuntimeError("the renderer broke")

    with pytest.raises(RuntimeError, match="renderer broke"):
        write_atomically(user_tree / "old.png", fails, overwrite=True)
    assert changes(before, snapshot(user_tree)) == {}


def test_a_file_appearing_mid_write_is_not_replaced(tmp_path):
    target = tmp_path / "out.png"

    def races(file):
        file.write(b"mine")
        target.write_text("another writer's")  # after the check, before the rename

    with pytest.raises(FileError, match="already exists"):
        write_atomically(target, races, overwrite=False)
    assert target.read_text() == "another writer's"
    assert os.listdir(tmp_path) == ["out.png"]


def test_a_link_appearing_mid_write_is_not_followed_even_with_overwrite(tmp_path):
    victim, target = tmp_path / "victim.txt", tmp_path / "out.png"
    victim.write_text("precious")

    def races(file):
        file.write(b"mine")
        os.symlink(victim, target)

    with pytest.raises(FileError, match="symbolic link"):
        write_atomically(target, races, overwrite=True)
    assert victim.read_text() == "precious" and target.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["out.png", "victim.txt"]


def test_disk_full_half_way_keeps_the_old_file(tmp_path):
    """A real short write: the process may write at most 4 KiB per file (RLIMIT_FSIZE -> EFBIG)."""
    old = tmp_path / "out.bin"
    old.write_bytes(b"old")
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from sdk.files import write_atomically
        from sdk.errors import FileError
        try:
            write_atomically({str(old)!r}, lambda f: f.write(b"x" * 100_000), overwrite=True)
        except FileError as error:
            print(error)
            sys.exit(3)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr
    assert f"cannot write {old}: File too large" in proc.stdout
    assert old.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


# ------------------------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def scored():
    volume = phantom.make_eye("GE", seed=7, shape=SMALL_SHAPE).volume
    with sdk.Classifier.load(tiny_bundle(), backend="onnxruntime") as classifier:
        return volume, classifier.classify(volume)


def test_report_is_a_png_written_atomically(scored, user_tree):
    before = snapshot(user_tree)
    path = sdk.report.write_report(*scored, user_tree / "out.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
    assert changes(before, snapshot(user_tree)) == {"out.png": "added"}
    assert (user_tree / ".out.png.tmp.png").read_text().startswith("a file named like")


@pytest.mark.parametrize(
    ("name", "overwrite", "problem"),
    [
        ("old.png", False, "already exists"),
        ("link.png", True, "symbolic link"),
        ("dangling.png", False, "symbolic link"),
        ("folder", True, "is a folder"),
        ("pipe.png", True, "not a regular file"),
        ("missing/out.png", False, "does not exist"),
    ],
)
def test_report_refuses_before_drawing(scored, user_tree, name, overwrite, problem):
    before = snapshot(user_tree)
    with pytest.raises(FileError, match=problem):
        sdk.report.write_report(*scored, user_tree / name, overwrite=overwrite)
    assert changes(before, snapshot(user_tree)) == {}
    assert not (user_tree / "nowhere.png").exists()


def test_report_replaces_with_overwrite(scored, user_tree):
    sdk.report.write_report(*scored, user_tree / "old.png", overwrite=True)
    assert (user_tree / "old.png").read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in os.listdir(user_tree) if p.endswith(".tmp") and p.startswith(".old.png")]


def test_report_write_failing_half_way_keeps_the_old_report(tmp_path):
    """The PNG (tens of kB) cannot be written under a 4 KiB file-size limit: FileError, old report
    intact, no temporary file left (the old report code left `.NAME.tmp.png` behind)."""
    old = tmp_path / "report.png"
    old.write_bytes(b"old report")
    script = textwrap.dedent(
        f"""
        import resource, sys
        import phantom, sdk
        volume = phantom.make_eye("GE", seed=7, shape={SMALL_SHAPE!r}).volume
        with sdk.Classifier.load({str(tiny_bundle())!r}, backend="onnxruntime") as classifier:
            diagnosis = classifier.classify(volume)
        import matplotlib.pyplot  # font cache and friends before the limit
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            sdk.report.write_report(volume, diagnosis, {str(old)!r}, overwrite=True)
        except sdk.FileError as error:
            print(error)
            sys.exit(3)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "File too large" in proc.stdout
    assert old.read_bytes() == b"old report" and sorted(os.listdir(tmp_path)) == ["report.png"]
    assert Path(old).stat().st_size == len(b"old report")
