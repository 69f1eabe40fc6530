"""Scoring one scan file in two steps, the same on one machine and on Ray.

    prepared = prepare(path, settings, done, normative)   # CPU: hash, read, front end
    record = Scorer(settings).finish(prepared)              # networks, stacker, report

``prepare`` returns a :class:`Prepared` or, when there is nothing for the networks to do, the
scan's record already (a read or front-end error) or a :class:`Skip` (its sha256 is in the output
already). ``Scorer.score(path)`` is both steps in one call. The two steps are exactly
``Classifier.classify`` (``sdk.maps.extract`` with the bundle's normative database, then the
networks and the stacker on those maps), so a batch gives the same answer as a loop over
``classify``.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sdk import maps as sdk_maps
from sdk.batch.results import error_record, scan_record
from sdk.classify import describe, naming_the_bundle
from sdk.errors import FileError, OCTError
from sdk.files import file_sha256

if TYPE_CHECKING:
    from sdk.volume import OCTVolume


@dataclass(frozen=True)
class Settings:
    """What every worker of a run needs (picklable: sent to worker processes and Ray actors).

    bundle, backend, precision, cache_dir, trusted_keys : as ``sdk.Classifier.load`` takes them.
    threads : intra-op threads of each Classifier's networks (None: every core it may use).
    spacing_mm, laterality, protocol : ``sdk.read_volume``'s overrides for files without them.
    reports : folder for one PNG report per scan (None: no reports); overwrite : replace them.
    bundle_id : the bundle's id, for the error lines of scans that never reached a Classifier.
    """

    bundle: str
    backend: str = "auto"
    precision: str | None = None
    cache_dir: str | None = None
    trusted_keys: tuple[str, ...] | None = None
    threads: int | None = None
    spacing_mm: tuple[float, float, float] | None = None
    laterality: str | None = None
    protocol: str | None = None
    reports: str | None = None
    overwrite: bool = False
    bundle_id: str | None = None


@dataclass(frozen=True)
class Skip:
    """A scan whose sha256 has a line in the output already."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Prepared:
    """A scan ready for the networks: its maps (sdk.maps.Maps) and what its record needs.

    provenance : the volume's OCTVolume.provenance (where its metadata came from).
    front_end_s : seconds the front end took (the Diagnosis's timings start there).
    volume : the OCTVolume, kept only when reports are written (the report shows a B-scan).
    """

    file: str
    sha256: str
    maps: sdk_maps.Maps
    protocol: str
    provenance: dict
    front_end_s: float
    volume: OCTVolume | None = None


def prepare(path, settings: Settings, done, normative) -> Prepared | Skip | dict:
    """Hash ``path``, skip it if its sha256 is in ``done``, read it and run the front end.

    normative : the bundle's sdk.maps.Normative. Returns a Prepared, a Skip, or the scan's error
    record (never raises for a bad file: every problem becomes the scan's line).
    """
    import sdk

    file = str(path)
    try:
        sha256 = _sha256_of_regular_file(Path(path))
    except OSError as error:
        return error_record(file, None, error, settings.bundle_id)
    if sha256 in done:
        return Skip(file, sha256)
    try:
        volume = sdk.read_volume(
            path, spacing_mm=settings.spacing_mm, laterality=settings.laterality, protocol=settings.protocol
        )
        start = time.perf_counter()
        maps = sdk_maps.extract(volume, normative)
        front_end_s = time.perf_counter() - start
    except Exception as error:  # noqa: BLE001 - every problem of one scan is that scan's line
        return error_record(file, sha256, error, settings.bundle_id)
    kept = volume if settings.reports else None
    return Prepared(file, sha256, maps, volume.protocol, volume.provenance, front_end_s, kept)


class Scorer:
    """One Classifier, loaded once, and the run's settings: prepared scans in, records out."""

    def __init__(self, settings: Settings):
        from sdk.classifier import Classifier

        bundle = load_bundle(settings)
        with naming_the_bundle(settings.bundle):
            self.classifier = Classifier.of_bundle(
                bundle, settings.backend, settings.precision, settings.cache_dir, settings.threads
            )
        self.settings = settings
        self.bundle_id = bundle.bundle_id

    def score(self, path, done=frozenset()) -> Skip | dict:
        """Both steps for one scan file: its record, or a Skip."""
        return self.finish(prepare(path, self.settings, done, self.classifier.bundle.normative))

    def finish(self, prepared: Prepared | Skip | dict) -> Skip | dict:
        """The record of a prepared scan: networks, stacker, and its report if the run writes them."""
        if not isinstance(prepared, Prepared):
            return prepared
        try:
            # the second half of Classifier.classify, on maps made in prepare()
            started = time.perf_counter() - prepared.front_end_s
            diagnosis = self.classifier.classify_maps(
                prepared.maps, prepared.protocol, {"scan": prepared.provenance}, started
            )
        except Exception as error:  # noqa: BLE001 - that scan's line
            return error_record(prepared.file, prepared.sha256, error, self.bundle_id)
        record = scan_record(prepared.file, prepared.sha256, diagnosis)
        if self.settings.reports:
            self._report(prepared, diagnosis, record)
        return record

    def close(self) -> None:
        self.classifier.close()

    def _report(self, prepared: Prepared, diagnosis, record: dict) -> None:
        """Write the scan's report, or add why not to its record (the diagnosis stands either way)."""
        from sdk.report import write_report

        path = report_path(self.settings.reports, prepared.file, prepared.sha256)
        try:
            if not self.settings.overwrite and _is_regular(path):
                record["report"] = str(path)  # named by the scan's sha256: left by an interrupted run
                return
            if prepared.volume is None:
                raise OCTError("the scan's volume was not kept: it was prepared for a run without reports")
            write_report(prepared.volume, diagnosis, path, overwrite=self.settings.overwrite)
            record["report"] = str(path)
        except Exception as error:  # noqa: BLE001 - recorded in the scan's line
            record["report_error"] = describe(error)


def load_bundle(settings: Settings):
    """The run's verified sdk.bundle.Bundle (signed by one of its trusted keys, if it has any)."""
    from sdk.bundle import Bundle

    with naming_the_bundle(settings.bundle):
        return Bundle.load(settings.bundle, trusted_keys=settings.trusted_keys)


def report_path(reports, file: str, sha256: str) -> Path:
    """``REPORTS/<file stem>.<sha256[:12]>.report.png``: unique per scan content, readable by name."""
    return Path(reports) / f"{Path(file).stem}.{sha256[:12]}.report.png"


def _sha256_of_regular_file(path: Path) -> str:
    """sha256 of a regular file's bytes; FileError for anything else (a pipe would block a read)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise FileError(f"{path} is not a regular file (a device, pipe or socket): give a volume file")
    return file_sha256(path)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
