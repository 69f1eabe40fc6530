"""TensorRT FP16 engines: built once on the device, cached by content and device, then run.

::

    from sdk.engines import build_bundle_engines, TensorRTModel
    paths = build_bundle_engines("bundle/")            # {model name: engine path}; builds on a miss
    with TensorRTModel(paths["rnfl_thickness.stage1"]) as model:
        probabilities = model.infer(batch)              # (1, 3, 224, 224) float32 -> (1, 2) float32

* :mod:`sdk.engines.cache`: :class:`EngineCache`, the content+device key, atomic locked writes.
* :mod:`sdk.engines.build`: the FP16 strategy per TensorRT version, the build, the bundle loop.
* :mod:`sdk.engines.runtime`: :class:`TensorRTModel` (named-tensor API, cuda-python buffers).

Importing this package needs neither tensorrt nor cuda-python; they are imported when used.
"""

from sdk.engines.build import (
    build_bundle_engines,
    build_engine,
    device_identity,
    fp16_strategy,
    tensorrt_usable,
)
from sdk.engines.cache import EngineCache, engine_key, key_material
from sdk.engines.runtime import TensorRTModel

__all__ = [
    "EngineCache",
    "TensorRTModel",
    "build_bundle_engines",
    "build_engine",
    "device_identity",
    "engine_key",
    "fp16_strategy",
    "key_material",
    "tensorrt_usable",
]
