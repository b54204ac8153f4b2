"""The MoCo training step on the TensorFlow backend (`tf.GradientTape`)."""

import tensorflow as tf

from kskel.models.steps import unpack_views
from kskel.models.steps import update_trackers


def train_step(model, data):
    """One step inside or outside a `tf.distribute` strategy.

    Each replica's gradient is of its loss divided by the number of
    replicas (the strategy sums them); the keys of every replica are
    enqueued, in replica order.
    """
    views = unpack_views(data)
    model.momentum_update()
    with tf.GradientTape() as tape:
        loss, metrics, keys = model.contrastive_loss(views)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        scaled = loss / replicas  # Gradients are summed over replicas.
        # Loss scaling for float16 (identity without a loss scale);
        # `apply_gradients` divides the gradients by the same scale.
        scaled = model.optimizer.scale_loss(scaled)
    variables = model.query.trainable_variables
    gradients = tape.gradient(scaled, variables)
    model.optimizer.apply_gradients(zip(gradients, variables))
    model.enqueue(gather_replicas(keys))
    return update_trackers(model, loss, metrics)


def gather_replicas(keys):
    """All replicas' keys, in replica order (identity outside a strategy)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return keys
    return context.all_gather(keys, axis=0)
