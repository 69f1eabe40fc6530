"""scipy.ndimage, imported at first use, and that import started early in a thread.

With scipy 1.15 and later, importing scipy.ndimage costs 0.3-0.5 s on the 2-core CPU (its array-API
layer imports array_api_compat, which walks numpy's namespace), more than loading a small bundle.
The front end reaches scipy.ndimage through this module (``from sdk import ndimage``, then
``ndimage.median_filter(...)``), so importing the SDK does not pay for it; ``Classifier.of_bundle``
(which Classifier.load, the CLI, sdk.batch and the C library's octc_open all load through; octc_open
then waits for it) calls :func:`preload` first, so that the import runs while the networks are built
(work that mostly releases the GIL), and the first scan does not wait for it either. A call made
while the import runs waits for it (Python's per-module import lock).
"""

from __future__ import annotations

import functools
import importlib
import threading


def __getattr__(name: str):
    return getattr(importlib.import_module("scipy.ndimage"), name)


@functools.cache
def preload() -> threading.Thread:
    """Start importing scipy.ndimage in a thread, once per process; that thread (join it to wait)."""
    thread = threading.Thread(target=importlib.import_module, args=("scipy.ndimage",), name="octc-import")
    thread.start()
    return thread
