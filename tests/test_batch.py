"""``python -m sdk.batch`` on a real archive of phantom scans: the same answers as a loop over
``Classifier.classify``, one line per scan, resumable after a real SIGKILL (nothing lost, nothing
repeated), never overwriting its output, per-scan errors as lines, reports, a worker killed
mid-run, a results write failing half-way, and Ray Data on a local Ray started here."""

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sdk
from sdk.batch.cli import main as batch_main
from sdk.batch.inputs import expand_inputs
from sdk.classify import EXIT_BAD_INPUT, EXIT_OK, EXIT_OUTPUT
from sdk.errors import FileError
from tests import real_oct
from tests.test_cli_harness import (
    REPO,
    can_drop_root_override,
    changes,
    run_module,
    snapshot,
    tiny_bundle,
    write_scans,
    write_weak_scan,
)

REAL_OCT = real_oct.REAL_OCT  # real device files (README there)
N_SCANS = 24
VARIES = ("timings_ms", "backend_details")  # measured per run, and the run's thread settings
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """An archive: N_SCANS scans, an ungradable one, a text file, and a copy of scan00 elsewhere."""
    root = tmp_path_factory.mktemp("archive")
    write_scans(root / "scans", N_SCANS)
    write_weak_scan(root / "scans" / "weak.npz")
    (root / "scans" / "notes.txt").write_text("not a volume")
    (root / "copies").mkdir()
    shutil.copy(root / "scans" / "scan00.npz", root / "copies" / "scan00.npz")
    return root


@pytest.fixture(scope="module")
def reference(bundle, archive):
    """{file: Diagnosis.to_dict()} from a plain loop over Classifier.classify, one network thread
    (as each batch worker on this 2-core machine)."""
    from sdk.backends import make_backend
    from sdk.bundle import Bundle
    from sdk.classifier import Classifier

    loaded = Bundle.load(bundle)
    with Classifier(loaded, make_backend(loaded, "auto", threads=1)) as classifier:
        return {
            str(path): classifier.classify(sdk.read_volume(path)).to_dict()
            for path in sorted((archive / "scans").glob("*.npz"))
        }


@pytest.fixture(scope="module")
def batch_run(bundle, archive, tmp_path_factory):
    """One whole run over the archive with 2 worker processes; (exit code, results path, summary,
    standard error)."""
    out = tmp_path_factory.mktemp("run") / "results.jsonl"
    code, summary, err = run_batch([archive, "--bundle", bundle, "--out", out, "--workers", "2"])
    return code, out, summary, err


def run_batch(args):
    """batch_main in this process; (exit code, summary dict or None, standard error text)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = batch_main([str(a) for a in args])
    assert "Traceback" not in err.getvalue()
    return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_classes(reference: dict, archive: Path) -> dict:
    """The summary's counts per class over every input, from the plain loop's answers: the copy of
    scan00 counts as scan00 does, the text file is bad input."""
    gradable = [d["gradable"] for d in reference.values()]
    gradable.append(reference[str(archive / "scans" / "scan00.npz")]["gradable"])
    return {
        "classified": sum(gradable),
        "ungradable": len(gradable) - sum(gradable),
        "bad_input": 1,
        "internal_error": 0,
    }


def by_content(records, ignore=VARIES) -> dict:
    """{sha256: the line without ``ignore`` and its file name}: two files of the same bytes are one
    scan, and which of them is scored first depends on which worker finishes first."""
    return {r["sha256"]: without_file(r, ignore) for r in records}


def without_file(record: dict, ignore=VARIES) -> dict:
    """The line's answer with its file name taken out (it is also in the provenance of a scan)."""
    kept = {k: v for k, v in record.items() if k not in (*ignore, "file")}
    if "provenance" in kept:
        assert kept["provenance"]["scan"]["file"] == record["file"]
        kept["provenance"] = {"scan": {k: v for k, v in kept["provenance"]["scan"].items() if k != "file"}}
    return kept


