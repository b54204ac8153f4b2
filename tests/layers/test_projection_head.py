"""The projection head: official MLP, or the MoCo v3 head with batch norm."""

import keras
import numpy as np

from kskel.layers import ProjectionHead


def test_official_head_has_only_two_dense_layers():
    head = ProjectionHead(16, 8)
    head.build((None, 12))
    assert [tuple(w.shape) for w in head.weights] == [
        (12, 16),
        (16,),
        (16, 8),
        (8,),
    ]


def test_batch_norm_head_centres_outputs_over_the_batch_in_training():
    head = ProjectionHead(16, 8, batch_norm=True)
    x = np.random.default_rng(0).normal(3.0, 1.0, (32, 12)).astype("float32")
    trained = keras.ops.convert_to_numpy(head(x, training=True))
    # Output batch norm has no offset or scale: zero mean, unit variance.
    np.testing.assert_allclose(trained.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(trained.std(0), 1.0, atol=1e-2)
    # In inference mode it uses the moving statistics, so it differs.
    inferred = keras.ops.convert_to_numpy(head(x, training=False))
    assert not np.allclose(inferred, trained, atol=1e-3)


def test_batch_norm_head_round_trips_its_config():
    head = ProjectionHead(16, 8, batch_norm=True)
    clone = ProjectionHead.from_config(head.get_config())
    assert clone.batch_norm and clone.hidden_dim == 16
    assert clone.output_dim == 8
