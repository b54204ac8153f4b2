"""The official ST-GCN initialisation (`weights_init`, FACTS §2.6)."""

import keras

from kskel.layers.batch_norm import BatchNorm


def conv_kernel():
    """Conv and linear weights ~ N(0, 0.02)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def bn_gamma():
    """BatchNorm scale ~ N(1, 0.02)."""
    return keras.initializers.RandomNormal(mean=1.0, stddev=0.02)


def batch_norm(name, axis=-1, synchronized=False):
    """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here)
    and statistics update (`kskel.layers.batch_norm.BatchNorm`).

    `synchronized=True` computes batch statistics over all replicas of a
    `tf.distribute` strategy (SyncBatchNorm); otherwise per replica.
    """
    return BatchNorm(
        axis=axis,
        momentum=0.9,
        epsilon=1e-5,
        gamma_initializer=bn_gamma(),
        synchronized=synchronized,
        name=name,
    )
