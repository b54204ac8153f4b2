"""Dropout with a cheaper random mask on TensorFlow."""

import keras

# Mask bits per element: a rate that is a multiple of 1 / 2**8 (the
# official 0.5 is) is exactly a comparison of one random byte.
MASK_BITS = 8


@keras.saving.register_keras_serializable(package="kskel")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` drawing one random byte per element.

    Keras' dropout on TensorFlow draws one float32 uniform per element (a
    Philox draw and a conversion each); here each 32-bit draw gives four
    elements their byte, which is kept when `byte >= rate * 256`: the same
    Bernoulli(1 - rate) mask, exactly, for every rate that is a multiple of
    1/256. The encoder's 0.5 dropout took about 0.2 s of a 1.7 s forward
    pass at batch 128 with Keras' mask, about half that with this one
    (benchmarks/README.md).

    Other rates, `noise_shape` and the JAX and PyTorch backends use Keras'
    dropout. The weights (the seed generator's state) are Keras'.
    """

    def _byte_threshold(self):
        threshold = self.rate * 2**MASK_BITS
        if threshold != int(threshold) or self.noise_shape is not None:
            return None
        return int(threshold)

    def call(self, inputs, training=False):
        threshold = self._byte_threshold()
        if (
            not training
            or not 0 < self.rate < 1
            or threshold is None
            or keras.backend.backend() != "tensorflow"
        ):
            return super().call(inputs, training=training)
        return _tf_byte_dropout(
            inputs, threshold, 1.0 / (1.0 - self.rate), self.seed_generator
        )


def _tf_byte_dropout(inputs, threshold, scale, seed_generator):
    import tensorflow as tf

    # Keras' own conversion of a generator's int64 state to a stateless
    # seed (`keras.src.backend.tensorflow.random`).
    seed = tf.cast(
        tf.math.floormod(seed_generator.next(), tf.int32.max - 1), tf.int32
    )
    shape = tf.shape(inputs)
    # A scalar or an unknown rank has no channel axis: flat draws.
    channels = inputs.shape[-1] if inputs.shape.rank else None
    whole_draws = channels is not None and channels % 4 == 0
    if whole_draws:
        # Four channels per draw: no byte left over to slice off.
        draws = tf.concat([shape[:-1], [channels // 4]], 0)
    else:
        draws = [(tf.size(inputs) + 3) // 4]
    bits = tf.random.stateless_uniform(
        draws, seed, minval=None, maxval=None, dtype=tf.uint32
    )
    random_bytes = tf.reshape(tf.bitcast(bits, tf.uint8), [-1])
    if not whole_draws:
        random_bytes = random_bytes[: tf.size(inputs)]
    keep = tf.reshape(random_bytes >= threshold, shape)
    return inputs * (tf.cast(keep, inputs.dtype) * scale)
