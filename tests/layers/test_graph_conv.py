"""GraphConv against a numpy version of the official NCTV computation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel import graph
from kskel.layers import GraphConv


def official_gcn(x_nctv, weight, bias, adjacency):
    """`net/utils/tgcn.py`: 1x1 conv, view (n, K, C, t, v), einsum."""
    n, _, t, v = x_nctv.shape
    y = np.einsum("oc,nctv->notv", weight, x_nctv) + bias[None, :, None, None]
    k = adjacency.shape[0]
    y = y.reshape(n, k, -1, t, v)
    return np.einsum("nkctv,kvw->nctw", y, adjacency)


def test_matches_official_computation(rng):
    layer = GraphConv(8)
    x = rng.normal(size=(2, 7, 25, 3)).astype("float32")
    layer.build(x.shape)
    importance = rng.uniform(0.5, 1.5, size=(3, 25, 25)).astype("float32")
    layer.importance.assign(importance)
    layer.bias.assign(rng.normal(size=(24,)).astype("float32"))
    out = np.asarray(layer(x))

    weight = np.asarray(layer.kernel).T  # (K * C_out, C_in)
    expected = official_gcn(
        np.transpose(x, (0, 3, 1, 2)),
        weight,
        np.asarray(layer.bias),
        graph.NTU25.adjacency() * importance,
    )
    np.testing.assert_allclose(
        out, np.transpose(expected, (0, 2, 3, 1)), rtol=1e-5, atol=1e-5
    )


def test_weights_and_config_round_trip():
    layer = GraphConv(16, name="gcn")
    layer.build((None, 50, 25, 3))
    assert [tuple(w.shape) for w in layer.trainable_weights] == [
        (3, 48),
        (48,),
        (3, 25, 25),
    ]
    clone = GraphConv.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(restored, GraphConv) and restored.filters == 16


def test_without_edge_importance_has_no_importance_weight():
    layer = GraphConv(4, edge_importance=False)
    layer.build((None, 5, 25, 3))
    assert len(layer.trainable_weights) == 2


def test_wrong_joint_count_is_rejected():
    with pytest.raises(ValueError, match="has 25 joints"):
        GraphConv(4).build((None, 5, 18, 3))


def test_invalid_filters_rejected():
    with pytest.raises(ValueError, match="filters"):
        GraphConv(0)


def _einsum_gcn(layer, x):
    """The straightforward conv-then-einsum form of the official code."""
    y = tf.matmul(x, layer.kernel) + layer.bias
    y = tf.reshape(y, (*x.shape[:3], layer.num_partitions, layer.filters))
    return tf.einsum("ntvkf,kvw->ntwf", y, layer.effective_adjacency())


@pytest.mark.parametrize("channels", [(3, 8), (16, 4), (6, 6), (16, 24)])
def test_values_and_gradients_match_the_einsum_form(channels, rng):
    """The three joint-mixing forms (transposed, mixing last, batched from
    16 input channels) equal conv-then-einsum, gradients too."""
    in_channels, filters = channels
    layer = GraphConv(filters)
    x = tf.constant(rng.normal(size=(2, 5, 25, in_channels)).astype("float32"))
    layer.build(x.shape)
    layer.importance.assign(rng.uniform(0.5, 1.5, size=(3, 25, 25)))
    layer.bias.assign(rng.normal(size=(3 * filters,)))
    upstream = tf.constant(
        rng.normal(size=(2, 5, 25, filters)).astype("float32")
    )
    results = []
    for function in (layer, lambda x: _einsum_gcn(layer, x)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(function(x) * upstream)
        results.append(
            [loss, *tape.gradient(loss, [x, *layer.trainable_weights])]
        )
    for ours, reference in zip(*results):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [(3, 8), (16, 24)])
def test_bfloat16_matches_float32(channels, rng):
    """Mixed precision through the transposed and the batched mixing."""
    in_channels, filters = channels
    x = rng.normal(size=(2, 5, 25, in_channels)).astype("float32")
    upstream = tf.constant(
        rng.normal(size=(2, 5, 25, filters)).astype("float32")
    )
    results = []
    for dtype in ("float32", "mixed_bfloat16"):
        layer = GraphConv(
            filters,
            dtype=dtype,
            kernel_initializer=keras.initializers.RandomNormal(seed=1),
        )
        layer.build(x.shape)
        layer.importance.assign(
            np.linspace(0.5, 1.5, 3 * 25 * 25).reshape(3, 25, 25)
        )
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = layer(inputs)
            loss = tf.reduce_sum(tf.cast(out, "float32") * upstream)
        grads = tape.gradient(
            loss, [inputs, layer.kernel.value, layer.importance.value]
        )
        results.append(
            [np.asarray(tf.cast(t, "float32")) for t in (out, *grads)]
        )
    # Output and the input, kernel and importance gradients (0.3-0.4 %).
    full, mixed = results
    for got, want in zip(mixed, full):
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-2
