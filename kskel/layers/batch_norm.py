"""Batch normalisation as PyTorch's, with TensorFlow's fused kernel."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kskel")
class BatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with PyTorch's statistics update.

    Two differences from the Keras layer:

    - The moving variance is updated with the unbiased batch variance
      (Bessel's correction), as PyTorch's `BatchNorm1d/2d` do; Keras uses
      the biased one. The normalisation uses the biased variance in both.
    - On the TensorFlow backend, for channels-last inputs of rank 2 to 4
      with scale and offset and per-replica statistics, the normalisation
      and the batch moments run in one `FusedBatchNormV3` kernel (and one
      gradient kernel) instead of a chain of reductions and element-wise
      ops. This fused kernel reports the unbiased variance itself.

    Masks and batch renormalisation fall back to the Keras layer.
    """

    def _fused_applies(self, inputs):
        return (
            keras.backend.backend() == "tensorflow"
            and 2 <= len(inputs.shape) <= 4
            and self.axis in (-1, len(inputs.shape) - 1)
            and not self.synchronized
            and self.scale
            and self.center
        )

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        inputs = ops.cast(inputs, "float32")
        update = bool(training and self.trainable)
        if self._fused_applies(inputs):
            outputs, mean, variance = self._fused(inputs, update)
        else:
            outputs, mean, variance = self._generic(inputs, update)
        if update:
            momentum = self.momentum
            self.moving_mean.assign(
                self.moving_mean * momentum + mean * (1.0 - momentum)
            )
            self.moving_variance.assign(
                self.moving_variance * momentum + variance * (1.0 - momentum)
            )
        return ops.cast(outputs, self.compute_dtype)

    def _fused(self, inputs, training):
        """`(outputs, batch mean, unbiased batch variance)`."""
        import tensorflow as tf

        shape = tf.shape(inputs)
        rank = len(inputs.shape)
        x = inputs
        if rank < 4:  # The kernel takes NHWC.
            x = tf.reshape(x, [-1, 1, 1 if rank == 2 else shape[1], shape[-1]])
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=ops.cast(self.gamma, "float32"),
            offset=ops.cast(self.beta, "float32"),
            mean=(
                tf.constant([], "float32")
                if training
                else ops.cast(self.moving_mean, "float32")
            ),
            variance=(
                tf.constant([], "float32")
                if training
                else ops.cast(self.moving_variance, "float32")
            ),
            epsilon=self.epsilon,
            is_training=training,
        )
        if rank < 4:
            outputs = tf.reshape(outputs, shape)
        return outputs, mean, variance

    def _generic(self, inputs, training):
        """`(outputs, batch mean, unbiased batch variance)` with keras.ops."""
        if training:
            mean, variance = self._moments(inputs, None)
            count = _reduced_count(inputs, self._reduction_axes)
            if self.synchronized:
                count = count * _num_replicas()
        else:
            mean = ops.cast(self.moving_mean, "float32")
            variance = ops.cast(self.moving_variance, "float32")
        outputs = ops.batch_normalization(
            x=inputs,
            mean=mean,
            variance=variance,
            axis=self.axis,
            offset=ops.cast(self.beta, "float32") if self.center else None,
            scale=ops.cast(self.gamma, "float32") if self.scale else None,
            epsilon=self.epsilon,
        )
        if training:
            variance = variance * count / ops.maximum(count - 1.0, 1.0)
        return outputs, mean, variance


def _reduced_count(inputs, axes):
    """Elements per channel that the moments reduce over, as float32."""
    shape = ops.shape(inputs)
    count = 1.0
    for axis in axes:
        count = count * ops.cast(shape[axis], "float32")
    return count


def _num_replicas():
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync
