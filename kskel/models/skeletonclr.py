"""SkeletonCLR: MoCo v2 on two normally augmented views.

Reference: Li et al., "3D Human Action Representation Learning via
Cross-View Consistency Pursuit", CVPR 2021 (`net/skeletonclr.py`).
"""

import keras

from kskel.models import losses
from kskel.models.moco import MoCo


@keras.saving.register_keras_serializable(package="kskel")
class SkeletonCLR(MoCo):
    """InfoNCE between a query view and a momentum-encoded key view.

    Takes the views `(im_q, im_k)` of `kskel.data.views.skeletonclr_views`.
    See `MoCo` for the arguments.
    """

    def contrastive_loss(self, views):
        im_q, im_k = views
        query = self(im_q, training=True)
        keys = self.encode_keys(im_k)
        logits = losses.moco_logits(query, keys, self.queue, self.temperature)
        metrics = {"contrast_acc": losses.top1_positive(logits)}
        return losses.info_nce(logits), metrics, keys