def test_one_line_per_scan_equal_to_a_loop_of_classify(batch_run, reference, archive):
    code, out, summary, err = batch_run
    assert code == EXIT_OK
    records = {r["file"]: r for r in lines(out)}
    by_sha256 = {r["sha256"]: r for r in records.values()}
    scans = archive / "scans"
    assert len(records) == len(by_sha256) == N_SCANS + 2  # scan00 and its copy: one scan, one line
    for file, expected in reference.items():
        record = by_sha256[sdk.files.file_sha256(file)]
        assert record["class"] == ("classified" if expected["gradable"] else "ungradable")
        assert {k: v for k, v in without_file(record).items() if k in expected} == without_file(
            {"file": file, **expected}
        )
    assert records[str(scans / "weak.npz")]["class"] == "ungradable"
    notes = records[str(scans / "notes.txt")]
    assert notes["class"] == "bad_input" and notes["exit_code"] == EXIT_BAD_INPUT
    assert "not in a format" in notes["error"] and str(scans / "notes.txt") in notes["error"]
    assert summary["classes"] == expected_classes(reference, archive)
    assert summary["scans"] == N_SCANS + 3 and summary["duplicates"] == 1 and summary["already_done"] == 0
    assert summary["scans_per_s"] > 0
    assert "has the same bytes as" in err
    last_bar = [line for line in err.splitlines() if "scans/s" in line and "ETA" in line][-1]
    assert last_bar.startswith(f"{N_SCANS + 3}/{N_SCANS + 3} 100% |") and "1 error" in last_bar


def test_a_rerun_repeats_nothing_and_never_rewrites(batch_run, bundle, archive, reference):
    _, out, _, _ = batch_run
    before = out.read_bytes()
    code, summary, _ = run_batch([archive, "--bundle", bundle, "--out", out, "--workers", "1"])
    assert code == EXIT_OK and out.read_bytes() == before
    assert summary["already_done"] == N_SCANS + 3 and summary["scored_now"] == 0
    assert summary["classes"] == expected_classes(reference, archive)


def test_a_killed_run_resumed_loses_nothing_and_repeats_nothing(bundle, archive, batch_run, tmp_path):
    """SIGKILL the batch process itself once a few lines are out; its workers follow it; a second
    run completes the file: every scan once, the first run's lines untouched, the same answers."""
    out = tmp_path / "results.jsonl"
    args = ["-m", "sdk.batch", archive / "scans", "--bundle", bundle, "--out", out, "--workers", "1"]
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while (not out.exists() or out.read_bytes().count(b"\n") < 3) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_gone(workers)
    first = out.read_bytes()
    assert 3 <= first.count(b"\n") < N_SCANS + 2
    code, summary, _ = run_batch([archive / "scans", "--bundle", bundle, "--out", out, "--workers", "2"])
    assert code == EXIT_OK
    final = out.read_bytes()
    kept = first[: first.rfind(b"\n") + 1]
    assert final.startswith(kept)  # nothing written before the kill was changed
    records = lines(out)
    assert len(records) == N_SCANS + 2 and len({r["sha256"] for r in records}) == N_SCANS + 2
    assert summary["already_done"] == kept.count(b"\n")
    assert by_content(records) == by_content(lines(batch_run[1]))


