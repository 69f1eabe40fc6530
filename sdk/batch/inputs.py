"""The scans a batch run scores: folders, globs and CSV files of paths, expanded to one list.

    paths, problems = expand_inputs(["archive/", "more/*.dcm", "list.csv"], exclude=[out_file])

A folder gives every regular, non-hidden file under it (recursively, sorted: DICOM files often
have no suffix; files that are not volumes get an error line each), optionally only those with
``suffixes``. A glob (``*``, ``?``, ``[``; ``**`` spans folders) gives what it matches, folders
expanded as above. A ``.csv`` gives the values of its ``path`` column (relative paths are taken
from the CSV's folder; other columns are ignored, so a training cohort CSV works). Any other
INPUT is one scan file. Each path comes once, in the order given.
"""

from __future__ import annotations

import csv
import glob
import os
import stat
from pathlib import Path

from sdk.errors import FileError

GLOB_CHARS = frozenset("*?[")
CSV_PATH_COLUMN = "path"


def expand_inputs(inputs, *, suffixes=(), exclude=()) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``(paths, problems)``: the scan files of ``inputs``, and folders that could not be listed.

    suffixes : keep only folder and glob files with one of these suffixes (".dcm"; any case).
    exclude : paths never taken as scans (the run's own output file and reports folder).
    Raises FileError for an INPUT that does not exist, a glob that matches nothing, or a CSV that
    cannot be read or has no ``path`` column.
    """
    wanted = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
    skip = {os.path.abspath(p) for p in exclude}
    paths: dict[str, Path] = {}
    problems: list[tuple[Path, str]] = []

    def add(path: Path, explicit: bool) -> None:
        absolute = os.path.abspath(path)
        if absolute in skip or any(absolute.startswith(s + os.sep) for s in skip):
            return
        if explicit or not wanted or path.suffix.lower() in wanted:
            paths.setdefault(absolute, path)

    for given in map(str, inputs):
        if GLOB_CHARS & set(given):
            matches = sorted(glob.glob(given, recursive=True))
            if not matches:
                raise FileError(f"{given} matches no file")
            for match in map(Path, matches):
                _add_path(match, add, problems, explicit=False)
        elif given.lower().endswith(".csv") and os.path.isfile(given):
            for path in read_path_csv(given):
                add(path, explicit=True)
        else:
            path = Path(given)
            try:
                os.lstat(path)
            except FileNotFoundError:
                raise FileError(f"{path}: no such file or folder") from None
            except OSError as error:
                raise FileError(f"{path}: {error.strerror or error}") from None
            _add_path(path, add, problems, explicit=True)
    return list(paths.values()), problems


def read_path_csv(csv_path) -> list[Path]:
    """The ``path`` column of a CSV file, relative paths taken from the CSV's folder."""
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FileError(
            f"cannot read the CSV {csv_path}: {getattr(error, 'strerror', None) or error}"
        ) from None
    if not rows or CSV_PATH_COLUMN not in rows[0]:
        raise FileError(
            f"{csv_path} has no '{CSV_PATH_COLUMN}' column: give a header line with a path column"
        )
    return [
        csv_path.parent / row[CSV_PATH_COLUMN].strip() for row in rows if (row[CSV_PATH_COLUMN] or "").strip()
    ]


def _add_path(path: Path, add, problems: list, *, explicit: bool) -> None:
    if not os.path.isdir(path):
        add(path, explicit)
        return

    def unlisted(error: OSError) -> None:
        problems.append((Path(error.filename or path), f"cannot list the folder: {error.strerror or error}"))

    for folder, subfolders, files in os.walk(path, onerror=unlisted):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            file = Path(folder) / name
            if not name.startswith(".") and _is_scan_file(file):
                add(file, False)


def _is_scan_file(path: Path) -> bool:
    """A regular file, or one that cannot be looked at (scored anyway, so that its error gets a
    line); not a dangling link, pipe, socket or device."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    except OSError:
        return True
