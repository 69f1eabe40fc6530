"""``python -m sdk.classify`` keeps its promises on bad paths and outputs.

Every user-side error exits 2 with one message naming the path and the problem, no traceback; a
report that cannot be written still gives the diagnosis; output failures exit 5; and no case
changes a user's file: each test snapshots the user's folder tree before and after.
"""

import json
import os
import shutil

import pytest

from sdk.classify import EXIT_BAD_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_UNGRADABLE
from sdk.classify import main as classify_main
from tests.test_cli_harness import (
    can_drop_root_override,
    changes,
    run_module,
    snapshot,
    tiny_bundle,
    write_scans,
    write_weak_scan,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LONG_NAME = "x" * 300


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture
def tree(tmp_path):
    """A user's folder: two scans (one in a subfolder with the same name), notes, links, a pipe,
    an old report and a file named like the old CLI's fixed temporary name."""
    write_scans(tmp_path, 1)
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / "scan00.npz", tmp_path / "other" / "scan00.npz")
    write_weak_scan(tmp_path / "weak.npz")
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "old.png").write_bytes(b"old report")
    (tmp_path / ".r.png.tmp.png").write_text("not a temporary file")
    (tmp_path / "dir.png").mkdir()
    os.symlink(tmp_path / "notes.txt", tmp_path / "link.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    os.symlink(tmp_path / "nowhere.npz", tmp_path / "dangling.npz")
    os.mkfifo(tmp_path / "pipe.npy")
    os.mkfifo(tmp_path / "pipe.png")
    return tmp_path


def run(args, capsys):
    code = classify_main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


# (volume, extra arguments, the message's problem): each exits 2 and names the path
BAD_VOLUMES = {
    "missing file": ("nowhere.npz", [], "no such file"),
    "a folder": ("other", [], "folder"),
    "name too long": (LONG_NAME + ".npz", [], "too long"),
    "a file as a folder": ("notes.txt/scan.npz", [], ""),
    "not a volume": ("notes.txt", [], "not in a format"),
    "a dangling link": ("dangling.npz", [], ""),
    "a pipe": ("pipe.npy", ["--spacing", "0.2", "0.004", "0.05", "--laterality", "OD"], "regular file"),
    "a bad laterality": ("scan00.npz", ["--laterality", "middle"], "laterality"),
    "a bad spacing": ("scan00.npz", ["--spacing", "-1", "0.004", "0.05"], "spacing"),
}


@pytest.mark.parametrize("case", BAD_VOLUMES)
def test_bad_volume_exits_2_naming_it(case, bundle, tree, capsys):
    name, extra, problem = BAD_VOLUMES[case]
    before = snapshot(tree)
    code, out, err = run([tree / name, "--bundle", bundle, *extra], capsys)
    assert code == EXIT_BAD_INPUT
    assert str(tree / name) in err and problem in err and out == ""
    assert len(err.strip().splitlines()) == 1
    assert changes(before, snapshot(tree)) == {}


BAD_BUNDLES = {
    "missing": ("nowhere", "does not exist"),
    "a file": ("notes.txt", "not a folder"),
    "name too long": (LONG_NAME, "too long"),
    "a scan file": ("scan00.npz", "not a folder"),
}


@pytest.mark.parametrize("case", BAD_BUNDLES)
def test_bad_bundle_exits_2_naming_it(case, tree, capsys):
    name, problem = BAD_BUNDLES[case]
    before = snapshot(tree)
    code, out, err = run([tree / "scan00.npz", "--bundle", tree / name], capsys)
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.startswith("error: ") and str(tree / name) in err and problem in err.lower()
    assert changes(before, snapshot(tree)) == {}


@pytest.mark.parametrize("args", [["--backend", "nope"], ["--precision", "fp8"], ["--spacing", "1"], []])
def test_bad_arguments_exit_2(args, bundle, tree, capsys):
    bundle_args = ["--bundle", str(bundle)] if args else []  # no arguments: --bundle is missing
    with pytest.raises(SystemExit) as exit_info:
        classify_main([str(tree / "scan00.npz"), *bundle_args, *args])
    assert exit_info.value.code == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and "error:" in err and "Traceback" not in err


# (--report target, --overwrite, the problem): the diagnosis is printed, the report is refused
BAD_REPORTS = {
    "exists": ("old.png", False, "already exists"),
    "missing folder": ("missing/r.png", False, "the folder"),
    "a file as its folder": ("notes.txt/r.png", False, "not a folder"),
    "an existing non-png file": ("notes.txt", False, "is a file, not a folder"),
    "an existing non-png file, overwrite": ("notes.txt", True, "is a file, not a folder"),
    "a folder named .png, overwrite": ("dir.png", True, "is a folder"),
    "a link to a user's file, overwrite": ("link.png", True, "symbolic link"),
    "a dangling link": ("dangling.png", False, "symbolic link"),
    "a pipe, overwrite": ("pipe.png", True, "not a regular file"),
    "name too long": (LONG_NAME + ".png", False, "too long"),
}


@pytest.mark.parametrize(
    ("case", "as_json"),
    [(case, False) for case in BAD_REPORTS]
    + [("exists", True), ("a link to a user's file, overwrite", True)],
)
def test_a_refused_report_keeps_the_diagnosis_and_exits_2(case, as_json, bundle, tree, capsys):
    target, overwrite, problem = BAD_REPORTS[case]
    before = snapshot(tree)
    args = [tree / "scan00.npz", "--bundle", bundle, "--report", tree / target]
    code, out, err = run(args + ["--overwrite"] * overwrite + ["--json"] * as_json, capsys)
    assert code == EXIT_BAD_INPUT
    assert "report not written" in err and problem in err and str(tree / target) in err
    if as_json:
        result = json.loads(out)
        assert result["gradable"] and result["label"] and result["exit_code"] == EXIT_BAD_INPUT
        assert problem in result["report_error"]
    else:
        assert out.startswith(f"{tree / 'scan00.npz'}: OD: ") and "p=" in out
    assert changes(before, snapshot(tree)) == {}
    assert (tree / "notes.txt").read_text() == "my notes" and not (tree / "nowhere.png").exists()


def test_a_report_is_written_beside_a_file_named_like_the_old_temporary(bundle, tree, capsys):
    before = snapshot(tree)
    code, out, _ = run([tree / "scan00.npz", "--bundle", bundle, "--report", tree / "r.png"], capsys)
    assert code == EXIT_OK and "p=" in out
    assert changes(before, snapshot(tree)) == {"r.png": "added"}
    assert (tree / "r.png").read_bytes()[:8] == PNG_MAGIC
    assert (tree / ".r.png.tmp.png").read_text() == "not a temporary file"


def test_overwrite_replaces_only_the_named_report(bundle, tree, capsys):
    before = snapshot(tree)
    code, _, _ = run(
        [tree / "scan00.npz", "--bundle", bundle, "--report", tree / "old.png", "--overwrite"], capsys
    )
    assert code == EXIT_OK and (tree / "old.png").read_bytes()[:8] == PNG_MAGIC
    assert changes(before, snapshot(tree)) == {"old.png": "changed"}


def test_several_volumes_report_into_a_folder_it_makes(bundle, tree, capsys):
    before = snapshot(tree)
    scans = [tree / "scan00.npz", tree / "weak.npz"]
    code, out, err = run([*scans, "--bundle", bundle, "--report", tree / "reports", "--json"], capsys)
    assert code == EXIT_UNGRADABLE and [r["exit_code"] for r in json.loads(out)] == [EXIT_OK, EXIT_UNGRADABLE]
    assert "[2/2]" in err
    assert changes(before, snapshot(tree)) == {
        "reports": "added",
        "reports/scan00.report.png": "added",
        "reports/weak.report.png": "added",
    }


def test_two_volumes_that_would_share_a_report_are_refused_before_any_work(bundle, tree, capsys):
    before = snapshot(tree)
    scans = [tree / "scan00.npz", tree / "other" / "scan00.npz"]
    code, out, err = run([*scans, "--bundle", bundle, "--report", tree / "reports"], capsys)
    assert code == EXIT_BAD_INPUT and out == "" and "would both write the report" in err
    assert changes(before, snapshot(tree)) == {}


def test_a_report_folder_that_cannot_be_made_fails_each_report_but_not_the_diagnoses(bundle, tree, capsys):
    before = snapshot(tree)
    scans = [tree / "scan00.npz", tree / "weak.npz"]
    code, out, err = run([*scans, "--bundle", bundle, "--report", tree / "missing" / "reports"], capsys)
    assert code == EXIT_BAD_INPUT and out.count("OD: ") == 2
    assert err.count("cannot make the report folder") == 2
    assert changes(before, snapshot(tree)) == {}


# ---------------------------------------------------------------------------- real processes


def test_stdout_closed_exits_5_before_any_work(bundle, tree):
    before = snapshot(tree)
    args = [tree / "scan00.npz", "--bundle", bundle, "--report", tree / "r.png"]
    proc = run_module("sdk.classify", args, close_stdout=True)
    assert proc.returncode == EXIT_OUTPUT
    assert "standard output is closed" in proc.stderr and "Traceback" not in proc.stderr
    assert changes(before, snapshot(tree)) == {}


@pytest.mark.parametrize("stdout", ["/dev/full", "broken pipe"])
def test_stdout_full_or_broken_exits_5_without_a_traceback(stdout, bundle, tree):
    args = [tree / "scan00.npz", tree / "weak.npz", "--bundle", bundle]
    if stdout == "/dev/full":
        with open("/dev/full", "w") as full:
            proc = run_module("sdk.classify", args, stdout=full)
        reason = "No space left on device"
    else:
        read_end, write_end = os.pipe()
        os.close(read_end)
        proc = run_module("sdk.classify", args, stdout=write_end)
        os.close(write_end)
        reason = "Broken pipe"
    assert proc.returncode == EXIT_OUTPUT, proc.stderr
    assert f"could not be written to standard output ({reason})" in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def test_a_report_write_failing_half_way_keeps_the_old_report_and_the_diagnosis(bundle, tree):
    """A file-size limit makes the PNG write fail with EFBIG mid-file: exit 2, the diagnosis
    printed, the old report and everything else untouched, no temporary file left."""
    before = snapshot(tree)
    args = [tree / "scan00.npz", "--bundle", bundle, "--report", tree / "old.png", "--overwrite"]
    proc = run_module("sdk.classify", args, file_size_limit=16_384)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert proc.stdout.startswith(f"{tree / 'scan00.npz'}: OD: ")
    assert f"cannot write {tree / 'old.png'}: File too large" in proc.stderr
    assert changes(before, snapshot(tree)) == {}


# ------------------------------------------------------------- without root's permission override


@pytest.fixture
def locked_tree(tree, bundle):
    """The user's tree with a scan in an unsearchable folder, an unreadable scan, a bundle copy
    whose folder is unreadable and one whose model file is, and report folders that cannot be
    written or searched. Modes are restored afterwards."""
    (tree / "hidden").mkdir()
    shutil.copy(tree / "scan00.npz", tree / "hidden" / "scan.npz")
    shutil.copy(tree / "scan00.npz", tree / "unreadable.npz")
    shutil.copytree(bundle, tree / "bundle-locked")
    shutil.copytree(bundle, tree / "bundle-model-locked")
    model = sorted((tree / "bundle-model-locked" / "models").glob("*.stages.onnx"))[
        0
    ]  # one ONNX Runtime runs
    (tree / "readonly").mkdir()
    (tree / "unsearchable").mkdir()
    modes = {
        tree / "hidden": 0o600,
        tree / "unreadable.npz": 0o000,
        tree / "bundle-locked": 0o000,
        model: 0o000,
        tree / "readonly": 0o555,
        tree / "unsearchable": 0o666,
    }
    for path, mode in modes.items():
        path.chmod(mode)
    yield tree
    for path in modes:
        path.chmod(0o755)


LOCKED = {
    "a scan in an unsearchable folder": (["hidden/scan.npz", "--bundle", "{bundle}"], "hidden/scan.npz"),
    "an unreadable scan": (["unreadable.npz", "--bundle", "{bundle}"], "unreadable.npz"),
    "an unreadable bundle folder": (["scan00.npz", "--bundle", "bundle-locked"], "bundle-locked"),
    "an unreadable model file": (["scan00.npz", "--bundle", "bundle-model-locked"], "bundle-model-locked"),
    "a read-only report folder": (
        ["scan00.npz", "--bundle", "{bundle}", "--report", "readonly/r.png"],
        "readonly",
    ),
    "an unsearchable report folder": (
        ["scan00.npz", "--bundle", "{bundle}", "--report", "unsearchable/r.png"],
        "unsearchable",
    ),
}


@pytest.mark.skipif(not can_drop_root_override(), reason="cannot make file modes apply to a root child")
@pytest.mark.parametrize("case", LOCKED)
def test_permission_problems_exit_2_naming_the_path(case, locked_tree, bundle):
    args, named = LOCKED[case]
    args = [bundle if a == "{bundle}" else a if a.startswith("--") else locked_tree / a for a in args]
    before = snapshot(locked_tree)
    proc = run_module("sdk.classify", args, unprivileged=True)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert str(locked_tree / named) in proc.stderr and "Permission denied" in proc.stderr
    assert "Traceback" not in proc.stderr
    if "report" in case:
        assert "report not written" in proc.stderr and "p=" in proc.stdout  # the diagnosis stands
    assert changes(before, snapshot(locked_tree)) == {}


def test_the_help_names_every_format_the_readers_take():
    from sdk.classify import build_parser
    from sdk.io import supported_formats

    text = " ".join(build_parser().format_help().split())  # argparse wraps the help text
    assert all(" ".join(f.split()) in text for f in supported_formats()) and len(supported_formats()) == 6
