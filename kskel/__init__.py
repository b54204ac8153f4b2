"""kskel: self-supervised skeleton action recognition in Keras 3.

SkeletonCLR (the MoCo baseline), AimCLR and ActCLR on an ST-GCN encoder.
"""

import os

# TensorFlow's C++ start-up chatter hides the tools' own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kskel.errors import KskelError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["KskelError", "__version__"]
