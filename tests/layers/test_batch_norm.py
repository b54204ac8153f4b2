"""BatchNorm: the fused TensorFlow kernel against the keras.ops path."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel.layers import BatchNorm


def _pair(shape, rng):
    """Two identical layers, the second forced onto the keras.ops path."""
    fused = BatchNorm(momentum=0.9, epsilon=1e-5)
    generic = BatchNorm(momentum=0.9, epsilon=1e-5)
    generic._fused_applies = lambda inputs: False
    for layer in (fused, generic):
        layer.build(shape)
    gamma = rng.normal(1.0, 0.2, size=shape[-1]).astype("float32")
    beta = rng.normal(0.0, 0.2, size=shape[-1]).astype("float32")
    for layer in (fused, generic):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    return fused, generic


@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (6, 7, 3), (9, 3)])
def test_fused_matches_generic_in_training(shape, rng):
    fused, generic = _pair(shape, rng)
    assert fused._fused_applies(tf.zeros(shape))
    x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype("float32"))
    upstream = tf.constant(rng.normal(size=shape).astype("float32"))
    results = []
    for layer in (fused, generic):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y, *grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        fused.moving_variance, generic.moving_variance, rtol=1e-5
    )
    np.testing.assert_allclose(
        fused.moving_mean, generic.moving_mean, atol=1e-6
    )


def test_both_paths_are_float32_accurate_at_encoder_size(rng):
    # Batch moments over 256 x 50 x 25 values per channel, as in the first
    # blocks of the encoder at batch 128: both paths against float64.
    # oneDNN's fused kernel, the default on CPU, measured about 3x the
    # error of the keras.ops path (1.1e-4 against 3.9e-5 on y, 2.1e-5
    # against 7.5e-6 on dx), both float32 round-off.
    shape = (256, 50, 25, 4)
    x64 = rng.normal(3.0, 1.5, size=shape)
    upstream = rng.normal(size=shape)
    axes = (0, 1, 2)
    inv_std = 1.0 / np.sqrt(x64.var(axes) + 1e-5)
    y64 = (x64 - x64.mean(axes)) * inv_std
    dx64 = inv_std * (
        upstream - upstream.mean(axes) - y64 * (upstream * y64).mean(axes)
    )
    x = tf.constant(x64.astype("float32"))
    fused, generic = _pair(shape, rng)
    assert fused._fused_applies(x)
    for layer in (fused, generic):
        layer.gamma.assign(np.ones(4, "float32"))
        layer.beta.assign(np.zeros(4, "float32"))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream.astype("float32"))
        dx = tape.gradient(loss, x).numpy()
        assert np.abs(y.numpy() - y64).max() < 5e-4
        assert np.abs(dx - dx64).max() < 1e-4 * np.abs(dx64).max()
        np.testing.assert_allclose(
            layer.moving_variance,
            0.9 + 0.1 * x64.reshape(-1, 4).var(0, ddof=1),
            rtol=1e-4,
        )


def test_moving_statistics_use_the_unbiased_variance(rng):
    x = rng.normal(1.0, 2.0, size=(4, 3, 5, 2)).astype("float32")
    for layer in _pair(x.shape, rng):
        layer(x, training=True)
        flat = x.reshape(-1, 2)
        np.testing.assert_allclose(
            layer.moving_mean, 0.1 * flat.mean(0), rtol=1e-5
        )
        # PyTorch: running_var <- 0.9 * 1 + 0.1 * var(ddof=1).
        np.testing.assert_allclose(
            layer.moving_variance,
            0.9 + 0.1 * flat.var(0, ddof=1),
            rtol=1e-5,
        )


def test_inference_uses_moving_statistics(rng):
    x = rng.normal(size=(5, 4, 3, 2)).astype("float32")
    for layer in _pair(x.shape, rng):
        layer.moving_mean.assign([0.5, -1.0])
        layer.moving_variance.assign([4.0, 0.25])
        expected = (x - [0.5, -1.0]) / np.sqrt(
            np.array([4.0, 0.25]) + 1e-5
        ) * np.asarray(layer.gamma) + np.asarray(layer.beta)
        np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_synchronized_and_unscaled_layers_use_the_generic_path():
    x = tf.zeros((2, 3, 4, 5))
    assert not BatchNorm(synchronized=True)._fused_applies(x)
    assert not BatchNorm(center=False, scale=False)._fused_applies(x)
    assert not BatchNorm()._fused_applies(tf.zeros((2, 3, 4, 5, 6)))


def test_config_round_trip():
    layer = BatchNorm(momentum=0.9, epsilon=1e-5, name="bn")
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(restored, BatchNorm)
    assert restored.get_config() == layer.get_config()
