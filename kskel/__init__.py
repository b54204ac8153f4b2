"""kskel: self-supervised skeleton action recognition in Keras 3.

SkeletonCLR (the MoCo baseline), AimCLR and ActCLR on an ST-GCN encoder.
"""

import os

# TensorFlow's C++ start-up chatter hides the tools' own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN kernels (convolution, batch norm, matmul) are off by
# default on some x86 CPUs; they run the ST-GCN training step about 1.5x
# faster on 2 cores (benchmarks/README.md). Read when TensorFlow is first
# imported; `TF_ENABLE_ONEDNN_OPTS=0` turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from kskel.errors import KskelError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["KskelError", "__version__"]