def test_ctrl_c_stops_the_run_at_once_with_exit_130_and_keeps_the_lines(bundle, archive, tmp_path):
    out = tmp_path / "results.jsonl"
    args = ["-m", "sdk.batch", archive / "scans", "--bundle", bundle, "--out", out, "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, *map(str, args)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as in a terminal: a runner started in the background of a shell (bash ... &) hands its children
        # SIGINT ignored, and Python then leaves it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while (not out.exists() or out.read_bytes().count(b"\n") < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted: the lines written so far are in" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    _wait_gone(workers)
    assert all(line.endswith("}") for line in out.read_text().splitlines())


def test_a_line_cut_short_is_replaced_and_nothing_else_changes(batch_run, bundle, archive, tmp_path):
    out = tmp_path / "results.jsonl"
    whole = batch_run[1].read_bytes()
    last = whole.rstrip(b"\n").rfind(b"\n") + 1
    out.write_bytes(whole[: last + 40])  # the last line cut 40 bytes in, as a killed write leaves it
    code, summary, err = run_batch([archive, "--bundle", bundle, "--out", out, "--workers", "1"])
    assert code == EXIT_OK and "cut short" in err
    assert out.read_bytes().startswith(whole[:last]) and summary["already_done"] == N_SCANS + 2
    assert by_content(lines(out)) == by_content(lines(batch_run[1]))


def test_a_results_write_failing_half_way_exits_5_and_resumes(bundle, archive, tmp_path):
    """A file-size limit stops the results file mid-line (a short write, then EFBIG): exit 5; a rerun
    without the limit removes the cut line and completes the file."""
    out = tmp_path / "results.jsonl"
    args = [archive / "scans", "--bundle", bundle, "--out", out, "--workers", "1", "--no-progress"]
    proc = run_module("sdk.batch", args, file_size_limit=12_000)
    assert proc.returncode == EXIT_OUTPUT, proc.stderr[-3000:]
    assert f"cannot write {out}: File too large" in proc.stderr and "Traceback" not in proc.stderr
    assert out.stat().st_size == 12_000 and not out.read_bytes().endswith(b"\n")
    code, _, err = run_batch(args)
    assert code == EXIT_OK and "cut short" in err
    assert len(lines(out)) == N_SCANS + 2


def _two_workers_in_background(bundle, archive, out) -> tuple[threading.Thread, dict]:
    """A started thread scoring the archive's scans with two workers into ``out``, and the dict its
    ``run_batch`` result lands in (key "run")."""
    args = [archive / "scans", "--bundle", bundle, "--out", out, "--workers", "2"]
    result = {}
    runner = threading.Thread(target=lambda: result.update(run=run_batch(args)))
    runner.start()
    return runner, result


def test_a_worker_killed_mid_run_is_replaced_and_its_scans_scored(bundle, archive, batch_run, tmp_path):
    out = tmp_path / "results.jsonl"
    runner, result = _two_workers_in_background(bundle, archive, out)
    deadline = time.monotonic() + 240
    while (not out.exists() or out.read_bytes().count(b"\n") < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = [p for p in multiprocessing.active_children() if p.name.startswith("sdk.batch-worker")]
    assert victims, "no worker to kill"
    os.kill(victims[0].pid, signal.SIGKILL)
    runner.join(timeout=300)
    assert result["run"][0] == EXIT_OK
    records = lines(out)
    assert len(records) == N_SCANS + 2 and by_content(records) == by_content(lines(batch_run[1]))


def test_a_worker_killed_while_loading_the_bundle_is_started_again(bundle, archive, batch_run, tmp_path):
    """A worker killed from outside before it is ready (an OOM killer, an operator) is started again;
    only a second death while loading stops the run (a bundle that kills every loader)."""
    out = tmp_path / "results.jsonl"
    runner, result = _two_workers_in_background(bundle, archive, out)
    deadline = time.monotonic() + 60
    victims = []
    while not victims and time.monotonic() < deadline:
        victims = [p for p in multiprocessing.active_children() if p.name.startswith("sdk.batch-worker")]
        time.sleep(0.01)
    assert victims and (not out.exists() or not out.read_bytes()), "no worker caught before the first result"
    os.kill(victims[0].pid, signal.SIGKILL)
    runner.join(timeout=300)
    assert result["run"][0] == EXIT_OK, result["run"][2]
    assert by_content(lines(out)) == by_content(lines(batch_run[1]))


def test_reports_one_png_per_scan_and_kept_on_a_rerun(bundle, archive, tmp_path):
    csv = tmp_path / "list.csv"
    scans = archive / "scans"
    csv.write_text(
        "path,label\n"
        + "".join(f"{os.path.relpath(scans / n, tmp_path)},x\n" for n in ("scan01.npz", "weak.npz"))
    )
    args = [csv, "--bundle", bundle, "--out", tmp_path / "r.jsonl", "--reports", tmp_path / "reports"]
    code, _, _ = run_batch([*args, "--workers", "1"])
    assert code == EXIT_OK
    records = lines(tmp_path / "r.jsonl")
    assert sorted(Path(r["file"]).name for r in records) == ["scan01.npz", "weak.npz"]
    for record in records:
        report = Path(record["report"])
        assert report.name == f"{Path(record['file']).stem}.{record['sha256'][:12]}.report.png"
        assert report.read_bytes()[:8] == PNG_MAGIC
    before = snapshot(tmp_path / "reports")
    (tmp_path / "r.jsonl").unlink()  # as if the run had been killed after the reports, before the lines
    code, _, _ = run_batch([*args, "--workers", "1"])
    assert code == EXIT_OK and all(
        "report" in r and "report_error" not in r for r in lines(tmp_path / "r.jsonl")
    )
    assert changes(before, snapshot(tmp_path / "reports")) == {}


@pytest.fixture
def user_tree(tmp_path, batch_run):
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "half.txt").write_text('{"file": "no newline')
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "notes.txt", tmp_path / "link.jsonl")
    (tmp_path / "other-bundle.jsonl").write_text(
        batch_run[1].read_text().replace(lines(batch_run[1])[0]["bundle_id"], "0" * 64)
    )
    return tmp_path


