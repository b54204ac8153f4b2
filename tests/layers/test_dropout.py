"""Dropout: the byte mask is Keras' Bernoulli mask, drawn more cheaply."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel.layers.dropout import Dropout

_SIZE = 400_000


def _binomial_bound(p, n):
    """Six standard deviations of a kept fraction over n elements."""
    return 6.0 * np.sqrt(p * (1.0 - p) / n)


@pytest.mark.parametrize(
    "rate, shape",
    [
        (0.5, (_SIZE // 100, 25, 4)),  # four channels per 32-bit draw
        (0.25, (_SIZE // 100, 4, 25)),  # flat draws, the last sliced off
        (0.0625, (_SIZE // 100, 4, 25)),
    ],
)
def test_byte_mask_keeps_one_minus_rate_scaled(rate, shape):
    layer = Dropout(rate, seed=1)
    assert layer._byte_threshold() == rate * 256
    x = tf.random.stateless_normal(shape, seed=(0, 1)) + 3.0
    y = np.asarray(layer(x, training=True))
    kept = y != 0
    assert abs(kept.mean() - (1 - rate)) < _binomial_bound(rate, _SIZE)
    np.testing.assert_allclose(
        y[kept], np.asarray(x)[kept] / (1 - rate), rtol=1e-6
    )


def test_mask_is_independent_of_position_and_draw():
    """Each byte of a 32-bit draw decides one element: neighbours, the
    four bytes of one draw and two calls must be uncorrelated."""
    layer = Dropout(0.5, seed=2)
    x = tf.ones((_SIZE // 16, 16))
    first = np.asarray(layer(x, training=True)) > 0
    second = np.asarray(layer(x, training=True)) > 0
    bound = _binomial_bound(0.25, _SIZE // 2)
    for a, b in [
        (first[:-1], first[1:]),  # neighbours, mostly within one draw
        (first[:-4], first[4:]),  # the same byte of consecutive draws
        (first, second),  # the next call
    ]:
        assert abs((a & b).mean() - 0.25) < bound
    assert (first != second).any()


def test_gradient_is_the_mask_times_the_scale():
    layer = Dropout(0.5, seed=3)
    x = tf.random.stateless_normal((64, 13, 25, 8), seed=(1, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    grad = np.asarray(tape.gradient(y, x))
    np.testing.assert_array_equal(grad, (np.asarray(y) != 0) * 2.0)


def test_same_seed_same_mask_and_inference_is_identity():
    x = tf.ones((8, 5, 25, 4))
    a = np.asarray(Dropout(0.5, seed=7)(x, training=True))
    b = np.asarray(Dropout(0.5, seed=7)(x, training=True))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        np.asarray(Dropout(0.5, seed=7)(x, training=False)), np.asarray(x)
    )


def test_inside_tf_function_each_call_draws_anew():
    layer = Dropout(0.5, seed=4)
    step = tf.function(lambda x: layer(x, training=True))
    x = tf.ones((10_000,))
    assert (np.asarray(step(x)) != np.asarray(step(x))).any()


def test_other_rates_and_noise_shape_use_keras_dropout():
    """0.3 is not a multiple of 1/256: Keras' own mask, same statistics."""
    assert Dropout(0.3)._byte_threshold() is None
    assert Dropout(0.5, noise_shape=(None, 1))._byte_threshold() is None
    x = tf.ones((_SIZE,))
    kept = np.asarray(Dropout(0.3, seed=5)(x, training=True)) != 0
    assert abs(kept.mean() - 0.7) < _binomial_bound(0.3, _SIZE)


def test_weights_and_config_are_keras_dropouts():
    """Same variables (the seed generator's state) as `keras.layers.Dropout`,
    so encoders saved before this layer existed load unchanged."""
    ours = Dropout(0.5, seed=1)
    theirs = keras.layers.Dropout(0.5, seed=1)
    assert [v.shape for v in ours.variables] == [
        v.shape for v in theirs.variables
    ]
    restored = Dropout.from_config(ours.get_config())
    assert restored.rate == 0.5 and restored.seed == 1
    assert keras.saving.get_registered_object("kskel>Dropout") is Dropout


def test_bfloat16_inputs_keep_their_dtype_and_scale():
    layer = Dropout(0.5, seed=3, dtype="mixed_bfloat16")
    x = tf.cast(
        tf.random.stateless_uniform((64, 25, 16), (0, 2)) + 1, "bfloat16"
    )
    y = layer(x, training=True)
    assert y.dtype == tf.bfloat16
    y, x = np.asarray(tf.cast(y, "float32")), np.asarray(tf.cast(x, "float32"))
    kept = y != 0
    assert abs(kept.mean() - 0.5) < _binomial_bound(0.5, kept.size)
    np.testing.assert_array_equal(y[kept], 2 * x[kept])


def test_scalar_input_uses_keras_dropout():
    y = Dropout(0.5, seed=4)(tf.constant(3.0), training=True)
    assert float(y) in (0.0, 6.0)
