"""AimCLR: extreme augmentations, EADM, D3M loss and nearest-neighbour mining.

Reference: Guo et al., "Contrastive Learning from Extremely Augmented
Skeleton Sequences for Self-supervised Action Recognition", AAAI 2022
(`net/aimclr.py`, FACTS §6).
"""

import keras
from keras import ops

from kskel.models import losses
from kskel.models.eadm import attention_drop
from kskel.models.moco import MoCo
from kskel.models.moco import float32


@keras.saving.register_keras_serializable(package="kskel")
class AimCLR(MoCo):
    """MoCo with a normal view, an extreme view and its EADM-dropped twin.

    Takes the views `(im_q_extreme, im_q, im_k)` of
    `kskel.data.views.aimclr_views`. The loss is, up to `mining_epoch`,
    `CE(l, 0) + (L_d1 + L_d2) / 2` where `L_d*` are the D3M
    cross-entropies between the normal view's (detached) distribution over
    [key, queue] and those of the extreme and dropped views; afterwards the
    InfoNCE term becomes nearest-neighbour mining (NNM): the top-`topk`
    queue entries of each of the three queries count as positives too.

    Args:
        mining_epoch: int, last epoch without NNM (1-based). Defaults to 150.
        topk: int, neighbours mined per query. Defaults to 1.
        keep_prob: float, EADM attention threshold. Defaults to 0.7.
        **kwargs: `MoCo` arguments.
    """

    METRICS = ("contrast_acc", "ddm_loss", "nnm_positives")

    def __init__(self, mining_epoch=150, topk=1, keep_prob=0.7, **kwargs):
        super().__init__(**kwargs)
        self.mining_epoch = int(mining_epoch)
        self.topk = int(topk)
        self.keep_prob = float(keep_prob)

    def _project(self, feature_map, num_bodies):
        pooled = self.query.encoder.pool(feature_map, num_bodies)
        return losses.l2_normalize(
            float32(self.query.head(pooled, training=True))
        )

    def contrastive_loss(self, views):
        im_extreme, im_q, im_k = views
        num_bodies = im_q.shape[1]
        query = self(im_q, training=True)
        # EADM's statistics and thresholds run in float32 (mixed precision).
        h = float32(self.query.encoder.feature_map(im_extreme, training=True))
        query_extreme = self._project(h, num_bodies)
        query_dropped = self._project(
            attention_drop(h, self.keep_prob), num_bodies
        )
        keys = self.encode_keys(im_k)

        logits = losses.moco_logits(query, keys, self.queue, self.temperature)
        logits_e = losses.moco_logits(
            query_extreme, keys, self.queue, self.temperature
        )
        logits_ed = losses.moco_logits(
            query_dropped, keys, self.queue, self.temperature
        )
        target = ops.stop_gradient(ops.softmax(logits, axis=-1))
        ddm = 0.5 * (
            losses.soft_cross_entropy(target, logits_e)
            + losses.soft_cross_entropy(target, logits_ed)
        )
        positives = self._mined_positives((query, query_extreme, query_dropped))
        nnm = losses.multi_positive_nce(logits, positives)
        mining = ops.cast(self.epoch > self.mining_epoch, logits.dtype)
        contrast = (1.0 - mining) * losses.info_nce(logits) + mining * nnm
        metrics = {
            "contrast_acc": losses.top1_positive(logits),
            "ddm_loss": ddm,
            "nnm_positives": ops.mean(ops.sum(positives, axis=-1)),
        }
        return contrast + ddm, metrics, keys

    def _mined_positives(self, queries):
        """(N, 1 + K) 0/1 mask: the key plus each query's top-k neighbours."""
        queue = ops.stop_gradient(self.queue)
        mask = 0.0
        for query in queries:
            similarity = ops.matmul(
                ops.stop_gradient(query), ops.transpose(queue)
            )
            _, indices = ops.top_k(similarity, self.topk)
            hits = ops.sum(ops.one_hot(indices, self.queue_size), axis=1)
            mask = ops.maximum(mask, hits)
        positive = ops.ones_like(mask[:, :1])
        return ops.concatenate([positive, ops.minimum(mask, 1.0)], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mining_epoch": self.mining_epoch,
                "topk": self.topk,
                "keep_prob": self.keep_prob,
            }
        )
        return config
