"""kskel: self-supervised skeleton action recognition in Keras 3.

SkeletonCLR (the MoCo baseline), AimCLR and ActCLR on an ST-GCN encoder.
"""

from kskel.errors import KskelError

__version__ = "0.1.0"

__all__ = ["KskelError", "__version__"]
