"""Scoring on one machine: worker processes, each loading the bundle once.

Each worker runs on its own share of the cores it may use (CPU affinity, so that the front end's
threads and the networks' threads of one worker stay off the others' cores) and overlaps two
scans: a thread hashes, reads and runs the front end of the next scan while the networks run on
the current one. The parent hands each worker at most ``IN_FLIGHT_PER_WORKER`` scans at a time and
passes every outcome on as it arrives. A worker that dies (killed, out of memory, a crash in a
library) is replaced and the scans it held are tried again; a scan whose worker died
``MAX_ATTEMPTS`` times gets an internal-error line. Workers exit when the parent dies.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sdk.batch.results import error_record
from sdk.batch.scoring import Prepared, Scorer, Settings, Skip, prepare
from sdk.classify import EXIT_INTERNAL, describe, exit_code_of

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import Queue

IN_FLIGHT_PER_WORKER = 2  # one in the networks, the next in the front end
MAX_ATTEMPTS = 2
POLL_S = 0.5
STOP_S = 10.0  # how long workers may take to exit at the end of a run before they are terminated


class WorkerFailed(Exception):
    """A worker could not start (the bundle or backend failed to load): ``code`` and message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def core_shares(n_workers: int) -> list[set[int] | None]:
    """Each worker's cores: the usable cores dealt round-robin, or None each (no pinning) when
    there are more workers than cores."""
    cores = sorted(os.sched_getaffinity(0))
    if n_workers > len(cores):
        return [None] * n_workers
    return [set(cores[i::n_workers]) for i in range(n_workers)]


def run_local(paths, settings: Settings, done, n_workers: int, on_ready, on_outcome) -> None:
    """Score ``paths`` in ``n_workers`` processes.

    on_ready(bundle_id) : called once, when the first worker has loaded the bundle (it may raise
        to stop the run, e.g. when the results file holds another bundle's lines).
    on_outcome(outcome) : called in this process for every path, as it finishes, with its record
        (dict) or Skip.
    Raises WorkerFailed if a worker cannot load the Classifier.
    """
    pool = _Pool(settings, frozenset(done), core_shares(n_workers))
    try:
        pool.run(deque(map(str, paths)), on_ready, on_outcome)
    except BaseException:
        pool.stop(wait_s=0.0)  # interrupted or failed: the scans in flight are not waited for
        raise
    pool.stop(wait_s=STOP_S)


@dataclass
class _Worker:
    process: BaseProcess
    tasks: Queue[str | None]  # paths to score, then None
    in_flight: list = field(default_factory=list)
    ready: bool = False
    closed: bool = False


class _Pool:
    def __init__(self, settings: Settings, done: frozenset, shares: list):
        self.context = multiprocessing.get_context("spawn")  # no forked copies of loaded libraries
        self.results = self.context.Queue()
        self.settings, self.done, self.shares = settings, done, shares
        self.bundle_id = None
        # per worker slot: starts that died before the bundle was loaded
        self.load_attempts: Counter[int] = Counter()
        self.workers = [self._start(i) for i in range(len(shares))]

    def _start(self, index: int) -> _Worker:
        share = self.shares[index]
        settings = self.settings
        if settings.threads is None:
            settings = replace(settings, threads=len(share) if share else 1)
        tasks: Queue[str | None] = self.context.Queue()
        process = self.context.Process(
            target=_worker_main,
            args=(index, settings, share, self.done, tasks, self.results, os.getpid()),
            name=f"sdk.batch-worker-{index}",
            daemon=True,
        )
        process.start()
        return _Worker(process, tasks)

    def run(self, pending: deque, on_ready, on_outcome) -> None:
        outstanding = set(pending)
        attempts: Counter[str] = Counter()  # per path: workers that died scoring it
        checked = time.monotonic()
        while outstanding:
            if time.monotonic() - checked >= POLL_S:
                self._replace_dead(pending, outstanding, attempts, on_outcome)
                checked = time.monotonic()
            try:
                kind, index, *rest = self.results.get(timeout=POLL_S)
            except queue.Empty:
                continue
            worker = self.workers[index]
            if kind == "failed":
                raise WorkerFailed(*rest)
            if kind == "ready":
                worker.ready = True
                if self.bundle_id is None:
                    self.bundle_id = rest[0]
                    on_ready(self.bundle_id)
            else:
                path, outcome = rest
                if path in worker.in_flight:
                    worker.in_flight.remove(path)
                if path in outstanding:  # not already given up on after its worker died
                    outstanding.discard(path)
                    on_outcome(outcome)
            self._feed(worker, pending)

    def _feed(self, worker: _Worker, pending: deque) -> None:
        if not worker.ready or worker.closed:
            return
        while pending and len(worker.in_flight) < IN_FLIGHT_PER_WORKER:
            path = pending.popleft()
            worker.in_flight.append(path)
            worker.tasks.put(path)
        if not pending and not worker.in_flight:
            worker.tasks.put(None)
            worker.closed = True

    def _replace_dead(self, pending: deque, outstanding: set, attempts: Counter, on_outcome) -> None:
        for index, worker in enumerate(self.workers):
            if worker.process.is_alive() or worker.closed:
                continue
            how = f"exit code {worker.process.exitcode}"
            if not worker.ready:  # killed from outside while loading, or the bundle kills every loader
                self.load_attempts[index] += 1
                if self.load_attempts[index] >= MAX_ATTEMPTS:
                    raise WorkerFailed(
                        EXIT_INTERNAL,
                        f"worker process {index} died loading the bundle {MAX_ATTEMPTS} times ({how})",
                    )
            for path in worker.in_flight:
                attempts[path] += 1
                if attempts[path] < MAX_ATTEMPTS:
                    pending.appendleft(path)
                elif path in outstanding:
                    outstanding.discard(path)
                    error = RuntimeError(f"the worker process scoring it died {MAX_ATTEMPTS} times ({how})")
                    on_outcome(error_record(path, None, error, self.bundle_id))
            self.workers[index] = self._start(index)

    def stop(self, wait_s: float) -> None:
        """Tell every worker to finish, wait up to ``wait_s`` in all, then terminate the rest."""
        deadline = time.monotonic() + wait_s
        for worker in self.workers:
            if not worker.closed:
                worker.tasks.put(None)
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
        self.results.close()


def _worker_main(index, settings: Settings, cores, done, tasks, results, parent_pid) -> None:
    """A worker process: load the Classifier, then score the paths it is sent until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent handles it
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        scorer = Scorer(settings)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which stops the run
        results.put(("failed", index, exit_code_of(error), describe(error)))
        return
    settings = replace(settings, bundle_id=scorer.bundle_id)
    results.put(("ready", index, scorer.bundle_id))
    prepared: queue.Queue[tuple[str, Prepared | Skip | dict] | None] = queue.Queue(maxsize=1)
    normative = scorer.classifier.bundle.normative

    def front_end() -> None:
        while (path := tasks.get()) is not None:
            prepared.put((path, prepare(path, settings, done, normative)))
        prepared.put(None)

    threading.Thread(target=front_end, daemon=True).start()
    while (item := prepared.get()) is not None:
        path, outcome = item
        try:
            outcome = scorer.finish(outcome)
        except Exception as error:  # noqa: BLE001 - a fault of the SDK is that scan's line, not a dead worker
            outcome = error_record(path, getattr(outcome, "sha256", None), error, scorer.bundle_id)
        results.put(("outcome", index, path, outcome))
    scorer.close()


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)
