"""STGCNBlock: padding, residual rules, stride and serialisation."""

import keras
import numpy as np
import pytest

from kskel.layers import STGCNBlock


def _identity_tcn_block(filters, stride, frames):
    """A block whose graph conv copies channels and TCN picks the centre."""
    block = STGCNBlock(filters, stride=stride, residual=False)
    block.build((None, frames, 25, filters))
    kernel = np.zeros((filters, 3 * filters), "float32")
    kernel[:, :filters] = np.eye(filters)  # partition 0 = diag(1/deg).
    block.gcn.kernel.assign(kernel)
    block.gcn.importance.assign(np.ones((3, 25, 25), "float32"))
    tcn = np.zeros((9, 1, filters, filters), "float32")
    tcn[4, 0] = np.eye(filters)
    block.tcn_conv.kernel.assign(tcn)
    for bn in (block.tcn_bn1, block.tcn_bn2):
        bn.gamma.assign(np.ones(filters, "float32"))
    return block


@pytest.mark.parametrize("frames", [50, 25, 13])
def test_stride_two_samples_even_frames(frames):
    block = _identity_tcn_block(2, stride=2, frames=frames)
    x = np.abs(np.random.default_rng(1).normal(size=(1, frames, 25, 2)))
    x = x.astype("float32")
    out = np.asarray(block(x, training=False))
    assert out.shape[1] == (frames - 1) // 2 + 1
    # Partition 0 scales joint v by 1/deg(v); frames 0, 2, 4, ... are kept.
    degree_scale = out[0, :, 0, 0] / x[0, ::2, 0, 0]
    np.testing.assert_allclose(degree_scale, degree_scale[0], rtol=1e-4)


def test_frame_count_after_stride_two_at_fifty_frames():
    block = STGCNBlock(32, stride=2)
    assert block.compute_output_shape((None, 50, 25, 16)) == (
        None,
        25,
        25,
        32,
    )
    assert block.compute_output_shape((None, 25, 25, 16))[1] == 13


@pytest.mark.parametrize(
    "in_channels, filters, stride, residual, mode, extra",
    [
        (3, 16, 1, False, "none", 0),
        (16, 16, 1, True, "identity", 0),
        (16, 32, 2, True, "conv", 2 + 2),
        (64, 256, 1, True, "conv", 2 + 2),
    ],
)
def test_residual_rules(in_channels, filters, stride, residual, mode, extra):
    block = STGCNBlock(filters, stride=stride, residual=residual)
    block.build((None, 50, 25, in_channels))
    assert block.residual_mode(in_channels) == mode
    # gcn kernel, bias, importance; tcn conv kernel, bias; 2 BN x (g, b).
    assert len(block.trainable_weights) == 3 + 2 + 4 + extra


@pytest.mark.parametrize("frames", [16, 13])
def test_strided_residual_is_a_strided_1x1_conv(frames):
    """The residual branch keeps frames 0, 2, 4, ...; value and kernel
    gradient against NumPy (4 input channels: the case whose strided-conv
    filter gradient TensorFlow got wrong under load)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    block = STGCNBlock(8, stride=2)
    block.build((None, frames, 25, 4))
    block.tcn_bn2.gamma.assign(np.zeros(8, "float32"))  # Main branch = 0.
    block.residual_bn.gamma.assign(np.ones(8, "float32"))
    kernel = rng.normal(size=(1, 1, 4, 8)).astype("float32")
    bias = rng.normal(size=8).astype("float32")
    block.residual_conv.kernel.assign(kernel)
    block.residual_conv.bias.assign(bias)
    x = rng.normal(size=(8, frames, 25, 4)).astype("float32")
    dy = rng.normal(size=(8, (frames + 1) // 2, 25, 8)).astype("float32")
    scale = 1.0 / np.sqrt(1.0 + block.residual_bn.epsilon)
    pre = (x[:, ::2] @ kernel[0, 0] + bias) * scale
    expected = np.maximum(pre, 0.0)
    expected_grad = np.einsum(
        "ntvc,ntvd->cd", x[:, ::2], dy * (pre > 0) * scale
    )
    with tf.GradientTape() as tape:
        out = block(x, training=False)
        loss = tf.reduce_sum(out * dy)
    grad = tape.gradient(loss, block.residual_conv.kernel.value)
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(grad)[0, 0], expected_grad, rtol=1e-4, atol=1e-3
    )


def test_dropout_only_in_training():
    block = STGCNBlock(8, dropout=0.5)
    x = np.ones((2, 6, 25, 8), "float32")
    a = np.asarray(block(x, training=False))
    b = np.asarray(block(x, training=False))
    np.testing.assert_array_equal(a, b)
    c = np.asarray(block(x, training=True))
    assert not np.allclose(a, c)


def test_config_round_trip_and_invalid_arguments():
    block = STGCNBlock(32, stride=2, dropout=0.5, name="b")
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(block)
    )
    assert clone.get_config() == block.get_config()
    with pytest.raises(ValueError, match="stride"):
        STGCNBlock(8, stride=3)
    with pytest.raises(ValueError, match="dropout"):
        STGCNBlock(8, dropout=1.0)


@pytest.mark.parametrize("frames, stride", [(50, 2), (25, 2), (13, 2), (7, 3)])
def test_sample_frames_is_a_strided_slice(frames, stride):
    """Values and input gradient of the reshape-and-split sampling."""
    import tensorflow as tf

    from kskel.layers.stgcn_block import _sample_frames

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, frames, 25, 4)).astype("float32"))
    dy = rng.normal(size=(3, -(-frames // stride), 25, 4)).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = _sample_frames(x, stride)
        loss = tf.reduce_sum(out * dy)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x)[:, ::stride])
    expected = np.zeros(x.shape, "float32")
    expected[:, ::stride] = dy
    np.testing.assert_array_equal(np.asarray(tape.gradient(loss, x)), expected)
