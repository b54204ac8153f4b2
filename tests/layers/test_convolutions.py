"""PointwiseConv2D and TemporalConv2D: Conv2D's values and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel.layers import convolutions
from kskel.layers.convolutions import PointwiseConv2D
from kskel.layers.convolutions import TemporalConv2D


def _values_and_gradients(layer, x, upstream):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x)
        loss = tf.reduce_sum(out * upstream)
    grads = tape.gradient(loss, [x, *[w.value for w in layer.weights]])
    return [np.asarray(t) for t in (out, *grads)]


def _reference_conv(frames_pad, stride):
    """The straightforward form: zero padding, then a "valid" Conv2D."""

    def apply(layer, x):
        padded = tf.pad(x, [[0, 0], [frames_pad] * 2, [0, 0], [0, 0]])
        out = tf.nn.conv2d(padded, layer.kernel, (1, stride, 1, 1), "VALID")
        return out + layer.bias

    return apply


@pytest.mark.parametrize(
    "in_channels, frames, stride",
    [
        (128, 13, 1),
        (128, 3, 1),
        (128, 1, 1),
        (64, 13, 1),
        (8, 13, 1),
        (128, 13, 2),
    ],
)
def test_temporal_conv_matches_pad_then_conv(in_channels, frames, stride, rng):
    """Values and gradients (input, kernel, bias) of the matmul filter
    gradient (128 channels, stride 1: 3 and 1 frames leave taps that read
    only padding) and of oneDNN's path equal the reference's."""
    layer = TemporalConv2D(
        16,
        (9, 1),
        frame_padding=4,
        strides=(stride, 1),
        bias_initializer="random_normal",
    )
    x = rng.normal(size=(3, frames, 25, in_channels)).astype("float32")
    layer.build(x.shape)
    out_frames = (frames - 1) // stride + 1
    assert layer.compute_output_shape(x.shape) == (3, out_frames, 25, 16)
    assert layer.uses_matmul_filter_gradient(in_channels) == (
        in_channels >= convolutions.MATMUL_FILTER_GRADIENT_CHANNELS
        and stride == 1
    )
    upstream = rng.normal(size=(3, out_frames, 25, 16)).astype("float32")
    ours = _values_and_gradients(layer, x, upstream)
    reference = _reference_conv(4, stride)
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        out = reference(layer, x_t)
        loss = tf.reduce_sum(out * upstream)
    expected = [
        out,
        *tape.gradient(loss, [x_t, *[w.value for w in layer.weights]]),
    ]
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-4)


def test_temporal_conv_kernel_gradient_against_numpy(rng):
    """The matmul filter gradient against its definition,
    `dW[k] = sum_{n, t, v} x_pad[n, t + k, v]^T dy[n, t, v]`."""
    layer = TemporalConv2D(8, (9, 1), frame_padding=4)
    x = rng.normal(size=(2, 6, 25, 128)).astype("float32")
    layer.build(x.shape)
    assert layer.uses_matmul_filter_gradient(128)
    dy = rng.normal(size=(2, 6, 25, 8)).astype("float32")
    grad = _values_and_gradients(layer, x, dy)[2]
    x_pad = np.pad(x, ((0, 0), (4, 4), (0, 0), (0, 0)))
    expected = np.stack(
        [np.einsum("ntvc,ntvf->cf", x_pad[:, k : k + 6], dy) for k in range(9)]
    )
    np.testing.assert_allclose(grad[:, 0], expected, rtol=1e-4, atol=1e-3)


def test_pointwise_conv_matches_conv2d(rng):
    pointwise = PointwiseConv2D(32, bias_initializer="random_normal")
    x = rng.normal(size=(2, 7, 25, 12)).astype("float32")
    pointwise.build(x.shape)
    conv = keras.layers.Conv2D(32, 1)
    conv.build(x.shape)
    conv.set_weights(pointwise.get_weights())
    upstream = rng.normal(size=(2, 7, 25, 32)).astype("float32")
    for got, want in zip(
        _values_and_gradients(pointwise, x, upstream),
        _values_and_gradients(conv, x, upstream),
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_invalid_arguments_and_config():
    with pytest.raises(ValueError, match="1x1"):
        PointwiseConv2D(4, (3, 1))
    with pytest.raises(ValueError, match="1x1"):
        PointwiseConv2D(4, strides=2)
    with pytest.raises(ValueError, match="frames only"):
        TemporalConv2D(4, (9, 3))
    with pytest.raises(ValueError, match="frames only"):
        TemporalConv2D(4, (9, 1), padding="same")
    layer = TemporalConv2D(4, (9, 1), frame_padding=4, strides=(2, 1))
    clone = TemporalConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("in_channels", [64, 8])
def test_temporal_conv_under_bfloat16_matches_float32(in_channels, rng):
    """Mixed precision reaches the matmul filter gradient (from 64 input
    channels) and oneDNN's path alike: bfloat16 values and gradients are
    the float32 ones to bfloat16's precision."""
    x = rng.normal(size=(2, 13, 25, in_channels)).astype("float32")
    upstream = rng.normal(size=(2, 13, 25, 16)).astype("float32")
    results = []
    for dtype in ("float32", "mixed_bfloat16"):
        layer = TemporalConv2D(
            16,
            (9, 1),
            frame_padding=4,
            dtype=dtype,
            kernel_initializer=keras.initializers.RandomNormal(seed=1),
        )
        layer.build(x.shape)
        results.append(_values_and_gradients(layer, x, upstream))
    assert results[1][0].dtype == "bfloat16"
    # Output, input and kernel gradients; the bias gradient is TensorFlow's
    # bias-add gradient, a bfloat16 sum over all N * T * V rows (~2 % off).
    for mixed, full in zip(results[1][:3], results[0][:3]):
        mixed = mixed.astype("float32")
        error = np.linalg.norm(mixed - full) / np.linalg.norm(full)
        assert error < 1e-2
