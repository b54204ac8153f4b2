"""Contrastive pretraining models."""

from kskel.models.actclr import ActCLR
from kskel.models.aimclr import AimCLR
from kskel.models.moco import MoCo
from kskel.models.skeletonclr import SkeletonCLR

__all__ = ["ActCLR", "AimCLR", "MoCo", "SkeletonCLR"]
