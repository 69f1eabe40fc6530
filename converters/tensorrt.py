"""Bundle ONNX models -> FP16 TensorRT engines, on the target device.

``python -m converters.tensorrt BUNDLE [--cache-dir DIR] [--workspace-mb N] [--force]`` is the
same command as ``python -m sdk.build_engines`` (see :mod:`sdk.build_engines`): engines are tied
to the GPU and TensorRT version, so they are built where they run, never shipped in a bundle.
"""

import sys

from sdk.build_engines import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m converters.tensorrt"))
