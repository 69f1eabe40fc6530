"""Scoring on a Ray cluster with Ray Data (the ``ray`` extra: ``pip install 'octclassify[ray]'``).

    paths -> ray.data.from_items
          -> map: hash, read, front end            (CPU tasks, one CPU each, anywhere in the cluster)
          -> map_batches: networks, stacker, report (an actor pool; each actor loads one Classifier)
          -> rows back to this process, which writes the results file

The two stages are the two halves of ``Classifier.classify`` (:mod:`sdk.batch.scoring`), so the
results equal a single-process run's exactly. Scan files (and the reports folder) must be on a
file system every node sees under the same paths; the results file is written by this process
only. The bundle is verified here once, and every actor verifies it again as it loads.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import replace
from typing import Any

from sdk.batch.scoring import Scorer, Settings, load_bundle, prepare
from sdk.errors import BackendUnavailable

# a CPU task's heap for one default wide volume (128 x 496 x 512): 351 MiB peak of the front end's
# arrays (tracemalloc) + the volume and its file buffer; what Ray reserves for each task
FRONT_END_MEMORY_BYTES = 512 * 2**20
_resolved: dict[str, Any] = {}  # per Ray worker process: object id -> value, so each is fetched once


def run_ray(
    paths,
    settings: Settings,
    done,
    address: str,
    *,
    actors: int,
    actor_cpus: float,
    actor_gpus: float,
    on_ready,
    on_outcome,
) -> None:
    """Score ``paths`` on Ray: ``address`` "local" (start one on this machine, unless this process
    has one already) or a cluster address ("auto", "HOST:6379", "ray://HOST:10001").

    actors : Classifier actors; actor_cpus / actor_gpus : resources of each (its networks run on
    that many intra-op threads unless settings.threads says otherwise). on_ready(bundle_id) and
    on_outcome(outcome) as in :func:`sdk.batch.local.run_local`.
    """
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise BackendUnavailable(f"--ray needs Ray Data ({error}): pip install 'octclassify[ray]'") from None
    bundle = load_bundle(settings)
    bundle.close()  # the normative database and the id are all this process needs
    settings = replace(
        settings, bundle_id=bundle.bundle_id, threads=settings.threads or max(1, round(actor_cpus))
    )
    on_ready(bundle.bundle_id)
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    try:
        _check_resources(ray.cluster_resources(), actors, actor_cpus, actor_gpus)
        ray.data.DataContext.get_current().enable_progress_bars = False  # sdk.batch shows its own
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        done_ref, normative_ref = ray.put(frozenset(done)), ray.put(bundle.normative)
        items = [{"file": str(p)} for p in paths]
        rows: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=max(1, len(paths)))
        rows = rows.map(
            _front_end_row,  # type: ignore[arg-type]  # Ray types fn as row -> row, whatever fn_kwargs adds
            fn_kwargs={"settings": settings, "done_ref": done_ref, "normative_ref": normative_ref},
            num_cpus=1,
            memory=FRONT_END_MEMORY_BYTES,  # also keeps Ray Data from fusing this stage into the actors
        )
        rows = rows.map_batches(
            _NetworkActor,
            fn_constructor_kwargs={"settings": settings},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=actor_cpus,
            num_gpus=actor_gpus or None,
        )
        for row in rows.iter_rows():
            on_outcome(pickle.loads(row["outcome"]))
    finally:
        if started:
            ray.shutdown()


def _check_resources(cluster: dict, actors: int, actor_cpus: float, actor_gpus: float) -> None:
    """BackendUnavailable unless the cluster holds the actors and still has a CPU for the front end
    (Ray Data would otherwise wait for ever)."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    if actors * actor_gpus > gpus:
        raise BackendUnavailable(
            f"{actors} actors x {actor_gpus:g} GPUs: more than the cluster's {gpus:g} GPUs"
        )
    if actors * actor_cpus + 1 > cpus:
        raise BackendUnavailable(
            f"{actors} actors x {actor_cpus:g} CPUs leave none of the Ray cluster's {cpus:g} CPUs for the "
            "front end: use fewer --actors or --actor-cpus"
        )


def _front_end_row(row: dict, settings: Settings, done_ref, normative_ref) -> dict:
    """CPU stage: one path -> its Prepared scan (or its Skip or error record), pickled."""
    done, normative = _get(done_ref), _get(normative_ref)
    return {"file": row["file"], "outcome": pickle.dumps(prepare(row["file"], settings, done, normative))}


class _NetworkActor:
    """Actor stage: one Classifier, loaded once; prepared scans in, records out."""

    def __init__(self, settings: Settings):
        self.scorer = Scorer(settings)

    def __call__(self, batch: dict) -> dict:
        outcomes = [pickle.dumps(self.scorer.finish(pickle.loads(b))) for b in batch["outcome"]]
        return {"file": batch["file"], "outcome": outcomes}


def _get(ref):
    import ray

    key = ref.hex()
    if key not in _resolved:
        _resolved[key] = ray.get(ref)
    return _resolved[key]
