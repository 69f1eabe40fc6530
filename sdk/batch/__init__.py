"""Score whole archives of scans: ``python -m sdk.batch`` on one machine or on a Ray cluster.

    python -m sdk.batch archive/ --bundle bundle/ --out results.jsonl            # worker processes
    python -m sdk.batch list.csv --bundle bundle/ --out results.jsonl --ray auto  # Ray Data

Modules: :mod:`~sdk.batch.cli` (the command), :mod:`~sdk.batch.inputs` (folders, globs, CSV),
:mod:`~sdk.batch.scoring` (one scan: front end, then networks), :mod:`~sdk.batch.results` (the
JSON-lines file, resumable), :mod:`~sdk.batch.local` (worker processes),
:mod:`~sdk.batch.ray_data` (Ray Data), :mod:`~sdk.batch.progress` (the bar). How to run it on a
cluster: docs/BATCH.md.
"""