REFUSED = {  # arguments ("@name": the user's file or folder of that name), the message's problem
    "a link": (["--out", "@link.jsonl"], "symbolic link"),
    "a folder": (["--out", "@folder"], "is a folder"),
    "a missing folder": (["--out", "@missing/r.jsonl"], "does not exist"),
    "a user's text file": (["--out", "@notes.txt"], "not an sdk.batch results file"),
    "a user's file with a partial line": (["--out", "@half.txt"], "not an sdk.batch results file"),
    "another bundle's results": (["--out", "@other-bundle.jsonl"], "holds results of bundle 000000000000"),
    "a reports path that is a file": (["--out", "@new.jsonl", "--reports", "@notes.txt"], "is a file"),
    "an input that does not exist": (["@nowhere", "--out", "@new.jsonl"], "no such file or folder"),
    "a glob matching nothing": (["@nowhere/*.dcm", "--out", "@new.jsonl"], "matches no file"),
    "a CSV without a path column": (["@notes.csv", "--out", "@new.jsonl"], "no 'path' column"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_outputs_and_inputs_exit_2_and_change_nothing(case, user_tree, bundle, archive):
    (user_tree / "notes.csv").write_text("file\nscan.npz\n")
    options, problem = REFUSED[case]
    args = [user_tree / a[1:] if a.startswith("@") else a for a in options]
    inputs = [] if not options[0].startswith("--") else [archive / "scans"]
    before = snapshot(user_tree)
    code, summary, err = run_batch([*inputs, *args, "--bundle", bundle, "--workers", "1"])
    assert code == EXIT_BAD_INPUT and summary is None
    assert problem in err
    assert changes(before, snapshot(user_tree)) == {}


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(batch_run, bundle, archive):
    from sdk.batch.results import ResultsFile

    before = batch_run[1].read_bytes()
    holder = ResultsFile(batch_run[1])
    try:
        code, _, err = run_batch([archive, "--bundle", bundle, "--out", batch_run[1]])
    finally:
        holder.close()
    assert code == EXIT_BAD_INPUT and "another sdk.batch run" in err
    assert batch_run[1].read_bytes() == before


def test_inputs_folders_globs_and_csv(archive, tmp_path):
    scans = archive / "scans"
    csv = tmp_path / "cohort.csv"
    csv.write_text(f"path,label\n{scans / 'scan02.npz'},GE\nmissing.npz,FI\n{scans / 'scan02.npz'},GE\n")
    paths, problems = expand_inputs(
        [scans / "scan01.npz", str(scans / "scan0[01].npz"), csv, archive / "copies"]
    )
    assert paths == [
        scans / "scan01.npz",
        scans / "scan00.npz",
        scans / "scan02.npz",
        tmp_path / "missing.npz",
        archive / "copies" / "scan00.npz",
    ]
    assert problems == []
    folder, _ = expand_inputs([scans], suffixes=[".NPZ"], exclude=[scans / "scan03.npz"])
    assert len(folder) == N_SCANS and scans / "scan03.npz" not in folder and scans / "notes.txt" not in folder
    for bad, message in (
        (tmp_path / "nowhere", "no such file"),
        (str(tmp_path / "*.dcm"), "matches no file"),
    ):
        with pytest.raises(FileError, match=message):
            expand_inputs([bad])


@pytest.mark.skipif(not can_drop_root_override(), reason="cannot make file modes apply to a root child")
def test_unreadable_scans_and_folders_get_their_own_lines(bundle, archive, tmp_path):
    scans = tmp_path / "scans"
    (scans / "locked").mkdir(parents=True)
    shutil.copy(archive / "scans" / "scan00.npz", scans / "locked.npz")
    shutil.copy(archive / "scans" / "scan01.npz", scans / "ok.npz")
    (scans / "locked.npz").chmod(0o000)
    (scans / "locked").chmod(0o000)
    try:
        proc = run_module(
            "sdk.batch", [scans, "--bundle", bundle, "--out", tmp_path / "r.jsonl"], unprivileged=True
        )
    finally:
        (scans / "locked.npz").chmod(0o644)
        (scans / "locked").chmod(0o755)
    assert proc.returncode == EXIT_OK, proc.stderr
    records = {Path(r["file"]).name: r for r in lines(tmp_path / "r.jsonl")}
    assert records["ok.npz"]["class"] == "classified"
    for name in ("locked.npz", "locked"):
        assert records[name]["class"] == "bad_input" and "Permission denied" in records[name]["error"]
        assert records[name]["sha256"] is None


@pytest.mark.skipif(not REAL_OCT.is_dir(), reason="../shared/real-oct (real device files) is absent")
def test_real_device_files_each_get_one_line_and_no_internal_error(bundle, tmp_path):
    out = tmp_path / "real.jsonl"
    code, summary, _ = run_batch(
        [
            REAL_OCT,
            "--bundle",
            bundle,
            "--out",
            out,
            "--workers",
            "1",
            "--suffix",
            "vol",
            "--suffix",
            "E2E",
            "--suffix",
            "fda",
            "--suffix",
            "fds",
        ]
    )
    assert code == EXIT_OK
    records = lines(out)
    assert len(records) == summary["scans"] >= 5
    assert all(r["class"] != "internal_error" for r in records), [r.get("error") for r in records]


# --------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'octclassify[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_data_gives_exactly_the_single_process_results(local_ray, batch_run, bundle, archive, tmp_path):
    out = tmp_path / "ray.jsonl"
    code, summary, _ = run_batch(
        [archive, "--bundle", bundle, "--out", out, "--ray", "local", "--threads", "1"]
    )
    assert code == EXIT_OK
    assert summary["classes"] == batch_run[2]["classes"] and summary["scored_now"] == N_SCANS + 3
    assert by_content(lines(out), ignore=("timings_ms",)) == by_content(
        lines(batch_run[1]), ignore=("timings_ms",)
    )


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _wait_gone(pids, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker processes {alive} outlived the killed batch run")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
