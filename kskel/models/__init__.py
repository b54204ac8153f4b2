"""Contrastive pretraining models."""

from kskel.models.moco import MoCo
from kskel.models.skeletonclr import SkeletonCLR

__all__ = ["MoCo", "SkeletonCLR"]
